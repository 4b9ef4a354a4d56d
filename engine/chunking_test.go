package engine

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Against go-smtp's server, which always offers CHUNKING and PIPELINING
// (v0.24: conn.go handleBdat; a refused BDAT is answered before its chunk
// is read, see TestDriverGoSMTPChunkingAllRefused).

// itVerbs counts the BDAT and DATA commands a server received.
type itVerbs struct{ bdat, data atomic.Int64 }

type itVerbConn struct {
	net.Conn
	v    *itVerbs
	tail []byte // last bytes of the previous read (a command split across reads)
}

func (c *itVerbConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		// Count matches that end in the new bytes (none lies in the tail).
		buf := append(c.tail, b[:n]...)
		for _, p := range []struct {
			s string
			n *atomic.Int64
		}{{"\nBDAT ", &c.v.bdat}, {"\nDATA\r\n", &c.v.data}} {
			p.n.Add(int64(bytes.Count(buf, []byte(p.s)) - bytes.Count(c.tail, []byte(p.s))))
		}
		c.tail = append(c.tail[:0], buf[max(0, len(buf)-6):]...)
	}
	return n, err
}

type itVerbListener struct {
	net.Listener
	v *itVerbs
}

func (l itVerbListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &itVerbConn{Conn: c, v: l.v, tail: []byte("\n")}, nil
}

// itServeCounting is itServe (plaintext) counting BDAT and DATA commands.
func itServeCounting(t *testing.T, be *itBackend) (netip.AddrPort, *itVerbs) {
	t.Helper()
	v := &itVerbs{}
	itWrapListener = func(ln net.Listener) net.Listener { return itVerbListener{ln, v} }
	defer func() { itWrapListener = nil }()
	return itServe(t, be, nil, false), v
}

// TestDriverGoSMTPChunking: 5,000 messages over 50 connections go out with
// BDAT (pipelined, 4 transactions in flight) and arrive byte for byte (go-smtp
// hands the body over as received; the engine sent it un-stuffed); with
// Chunking off the same run uses DATA.
func TestDriverGoSMTPChunking(t *testing.T) {
	for _, tc := range []struct {
		name     string
		chunking ChunkingPolicy
		noPipe   bool
		conns, n int
	}{
		{"bdat-pipelined", ChunkingAuto, false, 50, 5000},
		{"bdat-nopipelining", ChunkingAuto, true, 20, 1000},
		{"data", ChunkingOff, false, 50, 5000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := &itBackend{}
			addr, v := itServeCounting(t, be)
			sc := itSessionConfig()
			sc.Chunking, sc.NoPipelining = tc.chunking, tc.noPipe
			itRun(t, be, addr, Config{}, sc, tc.conns, tc.n, 1)
			bdat, data := v.bdat.Load(), v.data.Load()
			if tc.chunking == ChunkingAuto && (bdat != int64(tc.n) || data != 0) {
				t.Fatalf("server got %d BDAT and %d DATA; want %d BDAT", bdat, data, tc.n)
			}
			if tc.chunking == ChunkingOff && (data != int64(tc.n) || bdat != 0) {
				t.Fatalf("server got %d BDAT and %d DATA; want %d DATA", bdat, data, tc.n)
			}
		})
	}
}

// TestDriverGoSMTPChunkingPartial: one recipient of every third message is
// refused (550 or 450): it keeps its RCPT outcome, the others are
// delivered, and the server holds each message once with exactly the
// accepted recipients.
func TestDriverGoSMTPChunkingPartial(t *testing.T) {
	be := &itBackend{refuse: func(to string) error {
		var id uint64
		var r int
		fmt.Sscanf(to, "rcpt%d.%d@", &id, &r)
		if id%3 == 0 && r == 1 {
			if id%2 == 0 {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
			}
			return &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "mailbox busy"}
		}
		return nil
	}}
	addr, v := itServeCounting(t, be)
	e, f, r := itEngine(t, Config{})
	const n = 900
	plains := map[uint64][]byte{}
	for i := 1; i <= n; i++ {
		env, plain := itEnvelope(uint64(i), 3, 300+i%700)
		plains[uint64(i)] = plain
		f.add(env)
	}
	sc := itSessionConfig()
	sc.Chunking = ChunkingAuto
	for c := 0; c < 10; c++ {
		e.Dial(Dial{Path: uint64(c), Host: "localhost", Addr: addr, Config: sc})
	}
	itWait(t, r.doneCh, n, 60*time.Second, "Done")
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, os := range r.outcomes {
		for i, o := range os {
			want := ResultDelivered
			if id%3 == 0 && i == 1 {
				want = ResultBounced
				if id%2 != 0 {
					want = ResultDeferred
				}
			}
			if o.Result != want || o.Local {
				t.Fatalf("message %d recipient %d: %+v; want %v", id, i, o, want)
			}
		}
	}
	be.mu.Lock()
	defer be.mu.Unlock()
	if len(be.msgs) != n || v.bdat.Load() != n {
		t.Fatalf("server got %d messages, %d BDAT; want %d", len(be.msgs), v.bdat.Load(), n)
	}
	for _, m := range be.msgs {
		var id uint64
		fmt.Sscanf(m.rcpts[0], "rcpt%d.", &id)
		want := 3
		if id%3 == 0 {
			want = 2
		}
		if len(m.rcpts) != want || !bytes.Equal(m.data, plains[id]) {
			t.Fatalf("message %d: %d recipients (want %d), body equal %v", id, len(m.rcpts), want, bytes.Equal(m.data, plains[id]))
		}
	}
}

