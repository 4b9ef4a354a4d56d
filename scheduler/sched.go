package scheduler

import (
	"container/heap"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/spate-mta/spate/tuning"
)

// Clock gives the time; tests use a fake one.
type Clock interface{ Now() time.Time }

// Options configure a Scheduler.
type Options struct {
	// Pool names the campaign's source pool ("" = the config's campaign pool;
	// with no pool at all, one unnamed source lets the kernel pick).
	Pool string
	// Seed makes retry jitter reproducible.
	Seed uint64
}

// Result is what the engine says happened to one recipient.
type Result uint8

const (
	Delivered Result = iota + 1
	Deferred
	Bounced
)

// Outcome is one recipient's result as the scheduler needs it.
type Outcome struct {
	Result   Result
	Code     int
	Enhanced string // "4.7.0" or ""
	Text     string
	// Local marks outcomes spate decided itself (timeouts, dropped
	// connections, local SIZE checks): they never feed the reply rules.
	Local bool
}

// State is a recipient's state after an outcome.
type State uint8

const (
	StateDeferred   State = iota + 1 // will retry at Decision.RetryAt
	StateDelivered                   // final
	StateBounced                     // final
	StateExpired                     // final: deferred past max_age
	StateSuppressed                  // final: on the suppression list
)

var stateNames = [...]string{"", "deferred", "delivered", "bounced", "expired", "suppressed"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// Decision is what the scheduler made of an outcome.
type Decision struct {
	Final   bool
	State   State
	Class   string // bounce class for bounced/expired
	RetryAt time.Time
	Rule    string // the reply rule that fired, if any
}

// Item is one recipient. The caller fills Row, Domain, Rcpt and Tag; the
// scheduler owns the rest. An Item is handed out by Take to one connection at
// a time and must be reported with Outcome exactly once per Take.
type Item struct {
	Row      int
	Domain   string
	Rcpt     string
	Tag      any
	Attempts int
	First    time.Time

	site      *site
	notBefore time.Time
	heapIdx   int
}

// ConnectRequest asks the engine to open one connection on a path.
type ConnectRequest struct {
	PathID   uint64
	Source   tuning.Source
	Site     string
	Provider string
	MXHosts  []string
	Settings tuning.Settings
}

// SiteStats is one site's live numbers for the operator display.
type SiteStats struct {
	Site           string
	Conns          int
	Queued         int // ready now
	Waiting        int // deferred, waiting for their retry
	InFlight       int
	Sent           int64 // delivered
	Deferred       int64 // deferral events
	Bounced        int64
	Limit          int // current adaptive connection limit (sum over paths)
	SuspendedUntil time.Time
}

// Scheduler holds the per-site queues and per-path limits of one campaign.
// It is safe for concurrent use: one mutex guards all state (decisions are
// short and never call out while holding it).
type Scheduler struct {
	mu       sync.Mutex
	cfg      *tuning.Config
	clock    Clock
	sources  []*source
	sites    map[string]*site
	active   []*site // sites with ready or waiting work, round-robin order
	cursor   int
	paths    map[uint64]*path
	rules    []rule
	classify *tuning.BounceClassifier
	rng      *rand.Rand

	ready, waiting, inflight int
}

type source struct {
	src    tuning.Source
	weight int
	// sent counts messages taken per provider on day `day` (warm-up).
	day  int
	sent map[string]uint64
}

type site struct {
	key      string
	hosts    []string
	domain   string // first domain seen, for settings layers
	provider string
	ready    []*Item // FIFO; head at readyHead
	head     int
	retry    retryHeap
	paths    []*path
	inflight int
	conns    int
	isActive bool
	sent     int64
	deferred int64
	bounced  int64
}

type path struct {
	id       uint64
	site     *site
	src      *source
	settings tuning.Settings
	conns    int
	limit    float64 // adaptive connection limit in [1, settings.ConnectionLimit]
	msgRate  Throttle
	connRate Throttle

	suspendedUntil time.Time
	slowUntil      time.Time
	slowRate       Throttle
	ruleHits       []Throttle // per rule: trigger counters
}

type rule struct {
	tuning.Rule
	re    *regexp.Regexp
	codes []string
}

// New builds a scheduler for cfg. The pool's sources are resolved here; an
// unknown pool is an error.
func New(cfg *tuning.Config, clock Clock, opts Options) (*Scheduler, error) {
	if cfg == nil {
		return nil, errors.New("scheduler: nil config")
	}
	s := &Scheduler{
		cfg: cfg, clock: clock,
		sites: make(map[string]*site), paths: make(map[uint64]*path),
		classify: tuning.NewBounceClassifier(cfg.BounceRules()),
		rng:      rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
	}
	pool := opts.Pool
	if pool == "" {
		pool = cfg.CampaignPool()
	}
	if pool != "" {
		p, ok := cfg.Pool(pool)
		if !ok {
			return nil, fmt.Errorf("scheduler: unknown pool %q", pool)
		}
		for _, m := range p.Members {
			src, ok := cfg.Source(m.Source)
			if !ok {
				return nil, fmt.Errorf("scheduler: pool %q: unknown source %q", pool, m.Source)
			}
			s.sources = append(s.sources, &source{src: src, weight: max(m.Weight, 1), sent: map[string]uint64{}})
		}
	}
	if len(s.sources) == 0 {
		s.sources = []*source{{weight: 1, sent: map[string]uint64{}}}
	}
	for _, r := range cfg.Rules() {
		cr := rule{Rule: r, codes: r.Codes}
		if r.Pattern != "" {
			re, err := regexp.Compile(r.Pattern)
			if err != nil {
				return nil, fmt.Errorf("scheduler: rule %q: %w", r.Name, err)
			}
			cr.re = re
		}
		s.rules = append(s.rules, cr)
	}
	return s, nil
}

// siteKeyFor rolls MX hosts up into a site key (mx_rollup) or uses the domain.
func (s *Scheduler) siteKeyFor(domain string, hosts []string) string {
	if len(hosts) == 0 {
		return domain
	}
	if !s.cfg.Resolve(tuning.Query{Domain: domain, MXHosts: hosts}).MXRollup {
		return domain
	}
	return tuning.SiteLabel(hosts)
}

// Add queues a recipient whose domain resolved to mxHosts.
func (s *Scheduler) Add(it *Item, mxHosts []string) {
	key := s.siteKeyFor(it.Domain, mxHosts)
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.sites[key]
	if st == nil {
		st = s.newSite(key, it.Domain, mxHosts)
	}
	if it.First.IsZero() {
		it.First = s.clock.Now()
	}
	it.site = st
	st.ready = append(st.ready, it)
	s.ready++
	s.activate(st)
}

func (s *Scheduler) newSite(key, domain string, hosts []string) *site {
	st := &site{key: key, hosts: append([]string(nil), hosts...), domain: domain, provider: s.cfg.ProviderFor(hosts)}
	for _, src := range s.sources {
		set := s.cfg.Resolve(tuning.Query{Domain: domain, MXHosts: hosts, Source: src.src.Name})
		id := xxhash.Sum64String(src.src.Name + "\x00" + key)
		p := &path{
			id: id, site: st, src: src, settings: set,
			msgRate: NewThrottle(set.MaxMessageRate), connRate: NewThrottle(set.MaxConnectionRate),
			ruleHits: make([]Throttle, len(s.rules)),
		}
		p.limit = float64(max(set.ConnectionLimit, 1))
		for i, r := range s.rules {
			p.ruleHits[i] = NewThrottle(tuning.ThrottleSpec{Limit: r.Trigger.Limit, Period: r.Trigger.Period, MaxBurst: r.Trigger.Limit})
		}
		st.paths = append(st.paths, p)
		s.paths[id] = p
	}
	s.sites[key] = st
	return st
}

func (s *Scheduler) activate(st *site) {
	if !st.isActive {
		st.isActive = true
		s.active = append(s.active, st)
	}
}

// promote moves st's due retries to its ready queue.
func (s *Scheduler) promote(st *site, now time.Time) {
	for st.retry.Len() > 0 && !st.retry[0].notBefore.After(now) {
		it := heap.Pop(&st.retry).(*Item)
		st.ready = append(st.ready, it)
		s.waiting--
		s.ready++
	}
}

func (st *site) queued() int { return len(st.ready) - st.head }

// NextConnect returns the next connection to open, round-robin over sites
// with ready work, within each path's connection limit (adaptive),
// max_connection_rate, suspension and warm-up cap. The connection counts as
// open from now until ConnClosed.
func (s *Scheduler) NextConnect(now time.Time) (ConnectRequest, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.active)
	for i := 0; i < n; i++ {
		if s.cursor >= len(s.active) {
			s.cursor = 0
		}
		st := s.active[s.cursor]
		s.cursor++
		s.promote(st, now)
		if st.queued() == 0 {
			if st.retry.Len() == 0 && st.inflight == 0 {
				s.deactivate(st)
				i-- // the list shrank under the cursor
				n--
			}
			continue
		}
		// Do not open more connections than there is work for.
		if st.conns >= st.queued() {
			continue
		}
		if p := s.pickPath(st, now); p != nil {
			p.conns++
			st.conns++
			return ConnectRequest{PathID: p.id, Source: p.src.src, Site: st.key, Provider: st.provider, MXHosts: st.hosts, Settings: p.settings}, true
		}
	}
	return ConnectRequest{}, false
}

