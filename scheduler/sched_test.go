package scheduler

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spate-mta/spate/tuning"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.t = c.t.Add(d) }

var t0 = time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)

func mustConfig(t testing.TB, src string) *tuning.Config {
	t.Helper()
	cfg, err := tuning.Parse("test.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestThrottleAccuracy(t *testing.T) {
	for _, tc := range []struct {
		spec string
		over time.Duration
		want int
	}{
		{"100/s", 10 * time.Second, 1000},
		{"60/min", time.Minute, 60},
		{"500/d,max_burst=10", 0, 10},
		{"1,000/h", time.Hour, 2000}, // the hour's allowance at once, then the next hour's
	} {
		spec, err := tuning.ParseThrottleSpec(tc.spec)
		if err != nil {
			t.Fatal(err)
		}
		th := NewThrottle(spec)
		clk := &fakeClock{t: t0}
		n := 0
		for end := t0.Add(tc.over); !clk.t.After(end) && n < 1e6; clk.Advance(time.Millisecond) {
			for {
				ok, _ := th.Allow(clk.t)
				if !ok {
					break
				}
				n++
			}
			if tc.over == 0 {
				break
			}
		}
		if n < tc.want-1 || n > tc.want+1 {
			t.Errorf("%s over %s: got %d; want %d ± 1", tc.spec, tc.over, n, tc.want)
		}
	}
}

func TestRetryScheduleAndExpiry(t *testing.T) {
	cfg := mustConfig(t, `
[default]
retry_interval = "1m"
max_retry_interval = "8m"
max_age = "30m"
`)
	clk := &fakeClock{t: t0}
	s, err := New(cfg, clk, Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	it := &Item{Row: 1, Domain: "x.test", Rcpt: "a@x.test"}
	s.Add(it, []string{"mx.x.test"})
	req, ok := s.NextConnect(clk.t)
	if !ok {
		t.Fatal("no connection requested")
	}
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 8 * time.Minute}
	for i := 0; ; i++ {
		got, _ := s.Take(req.PathID, clk.t)
		if got != it {
			t.Fatalf("#%d: Take got %v; want the item", i, got)
		}
		d := s.Outcome(req.PathID, it, Outcome{Result: Deferred, Code: 451, Enhanced: "4.3.0", Text: "try later"})
		if d.Final {
			// 1+2+4+8+8 = 23 min waited; the next 8 min would pass max_age.
			if d.State != StateExpired || i != 5 {
				t.Fatalf("#%d: got final %v; want expired after 5 retries", i, d.State)
			}
			break
		}
		iv := d.RetryAt.Sub(clk.t)
		if w := want[i]; iv < w*9/10 || iv > w*11/10 {
			t.Fatalf("#%d: retry in %s; want %s ± 10%%", i, iv, w)
		}
		if x, _ := s.Take(req.PathID, clk.t); x != nil {
			t.Fatalf("#%d: item handed out before its retry time", i)
		}
		clk.t = d.RetryAt
	}
	if s.Pending() != 0 {
		t.Fatalf("pending %d after expiry", s.Pending())
	}
}

func TestClassify(t *testing.T) {
	cfg := mustConfig(t, "")
	s, _ := New(cfg, &fakeClock{t: t0}, Options{})
	for i, tc := range []struct {
		code     int
		enhanced string
		text     string
		want     string
	}{
		{550, "5.1.1", "user unknown", "invalid-recipient"},
		{552, "5.2.2", "mailbox full", "mailbox-full"},
		{550, "5.7.1", "message rejected as spam", "policy"},
		{554, "", "something odd", "other"},
	} {
		if got := s.classify.Classify(tc.code, tc.enhanced, tc.text); got != tc.want {
			t.Errorf("#%d: got %q; want %q", i, got, tc.want)
		}
	}
}

func TestSuppressionRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "suppressed.txt")
	s, err := LoadSuppression(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add("Ann@X.test", "invalid-recipient"); err != nil {
		t.Fatal(err)
	}
	s.Add("ann@x.test", "invalid-recipient") // once only
	s.Close()
	s2, err := LoadSuppression(p)
	if err != nil {
		t.Fatal(err)
	}
	if !s2.Has("ANN@x.TEST") || s2.Has("bob@x.test") || s2.Len() != 1 {
		t.Fatalf("reloaded list wrong: len %d", s2.Len())
	}
	os.WriteFile(p, []byte("not-an-address\n"), 0o644)
	if _, err := LoadSuppression(p); err == nil {
		t.Fatal("bad line accepted")
	}
}

