package codec

import (
	"bytes"
	"slices"
)

// stuffState is where a Stuffer stands in the data stream.
type stuffState uint8

const (
	stuffLineStart stuffState = iota // zero state: at the start of a line (and of the data)
	stuffMidLine                     // inside a line
	stuffAfterCR                     // wrote CRLF for a CR; an LF right after it belongs to it
)

// dataEnd is the end-of-data line that follows the last CRLF of a message
// (RFC 5321 §4.1.1.4). Messages share this one slice: never modify it.
var dataEnd = []byte(".\r\n")

// Stuffer prepares message content for SMTP DATA (RFC 5321 §4.5.2): it
// doubles a '.' at the start of every line and canonicalises line breaks.
// It carries its state across calls, so content may arrive in any pieces
// (a CRLF or a leading dot split between two calls is handled).
//
// Canonicalisation is a documented choice: a bare CR and a bare LF each
// become CRLF, and CRLF stays CRLF ("a\rb\nc\r\n" gives "a\r\nb\r\nc\r\n"),
// so the output never holds a CR or LF outside a CRLF pair.
//
// The zero Stuffer is ready, at the start of the data. A Stuffer is not safe
// for concurrent use.
type Stuffer struct {
	state stuffState
}

// Reset puts s back at the start of the data.
func (s *Stuffer) Reset() { s.state = stuffLineStart }

// AtLineStart reports whether the next byte appended starts a line.
func (s *Stuffer) AtLineStart() bool { return s.state != stuffMidLine }

// Append appends p to dst canonicalised and dot-stuffed and returns the
// extended slice. It scans with bytes.IndexByte and copies whole runs.
func (s *Stuffer) Append(dst, p []byte) []byte {
	st := s.state
	for len(p) > 0 {
		switch st {
		case stuffAfterCR:
			if p[0] == '\n' {
				p = p[1:]
			}
			st = stuffLineStart
		case stuffLineStart:
			if p[0] == '.' {
				dst = append(dst, '.')
			}
			st = stuffMidLine
		default: // stuffMidLine
			line := p
			nl := bytes.IndexByte(p, '\n')
			if nl >= 0 {
				line = p[:nl]
			}
			if cr := bytes.IndexByte(line, '\r'); cr >= 0 {
				dst = append(dst, line[:cr]...)
				dst = append(dst, '\r', '\n')
				p = p[cr+1:]
				st = stuffAfterCR
			} else if nl >= 0 {
				dst = append(dst, line...)
				dst = append(dst, '\r', '\n')
				p = p[nl+1:]
				st = stuffLineStart
			} else {
				dst = append(dst, p...)
				p = nil
			}
		}
	}
	s.state = st
	return dst
}

// Finish ends the data: it appends CRLF when the content so far does not end
// with a line break, then the end-of-data line ".\r\n". s is reset for new
// data. Empty content gives ".\r\n" (net/textproto's DotWriter writes
// "\r\n.\r\n", an empty line, there; for any other content the two agree).
func (s *Stuffer) Finish(dst []byte) []byte {
	if s.state == stuffMidLine {
		dst = append(dst, '\r', '\n')
	}
	s.state = stuffLineStart
	return append(dst, dataEnd...)
}

// appendUnstuffed appends the content of dot-stuffed DATA segments to dst:
// it drops the doubled dot at the start of each line and stops at the
// end-of-data line. Segments must be CRLF-canonical (Message.Segs are). It
// copies the runs AppendUnstuffedSegs finds.
func appendUnstuffed(dst []byte, segs [][]byte) []byte {
	var scratch [64][]byte // on the stack; a longer list grows on the heap
	runs, n := AppendUnstuffedSegs(scratch[:0], segs)
	return appendRuns(dst, runs, n)
}

// appendRuns appends the n bytes of runs to dst.
func appendRuns(dst []byte, runs [][]byte, n int) []byte {
	dst = slices.Grow(dst, n)
	for _, r := range runs {
		dst = append(dst, r...)
	}
	return dst
}