func (s *Scheduler) deactivate(st *site) {
	st.isActive = false
	for i, x := range s.active {
		if x == st {
			s.active = append(s.active[:i], s.active[i+1:]...)
			if s.cursor > i {
				s.cursor--
			}
			return
		}
	}
}

// pickPath chooses the path (source) for a new connection: the one with the
// fewest connections per unit of weight among those with room under their
// limits and warm-up caps.
func (s *Scheduler) pickPath(st *site, now time.Time) *path {
	var best *path
	var bestScore float64
	for _, p := range st.paths {
		if p.conns >= int(p.limit) || now.Before(p.suspendedUntil) || s.capReached(p, now) || !p.connRate.Ready(now) {
			continue
		}
		score := float64(p.conns) / float64(p.src.weight)
		if best == nil || score < bestScore {
			best, bestScore = p, score
		}
	}
	if best != nil {
		best.connRate.Allow(now)
	}
	return best
}

// capReached reports whether p's source has used its warm-up cap for p's
// provider today.
func (s *Scheduler) capReached(p *path, now time.Time) bool {
	w := p.src.src.WarmupFor(p.site.provider)
	if w == nil {
		return false
	}
	c, warm := w.CapOn(now)
	if warm {
		return false
	}
	src := p.src
	if d := w.Day(now); d != src.day {
		src.day = d
		clear(src.sent)
	}
	return src.sent[w.Provider] >= c
}

