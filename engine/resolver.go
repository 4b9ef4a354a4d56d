package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/dgraph-io/ristretto/v2"
	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"
)

// Resolver errors. A failed Lookup returns a *LookupError wrapping one of
// these (or a network error); use errors.Is to tell them apart and
// LookupError.Temporary to decide between deferring and bouncing.
var (
	// ErrNullMX: the domain publishes a null MX (RFC 7505): it accepts no
	// mail. Permanent.
	ErrNullMX = errors.New("engine: domain accepts no mail (null MX, RFC 7505)")
	// ErrNoSuchDomain: the DNS server answered NXDOMAIN. Permanent.
	ErrNoSuchDomain = errors.New("engine: no such domain (NXDOMAIN)")
	// ErrNoMailHost: no MX host (nor, without MX, the domain itself) has an
	// A or AAAA record. Permanent.
	ErrNoMailHost = errors.New("engine: no mail host address (no MX with an A/AAAA record, no implicit MX)")
	// ErrDNSServer: the DNS server answered with a failure code (SERVFAIL,
	// REFUSED, ...), named in the wrapping error. Temporary.
	ErrDNSServer = errors.New("engine: DNS server failure")
)

// LookupError is the error of a failed Lookup.
type LookupError struct {
	Domain    string
	Permanent bool // bounce (NXDOMAIN, null MX, no address); otherwise defer
	Err       error
}

// Error reads like "engine: lookup example.com (permanent): no such domain
// (NXDOMAIN)".
func (e *LookupError) Error() string {
	kind := "temporary"
	if e.Permanent {
		kind = "permanent"
	}
	return "engine: lookup " + e.Domain + " (" + kind + "): " + strings.TrimPrefix(e.Err.Error(), "engine: ")
}

// Unwrap returns the underlying error.
func (e *LookupError) Unwrap() error { return e.Err }

// Temporary reports whether a later lookup may succeed (SERVFAIL, timeout,
// refused, network error).
func (e *LookupError) Temporary() bool { return !e.Permanent }

// MX is one mail exchanger of a Destination.
type MX struct {
	Host  string // lower case, no trailing dot; "ip:port" for a static route
	Pref  uint16
	Addrs []netip.AddrPort // A records first, then AAAA, each in DNS order
}

// Destination is where mail for a domain goes. Destinations returned by
// Lookup are shared by all callers (they come from the cache): treat them,
// their MXs and their slices as read-only.
type Destination struct {
	Domain string
	// MXs in preference order (lowest Pref first). MXs of equal preference
	// are in a stable order (by host name), not shuffled: the scheduler rolls
	// sites up from the host set and spreads load across its connections;
	// MX hosts without any address are left out.
	MXs []MX
	// Static is true for a destination from the static route table.
	Static bool
	// Expires is when the cached answer expires (min DNS TTL, clamped).
	Expires time.Time

	hosts []string
}

// Hosts returns the MX host names in order. The slice is shared: do not
// modify it.
func (d *Destination) Hosts() []string { return d.hosts }

// ResolverConfig configures NewResolver. Zero values select the defaults.
type ResolverConfig struct {
	// Server is the DNS server, "host:port" (port 53 if omitted); "" = the
	// first nameserver of /etc/resolv.conf.
	Server string
	// Timeout is per DNS query attempt (default 5 s); a UDP query that times
	// out is retried once.
	Timeout time.Duration
	// Routes is the static route table, consulted before DNS.
	Routes *Routes
	// CacheMaxCost bounds the cache in approximate bytes (default 32 MiB).
	CacheMaxCost int64
	// MinTTL and MaxTTL clamp the DNS TTL of positive answers (defaults 30 s
	// and 24 h). NegativeTTL is how long permanent failures are cached
	// (default 5 min); ErrorTTL how long temporary failures are cached
	// (default 5 s; negative = not cached).
	MinTTL, MaxTTL, NegativeTTL, ErrorTTL time.Duration
	// Port is the SMTP port of MX addresses (default 25).
	Port uint16
	// Now is the clock (nil = time.Now); tests inject one.
	Now func() time.Time
}

