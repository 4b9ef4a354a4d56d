package sink_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spate-mta/spate/bench/sink"
	"github.com/spate-mta/spate/codec"
	"github.com/spate-mta/spate/engine"
)

// The engine against the sink, with and without CHUNKING (bench imports
// engine, never the reverse, so these tests live here).

// egFeeder hands out prepared envelopes and records outcomes.
type egFeeder struct {
	mu       sync.Mutex
	q        []*engine.Envelope
	outcomes map[string]engine.Outcome // "id.i"
	done     int
	closed   []error
	all      chan struct{}
	total    int
	redial   func() // after a connection ends while envelopes wait
}

func (f *egFeeder) Next(engine.ConnInfo, time.Time) *engine.Envelope {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.q) == 0 {
		return nil
	}
	e := f.q[0]
	f.q = f.q[1:]
	return e
}

func (f *egFeeder) Outcome(env *engine.Envelope, i int, o engine.Outcome) {
	f.mu.Lock()
	f.outcomes[fmt.Sprintf("%d.%d", env.ID, i)] = o
	f.mu.Unlock()
}

func (f *egFeeder) Done(env *engine.Envelope) {
	f.mu.Lock()
	f.done++
	if f.done == f.total {
		close(f.all)
	}
	f.mu.Unlock()
}

func (f *egFeeder) ConnClosed(c engine.ConnInfo, err error) {
	f.mu.Lock()
	f.closed = append(f.closed, err)
	more, redial := len(f.q) > 0, f.redial
	f.mu.Unlock()
	if more && redial != nil {
		go redial()
	}
}

// egBody returns message i as DATA segments (dot-stuffed, ending ".\r\n")
// and its plain content: some lines start with a dot.
func egBody(i int) ([][]byte, []byte) {
	var p bytes.Buffer
	fmt.Fprintf(&p, "Subject: %d\r\n\r\n.leading dot %d\r\n", i, i)
	for p.Len() < 300+i%900 {
		fmt.Fprintf(&p, "line %d %s\r\n", p.Len(), strings.Repeat("y", 30))
		if p.Len()%5 == 0 {
			p.WriteString(".\r\n..\r\n")
		}
	}
	plain := bytes.Clone(p.Bytes())
	var st codec.Stuffer
	wire := st.Append(nil, plain)
	k := len(wire) / 2
	return [][]byte{wire[:k], wire[k:], []byte(".\r\n")}, plain
}

