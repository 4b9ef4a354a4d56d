package codec

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
)

// MaxReplyLen caps the bytes of one (possibly multi-line) reply. A server that
// sends more without finishing the reply gets ErrReplyTooLong.
const MaxReplyLen = 64 << 10

var (
	// ErrIncomplete reports that the input does not yet hold a whole reply.
	ErrIncomplete = errors.New("codec: incomplete reply")
	// ErrReplyTooLong reports a reply longer than MaxReplyLen.
	ErrReplyTooLong = errors.New("codec: reply too long")
)

// SyntaxError reports a malformed reply line. Line is a copy of the offending
// line without its line ending, so it outlives the input buffer.
type SyntaxError struct {
	Reason string
	Line   []byte
}

// Error returns "codec: malformed reply line "...": reason"; the quoted line
// is cut at 80 bytes.
func (e *SyntaxError) Error() string {
	l := e.Line
	cut := ""
	if len(l) > 80 {
		l, cut = l[:80], "..."
	}
	return "codec: malformed reply line " + strconv.Quote(string(l)) + cut + ": " + e.Reason
}

// EnhancedCode is an RFC 3463 enhanced status code class.subject.detail;
// the zero value means "absent".
type EnhancedCode struct{ Class, Subject, Detail int16 }

// IsZero reports whether e is the zero value ("no enhanced code").
func (e EnhancedCode) IsZero() bool { return e == EnhancedCode{} }

// String returns "class.subject.detail", or "" for the zero value.
func (e EnhancedCode) String() string {
	if e.IsZero() {
		return ""
	}
	var buf [20]byte
	return string(e.appendTo(buf[:0]))
}

func (e EnhancedCode) appendTo(b []byte) []byte {
	b = strconv.AppendInt(b, int64(e.Class), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(e.Subject), 10)
	b = append(b, '.')
	return strconv.AppendInt(b, int64(e.Detail), 10)
}

// ParseEnhancedCode parses an RFC 3463 code "class.subject.detail": class is
// 2, 4 or 5, subject and detail 1 to 3 digits each. Nothing may surround it.
func ParseEnhancedCode(s string) (EnhancedCode, error) {
	e, n := scanEnhanced(s)
	if n == 0 || n != len(s) {
		return EnhancedCode{}, errors.New("codec: invalid enhanced status code " + strconv.Quote(s))
	}
	return e, nil
}

// scanEnhanced reads an enhanced code at the start of s and returns it with
// its length, or n == 0 when s does not start with one. It works on strings
// and byte slices alike without allocating.
func scanEnhanced[T string | []byte](s T) (e EnhancedCode, n int) {
	if len(s) < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.' {
		return EnhancedCode{}, 0
	}
	e.Class = int16(s[0] - '0')
	i := 2
	var ok bool
	if e.Subject, i, ok = scanEnhancedNum(s, i); !ok || i >= len(s) || s[i] != '.' {
		return EnhancedCode{}, 0
	}
	if e.Detail, i, ok = scanEnhancedNum(s, i+1); !ok {
		return EnhancedCode{}, 0
	}
	return e, i
}

// scanEnhancedNum reads 1 to 3 decimal digits at s[i:].
func scanEnhancedNum[T string | []byte](s T, i int) (v int16, j int, ok bool) {
	for j = i; j < len(s) && j-i < 4 && s[j] >= '0' && s[j] <= '9'; j++ {
		v = v*10 + int16(s[j]-'0')
	}
	n := j - i
	return v, j, n >= 1 && n <= 3
}

// Reply is one SMTP reply parsed in place. Raw aliases the caller's input
// buffer (every line, CRLFs included) and is valid only as long as that
// buffer is; call Clone to keep it.
type Reply struct {
	Code     int
	Enhanced EnhancedCode
	Raw      []byte
}

