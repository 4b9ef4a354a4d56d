package campaign

import (
	"context"
	"io"
	"math"
	"net/netip"
	"sort"
	"strings"
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
	for dom, n := range perDomain {
		hosts := []string{dom}
		if o.Resolver != nil {
			if d, err := o.Resolver.Lookup(ctx, dom); err == nil {
				hosts = d.Hosts()
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
	p := &Plan{Domains: len(perDomain), BadRows: lr.Stats().Bad}
	sources := planSources(o.Config)
	for key, s := range sites {
		sort.Strings(s.domains)
		sp := planSite(o, key, s.domains[0], s.hosts, s.n, sources)
		sp.Domains = len(s.domains)
		p.Sites = append(p.Sites, sp)
		p.Recipients += s.n
		if sp.Duration > p.Makespan {
			p.Makespan, p.Bound = sp.Duration, "site "+sp.Site+" ("+sp.Bound+")"
		}
	}
	if o.EngineRate > 0 {
		if d := time.Duration(float64(p.Recipients) / o.EngineRate * float64(time.Second)); d > p.Makespan {
			p.Makespan, p.Bound = d, "engine rate"
		}
	}
	sort.Slice(p.Sites, func(i, j int) bool {
		if p.Sites[i].Duration != p.Sites[j].Duration {
			return p.Sites[i].Duration > p.Sites[j].Duration
		}
		return p.Sites[i].Site < p.Sites[j].Site
	})
	return p, nil
}

// siteKey rolls MX hosts up into a site name the way the scheduler does:
// the sorted host set (or the domain when mx_rollup is off).
func siteKey(hosts []string, cfg *tuning.Config, domain string) string {
	if !cfg.Resolve(tuning.Query{Domain: domain, MXHosts: hosts}).MXRollup {
		return domain
	}
	h := append([]string(nil), hosts...)
	sort.Strings(h)
	return strings.Join(h, ",")
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

// planSite predicts one site: each source is its own egress path with its own
// limits; the site's rate is their sum; warm-up caps spread the volume over
// days.
func planSite(o PlanOptions, key, domain string, hosts []string, n int, sources []tuning.Source) SitePlan {
	provider := o.Config.ProviderFor(hosts)
	sp := SitePlan{Site: key, Provider: provider, Recipients: n, Sources: len(sources)}
	type path struct {
		rate float64
		warm *tuning.Warmup
	}
	var paths []path
	bound := "message rate"
	for _, src := range sources {
		st := o.Config.Resolve(tuning.Query{Domain: domain, MXHosts: hosts, Source: src.Name})
		conns := st.ConnectionLimit
		if conns <= 0 {
			conns = 1
		}
		sp.ConnLimit = conns
		rate := float64(conns) * o.PerConnRate
		b := "connections"
		if !st.MaxMessageRate.IsZero() {
			if mr := st.MaxMessageRate.PerSecond(); mr < rate {
				rate, b = mr, "message rate"
			}
		}
		bound = b
		paths = append(paths, path{rate: rate, warm: src.WarmupFor(provider)})
		sp.Rate += rate
	}
	// Walk day by day: each path sends at its rate, up to its cap that day.
	remaining := float64(n)
	var elapsed time.Duration
	t := o.Start
	for day := 0; remaining > 0 && day < 3650; day++ {
		dayEnd := time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, t.Location())
		window := dayEnd.Sub(t).Seconds()
		var rate, capped float64
		for _, p := range paths {
			limit := p.rate * window
			if p.warm != nil {
				if c, warm := p.warm.CapOn(t); !warm && float64(c) < limit {
					limit = float64(c)
					bound = "warm-up"
				}
			}
			capped += limit
			rate += p.rate
		}
		if capped >= remaining {
			// Finishes today; paths send in parallel at their rates until
			// their caps: approximate with the aggregate rate.
			secs := remaining / math.Max(rate, 1e-9)
			elapsed += time.Duration(secs * float64(time.Second))
			remaining = 0
			break
		}
		remaining -= capped
		elapsed += dayEnd.Sub(t)
		t = dayEnd
	}
	sp.Bound, sp.Duration = bound, elapsed
	return sp
}
