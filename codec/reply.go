package codec

import "errors"

// MaxReplyLen caps the bytes of one (possibly multi-line) reply. A server that
// sends more without finishing the reply gets ErrReplyTooLong.
const MaxReplyLen = 64 << 10

var (
	// ErrIncomplete reports that the input does not yet hold a whole reply.
	ErrIncomplete = errors.New("codec: incomplete reply")
	// ErrReplyTooLong reports a reply longer than MaxReplyLen.
	ErrReplyTooLong = errors.New("codec: reply too long")
)

// EnhancedCode is an RFC 3463 enhanced status code class.subject.detail;
// the zero value means "absent".
type EnhancedCode struct{ Class, Subject, Detail int16 }

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
func ParseReply(b []byte) (r Reply, n int, err error) { panic("codec: TODO") }
