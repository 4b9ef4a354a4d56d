package tuning

import (
	"slices"
	"sort"
	"strings"
	"time"
)

// Resolve returns the effective settings for one egress path: the built-in
// defaults, then [default], then the provider whose match_mx suffix matches
// q.MXHosts, then the site named by one of q.MXHosts, then the domain, then
// the source, each layer overriding only the keys it sets. It costs about a
// microsecond and one allocation (BenchmarkResolve): call it when a path is
// created, not per message. Safe for concurrent use.
func (c *Config) Resolve(q Query) Settings {
	s := builtin
	for _, l := range c.layers(q) {
		if l == nil {
			continue
		}
		for i := range fields {
			if l.set[i] {
				fields[i].copy(&s, &l.s)
			}
		}
	}
	return s
}

// Explain returns every effective setting for q, in a fixed order, with the
// layer and file:line that set it ("builtin" and "" when no layer did).
func (c *Config) Explain(q Query) []Field {
	s := builtin
	out := make([]Field, len(fields))
	for i := range fields {
		out[i] = Field{Key: fields[i].key, Layer: "builtin"}
	}
	for _, l := range c.layers(q) {
		if l == nil {
			continue
		}
		for i := range fields {
			if l.set[i] {
				fields[i].copy(&s, &l.s)
				out[i].Layer, out[i].Where = l.name, l.where[i]
			}
		}
	}
	for i := range fields {
		out[i].Value = fields[i].get(&s)
	}
	return out
}

// layers returns the layers that apply to q, lowest first; absent ones are nil.
func (c *Config) layers(q Query) [5]*layer {
	var ls [5]*layer
	ls[0] = c.def
	if p := c.provider(q.MXHosts); p != nil {
		ls[1] = p.layer
	}
	if len(c.sites) > 0 {
		for _, h := range q.MXHosts {
			if l, ok := c.sites[normHost(h)]; ok {
				ls[2] = l
				break
			}
		}
	}
	if len(c.domains) > 0 && q.Domain != "" {
		ls[3] = c.domains[normHost(q.Domain)]
	}
	if q.Source != "" {
		ls[4] = c.srcLayers[q.Source]
	}
	return ls
}

// provider finds the provider of an MX set: the hosts are tried in order and
// the first that matches any provider's suffix decides; among providers
// matching that host the longest suffix wins, then the first in the file.
func (c *Config) provider(hosts []string) *providerDef {
	for _, h := range hosts {
		h = normHost(h)
		var best *providerDef
		bestLen := -1
		for i := range c.providers {
			p := &c.providers[i]
			for _, suf := range p.MXSuffix {
				if matchSuffix(h, suf) && len(suf) > bestLen {
					best, bestLen = p, len(suf)
				}
			}
		}
		if best != nil {
			return best
		}
	}
	return nil
}

// matchSuffix: ".google.com" matches any host below google.com; "google.com"
// matches google.com itself and any host below it.
func matchSuffix(host, suf string) bool {
	if strings.HasPrefix(suf, ".") {
		return strings.HasSuffix(host, suf)
	}
	return host == suf || strings.HasSuffix(host, suf) && host[len(host)-len(suf)-1] == '.'
}

// ProviderFor returns the name of the provider whose match_mx matches the MX
// set, or "".
func (c *Config) ProviderFor(mxHosts []string) string {
	if p := c.provider(mxHosts); p != nil {
		return p.Name
	}
	return ""
}

// Providers returns the providers in file order.
func (c *Config) Providers() []Provider {
	out := make([]Provider, len(c.providers))
	for i, p := range c.providers {
		out[i] = Provider{Name: p.Name, MXSuffix: slices.Clone(p.MXSuffix)}
	}
	return out
}

// SiteLabel returns the rolled-up name of an MX set: its host names,
// lower-cased, without trailing dots, de-duplicated, sorted and joined by
// ",". Domains that share an MX set share a label (and so an egress path);
// the preference order does not matter.
func SiteLabel(mxHosts []string) string {
	hs := make([]string, 0, len(mxHosts))
	for _, h := range mxHosts {
		hs = append(hs, normHost(h))
	}
	sort.Strings(hs)
	hs = slices.Compact(hs)
	return strings.Join(hs, ",")
}

