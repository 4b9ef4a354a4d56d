package campaign

import (
	"context"
	"errors"
	"io"
	"math"
	"net/netip"
	"sort"
	"time"

	"github.com/spate-mta/spate/codec"
	"github.com/spate-mta/spate/engine"
	"github.com/spate-mta/spate/tuning"
)

// PlanOptions configure MakePlan.
type PlanOptions struct {
	List     io.Reader
	ListName string
	Comma    rune
	Config   *tuning.Config
	// Resolver, when set, groups domains into sites by their MX host sets;
	// otherwise each domain is its own site.
	Resolver *engine.Resolver
	// PerConnRate is the messages per second one pipelined connection
	// sustains against the destination (about 1/RTT); default 50.
	PerConnRate float64
	// EngineRate caps the whole campaign (messages per second this machine
	// can push); 0 = no cap.
	EngineRate float64
	// Start is when the campaign would start (warm-up days count from the
	// schedule's start date); default now.
	Start    time.Time
	OnBadRow func(error)
}

// SitePlan is the prediction for one site.
type SitePlan struct {
	Site       string
	Provider   string
	Domains    int
	Recipients int
	Sources    int
	ConnLimit  int     // per source
	Rate       float64 // messages per second for the whole site (all sources)
	Bound      string  // what limits it: "message rate", "connections", "warm-up"
	Duration   time.Duration
}

// Plan is the predicted campaign: per site and overall.
type Plan struct {
	Sites      []SitePlan
	Recipients int
	Domains    int
	BadRows    int
	// Unroutable recipients are in domains that accept no mail (null MX,
	// NXDOMAIN): they bounce at once and take no sending time.
	Unroutable int
	Makespan   time.Duration
	Bound      string // the site or limit that sets the makespan
}

// MakePlan reads the list and predicts, per site, how long delivery takes
// under the configured connection limits, message rates and warm-up caps,
// assuming every recipient is accepted at the first attempt. Sites run in
// parallel, so the makespan is the slowest site (or the engine cap).
func MakePlan(ctx context.Context, o PlanOptions) (*Plan, error) {
	if o.PerConnRate <= 0 {
		o.PerConnRate = 50
	}
	if o.Start.IsZero() {
		o.Start = time.Now()
	}
	lr, err := codec.NewListReader(o.List, codec.ListOptions{Name: o.ListName, Comma: o.Comma, OnBadRow: func(e *codec.RowError) {
		if o.OnBadRow != nil {
			o.OnBadRow(e)
		}
	}})
	if err != nil {
		return nil, err
	}
	perDomain := map[string]int{}
	for {
		rc, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		perDomain[rc.Domain]++
	}
	type site struct {
		hosts   []string
		domains []string
		n       int
	}
	sites := map[string]*site{}
	unroutable := 0
	for dom, n := range perDomain {
		hosts := []string{dom}
		if o.Resolver != nil {
			d, err := o.Resolver.Lookup(ctx, dom)
			var le *engine.LookupError
			switch {
			case err == nil:
				hosts = d.Hosts()
			case errors.Is(err, engine.ErrNullMX) || errors.As(err, &le) && le.Permanent:
				unroutable += n // bounced at once, never queued
				continue
			}
		}
		key := siteKey(hosts, o.Config, dom)
		s := sites[key]
		if s == nil {
			s = &site{hosts: hosts}
			sites[key] = s
		}
		s.domains = append(s.domains, dom)
		s.n += n
	}
	p := &Plan{Domains: len(perDomain), BadRows: lr.Stats().Bad, Unroutable: unroutable}
	sources := planSources(o.Config)
	var sims []*simSite
	var paths []*planPath
	for key, s := range sites {
		sort.Strings(s.domains)
		ss, ps := planSite(o, key, s.domains[0], s.hosts, s.n, sources)
		ss.plan.Domains = len(s.domains)
		sims = append(sims, ss)
		paths = append(paths, ps...)
		p.Recipients += s.n
	}
	simulate(o, sims, paths)
	for _, ss := range sims {
		p.Sites = append(p.Sites, ss.plan)
	}
	sort.Slice(p.Sites, func(i, j int) bool {
		if p.Sites[i].Duration != p.Sites[j].Duration {
			return p.Sites[i].Duration > p.Sites[j].Duration
		}
		return p.Sites[i].Site < p.Sites[j].Site
	})
	if len(p.Sites) > 0 && p.Sites[0].Duration > 0 {
		sp := p.Sites[0] // the slowest site (first by name among equals)
		p.Makespan, p.Bound = sp.Duration, "site "+sp.Site+" ("+sp.Bound+")"
	}
	if o.EngineRate > 0 && p.Bound != "" {
		if d := time.Duration(float64(p.Recipients) / o.EngineRate * float64(time.Second)); d >= p.Makespan-time.Millisecond {
			p.Bound = "engine rate"
		}
	}
	return p, nil
}

