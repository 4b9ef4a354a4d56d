package codec

import (
	"encoding/base64"
	"strconv"
)

// The Append* encoders append one CRLF-terminated SMTP command (RFC 5321
// §4.1.1, RFC 3207, RFC 4954, RFC 3030) to dst and return the extended slice, like
// strconv.Append*. They allocate only when dst must grow.
//
// The encoders trust their input: they neither validate nor escape. Every
// address, name and credential must have been checked once at the edge
// (ValidateAddress / NormalizeAddress when the list is read, the config
// loader for names): a value holding CR, LF or '>' would inject commands.

// MailParams are the MAIL FROM parameters spate uses.
type MailParams struct {
	Size     int  // SIZE=n (RFC 1870) when > 0
	EightBit bool // BODY=8BITMIME (RFC 6152)
	UTF8     bool // SMTPUTF8 (RFC 6531)
}

// AppendEHLO appends "EHLO name\r\n".
func AppendEHLO(dst []byte, name string) []byte {
	return append(append(append(dst, "EHLO "...), name...), "\r\n"...)
}

// AppendHELO appends "HELO name\r\n".
func AppendHELO(dst []byte, name string) []byte {
	return append(append(append(dst, "HELO "...), name...), "\r\n"...)
}

// AppendMailFrom appends "MAIL FROM:<from>" with the parameters p and CRLF.
// The empty from gives the null reverse path "MAIL FROM:<>".
func AppendMailFrom(dst []byte, from string, p MailParams) []byte {
	dst = append(append(append(dst, "MAIL FROM:<"...), from...), '>')
	if p.Size > 0 {
		dst = strconv.AppendInt(append(dst, " SIZE="...), int64(p.Size), 10)
	}
	if p.EightBit {
		dst = append(dst, " BODY=8BITMIME"...)
	}
	if p.UTF8 {
		dst = append(dst, " SMTPUTF8"...)
	}
	return append(dst, "\r\n"...)
}

// AppendRcptTo appends "RCPT TO:<to>\r\n".
func AppendRcptTo(dst []byte, to string) []byte {
	return append(append(append(dst, "RCPT TO:<"...), to...), ">\r\n"...)
}

// AppendData appends "DATA\r\n".
func AppendData(dst []byte) []byte { return append(dst, "DATA\r\n"...) }

// AppendBDAT appends "BDAT size\r\n", or "BDAT size LAST\r\n" when last
// (RFC 3030 §2). size is the exact number of octets that follow the line;
// the chunk is sent as it is (no dot-stuffing, no end-of-data line).
func AppendBDAT(dst []byte, size int, last bool) []byte {
	dst = strconv.AppendInt(append(dst, "BDAT "...), int64(size), 10)
	if last {
		dst = append(dst, " LAST"...)
	}
	return append(dst, "\r\n"...)
}

// AppendRset appends "RSET\r\n".
func AppendRset(dst []byte) []byte { return append(dst, "RSET\r\n"...) }

// AppendNoop appends "NOOP\r\n".
func AppendNoop(dst []byte) []byte { return append(dst, "NOOP\r\n"...) }

// AppendQuit appends "QUIT\r\n".
func AppendQuit(dst []byte) []byte { return append(dst, "QUIT\r\n"...) }

// AppendStartTLS appends "STARTTLS\r\n".
func AppendStartTLS(dst []byte) []byte { return append(dst, "STARTTLS\r\n"...) }

// AppendAuthPlain appends "AUTH PLAIN <initial response>\r\n" where the
// response is base64(identity NUL user NUL pass) (RFC 4616, RFC 4954 §4).
// identity is usually "" (act as user).
func AppendAuthPlain(dst []byte, identity, user, pass string) []byte {
	dst = append(dst, "AUTH PLAIN "...)
	var w base64Appender
	w.dst = dst
	w.writeString(identity)
	w.writeByte(0)
	w.writeString(user)
	w.writeByte(0)
	w.writeString(pass)
	return append(w.flush(), "\r\n"...)
}

// AppendAuthLogin appends "AUTH LOGIN\r\n"; answer the server's two 334
// challenges with AppendBase64Line(dst, user) and AppendBase64Line(dst, pass).
func AppendAuthLogin(dst []byte) []byte { return append(dst, "AUTH LOGIN\r\n"...) }

// AppendBase64Line appends base64(s) and CRLF: a SASL response line.
func AppendBase64Line(dst []byte, s string) []byte {
	var w base64Appender
	w.dst = dst
	w.writeString(s)
	return append(w.flush(), "\r\n"...)
}

// base64Appender base64-encodes a stream of pieces straight into dst without
// concatenating them first: it buffers up to 48 bytes (a multiple of 3, so
// only the final chunk is padded).
type base64Appender struct {
	dst []byte
	buf [48]byte
	n   int
}

func (w *base64Appender) writeByte(c byte) {
	if w.n == len(w.buf) {
		w.dst = base64.StdEncoding.AppendEncode(w.dst, w.buf[:])
		w.n = 0
	}
	w.buf[w.n] = c
	w.n++
}

func (w *base64Appender) writeString(s string) {
	for len(s) > 0 {
		if w.n == len(w.buf) {
			w.dst = base64.StdEncoding.AppendEncode(w.dst, w.buf[:])
			w.n = 0
		}
		k := copy(w.buf[w.n:], s)
		w.n += k
		s = s[k:]
	}
}

func (w *base64Appender) flush() []byte {
	return base64.StdEncoding.AppendEncode(w.dst, w.buf[:w.n])
}
