package engine

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// drvScripted is a raw SMTP server that answers like a pipelining MTA and
// cuts the connection when it has read the line for which cut returns true
// (before answering it), or after n bytes of message content.
func drvScripted(t *testing.T, cutLine func(line string) bool, cutBody int) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go drvScriptedConn(c, cutLine, cutBody)
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

func drvScriptedConn(c net.Conn, cutLine func(string) bool, cutBody int) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	w := func(s string) { c.Write([]byte(s)) }
	w("220 scripted ESMTP\r\n")
	inData, body := false, 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		if cutLine != nil && cutLine(line) {
			return
		}
		if inData {
			body += len(line)
			if cutBody > 0 && body >= cutBody {
				return
			}
			if line == ".\r\n" {
				inData = false
				w("250 2.0.0 queued\r\n")
			}
			continue
		}
		switch cmd := strings.ToUpper(strings.TrimSpace(line)); {
		case strings.HasPrefix(cmd, "EHLO"):
			w("250-scripted\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
		case strings.HasPrefix(cmd, "DATA"):
			inData = true
			w("354 go ahead\r\n")
		case strings.HasPrefix(cmd, "QUIT"):
			w("221 bye\r\n")
			return
		default:
			w("250 ok\r\n")
		}
	}
}

// TestDriverDropAnywhere cuts the connection at each point of a transaction:
// every recipient in flight must be deferred, none delivered.
func TestDriverDropAnywhere(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cut     func(string) bool
		cutBody int
	}{
		{"after-ehlo", func(l string) bool { return strings.HasPrefix(l, "MAIL") }, 0},
		{"after-mail", func(l string) bool { return strings.HasPrefix(l, "RCPT") }, 0},
		{"at-data", func(l string) bool { return strings.HasPrefix(l, "DATA") }, 0},
		{"mid-body", nil, 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := drvScripted(t, tc.cut, tc.cutBody)
			e, f, r := itEngine(t, Config{})
			env, _ := itEnvelope(1, 2, 2000)
			f.add(env)
			e.Dial(Dial{Path: 1, Host: "scripted", Addr: addr, Config: itSessionConfig()})
			itWait(t, r.doneCh, 1, 10*time.Second, "Done")
			itWait(t, r.closedCh, 1, 10*time.Second, "ConnClosed")
			if c := r.counts(); c[ResultDeferred] != 2 || c[ResultDelivered] != 0 {
				t.Fatalf("outcomes %v; want 2 deferred", c)
			}
			if r.closed[0].err == nil {
				t.Fatal("ConnClosed err nil after a drop")
			}
			if st := e.Stats(); st.Open != 0 || st.Closed != 1 {
				t.Fatalf("stats %+v; want 1 closed, none open", st)
			}
		})
	}
}

// TestDriverCloseDefers: Close with transactions in flight (the server
// never answers the final dot) defers them and reports ErrEngineClosed.
func TestDriverCloseDefers(t *testing.T) {
	addr := drvScripted(t, func(l string) bool {
		if l == ".\r\n" {
			time.Sleep(time.Hour) // never answer; the deadline frees us
		}
		return false
	}, 0)
	e, f, r := itEngine(t, Config{})
	for i := 1; i <= 3; i++ {
		env, _ := itEnvelope(uint64(i), 1, 100)
		f.add(env)
		e.Dial(Dial{Path: uint64(i), Host: "scripted", Addr: addr, Config: itSessionConfig()})
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.calls.Load() < 3 || f.queued() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("envelopes not taken")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	e.Close()
	itWait(t, r.doneCh, 3, 10*time.Second, "Done")
	itWait(t, r.closedCh, 3, 10*time.Second, "ConnClosed")
	if c := r.counts(); c[ResultDeferred] != 3 {
		t.Fatalf("outcomes %v; want 3 deferred", c)
	}
	for _, c := range r.closed {
		if c.err == nil {
			t.Fatalf("ConnClosed err nil after Close")
		}
	}
	// Dials after Close are refused through ConnClosed.
	e.Dial(Dial{Path: 9, Host: "scripted", Addr: addr, Config: itSessionConfig()})
	itWait(t, r.closedCh, 1, 5*time.Second, "ConnClosed after Close")
}

// TestDriverStopContext: Stop honours its context when a session cannot
// finish (the server never answers the final dot).
func TestDriverStopContext(t *testing.T) {
	addr := drvScripted(t, func(l string) bool {
		if l == ".\r\n" {
			time.Sleep(time.Hour)
		}
		return false
	}, 0)
	e, f, r := itEngine(t, Config{})
	env, _ := itEnvelope(1, 1, 100)
	f.add(env)
	e.Dial(Dial{Path: 1, Host: "scripted", Addr: addr, Config: itSessionConfig()})
	for deadline := time.Now().Add(10 * time.Second); f.calls.Load() < 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("envelope not taken")
		}
	}
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := e.Stop(ctx); err != context.DeadlineExceeded {
		t.Fatalf("Stop: %v; want DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("Stop took %v", el)
	}
	itWait(t, r.doneCh, 1, 5*time.Second, "Done")
	if c := r.counts(); c[ResultDeferred] != 1 {
		t.Fatalf("outcomes %v; want 1 deferred", c)
	}
}