// Resolver finds the mail exchangers of domains: the static route table
// first, then MX records (RFC 5321 §5.1), with implicit MX (the domain's own
// A/AAAA) when there is none and null MX (RFC 7505) as a permanent failure,
// and the A/AAAA records of every MX host in the same lookup. Answers, MX
// host addresses and failures are cached in ristretto keyed by xxhash;
// concurrent lookups of one name share one query. UDP answers with TC set are
// re-asked over TCP. A Resolver is safe for concurrent use by any number of
// goroutines.
type Resolver struct {
	cfg    ResolverConfig
	server string
	udp    *dns.Client
	tcp    *dns.Client
	cache  *ristretto.Cache[uint64, *resolverEntry]
	flight singleflight.Group

	queries, hits atomic.Uint64
}

// resolverEntry is one cached answer: a domain's Destination or failure, or
// an MX host's addresses. Immutable once stored.
type resolverEntry struct {
	name    string // the domain or host, to detect hash collisions
	dest    *Destination
	err     error
	addrs   []netip.Addr // host entries
	expires time.Time
}

// NewResolver returns a Resolver for cfg. It fails only if no DNS server is
// configured and /etc/resolv.conf names none.
func NewResolver(cfg ResolverConfig) (*Resolver, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.CacheMaxCost <= 0 {
		cfg.CacheMaxCost = 32 << 20
	}
	if cfg.MinTTL <= 0 {
		cfg.MinTTL = 30 * time.Second
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = 24 * time.Hour
	}
	cfg.MaxTTL = max(cfg.MaxTTL, cfg.MinTTL)
	if cfg.NegativeTTL <= 0 {
		cfg.NegativeTTL = 5 * time.Minute
	}
	if cfg.ErrorTTL == 0 {
		cfg.ErrorTTL = 5 * time.Second
	}
	if cfg.Port == 0 {
		cfg.Port = 25
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	server := cfg.Server
	if server == "" {
		cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil {
			return nil, fmt.Errorf("engine: no DNS server configured: %w", err)
		}
		if len(cc.Servers) == 0 {
			return nil, errors.New("engine: no DNS server configured and none in /etc/resolv.conf")
		}
		server = net.JoinHostPort(cc.Servers[0], cc.Port)
	} else if _, _, err := net.SplitHostPort(server); err != nil {
		server = net.JoinHostPort(strings.Trim(server, "[]"), "53")
	}
	cache, err := ristretto.NewCache(&ristretto.Config[uint64, *resolverEntry]{
		NumCounters:        max(cfg.CacheMaxCost/32, 1000), // ~10 counters per ~320-byte entry
		MaxCost:            cfg.CacheMaxCost,
		BufferItems:        64,
		IgnoreInternalCost: true,
		KeyToHash:          func(k uint64) (uint64, uint64) { return k, 0 },
	})
	if err != nil {
		return nil, fmt.Errorf("engine: resolver cache: %w", err)
	}
	return &Resolver{
		cfg:    cfg,
		server: server,
		udp:    &dns.Client{Net: "udp", Timeout: cfg.Timeout, UDPSize: 1232},
		tcp:    &dns.Client{Net: "tcp", Timeout: cfg.Timeout},
		cache:  cache,
	}, nil
}

// Close stops the cache's background goroutines. The Resolver must not be
// used afterwards.
func (r *Resolver) Close() { r.cache.Close() }

// Server returns the DNS server's address.
func (r *Resolver) Server() string { return r.server }

// ResolverStats are counters for tests and the operator display.
type ResolverStats struct {
	Queries uint64 // DNS messages sent (UDP and TCP)
	Hits    uint64 // Lookups answered from the cache or the route table
}

// Stats returns the Resolver's counters.
func (r *Resolver) Stats() ResolverStats {
	return ResolverStats{Queries: r.queries.Load(), Hits: r.hits.Load()}
}

// Lookup returns the Destination of domain (an ASCII or A-label domain; a
// trailing dot is ignored, upper case folded). A static route wins; then the
// cache; then DNS. Failures are *LookupError (errors.Is with ErrNullMX,
// ErrNoSuchDomain, ErrNoMailHost, ErrDNSServer; Temporary for deferral). If
// ctx ends first, Lookup returns a temporary *LookupError wrapping ctx.Err()
// while the shared query continues for the others. A cache hit does not
// allocate when domain is already lower case.
func (r *Resolver) Lookup(ctx context.Context, domain string) (*Destination, error) {
	d := strings.TrimSuffix(domain, ".")
	if domainHasUpper(d) {
		d = strings.ToLower(d)
	}
	if d == "" || strings.ContainsAny(d, " \t\r\n@") {
		return nil, &LookupError{Domain: domain, Permanent: true, Err: ErrNoSuchDomain}
	}
	now := r.cfg.Now()
	if rt, ok := r.cfg.Routes.match(d); ok {
		r.hits.Add(1)
		return &Destination{Domain: d, MXs: rt.mxs, hosts: rt.hosts, Static: true, Expires: now.Add(r.cfg.MaxTTL)}, nil
	}
	if d[0] == '[' {
		return r.literal(d, now)
	}
	key := xxhash.Sum64String(d)
	if e, ok := r.cache.Get(key); ok && e.name == d && now.Before(e.expires) {
		r.hits.Add(1)
		return e.dest, e.err
	}
	ch := r.flight.DoChan(d, func() (any, error) { return r.resolveDomain(d, key), nil })
	select {
	case res := <-ch:
		e := res.Val.(*resolverEntry)
		return e.dest, e.err
	case <-ctx.Done():
		return nil, &LookupError{Domain: d, Err: ctx.Err()}
	}
}

// literal returns the Destination of an address literal such as
// "[192.0.2.1]" or "[IPv6:2001:db8::1]" (RFC 5321 §4.1.3): no DNS.
func (r *Resolver) literal(d string, now time.Time) (*Destination, error) {
	inner, ok := strings.CutSuffix(d[1:], "]")
	if v6, isV6 := strings.CutPrefix(inner, "ipv6:"); isV6 {
		inner = v6
	}
	a, err := netip.ParseAddr(inner)
	if !ok || err != nil || a.Zone() != "" || (a.Is6() && !strings.HasPrefix(d, "[ipv6:")) {
		return nil, &LookupError{Domain: d, Permanent: true, Err: fmt.Errorf("%w: bad address literal", ErrNoSuchDomain)}
	}
	return &Destination{
		Domain: d, Expires: now.Add(r.cfg.MaxTTL),
		MXs:   []MX{{Host: d, Addrs: []netip.AddrPort{netip.AddrPortFrom(a, r.cfg.Port)}}},
		hosts: []string{d},
	}, nil
}

// permanent reports whether err is a permanent *LookupError.
func permanent(err error) bool {
	var le *LookupError
	return errors.As(err, &le) && le.Permanent
}

// resolveDomain runs once per domain for all concurrent callers and caches
// its result.
func (r *Resolver) resolveDomain(d string, key uint64) *resolverEntry {
	// Bounded by the per-query timeouts (MX, then A/AAAA in parallel, each
	// with one retry), not by any one caller's context.
	ctx, cancel := context.WithTimeout(context.Background(), 6*r.cfg.Timeout)
	defer cancel()
	d = strings.Clone(d) // cached: do not pin the caller's (maybe larger) buffer
	dest, ttl, err := r.resolve(ctx, d)
	now := r.cfg.Now()
	e := &resolverEntry{name: d, dest: dest, err: err}
	var cacheFor time.Duration
	switch {
	case err == nil:
		cacheFor = r.clamp(ttl)
		dest.Expires = now.Add(cacheFor)
	case permanent(err):
		cacheFor = r.cfg.NegativeTTL
	default:
		cacheFor = r.cfg.ErrorTTL
	}
	if cacheFor > 0 {
		e.expires = now.Add(cacheFor)
		r.cache.SetWithTTL(key, e, entryCost(e), cacheFor)
		r.cache.Wait() // visible to the next Lookup; misses only
	}
	return e
}

func (r *Resolver) clamp(ttl uint32) time.Duration {
	return min(max(time.Duration(ttl)*time.Second, r.cfg.MinTTL), r.cfg.MaxTTL)
}

// entryCost approximates an entry's memory in bytes.
func entryCost(e *resolverEntry) int64 {
	n := 96 + len(e.name) + 24*len(e.addrs)
	if e.dest != nil {
		n += 96
		for _, mx := range e.dest.MXs {
			n += 64 + 2*len(mx.Host) + 32*len(mx.Addrs)
		}
	}
	return int64(n)
}

// resolve looks up d's MX records and their hosts' addresses. ttl is the
// smallest TTL of all records used.
func (r *Resolver) resolve(ctx context.Context, d string) (*Destination, uint32, error) {
	fail := func(permanent bool, err error) (*Destination, uint32, error) {
		return nil, 0, &LookupError{Domain: d, Permanent: permanent, Err: err}
	}
	resp, err := r.query(ctx, d, dns.TypeMX)
	if err != nil {
		return fail(false, err)
	}
	switch resp.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return fail(true, ErrNoSuchDomain)
	default:
		return fail(false, fmt.Errorf("%w: %s for MX", ErrDNSServer, dns.RcodeToString[resp.Rcode]))
	}
	ttl := uint32(1<<32 - 1)
	var mxs []*dns.MX
	for _, rr := range resp.Answer {
		ttl = min(ttl, rr.Header().Ttl) // CNAMEs on the way count too
		if mx, ok := rr.(*dns.MX); ok {
			mxs = append(mxs, mx)
		}
	}

	if len(mxs) == 0 {
		// RFC 5321 §5.1: no MX, so the domain itself is the implicit MX
		// with preference 0.
		addrs, httl, err := r.hostAddrs(ctx, d)
		if err != nil {
			return nil, 0, err
		}
		ttl = min(ttl, httl)
		return r.destination(d, []MX{{Host: d, Addrs: r.withPort(addrs)}}), ttl, nil
	}
	if len(mxs) == 1 && mxs[0].Mx == "." {
		return fail(true, ErrNullMX)
	}

	type hostResult struct {
		addrs []netip.Addr
		ttl   uint32
		err   error
	}
	list := make([]MX, 0, len(mxs))
	for _, mx := range mxs {
		h := strings.ToLower(strings.TrimSuffix(mx.Mx, "."))
		if h == "" {
			continue // a "." among other MXs violates RFC 7505; ignore it
		}
		list = append(list, MX{Host: h, Pref: mx.Preference})
	}
	slices.SortStableFunc(list, func(a, b MX) int {
		return cmp.Or(cmp.Compare(a.Pref, b.Pref), strings.Compare(a.Host, b.Host))
	})
	// A host listed twice keeps its best (first) preference.
	uniq := list[:0]
	for _, mx := range list {
		if !slices.ContainsFunc(uniq, func(u MX) bool { return u.Host == mx.Host }) {
			uniq = append(uniq, mx)
		}
	}
	list = uniq

	results := make([]hostResult, len(list))
	var wg sync.WaitGroup
	for i := range list {
		wg.Go(func() {
			res := &results[i]
			res.addrs, res.ttl, res.err = r.hostAddrs(ctx, list[i].Host)
		})
	}
	wg.Wait()
	out := list[:0]
	var tempErr error
	for i, mx := range list {
		res := results[i]
		if res.err != nil {
			var le *LookupError
			if errors.As(res.err, &le) && !le.Permanent && tempErr == nil {
				tempErr = le.Err
			}
			continue
		}
		ttl = min(ttl, res.ttl)
		mx.Addrs = r.withPort(res.addrs)
		out = append(out, mx)
	}
	if len(out) == 0 {
		if tempErr != nil {
			return fail(false, fmt.Errorf("no MX host address yet: %w", tempErr))
		}
		return fail(true, ErrNoMailHost)
	}
	return r.destination(d, out), ttl, nil
}

