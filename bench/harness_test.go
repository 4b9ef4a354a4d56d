package bench

import (
	"context"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/spate-mta/spate/bench/peers"
)

// TestMain doubles as the bench-peer child: the harness re-executes this
// test binary with SPATE_BENCH_PEER_CHILD=1, as the CLI runs `spate
// bench-peer`.
func TestMain(m *testing.M) {
	if os.Getenv("SPATE_BENCH_PEER_CHILD") == "1" {
		os.Exit(peers.Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// ---- a counting go-smtp sink (the harness must not depend on bench/sink
// to be tested) ----

type countBackend struct{ msgs atomic.Int64 }

func (b *countBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return countSession{b}, nil }

type countSession struct{ b *countBackend }

func (countSession) Mail(string, *smtp.MailOptions) error { return nil }
func (countSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s countSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	s.b.msgs.Add(1)
	return nil
}
func (countSession) Reset()        {}
func (countSession) Logout() error { return nil }

type quietLog struct{}

func (quietLog) Printf(string, ...any) {}
func (quietLog) Println(...any)        {}

type countSink struct {
	be  *countBackend
	srv *smtp.Server
	ln  net.Listener
}

func (s *countSink) Addr() string    { return s.ln.Addr().String() }
func (s *countSink) Messages() int64 { return s.be.msgs.Load() }
func (s *countSink) Close() error    { return s.srv.Close() }

func startCountSink(SinkOptions) (Sink, error) {
	be := &countBackend{}
	srv := smtp.NewServer(be)
	srv.Domain = "sink.bench.test"
	srv.MaxRecipients = 1000
	srv.ReadTimeout, srv.WriteTimeout = 20*time.Second, 20*time.Second
	srv.ErrorLog = quietLog{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go srv.Serve(ln)
	return &countSink{be: be, srv: srv, ln: ln}, nil
}

func testConfig(t *testing.T) Config {
	return Config{
		Sessions: 4, N: 200, Size: 500, Rcpts: 1, Loops: 1, Timeout: 20 * time.Second,
		StartSink: startCountSink, Self: []string{os.Args[0]}, SelfEnv: []string{"SPATE_BENCH_PEER_CHILD=1"},
		WorkDir: t.TempDir(), Logf: t.Logf,
	}
}

// TestRunAllPeers runs every peer in a child process against one sink:
// each that ran must have had exactly N messages accepted by the sink, a
// CPU time and a peak RSS of its own; smtp-source and gopipe may be
// skipped, with a reason, when absent, and spate-send is (this test binary
// is no `spate send`; cmd/spate's TestBenchSpateSend runs it).
func TestRunAllPeers(t *testing.T) {
	cfg := testConfig(t)
	rs, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != len(AllPeers) {
		t.Fatalf("%d results; want %d", len(rs), len(AllPeers))
	}
	for i, r := range rs {
		if r.Peer != AllPeers[i] {
			t.Fatalf("#%d: peer %q; want %q", i, r.Peer, AllPeers[i])
		}
		if r.Skipped != "" {
			if r.Peer == PeerSpate || r.Peer == PeerNetSMTP {
				t.Fatalf("%s skipped: %s", r.Peer, r.Skipped)
			}
			if r.Peer == PeerSpateSend && !strings.Contains(r.Skipped, "no spate send command") {
				t.Fatalf("%s skipped %q; want no spate send command", r.Peer, r.Skipped)
			}
			t.Logf("%s skipped: %s", r.Peer, r.Skipped)
			continue
		}
		if r.Err != "" {
			t.Fatalf("%s failed: %s", r.Peer, r.Err)
		}
		if r.SinkMessages != 200 || r.Sent != 200 || r.Failed != 0 {
			t.Errorf("%s: sink got %d, peer sent %d failed %d; want 200, 200, 0", r.Peer, r.SinkMessages, r.Sent, r.Failed)
		}
		if r.CPU <= 0 || r.MaxRSS <= 0 || r.Wall <= 0 || r.Rate() <= 0 {
			t.Errorf("%s: cpu %v rss %d wall %v rate %v; want all > 0", r.Peer, r.CPU, r.MaxRSS, r.Wall, r.Rate())
		}
		wantLat := r.Peer == PeerSpate || r.Peer == PeerNetSMTP
		if r.HasLatency() != wantLat {
			t.Errorf("%s: has latency %v; want %v", r.Peer, r.HasLatency(), wantLat)
		}
	}
}

// TestRunSkipsMissingPeers: absent binaries and missing configuration are
// reported as skipped with a reason, and STARTTLS skips the peers without TLS.
func TestRunSkipsMissingPeers(t *testing.T) {
	cfg := testConfig(t)
	cfg.Self = nil
	cfg.SMTPSource = "/nonexistent/smtp-source"
	cfg.GopipeDir = "/nonexistent/gopipe"
	rs, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		PeerSpate: "no bench-peer command", PeerNetSMTP: "no bench-peer command",
		PeerSMTPSource: "not installed", PeerGopipe: "not found", PeerSpateSend: "no spate send command",
	}
	if len(rs) != len(want) {
		t.Fatalf("%d results; want %d", len(rs), len(want))
	}
	for _, r := range rs {
		if !strings.Contains(r.Skipped, want[r.Peer]) {
			t.Errorf("%s: skipped %q; want it to contain %q", r.Peer, r.Skipped, want[r.Peer])
		}
		if r.Ran() || r.Rate() != 0 {
			t.Errorf("%s: Ran %v Rate %v; want false, 0", r.Peer, r.Ran(), r.Rate())
		}
	}
	cfg = testConfig(t)
	cfg.Send = []string{"/nonexistent/spate", "send"}
	cfg.Peers = []string{PeerSpateSend}
	rs, err = Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r := rs[0]; !strings.Contains(r.Skipped, "not found at /nonexistent/spate") || r.Ran() || r.Rate() != 0 {
		t.Errorf("spate-send with a missing binary: %+v; want skipped, not found", r)
	}
	if cell := Rows(rs)[0][1]; !strings.HasPrefix(cell, "skipped (") {
		t.Errorf("msgs/s cell %q; want skipped (…)", cell)
	}
	cfg = testConfig(t)
	cfg.StartTLS = true
	cfg.Peers = []string{PeerSMTPSource, PeerGopipe}
	rs, err = Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if !strings.Contains(r.Skipped, "TLS") {
			t.Errorf("%s with STARTTLS: skipped %q; want a TLS reason", r.Peer, r.Skipped)
		}
	}
}

// TestRunPeerFailureIsReported: a peer that cannot reach the sink fails
// with a reason rather than reporting zero.
func TestRunPeerFailureIsReported(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	cfg := testConfig(t)
	cfg.SinkAddr = addr
	cfg.Peers = []string{PeerNetSMTP}
	cfg.Timeout = 5 * time.Second
	rs, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Err == "" || rs[0].Ran() {
		t.Fatalf("got %+v; want one failed result", rs)
	}
	if rs[0].SinkMessages != -1 {
		t.Fatalf("external sink: SinkMessages %d; want -1 (unknown)", rs[0].SinkMessages)
	}
	if cell := Rows(rs)[0][1]; !strings.HasPrefix(cell, "failed (") {
		t.Fatalf("msgs/s cell %q; want failed (…)", cell)
	}
}

func TestRunNeedsASink(t *testing.T) {
	cfg := testConfig(t)
	cfg.StartSink = nil
	if _, err := Run(context.Background(), cfg); err == nil {
		t.Fatal("Run without SinkAddr or StartSink succeeded; want an error")
	}
}

func TestParseGopipe(t *testing.T) {
	var r Result
	out := []byte("session: EOF\ngopipe sent=95 failed=5 conns=4 size=500 rcpts=1 wall=0.100s rate=950 msg/s\n")
	if err := parseGopipe(out, &r); err != nil || r.Sent != 95 || r.Failed != 5 {
		t.Fatalf("got sent %d failed %d err %v; want 95 5 nil", r.Sent, r.Failed, err)
	}
	if err := parseGopipe([]byte("hard timeout\n"), &r); err == nil {
		t.Fatal("unparseable gopipe output accepted")
	}
	if err := parsePeerJSON([]byte(`{"peer":"spate","sent":3,"failed":1,"p50_ns":1000,"p99_ns":2000}`+"\n"), &r); err != nil ||
		r.Sent != 3 || r.Failed != 1 || r.P50 != time.Microsecond || r.P99 != 2*time.Microsecond {
		t.Fatalf("peer JSON: %+v %v", r, err)
	}
	if err := parsePeerJSON([]byte(`{"peer":"spate","error":"boom"}`), &r); err == nil || err.Error() != "boom" {
		t.Fatalf("peer JSON error: got %v; want boom", err)
	}
}

// TestRunNotesShortRuns: a peer reporting fewer attempts than N (gopipe
// gives up a session on a dropped connection) gets the rest counted as
// failed and a note, and a sink count that differs is noted too.
func TestRunNotesShortRuns(t *testing.T) {
	dir := t.TempDir()
	script := dir + "/fake-gopipe"
	// A stand-in gopipe that reports 50 sent, 10 failed of N and exits 1.
	if err := os.WriteFile(script, []byte("#!/bin/sh\nsleep 0.1\necho 'gopipe sent=50 failed=10 conns=4'\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.WorkDir = dir // buildGopipe finds WorkDir/gopipe and does not build
	if err := os.Rename(script, dir+"/gopipe"); err != nil {
		t.Fatal(err)
	}
	cfg.Peers = []string{PeerGopipe}
	rs, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := rs[0]
	if !r.Ran() || r.Sent != 50 || r.Failed != 150 {
		t.Fatalf("got %+v; want ran, sent 50, failed 150", r)
	}
	if want := "140 of 200 messages never attempted; the sink accepted 0"; r.Note != want {
		t.Fatalf("note %q; want %q", r.Note, want)
	}
}

func TestParseHWM(t *testing.T) {
	st := []byte("Name:\tx\nVmPeak:\t  9000 kB\nVmHWM:\t    1234 kB\nVmRSS:\t 1000 kB\n")
	if got := peers.ParseHWM(st); got != 1234*1024 {
		t.Fatalf("got %d; want %d", got, 1234*1024)
	}
	if got := peers.ParseHWM([]byte("Name:\tzombie\nState:\tZ\n")); got != 0 {
		t.Fatalf("zombie: got %d; want 0", got)
	}
}

// TestPeakRSSIsTheChilds: a child that allocates nothing must not report
// the harness's own (larger) high-water mark, which Linux carries into
// ru_maxrss at exec.
func TestPeakRSSIsTheChilds(t *testing.T) {
	ballast := make([]byte, 200<<20)
	for i := 0; i < len(ballast); i += 4096 {
		ballast[i] = 1
	}
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/gopipe", []byte("#!/bin/sh\nsleep 0.1\necho 'gopipe sent=200 failed=0'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.WorkDir = dir
	cfg.Peers = []string{PeerGopipe, PeerNetSMTP}
	rs, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if !r.Ran() || r.MaxRSS <= 0 || r.MaxRSS > 150<<20 {
			t.Errorf("%s: ran %v (%s), peak RSS %d MB; want a small positive figure below the harness's 200 MB", r.Peer, r.Ran(), r.Err, r.MaxRSS>>20)
		}
	}
	ballast[1] = 2
}

func TestMedian(t *testing.T) {
	mk := func(msgs int64) Result {
		return Result{Peer: "p", Sent: msgs, SinkMessages: msgs, Wall: time.Second}
	}
	m := median([]Result{mk(300), mk(100), mk(200)})
	if m.Sent != 200 || m.Note != "median of 3 runs (100–300 msgs/s)" {
		t.Fatalf("got %d %q; want 200 and the note", m.Sent, m.Note)
	}
	if m := median([]Result{mk(5)}); m.Note != "" || m.Sent != 5 {
		t.Fatalf("one run: %+v", m)
	}
}

// TestRunRepeat: each peer runs Repeat times against the one sink.
func TestRunRepeat(t *testing.T) {
	cfg := testConfig(t)
	cfg.Peers = []string{PeerNetSMTP, PeerSMTPSource}
	cfg.SMTPSource = "/nonexistent"
	cfg.Repeat = 3
	cfg.N = 50
	var sinkRef Sink
	cfg.StartSink = func(o SinkOptions) (Sink, error) {
		s, err := startCountSink(o)
		sinkRef = s
		return s, err
	}
	rs, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := sinkRef.Messages(); got != 150 {
		t.Fatalf("sink got %d messages; want 3 runs × 50", got)
	}
	if !strings.HasPrefix(rs[0].Note, "median of 3 runs") || rs[0].SinkMessages != 50 {
		t.Fatalf("netsmtp: %+v", rs[0])
	}
	if rs[1].Skipped == "" {
		t.Fatalf("smtp-source: %+v; want skipped", rs[1])
	}
}
