package campaign

import (
	"sync"
	"time"
)

// Progress is a snapshot of a running campaign for displays and metrics.
type Progress struct {
	Read      int64 // recipients read from the list and queued (not counting resumed rows)
	ReadDone  bool
	Delivered int64
	Bounced   int64 // includes expired
	Deferred  int64 // deferral events so far
	InFlight  int64
	Conns     int
	Rate      float64 // delivered per second over the last few seconds
	Elapsed   time.Duration
	Sites     []SiteProgress // busiest first
}

// SiteProgress is one site's line in the live table.
type SiteProgress struct {
	Site           string
	Conns          int
	Sent           int64
	Deferred       int64
	Bounced        int64
	Queued         int
	Rate           float64
	SuspendedUntil time.Time
}

// rateMeter turns counters into recent rates (per site and overall).
type rateMeter struct {
	mu    sync.Mutex
	at    time.Time
	total int64
	sites map[string]int64
	rate  float64
	srate map[string]float64
}

// update records counters at now and returns the rates since the previous
// update (kept until at least 1 s has passed, so frequent callers see
// stable numbers).
func (m *rateMeter) update(now time.Time, total int64, sites map[string]int64) (float64, map[string]float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.at.IsZero() {
		m.at, m.total, m.sites = now, total, sites
		return 0, nil
	}
	dt := now.Sub(m.at).Seconds()
	if dt < 1 {
		return m.rate, m.srate
	}
	m.rate = float64(total-m.total) / dt
	m.srate = make(map[string]float64, len(sites))
	for k, v := range sites {
		m.srate[k] = float64(v-m.sites[k]) / dt
	}
	m.at, m.total, m.sites = now, total, sites
	return m.rate, m.srate
}

// Progress returns a snapshot. Safe to call from any goroutine while Run runs.
func (r *Runner) Progress() Progress {
	now := r.o.Now()
	p := Progress{
		Read: r.total.Load(), ReadDone: r.readEOF.Load(),
		Delivered: r.delivered.Load(), Bounced: r.bounced.Load(), Deferred: r.deferred.Load(), InFlight: r.inflight.Load(),
	}
	if r.summary != nil {
		p.Elapsed = now.Sub(r.summary.Start)
	}
	snap := r.sched.Snapshot()
	sent := make(map[string]int64, len(snap))
	for _, s := range snap {
		sent[s.Site] = s.Sent
		p.Conns += s.Conns
	}
	rate, srates := r.meter.update(now, p.Delivered, sent)
	p.Rate = rate
	for _, s := range snap {
		if s.Conns == 0 && s.Queued == 0 && s.InFlight == 0 && s.Waiting == 0 {
			continue // finished sites drop out of the live table
		}
		p.Sites = append(p.Sites, SiteProgress{Site: s.Site, Conns: s.Conns, Sent: s.Sent, Deferred: s.Deferred,
			Bounced: s.Bounced, Queued: s.Queued, Rate: srates[s.Site], SuspendedUntil: s.SuspendedUntil})
	}
	return p
}