func (r *Resolver) destination(d string, mxs []MX) *Destination {
	dest := &Destination{Domain: d, MXs: mxs, hosts: make([]string, len(mxs))}
	for i := range mxs {
		dest.hosts[i] = mxs[i].Host
	}
	return dest
}

func (r *Resolver) withPort(addrs []netip.Addr) []netip.AddrPort {
	out := make([]netip.AddrPort, len(addrs))
	for i, a := range addrs {
		out[i] = netip.AddrPortFrom(a, r.cfg.Port)
	}
	return out
}

// hostAddrs returns host's A then AAAA addresses and their smallest TTL,
// from the cache or from DNS (one shared query per host). An error is a
// *LookupError for host: permanent if the host does not exist or has no
// address, temporary otherwise.
func (r *Resolver) hostAddrs(ctx context.Context, host string) ([]netip.Addr, uint32, error) {
	var dg xxhash.Digest
	dg.Reset()
	_, _ = dg.WriteString("host\x00")
	_, _ = dg.WriteString(host)
	key := dg.Sum64()
	now := r.cfg.Now()
	if e, ok := r.cache.Get(key); ok && e.name == host && now.Before(e.expires) {
		return e.addrs, uint32(e.expires.Sub(now) / time.Second), e.err
	}
	v, _, _ := r.flight.Do("host\x00"+host, func() (any, error) {
		addrs, ttl, err := r.queryAddrs(ctx, host)
		e := &resolverEntry{name: host, addrs: addrs, err: err}
		var cacheFor time.Duration
		switch {
		case err == nil:
			cacheFor = r.clamp(ttl)
		case permanent(err):
			cacheFor = r.cfg.NegativeTTL
		default:
			cacheFor = r.cfg.ErrorTTL
		}
		if cacheFor > 0 {
			e.expires = r.cfg.Now().Add(cacheFor)
			r.cache.SetWithTTL(key, e, entryCost(e), cacheFor)
			r.cache.Wait()
		}
		return e, nil
	})
	e := v.(*resolverEntry)
	if e.err != nil {
		return nil, 0, e.err
	}
	return e.addrs, uint32(max(e.expires.Sub(now), 0) / time.Second), nil
}

