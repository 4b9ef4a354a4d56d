// Package codec holds spate's wire and content formats: the SMTP reply parser
// (RFC 5321 §4.2, multi-line replies, RFC 3463 enhanced status codes), EHLO
// capability parsing (RFC 2920 PIPELINING, RFC 1870 SIZE, RFC 6152 8BITMIME,
// RFC 6531 SMTPUTF8, RFC 3207 STARTTLS, RFC 4954 AUTH, RFC 3030 CHUNKING,
// RFC 3461 DSN), Append* command encoders, envelope address validation
// (RFC 5321 §4.1.2, §4.5.3.1; IDNA A-labels), dot-stuffing over segments,
// the compiled message template (RFC 5322, RFC 2045-2047 encodings), DKIM
// signing of rendered messages (RFC 6376, RFC 8463 Ed25519) and the
// streaming CSV list reader.
//
// codec does no I/O and knows nothing of sockets, gnet or clocks.
package codec
