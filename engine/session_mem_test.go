package engine

import (
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// manyRcptFeeder offers envelopes of k recipients, recycled by Done.
type manyRcptFeeder struct {
	benchFeeder
	k int
}

func newManyRcptFeeder(k int) *manyRcptFeeder {
	f := &manyRcptFeeder{benchFeeder: *newBenchFeeder(4), k: k}
	for _, env := range f.free {
		env.Rcpts = nil
		for i := range k {
			env.Rcpts = append(env.Rcpts, "r"+strconv.Itoa(i)+"@r.test")
		}
	}
	return f
}

// TestSessionQueueGrows: a pipelined transaction with more replies in
// flight than the inline ring holds grows it once; replies still pair with
// their commands (the 550 goes to recipient 27 only), and the steady state
// allocates nothing afterwards.
func TestSessionQueueGrows(t *testing.T) {
	const k = 40
	f := newManyRcptFeeder(k)
	r := &benchReporter{f: &f.benchFeeder}
	var refused []int
	rep := &funcReporter{benchReporter: r, onOutcome: func(i int, o Outcome) {
		if o.Result != ResultDelivered {
			refused = append(refused, i)
		}
	}}
	s := NewSession(&SessionConfig{EHLOName: "client.test"}, ConnInfo{Host: "mx.test"}, f, rep, 1)
	feed := func(in string) string {
		t.Helper()
		if n, err := s.Feed([]byte(in), 2); err != nil || n != len(in) {
			t.Fatalf("Feed(%q): %d, %v", in, n, err)
		}
		var b strings.Builder
		for _, seg := range s.Output() {
			b.Write(seg)
		}
		s.Flushed()
		return b.String()
	}
	feed("220 mx.test\r\n")
	out := feed("250-mx.test\r\n250 PIPELINING\r\n")
	if got := strings.Count(out, "RCPT TO:"); got != k || !strings.HasSuffix(out, "DATA\r\n") {
		t.Fatalf("first group: %d RCPT; want %d then DATA:\n%s", got, k, out)
	}
	if len(s.q) < k+2 || len(s.q)&(len(s.q)-1) != 0 {
		t.Fatalf("ring has %d slots for %d replies in flight", len(s.q), k+2)
	}
	turn := func(final bool, bad int) string {
		var b strings.Builder
		if final {
			b.WriteString("250 2.0.0 queued\r\n")
		}
		b.WriteString("250 ok\r\n")
		for i := range k {
			if i == bad {
				b.WriteString("550 5.1.1 no such user\r\n")
			} else {
				b.WriteString("250 ok\r\n")
			}
		}
		b.WriteString("354 go\r\n")
		return b.String()
	}
	feed(turn(false, 27))
	if len(refused) != 1 || refused[0] != 27 {
		t.Fatalf("refused recipients %v; want [27]", refused)
	}
	in := turn(true, -1)
	for range 3 {
		feed(in)
	}
	if sessionRaceEnabled {
		return
	}
	b := []byte(in)
	if n := testing.AllocsPerRun(50, func() {
		if _, err := s.Feed(b, 3); err != nil {
			t.Fatal(err)
		}
		writeOut(s)
	}); n != 0 {
		t.Fatalf("%v allocs per %d-recipient message after the ring grew; want 0", n, k)
	}
}

type funcReporter struct {
	*benchReporter
	onOutcome func(i int, o Outcome)
}

func (r *funcReporter) Outcome(env *Envelope, i int, o Outcome) {
	r.onOutcome(i, o)
	r.benchReporter.Outcome(env, i, o)
}

// TestSessionHoldsNoWriteBuffer: between Flushed and the next command a
// session holds no write buffer (it is borrowed from a pool), also in the
// middle of a pipelined transaction; Closed gives back one still held.
func TestSessionHoldsNoWriteBuffer(t *testing.T) {
	s, _, _ := benchSession(t, true)
	if s.w != nil {
		t.Fatal("write buffer held after Flushed")
	}
	if _, err := s.Feed(pipelinedTurn, 10); err != nil {
		t.Fatal(err)
	}
	if s.w == nil || len(s.Output()) == 0 {
		t.Fatal("no output after a turn")
	}
	s.Flushed()
	if s.w != nil {
		t.Fatal("write buffer held while waiting for replies")
	}
	s.Drain(11)
	if _, err := s.Feed(pipelinedTurn, 12); err != nil {
		t.Fatal(err)
	}
	s.Closed(nil, 13)
	if s.w != nil || s.Output() != nil {
		t.Fatal("write buffer held after Closed")
	}
}

// TestSessionFootprint bounds what a session waiting for replies keeps on
// the heap (the 10,000-session load test's main term): the Session itself
// (512 bytes), nothing per command. It was 4.6 KB with a 128-entry ring and
// a 1 KB command buffer allocated up front.
func TestSessionFootprint(t *testing.T) {
	if sessionRaceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	const n = 2000
	// Pre-allocated envelopes (no body: the test never gets to DATA), so the
	// measurement sees only the session's allocations.
	f := &fakeFeeder{}
	for range n + 2 {
		f.q = append(f.q, &Envelope{From: "a@s.test", Rcpts: []string{"b@r.test"}})
	}
	r := &benchReporter{f: newBenchFeeder(0)}
	cfg := &SessionConfig{EHLOName: "client.test"}
	ss := make([]*Session, 0, n)
	step := func(s *Session, in string) {
		if _, err := s.Feed([]byte(in), 2); err != nil {
			t.Fatal(err)
		}
		s.Output()
		s.Flushed()
	}
	start := func() *Session {
		s := NewSession(cfg, ConnInfo{Host: "mx.test"}, f, r, 1)
		step(s, "220 mx.test\r\n")
		step(s, "250-mx.test\r\n250 PIPELINING\r\n") // MAIL, RCPT, DATA in flight
		return s
	}
	start() // warms the write-buffer pool
	start()
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for range n {
		ss = append(ss, start())
	}
	runtime.ReadMemStats(&m1)
	per := float64(m1.TotalAlloc-m0.TotalAlloc) / n
	t.Logf("%.0f bytes allocated per session waiting for MAIL/RCPT/DATA replies", per)
	if per > 640 {
		t.Fatalf("%.0f bytes per waiting session; want at most 640", per)
	}
	for _, s := range ss {
		if s.w != nil || s.qn != 3 {
			t.Fatalf("session holds a write buffer (%v) or waits for %d replies; want none and 3", s.w != nil, s.qn)
		}
	}
}
