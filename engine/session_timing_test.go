package engine

import (
	"bytes"
	"testing"
	"time"

	"github.com/spate-mta/spate/codec"
)

// benchFeeder hands out envelopes from a free list; bodies are pooled
// codec.Messages holding static segments (a 1 KB message).
type benchFeeder struct {
	free []*Envelope
	segs [][]byte
	tp   *codec.Template
	size int
	n    int // envelopes handed out
	stop int // hand out no more than this (0: unlimited)
}

func newBenchFeeder(k int) *benchFeeder {
	f := &benchFeeder{}
	line := make([]byte, 0, 80)
	for range 76 {
		line = append(line, 'x')
	}
	line = append(line, "\r\n"...)
	f.segs = append(f.segs, []byte("From: a@s.test\r\nTo: b@r.test\r\nSubject: bench\r\n\r\n"))
	for range 12 {
		f.segs = append(f.segs, line)
	}
	var src []byte
	for _, s := range f.segs {
		src = append(src, s...)
	}
	tp, err := codec.CompileTemplate(src, nil)
	if err != nil {
		panic(err)
	}
	f.tp = tp
	m := codec.AcquireMessage()
	tp.Render(m, nil, nil)
	f.size = m.Len()
	m.Release()
	for range k {
		f.free = append(f.free, &Envelope{From: "a@s.test", Rcpts: []string{"b@r.test"}})
	}
	return f
}

func (f *benchFeeder) Next(c ConnInfo, now time.Time) *Envelope {
	if len(f.free) == 0 || (f.stop > 0 && f.n >= f.stop) {
		return nil
	}
	env := f.free[len(f.free)-1]
	f.free = f.free[:len(f.free)-1]
	m := codec.AcquireMessage()
	f.tp.Render(m, nil, nil)
	env.Body, env.Size = m, f.size
	f.n++
	return env
}

type benchReporter struct {
	f         *benchFeeder
	delivered int
	other     int
}

func (r *benchReporter) Outcome(env *Envelope, i int, o Outcome) {
	if o.Result == ResultDelivered {
		r.delivered++
	} else {
		r.other++
	}
}
func (r *benchReporter) Done(env *Envelope)               { env.Body = nil; r.f.free = append(r.f.free, env) }
func (r *benchReporter) ConnClosed(c ConnInfo, err error) {}

// benchSession returns a session past EHLO with the first transaction's
// body written. pipelined: PIPELINING offered.
func benchSession(tb testing.TB, pipelined bool) (*Session, *benchFeeder, *benchReporter) {
	f := newBenchFeeder(4)
	r := &benchReporter{f: f}
	s := NewSession(&SessionConfig{EHLOName: "client.test"}, ConnInfo{Host: "mx.test"}, f, r, 1)
	ehlo := "250-mx.test\r\n250-SIZE 10000000\r\n250 8BITMIME\r\n"
	if pipelined {
		ehlo = "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10000000\r\n250 8BITMIME\r\n"
	}
	for _, in := range []string{"220 mx.test\r\n", ehlo} {
		if _, err := s.Feed([]byte(in), 2); err != nil {
			tb.Fatal(err)
		}
		s.Output()
		s.Flushed()
	}
	turns := []string{"250 ok\r\n250 ok\r\n354 go\r\n"}
	if !pipelined {
		turns = []string{"250 ok\r\n", "250 ok\r\n", "354 go\r\n"}
	}
	for _, in := range turns {
		if _, err := s.Feed([]byte(in), 3); err != nil {
			tb.Fatal(err)
		}
		s.Output()
		s.Flushed()
	}
	if s.State() != StateBody {
		tb.Fatalf("state %s; want body", s.State())
	}
	return s, f, r
}

// sinkWrite stands for Writev: it touches every byte written.
var sinkWrite int

func writeOut(s *Session) {
	for _, seg := range s.Output() {
		sinkWrite += len(seg)
	}
	s.Flushed()
}

var (
	pipelinedTurn = []byte("250 2.0.0 Ok: queued as 1234\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n")
	plainTurns    = [][]byte{[]byte("250 2.0.0 Ok: queued as 1234\r\n"), []byte("250 2.1.0 Ok\r\n"), []byte("250 2.1.5 Ok\r\n"), []byte("354 go\r\n")}
)

// BenchmarkSessionPipelined: one turn per message (final dot's 250 plus the
// next MAIL, RCPT and DATA replies), as on a busy pipelined connection.
func BenchmarkSessionPipelined(b *testing.B) {
	s, _, r := benchSession(b, true)
	b.ReportAllocs()
	b.SetBytes(int64(len(pipelinedTurn)))
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		n, err := s.Feed(pipelinedTurn, int64(i+10))
		if err != nil || n != len(pipelinedTurn) {
			b.Fatalf("Feed: %d, %v", n, err)
		}
		writeOut(s)
	}
	b.StopTimer()
	if r.other != 0 || r.delivered < b.N-1 {
		b.Fatalf("delivered %d, other %d; want %d delivered", r.delivered, r.other, b.N)
	}
}