// ConnClosed releases a connection slot of path. A failure the remote side
// caused (err != nil, !local: refused, reset, timeout) halves the path's
// adaptive connection limit.
func (s *Scheduler) ConnClosed(pathID uint64, err error, local bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.paths[pathID]
	if p == nil {
		return
	}
	if p.conns > 0 {
		p.conns--
		p.site.conns--
	}
	if err != nil && !local {
		p.limit = max(1, p.limit/2)
	}
}

// Take hands the connection on path its next recipient, or returns nil and
// how long until one may be ready (0 = nothing queued).
func (s *Scheduler) Take(pathID uint64, now time.Time) (*Item, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.paths[pathID]
	if p == nil {
		return nil, 0
	}
	st := p.site
	s.promote(st, now)
	if st.queued() == 0 {
		return nil, 0
	}
	if now.Before(p.suspendedUntil) {
		return nil, p.suspendedUntil.Sub(now)
	}
	if s.capReached(p, now) {
		return nil, time.Hour
	}
	rate := &p.msgRate
	if now.Before(p.slowUntil) {
		rate = &p.slowRate
	}
	if ok, wait := rate.Allow(now); !ok {
		return nil, wait
	}
	it := st.ready[st.head]
	st.ready[st.head] = nil
	st.head++
	if st.head > 1024 && st.head*2 > len(st.ready) {
		st.ready = append(st.ready[:0], st.ready[st.head:]...)
		st.head = 0
	}
	s.ready--
	s.inflight++
	st.inflight++
	it.Attempts++
	if w := p.src.src.WarmupFor(st.provider); w != nil {
		p.src.sent[w.Provider]++
	}
	return it, 0
}

// Deferral is one recipient DeferQueued moved: its item and what happens
// next (a retry time, or final when max_age has passed).
type Deferral struct {
	Item     *Item
	Decision Decision
}

