package scheduler

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkDecision measures one scheduler decision cycle on a campaign with
// 10,000 active paths: Take a recipient on a path, report a deferral, and the
// retry's promotion back to the ready queue on a later Take. b.N cycles
// rotate over the paths.
func BenchmarkDecision(b *testing.B) {
	cfg := mustConfig(b, `
[default]
connection_limit = 100
retry_interval = "1s"
max_retry_interval = "1s"
max_age = "3650d"
`)
	clk := &fakeClock{t: t0}
	s, err := New(cfg, clk, Options{Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	const paths = 10_000
	ids := make([]uint64, 0, paths)
	for i := 0; i < paths; i++ {
		dom := fmt.Sprintf("d%d.test", i)
		for j := 0; j < 2; j++ {
			s.Add(&Item{Row: i*2 + j, Domain: dom, Rcpt: "u@" + dom}, []string{"mx." + dom})
		}
		req, ok := s.NextConnect(clk.t)
		if !ok {
			b.Fatal("no connection")
		}
		ids = append(ids, req.PathID)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := ids[i%paths]
		if i%paths == 0 {
			clk.Advance(2 * time.Second) // every deferral of the last round is due
		}
		it, _ := s.Take(id, clk.t)
		if it == nil {
			b.Fatalf("#%d: nothing to take", i)
		}
		s.Outcome(id, it, Outcome{Result: Deferred, Code: 451, Local: true})
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}
