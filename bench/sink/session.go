package sink

import (
	"bytes"
	"encoding/base64"
	"net/netip"
	"strconv"
	"time"
)

// sessState is where a session is in the protocol.
type sessState uint8

const (
	stateCmd           sessState = iota // zero state: reading command lines
	stateData                           // reading the message body up to "\r\n.\r\n"
	stateChunk                          // reading the octets of a BDAT chunk (chunkLeft)
	stateAuthPlain                      // waiting for the PLAIN response line
	stateAuthLoginUser                  // waiting for the LOGIN user name line
	stateAuthLoginPass                  // waiting for the LOGIN password line
)

// action tells the transport what to do after writing a batch of replies.
type action uint8

const (
	actNone     action = iota
	actClose           // write the replies, then close
	actStartTLS        // write the replies, then run the TLS handshake
)

// maxLine bounds a command line (RFC 5321 §4.5.3.1.4 says 512; we are lenient).
const maxLine = 4096

// session is the sans-I/O server side of one SMTP connection: feed gives it
// inbound bytes and it appends replies to out. Both transports (gnet and the
// goroutine path used for STARTTLS) drive the same code.
type session struct {
	srv    *Server
	src    netip.Addr
	state  sessState
	tls    bool
	authed bool

	inTxn     bool
	from      []byte
	rcpts     []byte // accepted recipients, each followed by '\n'
	nrcpt     int
	drop      bool          // close during DATA (drop-in-data@ or a rate drop)
	slow      time.Duration // slow-N@ delay for this transaction
	txnStart  time.Time
	match     int // how much of "\r\n.\r\n" the body tail matches
	dataLen   int64
	data      []byte // raw (stuffed) body when recording
	tooBig    bool
	authUser  []byte
	chunkLeft int64         // octets of the current BDAT chunk still to read
	chunkLast bool          // the current chunk is BDAT ... LAST
	chunkFail string        // reply to the current chunk when it is refused ("" = accept)
	bdatOpen  bool          // a BDAT chunk without LAST was accepted: DATA is out of sequence
	delay     time.Duration // largest slow delay of the current batch
	replies   [6]int64      // replies by class in the current batch
	closeNext bool
}

func (s *session) reply(out []byte, r string) []byte {
	if c := r[0] - '0'; c < 6 {
		s.replies[c]++
	}
	if s.slow > s.delay {
		s.delay = s.slow
	}
	return append(out, r...)
}

func (s *session) resetTxn() {
	s.inTxn = false
	s.from = s.from[:0]
	s.rcpts = s.rcpts[:0]
	s.nrcpt = 0
	s.drop = false
	s.slow = 0
	s.dataLen = 0
	s.data = s.data[:0]
	s.tooBig = false
	s.chunkFail = ""
	s.bdatOpen = false
}

// banner appends the greeting.
func (s *session) banner(out []byte) []byte {
	return s.reply(out, s.srv.greeting)
}

// feed consumes whole commands (and body bytes) from in, appending replies
// to out. It returns how many bytes it used; the caller keeps in[n:].
func (s *session) feed(in []byte, out []byte) (n int, _ []byte, act action) {
	for n < len(in) {
		if s.state == stateChunk {
			k := int(min(s.chunkLeft, int64(len(in)-n)))
			s.chunkBytes(in[n : n+k])
			n += k
			if s.drop && s.chunkFail == "" {
				return n, out, actClose
			}
			if s.chunkLeft > 0 {
				return n, out, actNone
			}
			out = s.endChunk(out)
			continue
		}
		if s.state == stateData {
			used, done := s.body(in[n:])
			n += used
			if s.drop {
				return n, out, actClose
			}
			if !done {
				return n, out, actNone
			}
			out = s.endData(out)
			continue
		}
		i := bytes.IndexByte(in[n:], '\n')
		if i < 0 {
			if len(in)-n > maxLine {
				return len(in), s.reply(out, "500 5.5.2 Line too long\r\n"), actClose
			}
			return n, out, actNone
		}
		line := in[n : n+i]
		n += i + 1
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		out, act = s.line(line, out)
		if act != actNone {
			return n, out, act
		}
	}
	return n, out, actNone
}

