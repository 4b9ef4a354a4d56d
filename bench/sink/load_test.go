package sink_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spate-mta/spate/bench/sink"
	"github.com/spate-mta/spate/codec"
	"github.com/spate-mta/spate/engine"
	"github.com/spate-mta/spate/internal/proctest"
)

// TestSinkChild is not a test: TestLoadChunking runs it in a child process
// (SPATE_SINK_CHILD=1) to serve bench/sink with CHUNKING offered until its
// stdin closes, so the sink's CPU is not the engine's.
func TestSinkChild(t *testing.T) {
	if os.Getenv("SPATE_SINK_CHILD") == "" {
		t.Skip("child process only")
	}
	srv, err := sink.Start(sink.Config{Chunking: os.Getenv("SPATE_SINK_CHUNKING") != "0", EightBitMIME: true})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("addr", srv.Addr())
	bufio.NewReader(os.Stdin).ReadString('\n')
	srv.Close()
}

type ldSinkProc struct {
	addr netip.AddrPort
	pid  int
}

func startSinkChild(t *testing.T, chunking bool) ldSinkProc {
	cmd := exec.Command(os.Args[0], "-test.run=^TestSinkChild$", "-test.v")
	cmd.Env = append(os.Environ(), "SPATE_SINK_CHILD=1", "SPATE_SINK_CHUNKING="+map[bool]string{true: "1", false: "0"}[chunking])
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Wait() })
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "addr "); ok {
			go func() {
				for sc.Scan() {
				}
			}()
			return ldSinkProc{netip.MustParseAddrPort(a), cmd.Process.Pid}
		}
	}
	t.Fatal("sink child gave no address")
	return ldSinkProc{}
}

// ldFeeder renders a 1 KB template per message into pooled Messages and
// recycles Envelopes (the engine's load_test feeder, here for bench/sink).
type ldFeeder struct {
	tmpl            *codec.Template
	total           int64
	next, delivered atomic.Int64
	failed          atomic.Int64
	pool            sync.Pool
	values          []string
	doneCh          chan struct{}
	once            sync.Once
}

func newLDFeeder(t testing.TB, total int64) *ldFeeder {
	var src bytes.Buffer
	src.WriteString("From: <sender@bench.test>\r\nTo: <{{email}}>\r\nSubject: bench\r\n\r\n")
	for src.Len() < 1000 {
		src.WriteString("XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX\r\n")
	}
	tm, err := codec.CompileTemplate(src.Bytes(), []string{"email"})
	if err != nil {
		t.Fatal(err)
	}
	f := &ldFeeder{tmpl: tm, total: total, values: []string{"user@bench.test"}, doneCh: make(chan struct{})}
	f.pool.New = func() any { return &engine.Envelope{From: "sender@bench.test", Rcpts: []string{"user@bench.test"}} }
	return f
}

func (f *ldFeeder) Next(engine.ConnInfo, time.Time) *engine.Envelope {
	if f.next.Add(1) > f.total {
		return nil
	}
	env := f.pool.Get().(*engine.Envelope)
	m := codec.AcquireMessage()
	if err := f.tmpl.Render(m, f.values, nil); err != nil {
		panic(err)
	}
	env.Body, env.Size = m, m.Len()
	return env
}

func (f *ldFeeder) Outcome(env *engine.Envelope, i int, o engine.Outcome) {
	var d, x int64
	if o.Result == engine.ResultDelivered {
		d, x = f.delivered.Add(1), f.failed.Load()
	} else {
		x, d = f.failed.Add(1), f.delivered.Load()
	}
	if d+x == f.total {
		f.once.Do(func() { close(f.doneCh) })
	}
}

func (f *ldFeeder) Done(env *engine.Envelope)               { env.Body = nil; f.pool.Put(env) }
func (f *ldFeeder) ConnClosed(c engine.ConnInfo, err error) {}

type ldResult struct {
	rate, cpuUS, sinkUS, rw, ww float64
}

