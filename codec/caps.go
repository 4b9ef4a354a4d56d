package codec

import "bytes"

// AuthMechs is a set of SASL mechanisms announced by EHLO AUTH (RFC 4954).
type AuthMechs uint16

// The mechanisms ParseEHLO recognises; others are ignored.
const (
	AuthPlain AuthMechs = 1 << iota
	AuthLogin
	AuthCRAMMD5
	AuthXOAUTH2
	AuthOAuthBearer
	AuthScramSHA1
	AuthScramSHA256
	AuthExternal
	AuthAnonymous
)

var authNames = [...]struct {
	name string
	m    AuthMechs
}{
	{"PLAIN", AuthPlain},
	{"LOGIN", AuthLogin},
	{"CRAM-MD5", AuthCRAMMD5},
	{"XOAUTH2", AuthXOAUTH2},
	{"OAUTHBEARER", AuthOAuthBearer},
	{"SCRAM-SHA-1", AuthScramSHA1},
	{"SCRAM-SHA-256", AuthScramSHA256},
	{"EXTERNAL", AuthExternal},
	{"ANONYMOUS", AuthAnonymous},
}

// Has reports whether every mechanism in m is in a.
func (a AuthMechs) Has(m AuthMechs) bool { return a&m == m }

// String lists the mechanisms, space-separated, in a fixed order.
func (a AuthMechs) String() string {
	var b []byte
	for _, n := range authNames {
		if a.Has(n.m) {
			if len(b) > 0 {
				b = append(b, ' ')
			}
			b = append(b, n.name...)
		}
	}
	return string(b)
}

// Caps is what a server announced in its EHLO reply.
type Caps struct {
	Pipelining          bool // RFC 2920
	EightBitMIME        bool // RFC 6152
	SMTPUTF8            bool // RFC 6531
	StartTLS            bool // RFC 3207
	EnhancedStatusCodes bool // RFC 2034
	Chunking            bool // RFC 3030
	DSN                 bool // RFC 3461
	// Size is the announced maximum message size (RFC 1870); 0 means none
	// announced ("SIZE" alone, "SIZE 0", or a value that is not a number).
	Size int64
	Auth AuthMechs // RFC 4954
}

// ParseEHLO reads the capabilities from an EHLO reply: every line after the
// first (which carries the server's name) is "KEYWORD [params]". Keywords and
// AUTH mechanisms match case-insensitively, the pre-standard "AUTH=PLAIN
// LOGIN" form is accepted, and unknown keywords are ignored. A reply that is
// not 2xx yields the zero Caps. ParseEHLO does not allocate.
func ParseEHLO(r Reply) Caps {
	var c Caps
	if r.Class() != 2 {
		return c
	}
	_, raw := nextReplyLine(r.Raw)
	var up [20]byte
	for len(raw) > 0 {
		var line []byte
		line, raw = nextReplyLine(raw)
		for len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			line = line[1:]
		}
		kw, params := line, []byte(nil)
		for i, ch := range line {
			if ch == ' ' || ch == '\t' || ch == '=' {
				kw, params = line[:i], line[i+1:]
				break
			}
		}
		switch string(upperWord(&up, kw)) {
		case "PIPELINING":
			c.Pipelining = true
		case "8BITMIME":
			c.EightBitMIME = true
		case "SMTPUTF8":
			c.SMTPUTF8 = true
		case "STARTTLS":
			c.StartTLS = true
		case "ENHANCEDSTATUSCODES":
			c.EnhancedStatusCodes = true
		case "CHUNKING":
			c.Chunking = true
		case "DSN":
			c.DSN = true
		case "SIZE":
			c.Size = parseSizeParam(bytes.TrimSpace(params))
		case "AUTH":
			c.Auth |= parseAuth(params)
		}
	}
	return c
}

// upperWord returns w in ASCII upper case in buf, or nil when w is longer than
// buf (no keyword or mechanism we know is).
func upperWord(buf *[20]byte, w []byte) []byte {
	if len(w) > len(buf) {
		return nil
	}
	for i, ch := range w {
		if ch >= 'a' && ch <= 'z' {
			ch -= 'a' - 'A'
		}
		buf[i] = ch
	}
	return buf[:len(w)]
}

// parseSizeParam reads a decimal size; anything else (or an overflow) is 0.
func parseSizeParam(p []byte) int64 {
	if len(p) == 0 || len(p) > 18 {
		return 0
	}
	var n int64
	for _, ch := range p {
		if ch < '0' || ch > '9' {
			return 0
		}
		n = n*10 + int64(ch-'0')
	}
	return n
}

func parseAuth(p []byte) AuthMechs {
	var m AuthMechs
	var up [20]byte
	for len(p) > 0 {
		tok := p
		for i, ch := range p {
			if ch == ' ' || ch == '\t' {
				tok = p[:i]
				break
			}
		}
		p = p[len(tok):]
		if len(p) > 0 {
			p = p[1:]
		}
		u := upperWord(&up, tok)
		for _, n := range authNames {
			if string(u) == n.name {
				m |= n.m
				break
			}
		}
	}
	return m
}