// egRun sends n messages with rcpts recipients each over conns
// connections to srv; rcptName names recipient r of message i.
func egRun(t *testing.T, srv *sink.Server, sc *engine.SessionConfig, conns, n int, rcptName func(i, r int) string, rcpts int) (*egFeeder, map[uint64][]byte) {
	t.Helper()
	f := &egFeeder{outcomes: map[string]engine.Outcome{}, all: make(chan struct{}), total: n}
	plains := map[uint64][]byte{}
	for i := 0; i < n; i++ {
		segs, plain := egBody(i)
		m := codec.AcquireMessage()
		m.Segs = append(m.Segs, segs...)
		env := &engine.Envelope{From: "a@s.test", Body: m, Size: len(segs[0]) + len(segs[1]) + 3, ID: uint64(i)}
		for r := 0; r < rcpts; r++ {
			env.Rcpts = append(env.Rcpts, rcptName(i, r))
		}
		f.q = append(f.q, env)
		plains[uint64(i)] = plain
	}
	e, err := engine.New(engine.Config{Feeder: f, Reporter: f, Loops: 2, Tick: 10 * time.Millisecond, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	addr := netip.MustParseAddrPort(srv.Addr())
	f.mu.Lock()
	f.redial = func() { e.Dial(engine.Dial{Path: 9, Host: "sink", Addr: addr, Config: sc}) }
	f.mu.Unlock()
	for c := 0; c < conns; c++ {
		e.Dial(engine.Dial{Path: uint64(c % 5), Host: "sink", Addr: addr, Config: sc})
	}
	select {
	case <-f.all:
	case <-time.After(60 * time.Second):
		t.Fatalf("incomplete: %d of %d done", f.done, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	return f, plains
}

// TestEngineChunking: 3,000 messages over 30 connections, 3 recipients
// each, one in 7 messages with a refused recipient (550 or 450) and one in
// 11 with all refused: the outcomes are the same with BDAT (pipelined, and
// without PIPELINING) as with DATA, and every accepted message arrives
// once, byte for byte, with exactly its accepted recipients.
func TestEngineChunking(t *testing.T) {
	name := func(i, r int) string {
		switch {
		case i%11 == 0:
			return fmt.Sprintf("permfail@r%d.%d.test", i, r)
		case i%7 == 0 && r == 1:
			return fmt.Sprintf("%s@r%d.%d.test", []string{"permfail", "tempfail"}[i%2], i, r)
		}
		return fmt.Sprintf("u@r%d.%d.test", i, r)
	}
	const n, rcpts = 3000, 3
	var ref map[string]engine.Outcome
	for _, tc := range []struct {
		name     string
		sink     sink.Config
		chunking engine.ChunkingPolicy
		noPipe   bool
		bdat     bool
	}{
		{"data", sink.Config{}, engine.ChunkingAuto, false, false},
		{"default-off", sink.Config{Chunking: true}, engine.ChunkingOff, false, false},
		{"bdat-pipelined", sink.Config{Chunking: true}, engine.ChunkingAuto, false, true},
		{"bdat-nopipelining", sink.Config{Chunking: true, NoPipelining: true}, engine.ChunkingAuto, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.sink
			cfg.Record, cfg.Loops = true, 1
			srv, err := sink.Start(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			sc := &engine.SessionConfig{EHLOName: "c.test", TLS: engine.TLSDisabled, Chunking: tc.chunking, PipelineDepth: 6}
			f, plains := egRun(t, srv, sc, 30, n, name, rcpts)
			for _, err := range f.closed {
				if err != nil {
					t.Fatalf("a connection ended with %v", err)
				}
			}
			got := map[string]engine.Outcome{}
			delivered := map[uint64][]string{}
			for k, o := range f.outcomes {
				o.Text, o.Host, o.Source, o.Enhanced = "", "", netip.Addr{}, codec.EnhancedCode{}
				if o.Result == engine.ResultDelivered {
					o.Code = 250
					var id uint64
					var r int
					fmt.Sscanf(k, "%d.%d", &id, &r)
					delivered[id] = append(delivered[id], name(int(id), r))
				}
				got[k] = o
			}
			if len(got) != n*rcpts {
				t.Fatalf("%d outcomes; want %d", len(got), n*rcpts)
			}
			if ref == nil {
				ref = got
			} else {
				for k, o := range ref {
					if got[k] != o {
						t.Fatalf("recipient %s: %+v; DATA run gave %+v", k, got[k], o)
					}
				}
			}
			rec := srv.Received()
			if len(rec) != len(delivered) {
				t.Fatalf("sink accepted %d messages; the engine reported %d delivered", len(rec), len(delivered))
			}
			for _, m := range rec {
				var id uint64
				fmt.Sscanf(string(m.Data), "Subject: %d", &id)
				if !bytes.Equal(m.Data, plains[id]) {
					t.Fatalf("message %d differs:\ngot  %q\nwant %q", id, m.Data, plains[id])
				}
				want := delivered[id]
				if strings.Join(m.Rcpts, ",") != strings.Join(sortedLike(want, m.Rcpts), ",") || len(want) != len(m.Rcpts) {
					t.Fatalf("message %d: sink recipients %q; engine delivered %q", id, m.Rcpts, want)
				}
			}
			st := srv.Stats()
			// BDAT octets are the plain content; DATA adds stuffing and ".\r\n".
			var plainBytes int64
			for _, m := range rec {
				plainBytes += int64(len(m.Data))
			}
			if tc.bdat != (st.Bytes == plainBytes) {
				t.Fatalf("sink bytes %d, plain %d: BDAT used = %v; want %v", st.Bytes, plainBytes, st.Bytes == plainBytes, tc.bdat)
			}
		})
	}
}

// sortedLike returns want in the order of got when they hold the same set.
func sortedLike(want, got []string) []string {
	set := map[string]bool{}
	for _, w := range want {
		set[w] = true
	}
	for _, g := range got {
		if !set[g] {
			return want
		}
	}
	return got
}

// TestEngineChunkingDrop: the sink closes during BDAT bodies (drop-in-data@
// and a 5 % drop rate): the dropped transactions and those pipelined
// behind them are deferred, never reported delivered, and every message the
// sink accepted was reported delivered.
func TestEngineChunkingDrop(t *testing.T) {
	srv, err := sink.Start(sink.Config{Chunking: true, Record: true, Loops: 1,
		Faults: []sink.RateFault{{Domain: "drop.test", Drop: 0.05}}, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	name := func(i, r int) string {
		if i%50 == 0 {
			return fmt.Sprintf("drop-in-data@r%d.test", i)
		}
		return fmt.Sprintf("u%d@drop.test", i)
	}
	sc := &engine.SessionConfig{EHLOName: "c.test", TLS: engine.TLSDisabled, Chunking: engine.ChunkingAuto, PipelineDepth: 4}
	f, _ := egRun(t, srv, sc, 10, 1000, name, 1)
	var delivered, deferred int
	for _, o := range f.outcomes {
		switch o.Result {
		case engine.ResultDelivered:
			delivered++
		case engine.ResultDeferred:
			deferred++
			if !o.Local {
				t.Fatalf("deferral not local: %+v", o)
			}
		default:
			t.Fatalf("unexpected outcome %+v", o)
		}
	}
	if int64(delivered) != srv.Messages() || deferred < 20 || delivered+deferred != 1000 {
		t.Fatalf("delivered %d, deferred %d, sink accepted %d", delivered, deferred, srv.Messages())
	}
}