// siteKey rolls MX hosts up into a site name the way the scheduler does:
// the sorted host set (or the domain when mx_rollup is off).
func siteKey(hosts []string, cfg *tuning.Config, domain string) string {
	if !cfg.Resolve(tuning.Query{Domain: domain, MXHosts: hosts}).MXRollup {
		return domain
	}
	return tuning.SiteLabel(hosts)
}

// planSources lists the campaign pool's sources (one unnamed source if none).
func planSources(cfg *tuning.Config) []tuning.Source {
	byName := map[string]tuning.Source{}
	for _, s := range cfg.Sources() {
		byName[s.Name] = s
	}
	if pool, ok := cfg.Pool(cfg.CampaignPool()); ok && len(pool.Members) > 0 {
		var out []tuning.Source
		for _, m := range pool.Members {
			if s, ok := byName[m.Source]; ok {
				out = append(out, s)
			}
		}
		if len(out) > 0 {
			return out
		}
	}
	return []tuning.Source{{Address: netip.Addr{}}}
}

// simSite is one site in the simulation: its plan (the output) and the
// recipients still to send.
type simSite struct {
	plan SitePlan
	left float64
	rate float64 // messages per second in the current step (all its paths)
}

// planPath is one egress path (source × site) in the simulation.
type planPath struct {
	site *simSite
	rate float64 // messages per second while the path may send
	now  float64 // its rate in the current step (0 when it may not send)
	warm *tuning.Warmup
	key  string // warm-up counter: source × provider (shared across sites)
}

// planSite works out one site's egress paths: each source of the pool is its
// own path with its own limits.
func planSite(o PlanOptions, key, domain string, hosts []string, n int, sources []tuning.Source) (*simSite, []*planPath) {
	provider := o.Config.ProviderFor(hosts)
	ss := &simSite{plan: SitePlan{Site: key, Provider: provider, Recipients: n, Sources: len(sources)}, left: float64(n)}
	sp := &ss.plan
	var paths []*planPath
	for _, src := range sources {
		st := o.Config.Resolve(tuning.Query{Domain: domain, MXHosts: hosts, Source: src.Name})
		conns := max(st.ConnectionLimit, 1)
		sp.ConnLimit = conns
		pp := &planPath{site: ss, rate: float64(conns) * o.PerConnRate}
		bound := "connections"
		if !st.MaxMessageRate.IsZero() {
			if mr := st.MaxMessageRate.PerSecond(); mr < pp.rate {
				pp.rate, bound = mr, "message rate"
			}
		}
		// Connections end after max_deliveries_per_connection messages and
		// new ones open no faster than max_connection_rate.
		if md := st.MaxDeliveriesPerConnection; md > 0 && !st.MaxConnectionRate.IsZero() {
			if cr := st.MaxConnectionRate.PerSecond() * float64(md); cr < pp.rate {
				pp.rate, bound = cr, "connection rate"
			}
		}
		if w := src.WarmupFor(provider); w != nil {
			pp.warm, pp.key = w, src.Name+"\x00"+w.Provider
		}
		sp.Rate += pp.rate
		sp.Bound = bound
		paths = append(paths, pp)
	}
	return ss, paths
}

