package campaign

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spate-mta/spate/tuning"
)

func planList(domains []string, per int) string {
	var b strings.Builder
	b.WriteString("email\n")
	for _, d := range domains {
		for i := range per {
			fmt.Fprintf(&b, "u%d@%s\n", i, d)
		}
	}
	return b.String()
}

func mustPlan(t *testing.T, conf string, list string, start time.Time) *Plan {
	t.Helper()
	cfg, err := tuning.Parse("plan.toml", []byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	p, err := MakePlan(context.Background(), PlanOptions{List: strings.NewReader(list), ListName: "l.csv", Config: cfg, PerConnRate: 1000, Start: start})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func near(t *testing.T, what string, got, want time.Duration) {
	t.Helper()
	if d := got - want; d < -10*time.Millisecond || d > 10*time.Millisecond {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
}

const planSources2 = `
[default]
connection_limit = 10
max_message_rate = "100/s"

[source.a]
source_address = "127.0.0.2"
[source.a.warmup]
start = 2026-11-22
caps = [150]

[source.b]
source_address = "127.0.0.3"

[pool.p]
members = [{ source = "a" }, { source = "b" }]

[campaign]
pool = "p"
`

// A warming source's daily cap is shared by every site it sends to: two
// sites each at 100/s per source spend source a's 150 in 0.75 s (75 each),
// then finish their remaining 350 on source b alone at 100/s.
func TestPlanWarmupCapSharedAcrossSites(t *testing.T) {
	start := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	p := mustPlan(t, planSources2, planList([]string{"one.test", "two.test"}, 500), start)
	if len(p.Sites) != 2 || p.Recipients != 1000 {
		t.Fatalf("sites=%d recipients=%d", len(p.Sites), p.Recipients)
	}
	for _, s := range p.Sites {
		near(t, s.Site, s.Duration, 4250*time.Millisecond)
		if s.Bound != "warm-up" || s.Rate != 200 {
			t.Errorf("%s: bound %q rate %v; want warm-up, 200", s.Site, s.Bound, s.Rate)
		}
	}
	near(t, "makespan", p.Makespan, 4250*time.Millisecond)

	// The day after the schedule's last entry the source is warm: 500/200/s.
	p = mustPlan(t, planSources2, planList([]string{"one.test", "two.test"}, 500), start.Add(48*time.Hour))
	near(t, "warm makespan", p.Makespan, 2500*time.Millisecond)
}

// A cap reached before midnight: the site waits for the next day's cap.
func TestPlanWarmupAcrossMidnight(t *testing.T) {
	conf := `
[default]
max_message_rate = "10/s"
[source.a]
source_address = "127.0.0.2"
[source.a.warmup]
start = 2026-11-22
caps = [100, 1000]
[pool.p]
members = [{ source = "a" }]
[campaign]
pool = "p"
`
	start := time.Date(2026, 11, 22, 23, 59, 0, 0, time.UTC)
	p := mustPlan(t, conf, planList([]string{"one.test"}, 1000), start)
	// 100 in 10 s, 50 s to midnight, then 900 at 10/s.
	near(t, "makespan", p.Makespan, 150*time.Second)
}

// Connections that end after max_deliveries_per_connection and reopen within
// max_connection_rate bound the path's rate.
func TestPlanConnectionRateBound(t *testing.T) {
	conf := `
[default]
connection_limit = 20
max_message_rate = "1000/s"
max_connection_rate = "2/s"
max_deliveries_per_connection = 50
`
	p := mustPlan(t, conf, planList([]string{"one.test"}, 1000), time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC))
	if s := p.Sites[0]; s.Bound != "connection rate" || s.Rate != 100 {
		t.Errorf("bound %q rate %v; want connection rate, 100", s.Bound, s.Rate)
	}
	near(t, "makespan", p.Makespan, 10*time.Second)
}

// The engine-wide cap scales every path down and names itself as the bound.
func TestPlanEngineRate(t *testing.T) {
	conf := "[default]\nmax_message_rate = \"100/s\"\n"
	cfg, err := tuning.Parse("plan.toml", []byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	p, err := MakePlan(context.Background(), PlanOptions{List: strings.NewReader(planList([]string{"a.test", "b.test", "c.test"}, 100)),
		Config: cfg, PerConnRate: 1000, EngineRate: 150, Start: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	near(t, "makespan", p.Makespan, 2*time.Second)
	if p.Bound != "engine rate" {
		t.Errorf("bound %q", p.Bound)
	}
}
