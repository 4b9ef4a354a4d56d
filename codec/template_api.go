package codec

import (
	"sync"

	"github.com/valyala/bytebufferpool"
)

// Message is one rendered message ready for the wire after DATA's 354: the
// segments are CRLF-canonical, dot-stuffed and end with "\r\n.\r\n" (the
// final ".\r\n" is a segment of its own, shared by all messages). Static
// segments are shared with the Template (never modify them); per-recipient
// bytes live in a pooled buffer owned by the Message.
//
// Get one with AcquireMessage, fill it with Template.Render (and optionally
// DKIMSigner.Sign), write Segs, then call Release when the last byte has been
// written. Never touch the Message, nor any slice of Segs, after Release. A
// Message is not safe for concurrent use; the engine may re-slice Segs (for
// a partial write) but then must not hand it to Render or Sign again.
type Message struct {
	Segs [][]byte

	buf   *bytebufferpool.ByteBuffer
	spans []span
	size  int
	st    Stuffer
	val   []byte // scratch: one merge value, escaped or sanitised
	asm   []byte // scratch: a base64 part's decoded content; DKIM input
}

// span is one segment before Segs is built: a static slice with the offsets
// of its line-start dots (lineDots, found when the template was compiled),
// or n bytes at off in the pooled buffer (sliced only once the buffer has
// stopped growing).
type span struct {
	static []byte
	dots   []int32
	off, n int
}

var messagePool = sync.Pool{New: func() any { return new(Message) }}

// AcquireMessage returns an empty Message from a pool. Safe for concurrent
// use.
func AcquireMessage() *Message {
	m := messagePool.Get().(*Message)
	m.buf = bytebufferpool.Get()
	return m
}

// Release returns m and its buffer to their pools. m and its segments must
// not be used afterwards.
func (m *Message) Release() {
	if m.buf != nil {
		bytebufferpool.Put(m.buf)
		m.buf = nil
	}
	m.reset()
	messagePool.Put(m)
}

// Len returns the number of bytes on the wire, the final ".\r\n" included:
// the value for MAIL FROM's SIZE parameter (RFC 1870).
func (m *Message) Len() int { return m.size }

func (m *Message) reset() {
	clear(m.Segs)
	m.Segs = m.Segs[:0]
	clear(m.spans)
	m.spans = m.spans[:0]
	m.size = 0
	m.st.Reset()
	if m.buf != nil {
		m.buf.Reset()
	}
}

// addStatic appends a static segment; dots must be lineDots(b).
func (m *Message) addStatic(b []byte, dots []int32) {
	if len(b) > 0 {
		m.spans = append(m.spans, span{static: b, dots: dots})
	}
}

// mark returns the buffer offset where the next dynamic bytes start.
func (m *Message) mark() int { return len(m.buf.B) }

// addDynamic records buf[off:] as a segment, merged with the previous one
// when that ends at off.
func (m *Message) addDynamic(off int) {
	n := len(m.buf.B) - off
	if n <= 0 {
		return
	}
	if k := len(m.spans) - 1; k >= 0 && m.spans[k].static == nil && m.spans[k].off+m.spans[k].n == off {
		m.spans[k].n += n
		return
	}
	m.spans = append(m.spans, span{off: off, n: n})
}

// AppendUnstuffed appends to dst the content of m as BDAT (RFC 3030)
// carries it and returns the extended list and the number of octets added:
// exactly what AppendUnstuffedSegs(dst, m.Segs) returns, the same slices.
// The line-start dots of the template's static segments were found when it
// was compiled, so only the per-recipient bytes (and a segment that is not
// the static one Render put there) are scanned: the cost is in the number
// of segments, doubled dots and merge-value bytes, not in the body size.
func (m *Message) AppendUnstuffed(dst [][]byte) ([][]byte, int) {
	if len(m.Segs) != len(m.spans) {
		return AppendUnstuffedSegs(dst, m.Segs) // Segs set or re-sliced by hand
	}
	u := unstuffer{lineStart: true}
	for i, seg := range m.Segs {
		if s := m.spans[i].static; len(seg) > 0 && len(seg) == len(s) && &seg[0] == &s[0] {
			dst = u.known(dst, seg, m.spans[i].dots)
		} else {
			dst = u.scan(dst, seg)
		}
		if u.done {
			break
		}
	}
	return dst, u.n
}

// build turns the spans into Segs, once the buffer no longer grows.
func (m *Message) build() {
	m.Segs = m.Segs[:0]
	m.size = 0
	b := m.buf.B
	for _, s := range m.spans {
		seg := s.static
		if seg == nil {
			seg = b[s.off : s.off+s.n : s.off+s.n]
		}
		m.Segs = append(m.Segs, seg)
		m.size += len(seg)
	}
}