// DeferQueued defers every recipient queued on path's site as if each had
// been tried and answered with o: the caller found the site unreachable
// (every MX address refused or timed out, or greeted with 421) and nothing
// would come of dialing again at once. Each recipient counts one attempt and
// follows the retry schedule to max_age, so a campaign whose destination is
// down ends with those recipients deferred instead of dialing forever.
// Recipients in flight are not touched: their connections report them.
func (s *Scheduler) DeferQueued(pathID uint64, o Outcome) []Deferral {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.paths[pathID]
	if p == nil {
		return nil
	}
	now := s.clock.Now()
	st := p.site
	s.promote(st, now) // due retries are queued too
	out := make([]Deferral, 0, st.queued())
	for ; st.head < len(st.ready); st.head++ {
		it := st.ready[st.head]
		st.ready[st.head] = nil
		s.ready--
		it.Attempts++
		st.deferred++
		out = append(out, Deferral{Item: it, Decision: s.retry(p, st, it, o, now, "")})
	}
	st.ready, st.head = st.ready[:0], 0
	return out
}

// Outcome records the result of one Take and decides what happens next:
// final (delivered, bounced, expired) or a retry at Decision.RetryAt.
func (s *Scheduler) Outcome(pathID uint64, it *Item, o Outcome) Decision {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	st := it.site
	s.inflight--
	st.inflight--
	p := s.paths[pathID]
	d := Decision{}
	if p != nil && !o.Local && o.Result != Delivered {
		d.Rule = s.applyRules(p, &o, now)
	}
	switch o.Result {
	case Delivered:
		st.sent++
		if p != nil && p.limit < float64(max(p.settings.ConnectionLimit, 1)) {
			p.limit += 1 / max(p.limit, 1) // additive increase: +1 per limit successes
		}
		return Decision{Final: true, State: StateDelivered}
	case Bounced:
		st.bounced++
		d.Final, d.State = true, StateBounced
		d.Class = s.classify.Classify(o.Code, o.Enhanced, o.Text)
		return d
	}
	st.deferred++
	if p != nil && !o.Local && o.Code == 421 {
		p.limit = max(1, p.limit/2) // multiplicative decrease
	}
	return s.retry(p, st, it, o, now, d.Rule)
}

// retry puts a deferred it on its site's retry schedule, or ends it as
// expired past max_age. The caller holds s.mu.
func (s *Scheduler) retry(p *path, st *site, it *Item, o Outcome, now time.Time, rule string) Decision {
	set := s.settingsFor(p, st)
	iv := set.RetryInterval
	if iv <= 0 {
		iv = 20 * time.Minute
	}
	for i := 1; i < it.Attempts && iv < set.MaxRetryInterval; i++ {
		iv *= 2
	}
	if set.MaxRetryInterval > 0 && iv > set.MaxRetryInterval {
		iv = set.MaxRetryInterval
	}
	// ±10 % jitter so a burst of deferrals does not retry in lockstep.
	iv += time.Duration((s.rng.Float64()*0.2 - 0.1) * float64(iv))
	at := now.Add(iv)
	if set.MaxAge > 0 && at.Sub(it.First) > set.MaxAge {
		st.bounced++
		return Decision{Final: true, State: StateExpired, Class: s.classify.Classify(o.Code, o.Enhanced, o.Text), Rule: rule}
	}
	it.notBefore = at
	heap.Push(&st.retry, it)
	s.waiting++
	return Decision{State: StateDeferred, RetryAt: at, Rule: rule}
}

func (s *Scheduler) settingsFor(p *path, st *site) tuning.Settings {
	if p != nil {
		return p.settings
	}
	return st.paths[0].settings
}

// applyRules counts o against the reply rules of p's site and applies the
// action of every rule whose trigger threshold is crossed. A bounce action
// turns o into a bounce. It returns the name of the last rule that fired.
func (s *Scheduler) applyRules(p *path, o *Outcome, now time.Time) string {
	fired := ""
	for i := range s.rules {
		r := &s.rules[i]
		if r.Provider != "" && r.Provider != p.site.provider {
			continue
		}
		if !codeMatches(r.codes, o.Code, o.Enhanced) {
			continue
		}
		if r.re != nil && !r.re.MatchString(o.Text) {
			continue
		}
		// The trigger is a rate: the rule fires once more than Limit
		// matching replies arrived within Period (zero = every time).
		if !r.Trigger.IsZero() {
			if ok, _ := p.ruleHits[i].Allow(now); ok {
				continue
			}
		}
		fired = r.Name
		switch r.Action {
		case tuning.ActionSuspend:
			p.suspendedUntil = now.Add(r.Duration)
		case tuning.ActionThrottle:
			p.slowRate = NewThrottle(r.Rate)
			p.slowUntil = now.Add(r.Duration)
		case tuning.ActionBounce:
			o.Result = Bounced
		}
	}
	return fired
}