// nlDot is a line break followed by a dot: where a stuffed dot can be.
var nlDot = []byte("\n.")

// AppendUnstuffedSegs appends to dst the content of dot-stuffed DATA
// segments as BDAT (RFC 3030) carries it, without copying a byte: it
// appends sub-slices of segs that leave out the doubled dot at the start of
// each line and stop before the end-of-data line. It returns the extended
// list and the number of octets it added (the BDAT size). Segments must be
// CRLF-canonical and dot-stuffed (Message.Segs are); the appended slices
// share their memory, so they are valid as long as segs are.
//
// A message with no line starting with a dot gives its segments unchanged
// minus the final ".\r\n"; each stuffed dot splits a segment in two. The
// cost is one bytes.Index scan per segment. Message.AppendUnstuffed gives
// the same result for a rendered Message without scanning its static
// segments.
func AppendUnstuffedSegs(dst [][]byte, segs [][]byte) ([][]byte, int) {
	u := unstuffer{lineStart: true}
	for _, seg := range segs {
		if dst = u.scan(dst, seg); u.done {
			break
		}
	}
	return dst, u.n
}

// unstuffer is the state of an un-stuffing walk over a message's segments
// (AppendUnstuffedSegs, Message.AppendUnstuffed): the octets appended so
// far, whether the next byte starts a line, whether the byte before it was
// a dropped (doubled) dot, and whether the end-of-data line was reached.
type unstuffer struct {
	n                        int
	lineStart, dropped, done bool
}

// scan appends the un-stuffed runs of seg, found with bytes.Index.
func (u *unstuffer) scan(dst [][]byte, seg []byte) [][]byte {
	for len(seg) > 0 {
		switch {
		case u.dropped:
			u.dropped = false
			if seg[0] == '\r' {
				u.done = true // ".\r\n": end of data
				return dst
			}
		case u.lineStart && seg[0] == '.':
			seg, u.dropped, u.lineStart = seg[1:], true, false
			continue
		}
		i := bytes.Index(seg, nlDot)
		if i < 0 {
			dst = append(dst, seg)
			u.n += len(seg)
			u.lineStart = seg[len(seg)-1] == '\n'
			break
		}
		dst = append(dst, seg[:i+1:i+1])
		u.n += i + 1
		seg = seg[i+1:]
		u.lineStart = true
	}
	return dst
}

// lineDots returns the offsets i >= 1 in seg of the dots that follow a line
// feed (seg[i-1] == '\n', seg[i] == '.'): the dots that scan drops inside
// seg whatever state it starts in (only seg[0] depends on what came
// before). nil when there is none.
func lineDots(seg []byte) []int32 {
	var dots []int32
	for i := 0; ; {
		j := bytes.Index(seg[i:], nlDot)
		if j < 0 {
			return dots
		}
		i += j + 1
		dots = append(dots, int32(i))
	}
}

// known appends the un-stuffed runs of seg, whose line-start dots past its
// first byte are at the offsets dots (lineDots(seg)), without scanning
// seg: it cuts where scan would, so the runs are identical.
func (u *unstuffer) known(dst [][]byte, seg []byte, dots []int32) [][]byte {
	at := 0
	switch {
	case u.dropped:
		u.dropped = false
		if seg[0] == '\r' {
			u.done = true
			return dst
		}
	case u.lineStart && seg[0] == '.':
		if len(seg) == 1 {
			u.dropped, u.lineStart = true, false
			return dst
		}
		if seg[1] == '\r' {
			u.done = true
			return dst
		}
		at = 1
	}
	for _, d := range dots {
		i := int(d)
		dst = append(dst, seg[at:i:i])
		u.n += i - at
		if i+1 == len(seg) {
			u.dropped, u.lineStart = true, false
			return dst
		}
		if seg[i+1] == '\r' {
			u.done = true
			return dst
		}
		at = i + 1
	}
	dst = append(dst, seg[at:])
	u.n += len(seg) - at
	u.lineStart = seg[len(seg)-1] == '\n'
	return dst
}
