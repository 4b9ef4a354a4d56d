package bench

import (
	"context"
	"testing"
	"time"

	"github.com/spate-mta/spate/bench/sink"
)

type realSink struct{ s *sink.Server }

func (r realSink) Addr() string    { return r.s.Addr() }
func (r realSink) Messages() int64 { return r.s.Messages() }
func (r realSink) Close() error    { return r.s.Close() }

func startRealSink(o SinkOptions) (Sink, error) {
	var fs []sink.RateFault
	for _, f := range o.Faults {
		fs = append(fs, sink.RateFault{Domain: f.Domain, Defer: f.Defer, Bounce: f.Bounce, Drop: f.Drop})
	}
	s, err := sink.Start(sink.Config{Addr: "127.0.0.1:0", Loops: 1, StartTLS: o.StartTLS, Latency: o.Latency, Faults: fs, Seed: 3})
	if err != nil {
		return nil, err
	}
	return realSink{s}, nil
}

// TestRunAgainstSinkWithFaults: against bench/sink injecting defers,
// bounces and drops with 5 ms replies, the spate and netsmtp peers finish
// every message, their own counts match the sink's, and some fail.
func TestRunAgainstSinkWithFaults(t *testing.T) {
	cfg := testConfig(t)
	cfg.StartSink = startRealSink
	cfg.Peers = []string{PeerSpate, PeerNetSMTP}
	cfg.N = 300
	cfg.Latency = 5 * time.Millisecond
	cfg.Faults = []Fault{{Domain: "bench.test", Defer: 0.05, Bounce: 0.05, Drop: 0.05}}
	rs, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if !r.Ran() {
			t.Fatalf("%s did not run: %s%s", r.Peer, r.Skipped, r.Err)
		}
		if r.Sent != r.SinkMessages || r.Note != "" {
			t.Errorf("%s: sent %d, sink %d, note %q; want equal counts, no note", r.Peer, r.Sent, r.SinkMessages, r.Note)
		}
		if r.Failed <= 0 || r.Failed > 100 || r.Sent+r.Failed != 300 {
			t.Errorf("%s: sent %d failed %d; want 0 < failed ≤ 100, sum 300", r.Peer, r.Sent, r.Failed)
		}
		if r.P50 < 5*time.Millisecond {
			t.Errorf("%s: p50 %v below the sink's 5 ms reply latency", r.Peer, r.P50)
		}
	}
}

// TestRunAgainstSinkTLS: STARTTLS through bench/sink for both Go peers.
func TestRunAgainstSinkTLS(t *testing.T) {
	cfg := testConfig(t)
	cfg.StartSink = startRealSink
	cfg.Peers = []string{PeerSpate, PeerNetSMTP, PeerGopipe}
	cfg.StartTLS = true
	cfg.N = 100
	rs, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs[:2] {
		if !r.Ran() || r.SinkMessages != 100 {
			t.Errorf("%s: ran %v (%s%s), sink got %d; want 100", r.Peer, r.Ran(), r.Skipped, r.Err, r.SinkMessages)
		}
	}
	if rs[2].Skipped == "" {
		t.Errorf("gopipe with STARTTLS not skipped")
	}
}
