package scenarios

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spate-mta/spate/bench"
)

func TestSelect(t *testing.T) {
	all, err := Select("all")
	if err != nil || len(all) != 6 {
		t.Fatalf("all: %d scenarios, %v; want 6", len(all), err)
	}
	want := []string{"throughput-1k", "chunking-1k", "large-50k", "latency-10k", "tls", "faults"}
	if !reflect.DeepEqual(Names(), want) {
		t.Fatalf("Names() = %q; want %q", Names(), want)
	}
	two, err := Select(" tls, faults ")
	if err != nil || len(two) != 2 || two[0].Name != "tls" || two[1].Name != "faults" {
		t.Fatalf("tls,faults: %+v %v", two, err)
	}
	for _, bad := range []string{"", ",", "tls,nope", "ALL"} {
		if _, err := Select(bad); err == nil {
			t.Errorf("Select(%q) succeeded; want an error", bad)
		}
	}
}

func get(t *testing.T, name string) Scenario {
	t.Helper()
	s, err := Select(name)
	if err != nil {
		t.Fatal(err)
	}
	return s[0]
}

func TestScenarioParameters(t *testing.T) {
	base := bench.Config{Peers: []string{"spate"}, Timeout: time.Minute}
	c := get(t, "throughput-1k").Config(base, nil)
	if c.Sessions != 100 || c.Size != 1000 || c.N != DefaultN || c.StartTLS || c.Latency != 0 || c.Faults != nil {
		t.Errorf("throughput-1k: %+v", c)
	}
	if c.Timeout != time.Minute || !reflect.DeepEqual(c.Peers, []string{"spate"}) {
		t.Errorf("base options lost: %+v", c)
	}
	if c := get(t, "large-50k").Config(base, nil); c.Size != 50000 {
		t.Errorf("large-50k: size %d", c.Size)
	}
	c = get(t, "latency-10k").Config(base, nil)
	if c.Sessions != 10000 || c.Latency != 100*time.Millisecond {
		t.Errorf("latency-10k: %+v", c)
	}
	// Bounded so that it ends in under a minute per peer: at about five
	// 100 ms round trips per message (lock-step net/smtp, the slowest),
	// plus greeting and EHLO, each session must carry at most a few messages.
	if perSession := c.N / c.Sessions; perSession > 4 {
		t.Errorf("latency-10k: %d messages per session", perSession)
	}
	if c := get(t, "tls").Config(base, nil); !c.StartTLS {
		t.Errorf("tls: StartTLS off")
	}
	c = get(t, "faults").Config(base, nil)
	if len(c.Faults) != 1 || c.Faults[0] != (bench.Fault{Domain: "*", Defer: 0.05, Bounce: 0.02, Drop: 0.01}) {
		t.Errorf("faults: %+v", c.Faults)
	}
	// --n and explicit overrides win.
	base.N = 123
	c = get(t, "latency-10k").Config(base, func(c *bench.Config) { c.Sessions = 7 })
	if c.N != 123 || c.Sessions != 7 || c.Latency != 100*time.Millisecond {
		t.Errorf("overrides: %+v", c)
	}
}

// TestRunRecordsSinkFailure: a scenario whose sink does not start is kept
// with its error, and the next one still runs.
func TestRunRecordsSinkFailure(t *testing.T) {
	calls := 0
	base := bench.Config{Peers: []string{"gopipe"}, GopipeDir: "/nonexistent", WorkDir: t.TempDir(),
		StartSink: func(o bench.SinkOptions) (bench.Sink, error) {
			calls++
			return nil, context.DeadlineExceeded
		}}
	out := Run(context.Background(), []Scenario{get(t, "tls"), get(t, "faults")}, base, nil)
	if len(out) != 2 || calls != 2 {
		t.Fatalf("%d results, %d sink starts; want 2, 2", len(out), calls)
	}
	for _, sc := range out {
		if !strings.Contains(sc.Err, "deadline") {
			t.Errorf("%s: Err %q; want the sink's error", sc.Name, sc.Err)
		}
	}
}