// queryAddrs asks for A and AAAA in parallel. One family failing temporarily
// while the other has addresses is not an error.
func (r *Resolver) queryAddrs(ctx context.Context, host string) ([]netip.Addr, uint32, error) {
	type answer struct {
		addrs []netip.Addr
		ttl   uint32
		nx    bool
		err   error
	}
	ask := func(qtype uint16) (a answer) {
		a.ttl = 1<<32 - 1
		resp, err := r.query(ctx, host, qtype)
		if err != nil {
			a.err = err
			return a
		}
		switch resp.Rcode {
		case dns.RcodeSuccess:
		case dns.RcodeNameError:
			a.nx = true
			return a
		default:
			a.err = fmt.Errorf("%w: %s for %s of %s", ErrDNSServer, dns.RcodeToString[resp.Rcode], dns.TypeToString[qtype], host)
			return a
		}
		for _, rr := range resp.Answer {
			var ip net.IP
			switch rr := rr.(type) {
			case *dns.A:
				ip = rr.A
			case *dns.AAAA:
				ip = rr.AAAA
			default:
				a.ttl = min(a.ttl, rr.Header().Ttl) // CNAME
				continue
			}
			if addr, ok := netip.AddrFromSlice(ip); ok {
				a.addrs = append(a.addrs, addr.Unmap())
				a.ttl = min(a.ttl, rr.Header().Ttl)
			}
		}
		return a
	}
	var v6 answer
	done := make(chan struct{})
	go func() { v6 = ask(dns.TypeAAAA); close(done) }()
	v4 := ask(dns.TypeA)
	<-done

	addrs := append(v4.addrs, v6.addrs...)
	if len(addrs) > 0 {
		ttl := uint32(1<<32 - 1)
		if len(v4.addrs) > 0 {
			ttl = v4.ttl
		}
		if len(v6.addrs) > 0 {
			ttl = min(ttl, v6.ttl)
		}
		return addrs, ttl, nil
	}
	if v4.err != nil {
		return nil, 0, &LookupError{Domain: host, Err: v4.err}
	}
	if v6.err != nil {
		return nil, 0, &LookupError{Domain: host, Err: v6.err}
	}
	if v4.nx || v6.nx {
		return nil, 0, &LookupError{Domain: host, Permanent: true, Err: ErrNoSuchDomain}
	}
	return nil, 0, &LookupError{Domain: host, Permanent: true, Err: ErrNoMailHost}
}

// query sends one question with recursion desired, retrying once over UDP on
// a timeout and over TCP when the UDP answer is truncated.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(1232, false)
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if attempt > 0 {
			m.Id = dns.Id()
		}
		var resp *dns.Msg
		r.queries.Add(1)
		resp, _, err = r.udp.ExchangeContext(ctx, m, r.server)
		if err == nil && resp.Truncated {
			r.queries.Add(1)
			resp, _, err = r.tcp.ExchangeContext(ctx, m, r.server)
		}
		if err == nil {
			if len(resp.Question) != 1 || resp.Question[0].Qtype != qtype || !strings.EqualFold(resp.Question[0].Name, m.Question[0].Name) {
				return nil, fmt.Errorf("engine: DNS answer for another question (%v)", resp.Question)
			}
			return resp, nil
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() || ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("engine: DNS query %s %s to %s: %w", dns.TypeToString[qtype], name, r.server, err)
}