func TestWarmupCapsPerDay(t *testing.T) {
	cfg := mustConfig(t, `
[default]
connection_limit = 2
[source.a]
source_address = "127.0.0.1"
warmup = { start = 2026-11-22, caps = [30, 60] }
[source.b]
source_address = "127.0.0.2"
warmup = { start = 2026-11-22, caps = [20, 20] }
[pool.p]
members = [{ source = "a", weight = 1 }, { source = "b", weight = 1 }]
[campaign]
pool = "p"
`)
	clk := &fakeClock{t: t0.Add(time.Hour)}
	s, err := New(cfg, clk, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		s.Add(&Item{Row: i, Domain: "x.test", Rcpt: fmt.Sprintf("u%d@x.test", i)}, []string{"mx.x.test"})
	}
	perDay := func() map[string]int {
		got := map[string]int{}
		e := &simEngine{s: s, clk: clk}
		for step := 0; step < 1000; step++ {
			e.step(func(p *path, it *Item) Outcome {
				got[p.src.src.Name]++
				return Outcome{Result: Delivered, Code: 250}
			})
			clk.Advance(10 * time.Millisecond)
		}
		e.closeAll()
		return got
	}
	d0 := perDay()
	if d0["a"] != 30 || d0["b"] != 20 {
		t.Fatalf("day 0: got %v; want a=30 b=20", d0)
	}
	if s.Pending() != 150 {
		t.Fatalf("capped recipients must wait, not bounce: pending %d; want 150", s.Pending())
	}
	clk.t = t0.Add(24*time.Hour + time.Minute)
	d1 := perDay()
	if d1["a"] != 60 || d1["b"] != 20 {
		t.Fatalf("day 1: got %v; want a=60 b=20", d1)
	}
}

// simEngine is a fake engine: connections that take one recipient per step
// and answer at once with the reply the test scripts.
type simEngine struct {
	s     *Scheduler
	clk   *fakeClock
	conns []uint64
	// peak open connections and per-second sends, per site
	peakConns map[string]int
	open      map[string]int
}

func (e *simEngine) step(answer func(p *path, it *Item) Outcome) {
	now := e.clk.Now()
	for {
		req, ok := e.s.NextConnect(now)
		if !ok {
			break
		}
		e.conns = append(e.conns, req.PathID)
		if e.open != nil {
			e.open[req.Site]++
			if e.open[req.Site] > e.peakConns[req.Site] {
				e.peakConns[req.Site] = e.open[req.Site]
			}
		}
	}
	kept := e.conns[:0]
	for _, id := range e.conns {
		it, wait := e.s.Take(id, now)
		if it == nil && wait == 0 {
			if e.open != nil {
				e.open[e.s.paths[id].site.key]--
			}
			e.s.ConnClosed(id, nil, false)
			continue
		}
		kept = append(kept, id)
		if it != nil {
			e.s.Outcome(id, it, answer(e.s.paths[id], it))
		}
	}
	e.conns = kept
}

func (e *simEngine) closeAll() {
	for _, id := range e.conns {
		if e.open != nil {
			e.open[e.s.paths[id].site.key]--
		}
		e.s.ConnClosed(id, nil, false)
	}
	e.conns = nil
}