// BenchmarkSessionLockstep: without PIPELINING, four turns per message.
func BenchmarkSessionLockstep(b *testing.B) {
	s, _, r := benchSession(b, false)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		for _, in := range plainTurns {
			if _, err := s.Feed(in, int64(i+10)); err != nil {
				b.Fatal(err)
			}
			writeOut(s)
		}
	}
	b.StopTimer()
	if r.other != 0 || r.delivered < b.N-1 {
		b.Fatalf("delivered %d, other %d; want %d", r.delivered, r.other, b.N)
	}
}

// TestSessionSteadyStateAllocs: a pipelined message costs no allocation in
// the session (bodies come from codec's pool).
func TestSessionSteadyStateAllocs(t *testing.T) {
	s, _, r := benchSession(t, true)
	i := int64(10)
	allocs := testing.AllocsPerRun(200, func() {
		i++
		if _, err := s.Feed(pipelinedTurn, i); err != nil {
			t.Fatal(err)
		}
		writeOut(s)
	})
	if r.delivered < 200 || r.other != 0 {
		t.Fatalf("delivered %d, other %d", r.delivered, r.other)
	}
	if allocs != 0 {
		if sessionRaceEnabled {
			t.Logf("%v allocs per message under the race detector (sync.Pool drops items)", allocs)
			return
		}
		t.Fatalf("%v allocs per message; want 0", allocs)
	}
}

// chunkedTurn answers one whole BDAT transaction (MAIL, RCPT, BDAT LAST).
var chunkedTurn = []byte("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: queued as 1234\r\n")

// benchSessionChunked returns a session past EHLO (PIPELINING, CHUNKING)
// with depth transactions in flight.
func benchSessionChunked(tb testing.TB, depth int) (*Session, *benchFeeder, *benchReporter) {
	f := newBenchFeeder(depth + 1)
	r := &benchReporter{f: f}
	s := NewSession(&SessionConfig{EHLOName: "client.test", Chunking: ChunkingAuto, PipelineDepth: depth}, ConnInfo{Host: "mx.test"}, f, r, 1)
	for _, in := range []string{"220 mx.test\r\n", "250-mx.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-SIZE 10000000\r\n250 8BITMIME\r\n"} {
		if _, err := s.Feed([]byte(in), 2); err != nil {
			tb.Fatal(err)
		}
		writeOut(s)
	}
	if s.inflight != depth {
		tb.Fatalf("%d transactions in flight; want %d", s.inflight, depth)
	}
	return s, f, r
}

// BenchmarkSessionChunked: one whole BDAT transaction answered and the
// next one sent per iteration, 4 in flight (the replies of a busy
// connection; a real read carries several).
func BenchmarkSessionChunked(b *testing.B) {
	s, _, r := benchSessionChunked(b, 4)
	b.ReportAllocs()
	b.SetBytes(int64(len(chunkedTurn)))
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		n, err := s.Feed(chunkedTurn, int64(i+10))
		if err != nil || n != len(chunkedTurn) {
			b.Fatalf("Feed: %d, %v", n, err)
		}
		writeOut(s)
	}
	b.StopTimer()
	if r.other != 0 || r.delivered < b.N-1 {
		b.Fatalf("delivered %d, other %d; want %d delivered", r.delivered, r.other, b.N)
	}
}

// TestSessionChunkedSteadyStateAllocs: a pipelined BDAT message costs no
// allocation in the session (the un-stuffed body is slices of the
// Message's segments), with one reply per read or four.
func TestSessionChunkedSteadyStateAllocs(t *testing.T) {
	for _, batch := range []int{1, 4} {
		s, _, r := benchSessionChunked(t, 4)
		in := bytes.Repeat(chunkedTurn, batch)
		i := int64(10)
		allocs := testing.AllocsPerRun(200, func() {
			i++
			if n, err := s.Feed(in, i); err != nil || n != len(in) {
				t.Fatalf("Feed: %d, %v", n, err)
			}
			if s.inflight != 4 {
				t.Fatalf("%d in flight; want 4", s.inflight)
			}
			writeOut(s)
		})
		if r.delivered < 200*batch || r.other != 0 {
			t.Fatalf("delivered %d, other %d", r.delivered, r.other)
		}
		if allocs != 0 {
			if sessionRaceEnabled {
				t.Logf("%v allocs per batch under the race detector (sync.Pool drops items)", allocs)
				continue
			}
			t.Fatalf("batch %d: %v allocs per batch; want 0", batch, allocs)
		}
	}
}