func hasPrefixFold(b []byte, p string) bool {
	if len(b) < len(p) {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := b[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != p[i] {
			return false
		}
	}
	return true
}

// verb reports whether line is the command p (followed by end or a space).
func verb(line []byte, p string) bool {
	return hasPrefixFold(line, p) && (len(line) == len(p) || line[len(p)] == ' ')
}

func (s *session) line(line, out []byte) ([]byte, action) {
	switch s.state {
	case stateAuthPlain:
		s.state = stateCmd
		return s.authPlain(line, out), actNone
	case stateAuthLoginUser:
		if line = decode64(line); line == nil {
			s.state = stateCmd
			return s.reply(out, "501 5.5.2 Bad base64\r\n"), actNone
		}
		s.authUser = append(s.authUser[:0], line...)
		s.state = stateAuthLoginPass
		return s.reply(out, "334 UGFzc3dvcmQ6\r\n"), actNone
	case stateAuthLoginPass:
		s.state = stateCmd
		pass := decode64(line)
		return s.authCheck(s.authUser, pass, out), actNone
	}
	switch {
	case hasPrefixFold(line, "MAIL FROM:"):
		return s.mail(line[len("MAIL FROM:"):], out)
	case hasPrefixFold(line, "RCPT TO:"):
		return s.rcpt(line[len("RCPT TO:"):], out)
	case verb(line, "BDAT"):
		if !s.srv.cfg.Chunking {
			break // not offered: 500 below
		}
		return s.bdat(line[4:], out)
	case verb(line, "DATA"):
		switch {
		case s.bdatOpen:
			return s.reply(out, "503 5.5.1 DATA inside a BDAT transaction\r\n"), actNone
		case !s.inTxn:
			return s.reply(out, "503 5.5.1 Need MAIL\r\n"), actNone
		case s.nrcpt == 0:
			return s.reply(out, "554 5.5.1 No valid recipients\r\n"), actNone
		}
		s.state = stateData
		s.match = 2 // the body starts at a line start
		return s.reply(out, "354 End data with <CR><LF>.<CR><LF>\r\n"), actNone
	case verb(line, "EHLO"):
		s.resetTxn()
		if s.tls {
			return s.reply(out, s.srv.ehloTLS), actNone
		}
		return s.reply(out, s.srv.ehlo), actNone
	case verb(line, "HELO"):
		s.resetTxn()
		return s.reply(out, s.srv.helo), actNone
	case verb(line, "RSET"):
		s.resetTxn()
		return s.reply(out, "250 2.0.0 Ok\r\n"), actNone
	case verb(line, "NOOP"):
		return s.reply(out, "250 2.0.0 Ok\r\n"), actNone
	case verb(line, "QUIT"):
		return s.reply(out, "221 2.0.0 Bye\r\n"), actClose
	case verb(line, "VRFY"):
		return s.reply(out, "252 2.5.2 Cannot VRFY user\r\n"), actNone
	case verb(line, "STARTTLS"):
		if !s.srv.cfg.StartTLS || s.tls {
			return s.reply(out, "502 5.5.1 STARTTLS not available\r\n"), actNone
		}
		s.resetTxn()
		return s.reply(out, "220 2.0.0 Ready to start TLS\r\n"), actStartTLS
	case verb(line, "AUTH"):
		return s.auth(line[4:], out), actNone
	}
	return s.reply(out, "500 5.5.2 Command not recognized\r\n"), actNone
}

// addr returns the address between '<' and '>' and what follows '>'.
func addr(arg []byte) (a, rest []byte, ok bool) {
	arg = bytes.TrimLeft(arg, " ")
	if len(arg) == 0 || arg[0] != '<' {
		return nil, nil, false
	}
	j := bytes.IndexByte(arg, '>')
	if j < 0 {
		return nil, nil, false
	}
	return arg[1:j], arg[j+1:], true
}

func (s *session) mail(arg, out []byte) ([]byte, action) {
	if s.srv.cfg.Auth != nil && !s.authed {
		return s.reply(out, "530 5.7.0 Authentication required\r\n"), actNone
	}
	if s.inTxn {
		return s.reply(out, "503 5.5.1 Nested MAIL command\r\n"), actNone
	}
	a, rest, ok := addr(arg)
	if !ok {
		return s.reply(out, "501 5.1.7 Bad sender address syntax\r\n"), actNone
	}
	if max := s.srv.maxSize; max > 0 {
		for _, p := range bytes.Fields(rest) {
			if hasPrefixFold(p, "SIZE=") {
				if v, err := strconv.ParseInt(string(p[5:]), 10, 64); err == nil && v > max {
					return s.reply(out, "552 5.3.4 Message size exceeds fixed limit\r\n"), actNone
				}
			}
		}
	}
	s.resetTxn()
	s.inTxn = true
	s.from = append(s.from, a...)
	s.txnStart = time.Now()
	return s.reply(out, "250 2.1.0 Ok\r\n"), actNone
}

func (s *session) rcpt(arg, out []byte) ([]byte, action) {
	if !s.inTxn {
		return s.reply(out, "503 5.5.1 Need MAIL before RCPT\r\n"), actNone
	}
	a, _, ok := addr(arg)
	at := bytes.LastIndexByte(a, '@')
	if !ok || at <= 0 {
		return s.reply(out, "501 5.1.3 Bad recipient address syntax\r\n"), actNone
	}
	local, domain := a[:at], a[at+1:]
	switch {
	case bytes.EqualFold(local, []byte("tempfail")):
		return s.reply(out, "450 4.2.0 Mailbox temporarily unavailable\r\n"), actNone
	case bytes.EqualFold(local, []byte("permfail")):
		return s.reply(out, "550 5.1.1 No such user\r\n"), actNone
	case string(local) == "421":
		return s.reply(out, "421 4.7.0 Service shutting down, closing connection\r\n"), actClose
	case bytes.EqualFold(local, []byte("drop-in-data")):
		s.drop = true
	case hasPrefixFold(local, "SLOW-"):
		if ms, err := strconv.Atoi(string(local[5:])); err == nil && ms >= 0 {
			s.slow = time.Duration(ms) * time.Millisecond
		}
	}
	if f := s.srv.fault(domain); f != nil {
		switch f.roll() {
		case faultDefer:
			return s.reply(out, "451 4.7.1 Try again later (injected)\r\n"), actNone
		case faultBounce:
			return s.reply(out, "550 5.7.1 Rejected (injected)\r\n"), actNone
		case faultDrop:
			s.drop = true
		}
	}
	s.rcpts = append(s.rcpts, a...)
	s.rcpts = append(s.rcpts, '\n')
	s.nrcpt++
	return s.reply(out, "250 2.1.5 Ok\r\n"), actNone
}

// body consumes body bytes from in; done reports that the terminating
// "\r\n.\r\n" was seen (possibly split across calls: s.match carries how
// much of it the previous bytes ended with).
func (s *session) body(in []byte) (used int, done bool) {
	const term = "\r\n.\r\n"
	i := 0
	// Finish (or abandon) a terminator begun in a previous call.
	for s.match > 0 && i < len(in) {
		c := in[i]
		i++
		switch {
		case c == term[s.match]:
			s.match++
		case c == '\r':
			s.match = 1
		default:
			s.match = 0
		}
		if s.match == len(term) {
			s.keep(in[:i], len(term))
			return i, true
		}
	}
	if s.match == 0 {
		if j := bytes.Index(in[i:], []byte(term)); j >= 0 {
			end := i + j + len(term)
			s.keep(in[:end], len(term))
			return end, true
		}
		// Carry the longest tail that begins the terminator.
		for k := len(term) - 1; k > 0; k-- {
			if len(in)-i >= k && string(in[len(in)-k:]) == term[:k] {
				s.match = k
				break
			}
		}
	}
	s.keep(in, len(term))
	return len(in), false
}

// keep counts body octets and records them. Beyond the size limit plus
// slack (octets of framing: DATA's "\r\n.\r\n") the message is too big.
func (s *session) keep(b []byte, slack int) {
	s.dataLen += int64(len(b))
	if s.srv.maxSize > 0 && s.dataLen > s.srv.maxSize+int64(slack) {
		s.tooBig = true
	}
	if s.srv.recording && !s.tooBig {
		s.data = append(s.data, b...)
	}
}

// bdat starts reading a chunk (RFC 3030): "BDAT size [LAST]". The chunk is
// read whatever the verdict, so a refused BDAT never leaves its octets to
// be parsed as commands; the reply goes out once the last octet is in.
func (s *session) bdat(arg, out []byte) ([]byte, action) {
	f := bytes.Fields(arg)
	var size int64 = -1
	if len(f) == 1 || len(f) == 2 && bytes.EqualFold(f[1], []byte("LAST")) {
		if v, err := strconv.ParseInt(string(f[0]), 10, 64); err == nil && v >= 0 && f[0][0] != '+' {
			size = v
		}
	}
	if size < 0 {
		// The chunk's length is unknown: there is no way to stay in step.
		return s.reply(out, "501 5.5.4 Syntax: BDAT size [LAST]\r\n"), actClose
	}
	s.chunkLeft, s.chunkLast = size, len(f) == 2
	switch {
	case !s.inTxn:
		s.chunkFail = "503 5.5.1 Need MAIL\r\n"
	case s.nrcpt == 0:
		s.chunkFail = "554 5.5.1 No valid recipients\r\n"
	}
	s.state = stateChunk
	if size == 0 {
		if s.drop && s.chunkFail == "" {
			return out, actClose
		}
		return s.endChunk(out), actNone
	}
	return out, actNone
}

// chunkBytes takes octets of the current chunk.
func (s *session) chunkBytes(b []byte) {
	s.chunkLeft -= int64(len(b))
	if s.chunkFail == "" {
		s.keep(b, 0)
	}
}

// endChunk answers a chunk read in full. A refused chunk refuses the
// transaction's later ones; a LAST chunk ends the transaction either way.
func (s *session) endChunk(out []byte) []byte {
	s.state = stateCmd
	last := s.chunkLast
	switch {
	case s.chunkFail != "":
		out = s.reply(out, s.chunkFail)
		if last && s.inTxn {
			s.resetTxn()
		}
		return out
	case s.tooBig:
		out = s.reply(out, "552 5.3.4 Message size exceeds fixed limit\r\n")
		if last {
			s.resetTxn()
		} else {
			s.chunkFail = "554 5.5.0 Transaction failed\r\n"
		}
		return out
	case !last:
		s.bdatOpen = true
		return s.reply(out, "250 2.0.0 Chunk received\r\n")
	}
	s.srv.delivered(s, false)
	s.resetTxn()
	return s.reply(out, "250 2.0.0 Ok: queued\r\n")
}

func (s *session) endData(out []byte) []byte {
	s.state = stateCmd
	s.match = 0
	if s.tooBig {
		s.resetTxn()
		return s.reply(out, "552 5.3.4 Message size exceeds fixed limit\r\n")
	}
	s.srv.delivered(s, true)
	s.resetTxn()
	return s.reply(out, "250 2.0.0 Ok: queued\r\n")
}

// unstuff returns the body of raw DATA bytes (ending "\r\n.\r\n", or just
// ".\r\n" for an empty body) without the terminator and with the leading
// dot removed from every line that starts with one (RFC 5321 §4.5.2).
func unstuff(raw []byte) []byte {
	raw = raw[:len(raw)-3] // keep the last line's CRLF, drop ".\r\n"
	out := make([]byte, 0, len(raw))
	lineStart := true
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if lineStart && c == '.' {
			lineStart = false
			continue
		}
		lineStart = c == '\n'
		out = append(out, c)
	}
	return out
}