// ParseReply parses the first whole reply in b and returns it with the number
// of bytes it used. It returns ErrIncomplete when b holds no whole reply yet,
// ErrReplyTooLong past MaxReplyLen, and a *SyntaxError for a malformed line.
// It never allocates on success.
//
// A reply is RFC 5321 §4.2: lines "ddd-text" ending in one "ddd text" or a
// bare "ddd", all with the same code, whose first digit is 2 to 5. Lines end
// in CRLF; a bare LF is accepted too (as net/textproto does), and text may
// hold any byte but LF. Each complete line is checked as soon as it has
// arrived, so a malformed line is reported before the reply is complete.
// A reply still incomplete after MaxReplyLen bytes is ErrReplyTooLong: the
// caller may drop the connection without buffering more. The enhanced code
// is taken from the first line's text when its class equals the first digit
// of the reply code.
//
// ParseReply is a pure function: safe from any goroutine.
func ParseReply(b []byte) (r Reply, n int, err error) {
	win := b
	if len(win) > MaxReplyLen {
		win = win[:MaxReplyLen]
	}
	code, firstEnd := 0, 0
	for pos := 0; ; {
		i := bytes.IndexByte(win[pos:], '\n')
		if i < 0 {
			if len(b) > MaxReplyLen {
				return Reply{}, 0, ErrReplyTooLong
			}
			return Reply{}, 0, ErrIncomplete
		}
		end := pos + i + 1
		line := trimLineEnd(win[pos:end])
		c, last, reason := parseLineHead(line)
		if reason != "" {
			return Reply{}, 0, newSyntaxError(reason, line)
		}
		if code == 0 {
			code, firstEnd = c, end
		} else if c != code {
			return Reply{}, 0, newSyntaxError("code differs from the reply's first line ("+strconv.Itoa(code)+")", line)
		}
		if last {
			r = Reply{Code: code, Raw: b[:end]}
			first := trimLineEnd(b[:firstEnd])
			if len(first) > 4 {
				if e, k := scanEnhanced(first[4:]); k > 0 && int(e.Class) == code/100 &&
					(k+4 == len(first) || first[k+4] == ' ') {
					r.Enhanced = e
				}
			}
			return r, end, nil
		}
		pos = end
	}
}

// parseLineHead checks "ddd" followed by ' ', '-' or the end of the line.
func parseLineHead(line []byte) (code int, last bool, reason string) {
	if len(line) < 3 {
		return 0, false, "shorter than a reply code"
	}
	for _, c := range line[:3] {
		if c < '0' || c > '9' {
			return 0, false, "reply code is not three digits"
		}
	}
	if line[0] < '2' || line[0] > '5' {
		return 0, false, "reply code outside 2xx-5xx"
	}
	code = int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
	if len(line) == 3 {
		return code, true, ""
	}
	switch line[3] {
	case ' ':
		return code, true, ""
	case '-':
		return code, false, ""
	}
	return 0, false, "reply code not followed by space or hyphen"
}

func newSyntaxError(reason string, line []byte) *SyntaxError {
	return &SyntaxError{Reason: reason, Line: bytes.Clone(line)}
}

// trimLineEnd removes a trailing LF and then one CR.
func trimLineEnd(l []byte) []byte {
	if n := len(l); n > 0 && l[n-1] == '\n' {
		l = l[:n-1]
		if n := len(l); n > 0 && l[n-1] == '\r' {
			l = l[:n-1]
		}
	}
	return l
}

// nextReplyLine splits the first line off raw (a Reply's Raw) and returns its
// text after the code and separator, and the rest.
func nextReplyLine(raw []byte) (text, rest []byte) {
	i := bytes.IndexByte(raw, '\n')
	if i < 0 {
		i = len(raw) - 1
	}
	line := trimLineEnd(raw[:i+1])
	if len(line) > 4 {
		text = line[4:]
	} else {
		text = line[len(line):]
	}
	return text, raw[i+1:]
}

// Class returns the first digit of the reply code (2 to 5).
func (r Reply) Class() int { return r.Code / 100 }

// Positive reports a 2xx or 3xx reply.
func (r Reply) Positive() bool { return r.Code >= 200 && r.Code < 400 }

// Temporary reports a 4xx (transient negative) reply.
func (r Reply) Temporary() bool { return r.Code >= 400 && r.Code < 500 }

// Permanent reports a 5xx (permanent negative) reply.
func (r Reply) Permanent() bool { return r.Code >= 500 && r.Code < 600 }