func ldEngine(t *testing.T, sp ldSinkProc, sc *engine.SessionConfig, sessions int, n int64) ldResult {
	f := newLDFeeder(t, n)
	e, err := engine.New(engine.Config{Feeder: f, Reporter: f, Loops: 2, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	runtime.GC()
	c0, s0 := proctest.SelfCPU(), proctest.CPU(sp.pid)
	r0, w0 := proctest.SelfSyscalls()
	start := time.Now()
	for i := 0; i < sessions; i++ {
		e.Dial(engine.Dial{Path: uint64(i), Host: "sink", Addr: sp.addr, Config: sc})
	}
	select {
	case <-f.doneCh:
	case <-time.After(120 * time.Second):
		t.Fatalf("incomplete: %d delivered", f.delivered.Load())
	}
	wall := time.Since(start)
	cpu, scpu := proctest.SelfCPU()-c0, proctest.CPU(sp.pid)-s0
	r1, w1 := proctest.SelfSyscalls()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e.Stop(ctx)
	if f.failed.Load() != 0 {
		t.Fatalf("%d failed", f.failed.Load())
	}
	fn := float64(n)
	return ldResult{fn / wall.Seconds(), float64(cpu.Microseconds()) / fn, float64(scpu.Microseconds()) / fn, float64(r1-r0) / fn, float64(w1-w0) / fn}
}

var gopipeRate = regexp.MustCompile(`rate=([0-9.]+)`)

// TestLoadChunking (SPATE_LOAD=1): 100 sessions, 1 KB, 1 recipient,
// SPATE_LOAD_N messages (default 100,000) against bench/sink in a child
// process offering CHUNKING: the engine with BDAT (depth 4 and 8), with
// DATA (Chunking off), and gopipe (DATA), in rotated order over
// SPATE_LOAD_REPEAT rounds (default 3). CPU-µs/msg is the client process's
// user+sys per message; sink µs/msg the sink child's.
func TestLoadChunking(t *testing.T) {
	if os.Getenv("SPATE_LOAD") == "" {
		t.Skip("set SPATE_LOAD=1")
	}
	n := int64(100000)
	if s := os.Getenv("SPATE_LOAD_N"); s != "" {
		n, _ = strconv.ParseInt(s, 10, 64)
	}
	rounds := 3
	if s := os.Getenv("SPATE_LOAD_REPEAT"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	const sessions = 100
	sp := startSinkChild(t, true)
	gp := filepath.Join(t.TempDir(), "gopipe")
	build := exec.Command("go", "build", "-o", gp, ".")
	build.Dir = "/work/shared/peers/gopipe"
	if out, err := build.CombinedOutput(); err != nil {
		t.Logf("gopipe not built: %v\n%s", err, out)
		gp = ""
	}
	base := engine.SessionConfig{EHLOName: "spate.bench.test", TLS: engine.TLSDisabled, Timeouts: engine.DefaultTimeouts()}
	type peer struct {
		name string
		run  func() ldResult
	}
	cfg := func(ch engine.ChunkingPolicy, depth int) *engine.SessionConfig {
		c := base
		c.Chunking, c.PipelineDepth = ch, depth
		return &c
	}
	peers := []peer{
		{"spate BDAT depth 4", func() ldResult { return ldEngine(t, sp, cfg(engine.ChunkingAuto, 4), sessions, n) }},
		{"spate BDAT depth 8", func() ldResult { return ldEngine(t, sp, cfg(engine.ChunkingAuto, 8), sessions, n) }},
		{"spate DATA", func() ldResult { return ldEngine(t, sp, cfg(engine.ChunkingOff, 0), sessions, n) }},
	}
	if gp != "" {
		peers = append(peers, peer{"gopipe DATA", func() ldResult {
			s0 := proctest.CPU(sp.pid)
			start := time.Now()
			cmd := exec.Command(gp, "-addr", sp.addr.String(), "-c", strconv.Itoa(sessions), "-n", strconv.FormatInt(n, 10), "-size", "1000", "-r", "1")
			out, err := cmd.CombinedOutput()
			if err != nil || gopipeRate.FindSubmatch(out) == nil {
				t.Fatalf("gopipe: %v\n%s", err, out)
			}
			wall := time.Since(start)
			cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
			fn := float64(n)
			return ldResult{fn / wall.Seconds(), float64(cpu.Microseconds()) / fn, float64((proctest.CPU(sp.pid) - s0).Microseconds()) / fn, 0, 0}
		}})
	}
	res := make([][]ldResult, len(peers))
	for r := 0; r < rounds; r++ {
		for k := range peers {
			i := (k + r) % len(peers)
			res[i] = append(res[i], peers[i].run())
		}
	}
	for i, p := range peers {
		rs := res[i]
		med := func(get func(ldResult) float64) float64 {
			v := make([]float64, len(rs))
			for j, r := range rs {
				v[j] = get(r)
			}
			for a := range v {
				for b := a + 1; b < len(v); b++ {
					if v[b] < v[a] {
						v[a], v[b] = v[b], v[a]
					}
				}
			}
			return v[len(v)/2]
		}
		t.Logf("%-20s %8.0f msg/s  %5.2f CPU-µs/msg  sink %5.2f µs/msg  reads/msg %.2f writes/msg %.2f (medians of %d)", p.name,
			med(func(r ldResult) float64 { return r.rate }), med(func(r ldResult) float64 { return r.cpuUS }),
			med(func(r ldResult) float64 { return r.sinkUS }), med(func(r ldResult) float64 { return r.rw }),
			med(func(r ldResult) float64 { return r.ww }), len(rs))
	}
}