// TestDriverGoSMTPChunkingAllRefused: go-smtp answers BDAT for a
// transaction without recipients with 502 before reading the chunk (RFC
// 3030 wants the chunk read), so it parses the body as commands. The
// session stops at the 502 (ErrOutOfStep) and the engine uses DATA for that
// host from then on: the refused recipients keep their 550, nothing is
// reported delivered that the server did not accept, and the rest is
// delivered over DATA after redialling.
func TestDriverGoSMTPChunkingAllRefused(t *testing.T) {
	be := &itBackend{refuse: func(to string) error {
		var id uint64
		fmt.Sscanf(to, "rcpt%d.", &id)
		if id%10 == 5 {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}}
	addr, v := itServeCounting(t, be)
	e, f, r := itEngine(t, Config{})
	const n = 100
	for i := 1; i <= n; i++ {
		env, _ := itEnvelope(uint64(i), 1, 200)
		f.add(env)
	}
	sc := itSessionConfig()
	sc.Chunking = ChunkingAuto
	e.Dial(Dial{Path: 1, Host: "localhost", Addr: addr, Config: sc})
	// When the connection is gone, re-offer the deferred envelopes and
	// redial, as the scheduler would; stop once every message is final.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if time.Now().After(deadline) {
			r.mu.Lock()
			for id, os := range r.outcomes {
				if o := os[0]; o.Result == ResultNone || o.Local {
					t.Logf("message %d: %+v", id, o)
				}
			}
			r.mu.Unlock()
			t.Fatalf("unfinished after 30 s: %d Done, %d outcomes, %d queued, %d Next calls, stats %+v", r.ndone.Load(), len(r.outcomes), f.queued(), f.calls.Load(), e.Stats())
		}
		time.Sleep(5 * time.Millisecond)
		r.mu.Lock()
		final := 0
		for _, os := range r.outcomes {
			if o := os[0]; o.Result != ResultNone && !(o.Result == ResultDeferred && o.Local) {
				final++
			}
		}
		r.mu.Unlock()
		if final == n {
			break
		}
		if st := e.Stats(); st.Open > 0 || st.Dialing > 0 {
			continue
		}
		r.mu.Lock()
		var again []*Envelope
		for id, os := range r.outcomes {
			if os[0].Result == ResultDeferred && os[0].Local {
				os[0] = Outcome{}
				env, _ := itEnvelope(id, 1, 200) // the engine released the old body
				again = append(again, env)
			}
		}
		r.mu.Unlock()
		f.add(again...)
		e.Dial(Dial{Path: 1, Host: "localhost", Addr: addr, Config: sc})
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	be.mu.Lock()
	defer be.mu.Unlock()
	got := map[uint64]int{}
	for _, m := range be.msgs {
		var id uint64
		fmt.Sscanf(m.rcpts[0], "rcpt%d.", &id)
		got[id]++
	}
	var outOfStep, dups int
	for _, c := range r.closed {
		if errors.Is(c.err, ErrOutOfStep) {
			outOfStep++
		}
	}
	for id, os := range r.outcomes {
		o := os[0]
		switch {
		case id%10 == 5:
			if o.Result != ResultBounced || o.Code != 550 {
				t.Fatalf("message %d: %+v; want its RCPT 550", id, o)
			}
		case o.Result != ResultDelivered:
			t.Fatalf("message %d: %+v; want delivered", id, o)
		case got[id] == 0:
			t.Fatalf("message %d reported delivered; the server never accepted it", id)
		case got[id] > 1:
			dups++ // accepted while the server was out of step, then re-sent
		}
	}
	if outOfStep != 1 {
		t.Fatalf("%d connections out of step; want 1 (then DATA for this host)", outOfStep)
	}
	t.Logf("BDAT %d, DATA %d; %d message(s) accepted twice by the out-of-step server", v.bdat.Load(), v.data.Load(), dups)
}

func TestChunkingPolicyText(t *testing.T) {
	for _, p := range []ChunkingPolicy{ChunkingOff, ChunkingAuto} {
		b, _ := p.MarshalText()
		var q ChunkingPolicy
		if err := q.UnmarshalText(b); err != nil || q != p {
			t.Fatalf("%v: round trip gave %v, %v", p, q, err)
		}
	}
	var q ChunkingPolicy
	if err := q.UnmarshalText([]byte("on")); err == nil {
		t.Fatal(`"on" accepted; want an error`)
	}
	if ChunkingPolicy(0) != ChunkingOff {
		t.Fatal("the zero policy is not ChunkingOff")
	}
}