// Lines calls yield with the text of each line in turn (without the code, the
// separator, the line ending, and the enhanced code prefix when the line
// starts with r.Enhanced), until yield returns false. It does not allocate;
// text aliases Raw. Its shape is an iter.Seq, so
//
//	for text := range r.Lines { ... }
//
// works.
func (r Reply) Lines(yield func(text []byte) bool) {
	for raw := r.Raw; len(raw) > 0; {
		var text []byte
		text, raw = nextReplyLine(raw)
		if !yield(r.stripEnhanced(text)) {
			return
		}
	}
}

func (r Reply) stripEnhanced(text []byte) []byte {
	if r.Enhanced.IsZero() {
		return text
	}
	if e, k := scanEnhanced(text); k > 0 && e == r.Enhanced {
		if k == len(text) {
			return text[k:]
		}
		if text[k] == ' ' {
			return text[k+1:]
		}
	}
	return text
}

// Text returns the text of all lines as Lines yields it, joined by "\n".
// It allocates a new string.
func (r Reply) Text() string {
	var sb strings.Builder
	sb.Grow(len(r.Raw))
	first := true
	for t := range r.Lines {
		if !first {
			sb.WriteByte('\n')
		}
		first = false
		sb.Write(t)
	}
	return sb.String()
}

// Clone returns a copy of r whose Raw no longer aliases the input buffer.
func (r Reply) Clone() Reply {
	r.Raw = bytes.Clone(r.Raw)
	return r
}

// Command names the SMTP command a reply answers, for ReplyError and logs.
type Command uint8

const (
	// CmdGreeting is the zero value: the server's opening banner, the one
	// reply no command caused.
	CmdGreeting Command = iota
	CmdEHLO
	CmdHELO
	CmdStartTLS
	CmdAuth
	CmdMail
	CmdRcpt
	CmdData
	// CmdBody is the final "." ending the message data.
	CmdBody
	CmdRset
	CmdNoop
	CmdQuit
)

var commandNames = [...]string{
	CmdGreeting: "greeting",
	CmdEHLO:     "EHLO",
	CmdHELO:     "HELO",
	CmdStartTLS: "STARTTLS",
	CmdAuth:     "AUTH",
	CmdMail:     "MAIL FROM",
	CmdRcpt:     "RCPT TO",
	CmdData:     "DATA",
	CmdBody:     "end of data",
	CmdRset:     "RSET",
	CmdNoop:     "NOOP",
	CmdQuit:     "QUIT",
}

// String returns the command as it appears in logs ("RCPT TO", "end of data").
func (c Command) String() string {
	if int(c) < len(commandNames) {
		return commandNames[c]
	}
	return "Command(" + strconv.Itoa(int(c)) + ")"
}

// ReplyError is a negative server reply to a command. It owns its text.
type ReplyError struct {
	Cmd      Command
	Code     int
	Enhanced EnhancedCode
	Text     string
}

// NewReplyError records r as the server's answer to cmd, copying its text
// (Text with lines joined by "\n"), so the error outlives the input buffer.
func NewReplyError(cmd Command, r Reply) *ReplyError {
	return &ReplyError{Cmd: cmd, Code: r.Code, Enhanced: r.Enhanced, Text: r.Text()}
}

// Error returns e.g. "RCPT TO: 550 5.1.1 no such user"; the lines of a
// multi-line text are joined by "; ".
func (e *ReplyError) Error() string {
	var b []byte
	b = append(b, e.Cmd.String()...)
	b = append(b, ": "...)
	b = strconv.AppendInt(b, int64(e.Code), 10)
	if !e.Enhanced.IsZero() {
		b = append(b, ' ')
		b = e.Enhanced.appendTo(b)
	}
	if e.Text != "" {
		b = append(b, ' ')
		b = append(b, strings.ReplaceAll(e.Text, "\n", "; ")...)
	}
	return string(b)
}

// Temporary reports a 4xx reply: the same command may succeed later.
func (e *ReplyError) Temporary() bool { return e.Code >= 400 && e.Code < 500 }