func decode64(b []byte) []byte {
	out := make([]byte, base64.StdEncoding.DecodedLen(len(b)))
	n, err := base64.StdEncoding.Decode(out, b)
	if err != nil {
		return nil
	}
	return out[:n]
}

func (s *session) auth(arg, out []byte) []byte {
	if s.srv.cfg.Auth == nil {
		return s.reply(out, "502 5.5.1 AUTH not available\r\n")
	}
	if s.authed {
		return s.reply(out, "503 5.5.1 Already authenticated\r\n")
	}
	f := bytes.Fields(arg)
	if len(f) == 0 {
		return s.reply(out, "501 5.5.4 Missing mechanism\r\n")
	}
	switch {
	case bytes.EqualFold(f[0], []byte("PLAIN")):
		if len(f) > 1 {
			return s.authPlain(f[1], out)
		}
		s.state = stateAuthPlain
		return s.reply(out, "334 \r\n")
	case bytes.EqualFold(f[0], []byte("LOGIN")):
		if len(f) > 1 {
			u := decode64(f[1])
			if u == nil {
				return s.reply(out, "501 5.5.2 Bad base64\r\n")
			}
			s.authUser = append(s.authUser[:0], u...)
			s.state = stateAuthLoginPass
			return s.reply(out, "334 UGFzc3dvcmQ6\r\n")
		}
		s.state = stateAuthLoginUser
		return s.reply(out, "334 VXNlcm5hbWU6\r\n")
	}
	return s.reply(out, "504 5.5.4 Unrecognized authentication type\r\n")
}

func (s *session) authPlain(resp, out []byte) []byte {
	if len(resp) == 1 && resp[0] == '*' {
		return s.reply(out, "501 5.0.0 Authentication cancelled\r\n")
	}
	b := decode64(resp)
	// authzid \0 authcid \0 passwd
	p := bytes.SplitN(b, []byte{0}, 3)
	if b == nil || len(p) != 3 {
		return s.reply(out, "501 5.5.2 Bad PLAIN response\r\n")
	}
	return s.authCheck(p[1], p[2], out)
}

func (s *session) authCheck(user, pass, out []byte) []byte {
	a := s.srv.cfg.Auth
	if pass != nil && string(user) == a.User && string(pass) == a.Pass {
		s.authed = true
		return s.reply(out, "235 2.7.0 Authentication successful\r\n")
	}
	return s.reply(out, "535 5.7.8 Authentication credentials invalid\r\n")
}