// TestDriverRelayPool keeps 3 authenticated connections to a go-smtp
// "smarthost"; each QUITs after 10 messages and is replaced.
func TestDriverRelayPool(t *testing.T) {
	be := &itBackend{user: "u", pass: "p"}
	addr := itServe(t, be, nil, false)
	e, f, r := itEngine(t, Config{})
	sc := itSessionConfig()
	sc.Auth = &Auth{Username: "u", Password: "p", AllowPlaintext: true}
	sc.MaxMessages = 10
	for i := 1; i <= 100; i++ {
		env, _ := itEnvelope(uint64(i), 1, 200)
		f.add(env)
	}
	p := e.StartRelay(Relay{Path: 5, Host: "smarthost", Addr: addr, Config: sc, Size: 3})
	itWait(t, r.doneCh, 100, 30*time.Second, "Done")
	if got := r.counts()[ResultDelivered]; got != 100 {
		t.Fatalf("delivered %d; want 100", got)
	}
	if p.Redials() < 7 {
		t.Fatalf("redials %d; want at least 7 (100 messages, 10 per connection)", p.Redials())
	}
	if st := e.Stats(); st.Open > 3 {
		t.Fatalf("%d connections open; want at most 3", st.Open)
	}
	p.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

// drvFakeConn records what writev hands to gnet.
type drvFakeConn struct {
	gnet.Conn
	calls [][]int // iovec lengths per call
	got   []byte
}

func (c *drvFakeConn) Write(p []byte) (int, error) {
	c.calls = append(c.calls, []int{len(p)})
	c.got = append(c.got, p...)
	return len(p), nil
}

func (c *drvFakeConn) Writev(bs [][]byte) (int, error) {
	var lens []int
	n := 0
	for _, b := range bs {
		lens = append(lens, len(b))
		c.got = append(c.got, b...)
		n += len(b)
	}
	c.calls = append(c.calls, lens)
	return n, nil
}

func TestDriverWritevMerge(t *testing.T) {
	big := bytes.Repeat([]byte("B"), 2000)
	for _, tc := range []struct {
		name      string
		segs      [][]byte
		wantCalls int
		wantIOV   []int // iovec count per call
	}{
		{"one-small", [][]byte{[]byte("MAIL FROM:<a@b>\r\n")}, 1, []int{1}},
		{"commands-merged", [][]byte{[]byte("MAIL FROM:<a@b>\r\n"), []byte("RCPT TO:<c@d>\r\n"), []byte("DATA\r\n")}, 1, []int{1}},
		{"body", [][]byte{[]byte("hdr\r\n"), big, []byte(".\r\n"), []byte("MAIL FROM:<a@b>\r\n")}, 1, []int{3}},
		{"many-big", func() [][]byte {
			var s [][]byte
			for i := 0; i < 200; i++ {
				s = append(s, big, []byte("x\r\n"))
			}
			return s
		}(), 7, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLoop(&Engine{}, 0)
			c := &drvFakeConn{}
			var want []byte
			for _, s := range tc.segs {
				want = append(want, s...)
			}
			l.writev(c, tc.segs)
			if !bytes.Equal(c.got, want) {
				t.Fatalf("bytes differ: got %d, want %d", len(c.got), len(want))
			}
			if len(c.calls) != tc.wantCalls {
				t.Fatalf("got %d writes %v; want %d", len(c.calls), c.calls, tc.wantCalls)
			}
			for i, call := range c.calls {
				if len(call) > drvMaxIOV {
					t.Fatalf("write %d has %d iovecs; cap %d", i, len(call), drvMaxIOV)
				}
				if tc.wantIOV != nil && len(call) != tc.wantIOV[i] {
					t.Fatalf("write %d has %d iovecs %v; want %d", i, len(call), call, tc.wantIOV[i])
				}
			}
		})
	}
	// Steady state: no allocation.
	l := newLoop(&Engine{}, 0)
	c := &drvFakeConn{}
	segs := [][]byte{[]byte("hdr\r\n"), big, []byte(".\r\n"), []byte("MAIL FROM:<a@b>\r\n")}
	var nullc gnet.Conn = &drvNullConn{}
	if n := testing.AllocsPerRun(100, func() { l.writev(nullc, segs) }); n != 0 {
		t.Fatalf("writev allocates %v per call; want 0", n)
	}
	_ = c
}

type drvNullConn struct{ gnet.Conn }

func (*drvNullConn) Write(p []byte) (int, error)     { return len(p), nil }
func (*drvNullConn) Writev(bs [][]byte) (int, error) { return 0, nil }

// TestDriverLoopForPath: a path always maps to the same loop (its state
// lives on one loop without locks) and paths spread over all loops.
func TestDriverLoopForPath(t *testing.T) {
	e := &Engine{}
	for i := 0; i < 4; i++ {
		e.loops = append(e.loops, newLoop(e, i))
	}
	hits := map[int]int{}
	for p := uint64(0); p < 1000; p++ {
		l := e.loopFor(p)
		if again := e.loopFor(p); again != l {
			t.Fatalf("path %d: loop %d then %d", p, l.idx, again.idx)
		}
		hits[l.idx]++
	}
	for i := 0; i < 4; i++ {
		if hits[i] < 150 {
			t.Fatalf("loop %d got %d of 1000 paths (%v); want about 250", i, hits[i], hits)
		}
	}
}

func TestDriverNewErrors(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without Feeder and Reporter: nil error")
	}
	f, r := &itFeeder{}, newITReporter()
	e, err := New(Config{Feeder: f, Reporter: r, Loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Dial before Start is refused through ConnClosed, asynchronously.
	e.Dial(Dial{Path: 1, Host: "x", Addr: netip.MustParseAddrPort("127.0.0.1:1"), Config: itSessionConfig()})
	itWait(t, r.closedCh, 1, 5*time.Second, "ConnClosed")
	if r.closed[0].err != ErrNotStarted {
		t.Fatalf("got %v; want ErrNotStarted", r.closed[0].err)
	}
	e.Close()
	if err := e.Start(); err == nil {
		t.Fatal("Start after Close: nil error")
	}
}
