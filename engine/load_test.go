package engine

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spate-mta/spate/codec"
	"github.com/spate-mta/spate/internal/proctest"
)

// ---- Postfix smtp-sink ----

const ldSinkBin = "/usr/sbin/smtp-sink"

// ldSink starts Postfix's smtp-sink on a free loopback port (skips the test
// if it is not installed) and returns its address.
func ldSink(tb testing.TB, extra ...string) netip.AddrPort {
	tb.Helper()
	if _, err := os.Stat(ldSinkBin); err != nil {
		tb.Skip("smtp-sink not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	args := append([]string{}, extra...)
	if os.Geteuid() == 0 {
		args = append(args, "-u", "nobody")
	}
	args = append(args, addr, "1024")
	cmd := exec.Command(ldSinkBin, args...)
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if i > 200 {
			tb.Fatalf("smtp-sink did not listen: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return netip.MustParseAddrPort(addr)
}

// ---- a recycling feeder: steady state allocates nothing ----

// ldFeeder renders a 1-field template per message into pooled Messages and
// recycles Envelopes on Done. It counts deliveries.
type ldFeeder struct {
	tmpl      *codec.Template
	total     int64
	next      atomic.Int64
	delivered atomic.Int64
	failed    atomic.Int64
	closed    atomic.Int64
	pool      sync.Pool
	values    []string
	doneCh    chan struct{}
	once      sync.Once
}

func newLDFeeder(tb testing.TB, total int64, size int) *ldFeeder {
	var src bytes.Buffer
	src.WriteString("From: <sender@bench.test>\r\nTo: <{{email}}>\r\nSubject: bench\r\n\r\n")
	for src.Len() < size {
		src.WriteString("XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX\r\n")
	}
	t, err := codec.CompileTemplate(src.Bytes(), []string{"email"})
	if err != nil {
		tb.Fatal(err)
	}
	f := &ldFeeder{tmpl: t, total: total, values: []string{"user@bench.test"}, doneCh: make(chan struct{})}
	f.pool.New = func() any {
		return &Envelope{From: "sender@bench.test", Rcpts: []string{"user@bench.test"}}
	}
	return f
}

func (f *ldFeeder) Next(c ConnInfo, now time.Time) *Envelope {
	if f.next.Add(1) > f.total {
		return nil
	}
	env := f.pool.Get().(*Envelope)
	m := codec.AcquireMessage()
	if err := f.tmpl.Render(m, f.values, nil); err != nil {
		panic(err)
	}
	env.Body, env.Size = m, m.Len()
	return env
}

func (f *ldFeeder) Outcome(env *Envelope, i int, o Outcome) {
	if o.Result == ResultDelivered {
		if f.delivered.Add(1)+f.failed.Load() == f.total {
			f.once.Do(func() { close(f.doneCh) })
		}
	} else if f.failed.Add(1)+f.delivered.Load() == f.total {
		f.once.Do(func() { close(f.doneCh) })
	}
}

func (f *ldFeeder) Done(env *Envelope) {
	env.Body = nil
	f.pool.Put(env)
}

func (f *ldFeeder) ConnClosed(c ConnInfo, err error) { f.closed.Add(1) }

// ldRun sends total messages over sessions connections to addr and returns
// the wall time and this process's CPU time (user+sys) for the run.
func ldRun(tb testing.TB, addr netip.AddrPort, sessions int, total int64, size int, loops int) (wall, cpu time.Duration, f *ldFeeder) {
	tb.Helper()
	f = newLDFeeder(tb, total, size)
	e, err := New(Config{Feeder: f, Reporter: f, Loops: loops, Logf: tb.Logf})
	if err != nil {
		tb.Fatal(err)
	}
	if err := e.Start(); err != nil {
		tb.Fatal(err)
	}
	defer e.Close()
	sc := &SessionConfig{EHLOName: "spate.bench.test", TLS: TLSDisabled, Timeouts: DefaultTimeouts()}
	runtime.GC()
	u0 := proctest.SelfCPU()
	start := time.Now()
	for i := 0; i < sessions; i++ {
		e.Dial(Dial{Path: uint64(i), Host: "sink", Addr: addr, Config: sc})
	}
	select {
	case <-f.doneCh:
	case <-time.After(120 * time.Second):
		tb.Fatalf("run incomplete after 120s: delivered %d failed %d of %d, stats %+v", f.delivered.Load(), f.failed.Load(), total, e.Stats())
	}
	wall = time.Since(start)
	cpu = proctest.SelfCPU() - u0
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Stop(ctx); err != nil {
		tb.Errorf("Stop: %v", err)
	}
	if f.failed.Load() != 0 {
		tb.Fatalf("%d messages failed", f.failed.Load())
	}
	return wall, cpu, f
}

// TestDriverSmtpSink pipelines 2,000 messages over 10 sessions into
// Postfix's smtp-sink (which advertises PIPELINING).
func TestDriverSmtpSink(t *testing.T) {
	addr := ldSink(t)
	_, _, f := ldRun(t, addr, 10, 2000, 1000, 2)
	if f.delivered.Load() != 2000 {
		t.Fatalf("delivered %d; want 2000", f.delivered.Load())
	}
	if f.closed.Load() != 10 {
		t.Fatalf("ConnClosed %d times; want 10", f.closed.Load())
	}
}

// TestDriverSmtpSinkNoPipelining: smtp-sink -p does not announce
// PIPELINING (go-smtp's server always does, so this is the server-side
// check of the one-command-at-a-time path).
func TestDriverSmtpSinkNoPipelining(t *testing.T) {
	addr := ldSink(t, "-p")
	_, _, f := ldRun(t, addr, 10, 500, 1000, 2)
	if f.delivered.Load() != 500 {
		t.Fatalf("delivered %d; want 500", f.delivered.Load())
	}
}

// BenchmarkDriverSink measures the engine's cost per message (session +
// driver + template render) against smtp-sink: 10 sessions, 1 KB, 1 rcpt.
// Allocations are this process's only (the sink is another process).
func BenchmarkDriverSink(b *testing.B) {
	addr := ldSink(b)
	f := newLDFeeder(b, int64(b.N), 1000)
	e, err := New(Config{Feeder: f, Reporter: f, Loops: 2, Logf: b.Logf})
	if err != nil {
		b.Fatal(err)
	}
	if err := e.Start(); err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	sc := &SessionConfig{EHLOName: "spate.bench.test", TLS: TLSDisabled, Timeouts: DefaultTimeouts()}
	b.ReportAllocs()
	b.SetBytes(1000)
	b.ResetTimer()
	u0 := proctest.SelfCPU()
	for i := 0; i < 10; i++ {
		e.Dial(Dial{Path: uint64(i), Host: "sink", Addr: addr, Config: sc})
	}
	select {
	case <-f.doneCh:
	case <-time.After(120 * time.Second):
		b.Fatalf("incomplete: %d of %d", f.delivered.Load(), b.N)
	}
	b.StopTimer()
	b.ReportMetric(float64(proctest.SelfCPU()-u0)/float64(b.N)/1e3, "cpu-µs/msg")
	e.Close()
}

// ---- side-by-side comparison (SPATE_LOAD=1) ----

// ldLastMaxRSS is the max RSS (KB) of the last ldChild.
var ldLastMaxRSS int64

var ldRateRE = regexp.MustCompile(`rate=([0-9.]+)`)

// ldChild runs a peer client and returns its wall time and CPU (user+sys).
func ldChild(t *testing.T, name string, args ...string) (wall, cpu time.Duration, out []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	wall = time.Since(start)
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	ps := cmd.ProcessState
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		ldLastMaxRSS = ru.Maxrss
	}
	return wall, ps.UserTime() + ps.SystemTime(), out
}

// TestLoadCompare: same sink, same run, 100 sessions, 1 KB, 1 rcpt,
// SPATE_LOAD_N messages (default 100,000): spate vs smtp-source vs gopipe.
func TestLoadCompare(t *testing.T) {
	if os.Getenv("SPATE_LOAD") == "" {
		t.Skip("set SPATE_LOAD=1")
	}
	n := int64(100000)
	if s := os.Getenv("SPATE_LOAD_N"); s != "" {
		n, _ = strconv.ParseInt(s, 10, 64)
	}
	sessions := 100
	addr := ldSink(t)
	report := func(name string, wall, cpu time.Duration) {
		t.Logf("%-12s %8.0f msg/s  wall %6.2fs  cpu %6.2fs  %5.2f µs/msg", name,
			float64(n)/wall.Seconds(), wall.Seconds(), cpu.Seconds(), float64(cpu.Microseconds())/float64(n))
	}
	for _, loops := range []int{1, 2} {
		wall, cpu, _ := ldRun(t, addr, sessions, n, 1000, loops)
		report(fmt.Sprintf("spate/%dloop", loops), wall, cpu)
	}
	if src, err := exec.LookPath("smtp-source"); err == nil {
		wall, cpu, _ := ldChild(t, src, "-d", "-s", strconv.Itoa(sessions), "-m", strconv.FormatInt(n, 10), "-l", "1000", addr.String())
		report("smtp-source", wall, cpu)
	} else if _, err := os.Stat("/usr/sbin/smtp-source"); err == nil {
		wall, cpu, _ := ldChild(t, "/usr/sbin/smtp-source", "-d", "-s", strconv.Itoa(sessions), "-m", strconv.FormatInt(n, 10), "-l", "1000", addr.String())
		report("smtp-source", wall, cpu)
	}
	gp := filepath.Join(t.TempDir(), "gopipe")
	build := exec.Command("go", "build", "-o", gp, ".")
	build.Dir = "/work/shared/peers/gopipe"
	if out, err := build.CombinedOutput(); err != nil {
		t.Logf("gopipe not built: %v\n%s", err, out)
		return
	}
	wall, cpu, out := ldChild(t, gp, "-addr", addr.String(), "-c", strconv.Itoa(sessions), "-n", strconv.FormatInt(n, 10), "-size", "1000", "-r", "1")
	if m := ldRateRE.FindSubmatch(out); m == nil {
		t.Fatalf("gopipe output: %s", out)
	}
	report("gopipe", wall, cpu)
}

// ---- 10,000 sessions against a sink answering after 100 ms ----

// TestLatencySinkChild is not a test: run by TestLoadLatency in a child
// process (SPATE_SINK_CHILD=addr,latency), it serves a pipelining sink that
// answers each batch of commands latency after it arrived.
func TestLatencySinkChild(t *testing.T) {
	spec := os.Getenv("SPATE_SINK_CHILD")
	if spec == "" {
		t.Skip("child process only")
	}
	parts := strings.Split(spec, ",")
	addr := parts[0]
	lat, _ := time.ParseDuration(parts[1])
	var tc *tls.Config
	if len(parts) > 2 && parts[2] == "tls" {
		cert, _ := itCert(t)
		tc = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go ldLatencyConn(c, lat, tc)
	}
}

// ldLatencyConn serves one connection; tc enables STARTTLS.
func ldLatencyConn(c net.Conn, lat time.Duration, tc *tls.Config) {
	defer func() { c.Close() }()
	br := bufio.NewReaderSize(c, 4096)
	var out []byte
	out = append(out, "220 sink\r\n"...)
	first := time.Now()
	inData := false
	for {
		if br.Buffered() == 0 && len(out) > 0 {
			if d := lat - time.Since(first); d > 0 {
				time.Sleep(d)
			}
			if _, err := c.Write(out); err != nil {
				return
			}
			out = out[:0]
		}
		line, err := br.ReadSlice('\n')
		if err != nil {
			return
		}
		if len(out) == 0 {
			first = time.Now()
		}
		if inData {
			if len(line) == 3 && line[0] == '.' {
				inData = false
				out = append(out, "250 2.0.0 ok\r\n"...)
			}
			continue
		}
		switch {
		case len(line) >= 4 && (line[0]|0x20) == 'e':
			if tc != nil {
				out = append(out, "250-sink\r\n250-STARTTLS\r\n250-PIPELINING\r\n250 8BITMIME\r\n"...)
			} else {
				out = append(out, "250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n"...)
			}
		case len(line) >= 8 && (line[0]|0x20) == 's' && tc != nil:
			if _, err := c.Write(append(out, "220 go ahead\r\n"...)); err != nil {
				return
			}
			out = out[:0]
			ts := tls.Server(c, tc)
			if ts.Handshake() != nil {
				return
			}
			c, tc = ts, nil
			br = bufio.NewReaderSize(c, 4096)
		case len(line) >= 4 && (line[0]|0x20) == 'd':
			inData = true
			out = append(out, "354 go\r\n"...)
		case len(line) >= 4 && (line[0]|0x20) == 'q':
			c.Write(append(out, "221 bye\r\n"...))
			return
		default:
			out = append(out, "250 ok\r\n"...)
		}
	}
}

// ldLastSinkPID is the process id of the last ldSinkChild.
var ldLastSinkPID int

// ldSinkChild starts the sink in a child process and returns its address.
func ldSinkChild(t *testing.T, lat time.Duration, withTLS bool) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	spec := addr + "," + lat.String()
	if withTLS {
		spec += ",tls"
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestLatencySinkChild$", "-test.timeout=10m")
	cmd.Env = append(os.Environ(), "SPATE_SINK_CHILD="+spec)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ldLastSinkPID = cmd.Process.Pid
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if i > 300 {
			t.Fatal("sink child not listening")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return netip.MustParseAddrPort(addr)
}

// TestLoadTLS compares plaintext and STARTTLS (goroutine driver): msgs/s
// over 50 long sessions, and sessions/s with one message per session.
func TestLoadTLS(t *testing.T) {
	if os.Getenv("SPATE_LOAD") == "" {
		t.Skip("set SPATE_LOAD=1")
	}
	for _, mode := range []string{"plain", "tls-in-loop", "tls-goroutine"} {
		withTLS, gor := mode != "plain", mode == "tls-goroutine"
		addr := ldSinkChild(t, 0, withTLS)
		policy := TLSDisabled
		if withTLS {
			policy = TLSRequired
		}
		// msgs/s: 50 sessions, 20,000 messages.
		f := newLDFeeder(t, 20000, 1000)
		e, err := New(Config{Feeder: f, Reporter: f, Loops: 2, Logf: t.Logf, TLSGoroutine: gor})
		if err != nil {
			t.Fatal(err)
		}
		e.Start()
		sc := &SessionConfig{EHLOName: "spate.bench.test", TLS: policy, Timeouts: DefaultTimeouts()}
		start := time.Now()
		for i := 0; i < 50; i++ {
			e.Dial(Dial{Path: uint64(i), Host: "localhost", Addr: addr, Config: sc})
		}
		select {
		case <-f.doneCh:
		case <-time.After(120 * time.Second):
			t.Fatalf("tls=%v: incomplete %d", withTLS, f.delivered.Load())
		}
		msgRate := 20000 / time.Since(start).Seconds()
		e.Close()
		// sessions/s: 2,000 sessions of one message, 50 at a time.
		f2 := newLDFeeder(t, 2000, 1000)
		rep := &ldRedialer{ldFeeder: f2, left: 2000 - 50}
		e2, err := New(Config{Feeder: f2, Reporter: rep, Loops: 2, Logf: t.Logf, TLSGoroutine: gor})
		if err != nil {
			t.Fatal(err)
		}
		e2.Start()
		sc2 := *sc
		sc2.MaxMessages = 1
		rep.dial = func() { e2.Dial(Dial{Path: 1, Host: "localhost", Addr: addr, Config: &sc2}) }
		start = time.Now()
		for i := 0; i < 50; i++ {
			rep.dial()
		}
		select {
		case <-f2.doneCh:
		case <-time.After(120 * time.Second):
			t.Fatalf("tls=%v: sessions incomplete %d", withTLS, f2.delivered.Load())
		}
		sessRate := 2000 / time.Since(start).Seconds()
		st := e2.Stats()
		e2.Close()
		t.Logf("%-13s %8.0f msg/s (50 sessions)  %6.0f sessions/s (1 msg each)  handshakes %d", mode, msgRate, sessRate, st.TLS)
	}
}

// ldRedialer replaces each closed connection until left runs out.
type ldRedialer struct {
	*ldFeeder
	mu   sync.Mutex
	left int
	dial func()
}

func (r *ldRedialer) ConnClosed(c ConnInfo, err error) {
	r.mu.Lock()
	more := r.left > 0
	r.left--
	r.mu.Unlock()
	if more {
		go r.dial()
	}
}

// TestLoadLatency: SPATE_LOAD_SESSIONS (default 10,000) sessions against a
// sink (child process) answering after 100 ms; reports throughput against
// the latency bound (sessions / 100 ms, one message per round trip), this
// process's RSS growth per session, the CPU of spate and of the sink (both
// share the machine), and read/write syscalls per message. Diagnostics:
// SPATE_LOAD_TRACE=1 logs open/dialing/delivered every 250 ms,
// SPATE_LOAD_HEAPPROFILE=file writes a heap profile near the peak,
// SPATE_LOAD_GOROUTINES=file a goroutine dump after 3 s.
func TestLoadLatency(t *testing.T) {
	if os.Getenv("SPATE_LOAD") == "" {
		t.Skip("set SPATE_LOAD=1")
	}
	sessions := 10000
	if s := os.Getenv("SPATE_LOAD_SESSIONS"); s != "" {
		sessions, _ = strconv.Atoi(s)
	}
	lat := 100 * time.Millisecond
	addrPort := ldSinkChild(t, lat, false)
	addr := addrPort.String()
	total := int64(sessions) * 20 // about 20 round trips per session
	f := newLDFeeder(t, total, 1000)
	e, err := New(Config{Feeder: f, Reporter: f, Loops: 2, DialWorkers: 64, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	runtime.GC()
	rss0 := proctest.SelfRSS()
	sc := &SessionConfig{EHLOName: "spate.bench.test", TLS: TLSDisabled, Timeouts: DefaultTimeouts()}
	sinkPID := ldLastSinkPID
	u0, s0 := proctest.SelfCPU(), proctest.CPU(sinkPID)
	r0, w0 := proctest.SelfSyscalls()
	start := time.Now()
	for i := 0; i < sessions; i++ {
		e.Dial(Dial{Path: uint64(i), Host: "sink", Addr: netip.MustParseAddrPort(addr), Config: sc})
	}
	var allOpen time.Duration // until every dial was enrolled
	trace := os.Getenv("SPATE_LOAD_TRACE") != ""
	gdumped := false
	var peak int64
	var rssPeak int64
	var memAt int64   // open sessions at the last memory snapshot
	var memLog string // that snapshot, logged at the end
	tk := time.NewTicker(250 * time.Millisecond)
	defer tk.Stop()
	timeout := time.After(180 * time.Second)
wait:
	for {
		select {
		case <-f.doneCh:
			break wait
		case <-tk.C:
			st := e.Stats()
			if gpath := os.Getenv("SPATE_LOAD_GOROUTINES"); gpath != "" && time.Since(start) > 3*time.Second && !gdumped {
				gdumped = true
				gf, _ := os.Create(gpath)
				pprof.Lookup("goroutine").WriteTo(gf, 1)
				gf.Close()
			}
			if trace {
				t.Logf("%6.2fs open %5d dialing %5d delivered %7d", time.Since(start).Seconds(), st.Open, st.Dialing, f.delivered.Load())
			}
			if allOpen == 0 && st.Dialing == 0 {
				allOpen = time.Since(start)
			}
			if o := st.Open; o > peak {
				peak = o
				rssPeak = proctest.SelfRSS()
				if o >= int64(sessions)/2 && o >= memAt+int64(sessions)/20 {
					memAt = o
					memLog = ldPeakMem(t, o)
				}
			}
		case <-timeout:
			t.Fatalf("incomplete: delivered %d of %d, stats %+v", f.delivered.Load(), total, e.Stats())
		}
	}
	wall := time.Since(start)
	cpu, sinkCPU := proctest.SelfCPU()-u0, proctest.CPU(sinkPID)-s0
	r1, w1 := proctest.SelfSyscalls()
	rate := float64(total) / wall.Seconds()
	bound := float64(sessions) / lat.Seconds()
	if memLog != "" {
		t.Log(memLog)
	}
	t.Logf("%d sessions, latency %v: %d msgs in %.2fs = %.0f msg/s; latency bound %.0f msg/s (%.0f%%); peak open %d; RSS +%d KB at peak = %.1f KB/session",
		sessions, lat, total, wall.Seconds(), rate, bound, 100*rate/bound, peak, (rssPeak-rss0)>>10, float64(rssPeak-rss0)/1024/float64(max(peak, 1)))
	enrolled := "still dialing at the end"
	if allOpen > 0 {
		enrolled = fmt.Sprintf("all dials enrolled after %.2fs", allOpen.Seconds())
	}
	t.Logf("spate cpu %.2fs (%.1f µs/msg), sink cpu %.2fs (%.1f µs/msg): %.2f of %d cores busy with both; %s; read syscalls %.2f/msg, write(v) %.2f/msg",
		cpu.Seconds(), float64(cpu.Microseconds())/float64(total), sinkCPU.Seconds(), float64(sinkCPU.Microseconds())/float64(total),
		(cpu+sinkCPU).Seconds()/wall.Seconds(), runtime.NumCPU(), enrolled, float64(r1-r0)/float64(total), float64(w1-w0)/float64(total))
	e.Close()

	gp := filepath.Join(t.TempDir(), "gopipe")
	build := exec.Command("go", "build", "-o", gp, ".")
	build.Dir = "/work/shared/peers/gopipe"
	if out, err := build.CombinedOutput(); err != nil {
		t.Logf("gopipe not built: %v\n%s", err, out)
		return
	}
	gs0 := proctest.CPU(sinkPID)
	gwall, gcpu, out := ldChild(t, gp, "-addr", addr, "-c", strconv.Itoa(sessions), "-n", strconv.FormatInt(total, 10), "-size", "1000", "-r", "1", "-timeout", "170s")
	gsink := proctest.CPU(sinkPID) - gs0
	var maxrss int64
	if m := ldRateRE.FindSubmatch(out); m == nil {
		t.Fatalf("gopipe output: %s", out)
	}
	maxrss = ldLastMaxRSS
	t.Logf("gopipe %d sessions: %.0f msg/s; max RSS %d KB = %.1f KB/session (whole process); cpu %.2fs (%.1f µs/msg), sink cpu %.2fs; spate/gopipe msg/s %.2f",
		sessions, float64(total)/gwall.Seconds(), maxrss, float64(maxrss)/float64(sessions),
		gcpu.Seconds(), float64(gcpu.Microseconds())/float64(total), gsink.Seconds(), gwall.Seconds()/wall.Seconds())
}

// ldPeakMem returns the Go runtime's view of memory per open session (the
// caller logs the one taken nearest the peak) and, with
// SPATE_LOAD_HEAPPROFILE=file, writes a heap profile there (pprof
// -sample_index=inuse_space; overwritten at each higher peak). The figures
// are taken without a forced GC (RSS includes garbage not yet collected),
// except the profile's live heap.
func ldPeakMem(t *testing.T, open int64) string {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	per := func(v uint64) float64 { return float64(v) / 1024 / float64(open) }
	msg := fmt.Sprintf("at %d open: HeapAlloc %.2f, HeapInuse %.2f, HeapSys-Released %.2f, StackInuse %.2f, OtherSys %.2f, GCSys %.2f, RSS %.2f (KB per session, process totals)",
		open, per(ms.HeapAlloc), per(ms.HeapInuse), per(ms.HeapSys-ms.HeapReleased), per(ms.StackInuse), per(ms.OtherSys), per(ms.GCSys), per(uint64(proctest.SelfRSS())))
	if path := os.Getenv("SPATE_LOAD_HEAPPROFILE"); path != "" {
		runtime.GC()
		runtime.ReadMemStats(&ms)
		msg += fmt.Sprintf("; live heap after GC %.2f KB/session (profile %s)", per(ms.HeapAlloc), path)
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			t.Fatal(err)
		}
	}
	return msg
}