// codeMatches reports whether a reply's code or enhanced code matches one of
// the rule's patterns ("421", "4.7.0", "4.7"); no patterns match everything.
func codeMatches(codes []string, code int, enhanced string) bool {
	if len(codes) == 0 {
		return true
	}
	var buf [4]byte
	c := strconv.AppendInt(buf[:0], int64(code), 10)
	for _, pat := range codes {
		if strings.IndexByte(pat, '.') < 0 {
			if string(c) == pat {
				return true
			}
			continue
		}
		if enhanced == pat || strings.HasPrefix(enhanced, pat+".") {
			return true
		}
	}
	return false
}

// Pending counts recipients not yet final: queued, waiting for a retry, or in
// flight.
func (s *Scheduler) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready + s.waiting + s.inflight
}

// Active counts recipients queued now or in flight (not waiting for a retry).
func (s *Scheduler) Active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready + s.inflight
}

// NextRetry is the earliest time a waiting recipient becomes ready (zero if
// none waits).
func (s *Scheduler) NextRetry() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var t time.Time
	for _, st := range s.active {
		if st.retry.Len() > 0 && (t.IsZero() || st.retry[0].notBefore.Before(t)) {
			t = st.retry[0].notBefore
		}
	}
	return t
}

// NextWake is when the dispatcher should look again: the next retry or the
// end of a suspension of a site with work (zero = nothing scheduled).
func (s *Scheduler) NextWake() time.Time {
	t := s.NextRetry()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.active {
		if st.queued() == 0 {
			continue
		}
		for _, p := range st.paths {
			if !p.suspendedUntil.IsZero() && (t.IsZero() || p.suspendedUntil.Before(t)) && p.suspendedUntil.After(s.clock.Now()) {
				t = p.suspendedUntil
			}
		}
	}
	return t
}

// Drain removes and returns every recipient that is queued or waiting (not
// in flight), for a run that ends with work left.
func (s *Scheduler) Drain() []*Item {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Item
	for _, st := range s.sites {
		out = append(out, st.ready[st.head:]...)
		st.ready, st.head = nil, 0
		for _, it := range st.retry {
			out = append(out, it)
		}
		st.retry = nil
	}
	s.ready, s.waiting = 0, 0
	return out
}

// Snapshot returns per-site numbers, busiest first.
func (s *Scheduler) Snapshot() []SiteStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	out := make([]SiteStats, 0, len(s.sites))
	for _, st := range s.sites {
		ss := SiteStats{Site: st.key, Conns: st.conns, Queued: st.queued(), Waiting: st.retry.Len(), InFlight: st.inflight,
			Sent: st.sent, Deferred: st.deferred, Bounced: st.bounced}
		for _, p := range st.paths {
			ss.Limit += int(p.limit)
			if p.suspendedUntil.After(now) && p.suspendedUntil.After(ss.SuspendedUntil) {
				ss.SuspendedUntil = p.suspendedUntil
			}
		}
		out = append(out, ss)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Sent != out[j].Sent {
			return out[i].Sent > out[j].Sent
		}
		return out[i].Site < out[j].Site
	})
	return out
}

// PathSettings returns the effective settings of a path (for the engine's
// session configuration and explain output).
func (s *Scheduler) PathSettings(pathID uint64) (tuning.Settings, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.paths[pathID]; p != nil {
		return p.settings, true
	}
	return tuning.Settings{}, false
}

// retryHeap orders waiting recipients by notBefore.
type retryHeap []*Item

func (h retryHeap) Len() int           { return len(h) }
func (h retryHeap) Less(i, j int) bool { return h[i].notBefore.Before(h[j].notBefore) }
func (h retryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].heapIdx = i; h[j].heapIdx = j }
func (h *retryHeap) Push(x any)        { it := x.(*Item); it.heapIdx = len(*h); *h = append(*h, it) }
func (h *retryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return it
}
