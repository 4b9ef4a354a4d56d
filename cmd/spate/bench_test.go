package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"strings"
	"testing"
	"time"

	"github.com/spate-mta/spate/bench"
	"github.com/spate-mta/spate/bench/sink"
)

// TestBenchSpateSend runs the spate-send peer (the real `spate send`, the
// binary TestMain built) against bench/sink in this process: the sink
// accepts exactly N messages, spread over the generated list's domains as
// the list has them, and the peer has a CPU time and peak RSS of its own.
// With chunking the same campaign goes out with BDAT.
func TestBenchSpateSend(t *testing.T) {
	const n, domains = 300, 20
	var want bytes.Buffer
	if err := bench.WriteSendList(&want, n, domains); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&want).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	wantDom := map[string]int64{}
	for _, r := range rows[1:] {
		_, d, _ := strings.Cut(r[0], "@")
		wantDom[d]++
	}
	if len(wantDom) < 10 {
		t.Fatalf("the list has %d domains; want at least 10", len(wantDom))
	}
	for _, chunking := range []bool{false, true} {
		var srv *sink.Server
		cfg := bench.Config{
			Sessions: 4, N: n, Size: 800, Rcpts: 1, Loops: 1, Domains: domains, Chunking: chunking,
			Timeout: 30 * time.Second, Peers: []string{bench.PeerSpateSend}, Send: []string{spateBin, "send"},
			SelfEnv: cleanEnv(), WorkDir: t.TempDir(), Logf: t.Logf,
			StartSink: func(o bench.SinkOptions) (bench.Sink, error) {
				s, err := sink.Start(sink.Config{Addr: "127.0.0.1:0", Loops: 1, Chunking: o.Chunking, EightBitMIME: true, Record: true})
				srv = s
				return benchSink{s}, err
			},
		}
		rs, err := bench.Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		r := rs[0]
		if !r.Ran() {
			t.Fatalf("chunking %v: spate-send did not run: %s%s", chunking, r.Skipped, r.Err)
		}
		if r.SinkMessages != n || r.Sent != n || r.Failed != 0 || r.Note != "" {
			t.Errorf("chunking %v: sink %d, sent %d, failed %d, note %q; want %d, %d, 0, none", chunking, r.SinkMessages, r.Sent, r.Failed, r.Note, n, n)
		}
		if r.CPU <= 0 || r.MaxRSS <= 0 || r.Rate() <= 0 || r.HasLatency() {
			t.Errorf("chunking %v: cpu %v rss %d rate %v latency %v; want > 0 and no latency", chunking, r.CPU, r.MaxRSS, r.Rate(), r.HasLatency())
		}
		st := srv.Stats()
		if len(st.Domains) != len(wantDom) {
			t.Errorf("chunking %v: sink saw %d domains; want %d", chunking, len(st.Domains), len(wantDom))
		}
		for d, c := range wantDom {
			if st.Domains[d] != c {
				t.Errorf("chunking %v: %s: sink got %d; want %d", chunking, d, st.Domains[d], c)
			}
		}
		if st.Connections > 4+2 {
			t.Errorf("chunking %v: %d connections for 4 sessions", chunking, st.Connections)
		}
		// Merge fields rendered per recipient; BDAT shows in the byte count
		// (the chunks' octets are the message; DATA adds the terminator).
		var msgBytes int64
		for _, m := range srv.Received() {
			msgBytes += int64(len(m.Data))
			if len(m.Rcpts) != 1 || !bytes.Contains(m.Data, []byte("<"+m.Rcpts[0]+">")) || bytes.Contains(m.Data, []byte("{{")) ||
				len(m.Data) < cfg.Size {
				t.Fatalf("chunking %v: message to %q not rendered for its recipient:\n%s", chunking, m.Rcpts, m.Data)
			}
		}
		if bdat := st.Bytes == msgBytes; bdat != chunking {
			t.Errorf("chunking %v: sink counted %d bytes for %d message bytes (BDAT %v)", chunking, st.Bytes, msgBytes, bdat)
		}
	}
}