// simulate runs every site in parallel as a fluid model: each path sends at
// its rate while its site has recipients left and its source has warm-up cap
// left for the day. A source's daily cap is shared by all the sites it sends
// to (the scheduler counts it per source and provider), so a warming IP
// spends its cap in the first moments of a campaign and the sites fall back
// to their warm sources, exactly as the scheduler does. The engine-wide rate,
// when given, scales every path down in proportion. The model assumes every
// recipient is accepted at the first attempt and connections are already
// open; retries and the connection ramp-up are not in it. Each step runs to
// the next event (a site finishes, a cap runs out, a day ends) and costs
// O(paths + sites).
func simulate(o PlanOptions, sites []*simSite, paths []*planPath) {
	t := o.Start
	capLeft := map[string]float64{} // warm-up key → messages left today
	keyRate := map[string]float64{} // warm-up key → messages per second now
	day := map[string]int{}
	active := 0
	for _, ss := range sites {
		if ss.left > 0 {
			active++
		}
	}
	for step := 0; active > 0 && step < 1_000_000; step++ {
		// Refresh today's caps; find the next day boundary of any schedule.
		next := t.Add(3650 * tuning.Day)
		for _, pp := range paths {
			if pp.warm == nil {
				continue
			}
			c, warm := pp.warm.CapOn(t)
			if warm {
				pp.warm = nil
				continue
			}
			if d := pp.warm.Day(t); day[pp.key] != d+1 {
				day[pp.key], capLeft[pp.key] = d+1, float64(c)
			}
			loc := pp.warm.Start.Location()
			y, m, dd := t.In(loc).Date()
			if mid := time.Date(y, m, dd+1, 0, 0, 0, 0, loc); mid.Before(next) {
				next = mid
			}
		}
		// Rates now: paths with work and cap, scaled to the engine cap.
		var total float64
		for _, pp := range paths {
			pp.now = 0
			if pp.site.left > 0 && (pp.warm == nil || capLeft[pp.key] > 0) {
				pp.now = pp.rate
				total += pp.rate
			}
		}
		scale := 1.0
		if o.EngineRate > 0 && total > o.EngineRate {
			scale = o.EngineRate / total
		}
		clear(keyRate)
		for _, ss := range sites {
			ss.rate = 0
		}
		for _, pp := range paths {
			pp.now *= scale
			pp.site.rate += pp.now
			if pp.warm != nil {
				keyRate[pp.key] += pp.now
			}
		}
		// The next event: a site finishes, a cap runs out, or a day ends.
		dt := next.Sub(t).Seconds()
		for _, ss := range sites {
			if ss.rate > 0 {
				dt = math.Min(dt, ss.left/ss.rate)
			}
		}
		for k, r := range keyRate {
			if r > 0 {
				dt = math.Min(dt, capLeft[k]/r)
			}
		}
		for _, ss := range sites {
			ss.left -= ss.rate * dt
		}
		for k, r := range keyRate {
			capLeft[k] -= r * dt
		}
		t = t.Add(time.Duration(dt * float64(time.Second)))
		for _, pp := range paths {
			if pp.warm != nil && capLeft[pp.key] < 1e-6 {
				capLeft[pp.key] = 0
				if pp.site.left > 1e-6 {
					pp.site.plan.Bound = "warm-up" // the site slows down when this source stops
				}
			}
		}
		for _, ss := range sites {
			if ss.rate > 0 && ss.left <= 1e-6 {
				ss.left = 0
				ss.plan.Duration = max(t.Sub(o.Start), time.Millisecond)
				active--
			}
		}
	}
}