// SiteLabel is the package function SiteLabel, for callers holding a Config.
func (c *Config) SiteLabel(mxHosts []string) string { return SiteLabel(mxHosts) }

// File returns the name the configuration was parsed under.
func (c *Config) File() string { return c.file }

// Sources returns the egress sources in file order. The slice is a copy; the
// Warmup pointers point into it.
func (c *Config) Sources() []Source {
	out := make([]Source, len(c.sources))
	for i, s := range c.sources {
		s.Warmups = slices.Clone(s.Warmups)
		s.Warmup = nil
		for j := range s.Warmups {
			s.Warmups[j].Caps = slices.Clone(s.Warmups[j].Caps)
		}
		for j := range s.Warmups {
			if s.Warmups[j].Provider == "" {
				s.Warmup = &s.Warmups[j]
			}
		}
		if s.Warmup == nil && len(s.Warmups) > 0 {
			s.Warmup = &s.Warmups[0]
		}
		out[i] = s
	}
	return out
}

// Source returns the source with that name.
func (c *Config) Source(name string) (Source, bool) {
	for _, s := range c.Sources() {
		if s.Name == name {
			return s, true
		}
	}
	return Source{}, false
}

// WarmupFor returns the schedule that applies to traffic to provider: the
// provider's own schedule, else the one for all destinations, else nil (warm).
func (s *Source) WarmupFor(provider string) *Warmup {
	var all *Warmup
	for i := range s.Warmups {
		w := &s.Warmups[i]
		if w.Provider == provider && provider != "" {
			return w
		}
		if w.Provider == "" {
			all = w
		}
	}
	if all == nil && len(s.Warmups) == 0 {
		return s.Warmup
	}
	return all
}

// Pool returns the named pool.
func (c *Config) Pool(name string) (Pool, bool) {
	p, ok := c.pools[name]
	if ok {
		p.Members = slices.Clone(p.Members)
	}
	return p, ok
}

// PoolNames returns the pool names in file order.
func (c *Config) PoolNames() []string { return slices.Clone(c.poolNames) }

// CampaignPool returns [campaign] pool; if unset, "default" when such a pool
// exists, else the only pool, else "" (send from the system's default address).
func (c *Config) CampaignPool() string { return c.pool }

// SuppressionFile returns [campaign] suppression_file ("" if unset); Load
// resolves a relative path against the config file's directory.
func (c *Config) SuppressionFile() string { return c.suppress }

// Rules returns the reply rules in file order. Patterns compile (checked at
// load).
func (c *Config) Rules() []Rule {
	out := make([]Rule, len(c.rules))
	for i, r := range c.rules {
		r.Codes = slices.Clone(r.Codes)
		out[i] = r
	}
	return out
}

// BounceRules returns the file's bounce rules followed by the built-in set
// (bounce_rules.toml); the first match wins, and the built-in set ends with a
// catch-all "other".
func (c *Config) BounceRules() []BounceRule { return slices.Clone(c.bounce) }

// CapOn returns the daily cap in force at t: day d counts calendar days from
// Start's date in Start's location (day 0 = Caps[0]; before Start, Caps[0]).
// Past the last entry the source is warm: cap 0, warm true.
func (w *Warmup) CapOn(t time.Time) (cap uint64, warm bool) {
	if w == nil || len(w.Caps) == 0 {
		return 0, true
	}
	d := w.Day(t)
	if d < 0 {
		d = 0
	}
	if d >= len(w.Caps) {
		return 0, true
	}
	return w.Caps[d], false
}

// Day returns the 0-based day index of t in the schedule (negative before
// Start). Days change at midnight in Start's location.
func (w *Warmup) Day(t time.Time) int {
	loc := w.Start.Location()
	sy, sm, sd := w.Start.Date()
	ty, tm, td := t.In(loc).Date()
	a := time.Date(sy, sm, sd, 0, 0, 0, 0, time.UTC)
	b := time.Date(ty, tm, td, 0, 0, 0, 0, time.UTC)
	return int(b.Sub(a) / Day)
}
