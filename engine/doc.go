// Package engine delivers messages: the sans-I/O SMTP client Session
// (RFC 5321, RFC 2920 PIPELINING, RFC 3207 STARTTLS, RFC 4954 AUTH), the gnet
// event-loop driver that runs thousands of sessions, dialing with a source
// address, per-command timeouts, and the Resolver (MX and TLS-capability
// caches). It reports outcomes; it never changes limits (the scheduler does).
package engine