// TestSimulatedCampaign: 100,000 recipients over 500 domains; 10 domains share
// one MX set (one site). The shared site never exceeds its limits, a site
// answering 421 [TS04] is suspended by the rule and resumes after it, and the
// other sites keep full speed.
func TestSimulatedCampaign(t *testing.T) {
	cfg := mustConfig(t, `
[default]
connection_limit = 4
max_message_rate = "2000/s"
retry_interval = "2s"
max_retry_interval = "2s"
max_age = "1h"
[site."mx1.shared.test"]
connection_limit = 3
max_message_rate = "500/s"
[[rule]]
name = "ts04"
pattern = '\[TS04\]'
codes = ["421"]
trigger = "3/min"
action = "suspend"
duration = "30s"
`)
	clk := &fakeClock{t: t0}
	s, err := New(cfg, clk, Options{Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	const n, domains = 100_000, 500
	shared := []string{"mx1.shared.test", "mx2.shared.test"}
	for i := 0; i < n; i++ {
		d := i % domains
		dom := fmt.Sprintf("d%d.test", d)
		hosts := []string{"mx." + dom}
		if d < 10 {
			hosts = shared
		}
		s.Add(&Item{Row: i, Domain: dom, Rcpt: fmt.Sprintf("u%d@%s", i, dom)}, hosts)
	}
	sharedSite := tuning.SiteLabel(shared)
	tsSite := tuning.SiteLabel([]string{"mx.d42.test"})
	e := &simEngine{s: s, clk: clk, peakConns: map[string]int{}, open: map[string]int{}}
	perSecond := map[int64]int{} // shared site sends per simulated second
	var tsRejects, tsResumedAt, otherDoneAt time.Duration
	suspendedSeen := false
	for step := 0; step < 200_000 && s.Pending() > 0; step++ {
		now := clk.Now()
		e.step(func(p *path, it *Item) Outcome {
			switch p.site.key {
			case sharedSite:
				perSecond[now.Unix()]++
			case tsSite:
				if now.Sub(t0) < 5*time.Second {
					tsRejects++
					return Outcome{Result: Deferred, Code: 421, Enhanced: "4.7.0", Text: "[TS04] Messages from 127.0.0.1 temporarily deferred"}
				}
				if tsResumedAt == 0 {
					tsResumedAt = now.Sub(t0)
				}
			}
			return Outcome{Result: Delivered, Code: 250}
		})
		if step%100 == 0 {
			for _, st := range s.Snapshot() {
				if st.Site == tsSite && st.SuspendedUntil.After(now) {
					suspendedSeen = true
				}
			}
		}
		if otherDoneAt == 0 && s.sites["mx.d100.test"].queued() == 0 {
			otherDoneAt = clk.Now().Sub(t0)
		}
		if s.Active() == 0 {
			clk.Advance(100 * time.Millisecond) // only waiting recipients: skip ahead
		} else {
			clk.Advance(time.Millisecond)
		}
	}
	if s.Pending() != 0 {
		t.Fatalf("campaign did not finish: %d pending", s.Pending())
	}
	if got := e.peakConns[sharedSite]; got > 3 {
		t.Errorf("shared site peak connections %d; limit 3", got)
	}
	for sec, c := range perSecond {
		if c > 501 {
			t.Errorf("shared site sent %d in second %d; limit 500/s", c, sec)
		}
	}
	if !suspendedSeen {
		t.Errorf("TS04 site never suspended (%d rejects)", tsRejects)
	}
	if tsResumedAt < 30*time.Second {
		t.Errorf("TS04 site resumed after %s; want >= the 30s suspension", tsResumedAt)
	}
	// 200 recipients at 2000/s take ~0.1 s: others are not held up by the
	// suspended or the shared site.
	if otherDoneAt == 0 || otherDoneAt > 2*time.Second {
		t.Errorf("an ordinary site finished at %s; want < 2s", otherDoneAt)
	}
	t.Logf("shared peak conns %d, TS04 rejects %d, resumed at %s, ordinary site done at %s", e.peakConns[sharedSite], tsRejects, tsResumedAt, otherDoneAt)
}

// Sessions poll on replies and engine ticks, not at the instant the next
// event conforms: a 500/s throttle polled every 5 ms must still deliver
// 500/s (a plain GCRA forfeits the lateness and gives 400/s), while a
// throttle idle for a second starts again with no saved-up burst.
func TestThrottleCoarsePolling(t *testing.T) {
	spec, err := tuning.ParseThrottleSpec("500/s")
	if err != nil {
		t.Fatal(err)
	}
	th := NewThrottle(spec)
	clk := &fakeClock{t: t0}
	n := 0
	for end := t0.Add(10 * time.Second); clk.t.Before(end); clk.Advance(5 * time.Millisecond) {
		for {
			ok, _ := th.Allow(clk.t)
			if !ok {
				break
			}
			n++
		}
	}
	if n < 4990 || n > 5011 {
		t.Errorf("500/s polled every 5 ms for 10 s: %d events; want 5000 (-10, +11)", n)
	}
	clk.Advance(time.Second)
	burst := 0
	for {
		ok, _ := th.Allow(clk.t)
		if !ok {
			break
		}
		burst++
	}
	if burst != 1 {
		t.Errorf("after 1 s idle: %d events at once; want 1", burst)
	}
}

// DeferQueued moves a site's queued recipients onto the retry schedule (one
// attempt each) and leaves the one in flight alone.
func TestDeferQueued(t *testing.T) {
	cfg := mustConfig(t, `
[default]
retry_interval = "1m"
max_age = "90s"
`)
	clk := &fakeClock{t: t0}
	s, err := New(cfg, clk, Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		s.Add(&Item{Row: i, Domain: "x.test", Rcpt: fmt.Sprintf("r%d@x.test", i), First: t0}, []string{"mx.x.test"})
	}
	req, ok := s.NextConnect(clk.t)
	if !ok {
		t.Fatal("no connect request")
	}
	inflight, _ := s.Take(req.PathID, clk.t)
	if inflight == nil {
		t.Fatal("Take gave nothing")
	}
	ds := s.DeferQueued(req.PathID, Outcome{Result: Deferred, Code: 451, Enhanced: "4.4.1", Text: "site unreachable", Local: true})
	if len(ds) != 2 {
		t.Fatalf("deferred %d, want 2", len(ds))
	}
	for _, d := range ds {
		if d.Item == inflight || d.Decision.Final || d.Item.Attempts != 1 {
			t.Errorf("row %d: final=%v attempts=%d", d.Item.Row, d.Decision.Final, d.Item.Attempts)
		}
		if w := d.Decision.RetryAt.Sub(t0); w < 54*time.Second || w > 66*time.Second {
			t.Errorf("row %d retries after %v; want 1m ± 10%%", d.Item.Row, w)
		}
	}
	if it, _ := s.Take(req.PathID, clk.t); it != nil {
		t.Errorf("Take after DeferQueued gave row %d", it.Row)
	}
	// Due again after the retry interval; a second deferral passes max_age.
	clk.Advance(70 * time.Second)
	ds = s.DeferQueued(req.PathID, Outcome{Result: Deferred, Code: 451, Enhanced: "4.4.1", Local: true})
	if len(ds) != 2 || !ds[0].Decision.Final || ds[0].Decision.State != StateExpired {
		t.Fatalf("second deferral: %+v; want 2 expired", ds)
	}
}
