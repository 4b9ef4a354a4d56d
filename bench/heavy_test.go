package bench

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"testing"
)

// TestHeavyThroughput is the full-size side-by-side run (SPATE_BENCH=1,
// SPATE_BENCH_N messages per peer, default 20,000): 100 sessions, 1 KB.
// against bench/sink. It prints the table and checks that every peer that
// ran delivered all.
func TestHeavyThroughput(t *testing.T) {
	if os.Getenv("SPATE_BENCH") == "" {
		t.Skip("set SPATE_BENCH=1")
	}
	cfg := testConfig(t)
	cfg.Sessions, cfg.Size, cfg.N, cfg.Loops = 100, 1000, 20000, 0
	if s := os.Getenv("SPATE_BENCH_N"); s != "" {
		cfg.N, _ = strconv.Atoi(s)
	}
	cfg.Timeout = 0
	cfg.StartSink = startRealSink
	rs, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	WriteTable(&b, rs)
	t.Logf("\n%s", b.String())
	for _, r := range rs {
		if r.Err != "" {
			t.Errorf("%s failed: %s", r.Peer, r.Err)
		} else if r.Ran() && r.SinkMessages != int64(cfg.N) {
			t.Errorf("%s: sink got %d; want %d", r.Peer, r.SinkMessages, cfg.N)
		}
	}
}
