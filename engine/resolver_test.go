package engine

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// dnsTestServer is an in-process authoritative-style DNS server on a
// loopback port (UDP and TCP) with fixed zones. It counts the questions it
// receives per "name type net".
type dnsTestServer struct {
	addr string
	mu   sync.Mutex
	hits map[string]int
	// slow delays answers for names starting with "slow" (the singleflight
	// and cancellation tests).
	slow time.Duration
}

func (s *dnsTestServer) count(name string, qtype uint16, network string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[strings.ToLower(name)+" "+dns.TypeToString[qtype]+" "+network]
}

// total counts questions for name over both transports and all types.
func (s *dnsTestServer) total(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, v := range s.hits {
		if strings.HasPrefix(k, strings.ToLower(name)+" ") {
			n += v
		}
	}
	return n
}

func dnsRR(t testing.TB, s string) dns.RR {
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatalf("NewRR(%q): %v", s, err)
	}
	return r
}

// zone returns the records for a question, the rcode, and whether to drop it.
func (s *dnsTestServer) zone(t testing.TB, name string, qtype uint16, tcp bool) (ans []dns.RR, rcode int, truncate, drop bool) {
	ns := func(recs ...string) []dns.RR {
		var out []dns.RR
		for _, r := range recs {
			out = append(out, dnsRR(t, r))
		}
		return out
	}
	switch qtype {
	case dns.TypeMX:
		switch name {
		case "mx.test.":
			// Higher preference first on the wire: Lookup must sort.
			return ns("mx.test. 300 IN MX 20 mx2.mx.test.", "mx.test. 600 IN MX 10 MX1.mx.test."), 0, false, false
		case "ties.test.":
			return ns("ties.test. 300 IN MX 10 c.mx.test.", "ties.test. 300 IN MX 10 mx2.mx.test.", "ties.test. 300 IN MX 10 mx1.mx.test.", "ties.test. 300 IN MX 5 mx1.mx.test."), 0, false, false
		case "implicit.test.", "noaddr.test.":
			return nil, 0, false, false // NODATA
		case "nullmx.test.":
			return ns("nullmx.test. 300 IN MX 0 ."), 0, false, false
		case "servfail.test.":
			return nil, dns.RcodeServerFailure, false, false
		case "refused.test.":
			return nil, dns.RcodeRefused, false, false
		case "trunc.test.":
			if !tcp {
				return nil, 0, true, false
			}
			return ns("trunc.test. 300 IN MX 10 mx1.mx.test."), 0, false, false
		case "ttl.test.", "slowmx.test.":
			return ns(name + " 60 IN MX 10 mx1.mx.test."), 0, false, false
		case "short.test.":
			return ns("short.test. 5 IN MX 10 mx1.mx.test."), 0, false, false
		case "badhost.test.":
			return ns("badhost.test. 300 IN MX 10 nohost.test."), 0, false, false
		case "halfbad.test.":
			return ns("halfbad.test. 300 IN MX 10 sfhost.test.", "halfbad.test. 300 IN MX 20 mx2.mx.test."), 0, false, false
		case "alltemp.test.":
			return ns("alltemp.test. 300 IN MX 10 sfhost.test."), 0, false, false
		case "cname.test.":
			return ns("cname.test. 120 IN CNAME mx.test.", "mx.test. 300 IN MX 10 mx1.mx.test."), 0, false, false
		case "drop.test.":
			return nil, 0, false, true
		}
		if strings.HasSuffix(name, ".bulk.test.") {
			return ns(name + " 3600 IN MX 10 mx1.mx.test."), 0, false, false
		}
	case dns.TypeA:
		switch name {
		case "mx1.mx.test.":
			return ns("mx1.mx.test. 600 IN A 192.0.2.1", "mx1.mx.test. 600 IN A 192.0.2.11"), 0, false, false
		case "mx2.mx.test.":
			return ns("mx2.mx.test. 600 IN A 192.0.2.2"), 0, false, false
		case "c.mx.test.":
			return ns("c.mx.test. 600 IN A 192.0.2.12"), 0, false, false
		case "implicit.test.":
			return ns("implicit.test. 120 IN A 192.0.2.3"), 0, false, false
		case "sfhost.test.":
			return nil, dns.RcodeServerFailure, false, false
		}
	case dns.TypeAAAA:
		switch name {
		case "mx1.mx.test.":
			return ns("mx1.mx.test. 600 IN AAAA 2001:db8::1"), 0, false, false
		case "mx2.mx.test.", "c.mx.test.", "implicit.test.":
			return nil, 0, false, false
		case "sfhost.test.":
			return nil, dns.RcodeServerFailure, false, false
		}
	}
	switch name {
	case "implicit.test.", "noaddr.test.", "mx.test.", "mx1.mx.test.", "mx2.mx.test.", "c.mx.test.":
		return nil, 0, false, false
	}
	return nil, dns.RcodeNameError, false, false
}

func startDNS(t testing.TB) *dnsTestServer {
	t.Helper()
	s := &dnsTestServer{hits: make(map[string]int), slow: 300 * time.Millisecond}
	var pc net.PacketConn
	var ln net.Listener
	for range 20 {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		pc = nil
	}
	if pc == nil {
		t.Fatal("no loopback port free for both UDP and TCP")
	}
	s.addr = pc.LocalAddr().String()
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		q := req.Question[0]
		name := strings.ToLower(q.Name)
		_, tcp := w.RemoteAddr().(*net.TCPAddr)
		network := "udp"
		if tcp {
			network = "tcp"
		}
		s.mu.Lock()
		s.hits[strings.TrimSuffix(name, ".")+" "+dns.TypeToString[q.Qtype]+" "+network]++
		s.mu.Unlock()
		if strings.HasPrefix(name, "slow") {
			time.Sleep(s.slow)
		}
		ans, rcode, trunc, drop := s.zone(t, name, q.Qtype, tcp)
		if drop {
			return
		}
		m := new(dns.Msg)
		m.SetRcode(req, rcode)
		m.Authoritative = true
		m.RecursionAvailable = true
		m.Answer = ans
		m.Truncated = trunc
		w.WriteMsg(m)
	})
	var started sync.WaitGroup
	started.Add(2)
	udp := &dns.Server{PacketConn: pc, Handler: handler, NotifyStartedFunc: started.Done}
	tcpSrv := &dns.Server{Listener: ln, Handler: handler, NotifyStartedFunc: started.Done}
	go udp.ActivateAndServe()
	go tcpSrv.ActivateAndServe()
	started.Wait()
	t.Cleanup(func() { udp.Shutdown(); tcpSrv.Shutdown() })
	return s
}

// resolverRaceBuild reports whether the test binary was built with -race (where
// allocation counts are not meaningful).
func resolverRaceBuild() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// dnsClock is an injectable clock.
type dnsClock struct{ ns atomic.Int64 }

func newDNSClock() *dnsClock {
	c := &dnsClock{}
	c.ns.Store(time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *dnsClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *dnsClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func newTestResolver(t testing.TB, s *dnsTestServer, mod func(*ResolverConfig)) (*Resolver, *dnsClock) {
	t.Helper()
	clock := newDNSClock()
	cfg := ResolverConfig{Server: s.addr, Timeout: 2 * time.Second, MinTTL: time.Second, MaxTTL: time.Hour, Now: clock.Now}
	if mod != nil {
		mod(&cfg)
	}
	r, err := NewResolver(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r, clock
}

func dnsAP(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestResolverMX(t *testing.T) {
	s := startDNS(t)
	r, clock := newTestResolver(t, s, nil)
	d, err := r.Lookup(context.Background(), "mx.test")
	if err != nil {
		t.Fatal(err)
	}
	want := []MX{
		{Host: "mx1.mx.test", Pref: 10, Addrs: []netip.AddrPort{dnsAP("192.0.2.1:25"), dnsAP("192.0.2.11:25"), dnsAP("[2001:db8::1]:25")}},
		{Host: "mx2.mx.test", Pref: 20, Addrs: []netip.AddrPort{dnsAP("192.0.2.2:25")}},
	}
	if !slices.EqualFunc(d.MXs, want, func(a, b MX) bool {
		return a.Host == b.Host && a.Pref == b.Pref && slices.Equal(a.Addrs, b.Addrs)
	}) {
		t.Fatalf("MXs = %+v; want %+v", d.MXs, want)
	}
	if got := d.Hosts(); !slices.Equal(got, []string{"mx1.mx.test", "mx2.mx.test"}) {
		t.Fatalf("Hosts() = %q", got)
	}
	if d.Domain != "mx.test" || d.Static {
		t.Fatalf("Domain %q Static %v", d.Domain, d.Static)
	}
	// TTL = min(300 MX, 600 A/AAAA) = 300 s, within [1s, 1h].
	if got := d.Expires.Sub(clock.Now()); got != 300*time.Second {
		t.Fatalf("expires in %v; want 5m0s", got)
	}
	// Same answer from the cache for another spelling, no new query.
	before := s.total("mx.test")
	d2, err := r.Lookup(context.Background(), "MX.Test.")
	if err != nil || d2 != d {
		t.Fatalf("second lookup: %p, %v; want the cached %p", d2, err, d)
	}
	if s.total("mx.test") != before {
		t.Fatal("cached lookup queried the server")
	}
}

// TestResolverTies: equal preferences come in host-name order (stable, not
// shuffled); a host listed twice keeps its best preference.
func TestResolverTies(t *testing.T) {
	s := startDNS(t)
	r, _ := newTestResolver(t, s, nil)
	d, err := r.Lookup(context.Background(), "ties.test")
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Hosts(); !slices.Equal(got, []string{"mx1.mx.test", "c.mx.test", "mx2.mx.test"}) {
		t.Fatalf("Hosts() = %q", got)
	}
	if d.MXs[0].Pref != 5 || d.MXs[1].Pref != 10 {
		t.Fatalf("prefs %d, %d; want 5, 10", d.MXs[0].Pref, d.MXs[1].Pref)
	}
}

func TestResolverImplicitMX(t *testing.T) {
	s := startDNS(t)
	r, _ := newTestResolver(t, s, func(c *ResolverConfig) { c.Port = 2525 })
	d, err := r.Lookup(context.Background(), "implicit.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.MXs) != 1 || d.MXs[0].Host != "implicit.test" || d.MXs[0].Pref != 0 ||
		!slices.Equal(d.MXs[0].Addrs, []netip.AddrPort{dnsAP("192.0.2.3:2525")}) {
		t.Fatalf("MXs = %+v; want implicit.test [192.0.2.3:2525]", d.MXs)
	}
}

// TestResolverFailures covers the permanent and temporary failures, and that
// each is cached (negative caching) for its own TTL.
func TestResolverFailures(t *testing.T) {
	s := startDNS(t)
	r, clock := newTestResolver(t, s, func(c *ResolverConfig) {
		c.Timeout = 100 * time.Millisecond
		c.NegativeTTL = time.Minute
		c.ErrorTTL = 5 * time.Second
	})
	for i, tt := range []struct {
		domain    string
		permanent bool
		is        error
	}{
		{"nullmx.test", true, ErrNullMX},
		{"nx.test", true, ErrNoSuchDomain},
		{"noaddr.test", true, ErrNoMailHost},
		{"badhost.test", true, ErrNoMailHost},
		{"servfail.test", false, ErrDNSServer},
		{"refused.test", false, ErrDNSServer},
		{"alltemp.test", false, ErrDNSServer},
		{"drop.test", false, nil}, // no answer: timeout, retried once
	} {
		d, err := r.Lookup(context.Background(), tt.domain)
		var le *LookupError
		if d != nil || !errors.As(err, &le) {
			t.Fatalf("#%d %s: got %v, %v; want a *LookupError", i, tt.domain, d, err)
		}
		if le.Permanent != tt.permanent || le.Temporary() == tt.permanent || le.Domain != tt.domain {
			t.Errorf("#%d %s: %v: Permanent %v; want %v", i, tt.domain, err, le.Permanent, tt.permanent)
		}
		if tt.is != nil && !errors.Is(err, tt.is) {
			t.Errorf("#%d %s: %v is not %v", i, tt.domain, err, tt.is)
		}
		if !strings.Contains(err.Error(), tt.domain) {
			t.Errorf("#%d: error %q does not name the domain", i, err)
		}
		n := s.total(tt.domain)
		if _, err2 := r.Lookup(context.Background(), tt.domain); err2 != err || s.total(tt.domain) != n {
			t.Errorf("#%d %s: failure not cached (%v, %d → %d queries)", i, tt.domain, err2, n, s.total(tt.domain))
		}
	}
	_, err := r.Lookup(context.Background(), "NX.test")
	if want := "engine: lookup nx.test (permanent): no such domain (NXDOMAIN)"; err == nil || err.Error() != want {
		t.Errorf("error text %q; want %q", err, want)
	}
	_, err = r.Lookup(context.Background(), "servfail.test")
	t.Logf("temporary: %v", err)
	if n := s.count("drop.test", dns.TypeMX, "udp"); n != 2 {
		t.Errorf("drop.test: %d UDP queries; want 2 (one retry after the timeout)", n)
	}
	// Temporary failures expire after ErrorTTL, permanent ones after NegativeTTL.
	clock.Advance(6 * time.Second)
	n, m := s.total("servfail.test"), s.total("nx.test")
	r.Lookup(context.Background(), "servfail.test")
	r.Lookup(context.Background(), "nx.test")
	if s.total("servfail.test") != n+1 || s.total("nx.test") != m {
		t.Errorf("after 6s: servfail %d→%d, nx %d→%d queries; want a re-query of servfail only", n, s.total("servfail.test"), m, s.total("nx.test"))
	}
	clock.Advance(time.Minute)
	r.Lookup(context.Background(), "nx.test")
	if s.total("nx.test") != m+1 {
		t.Errorf("NXDOMAIN not re-queried after NegativeTTL")
	}
}

// TestResolverPartialHosts: an MX host that fails temporarily is left out
// while another has addresses.
func TestResolverPartialHosts(t *testing.T) {
	s := startDNS(t)
	r, _ := newTestResolver(t, s, nil)
	d, err := r.Lookup(context.Background(), "halfbad.test")
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Hosts(); !slices.Equal(got, []string{"mx2.mx.test"}) {
		t.Fatalf("Hosts() = %q; want [mx2.mx.test]", got)
	}
}

func TestResolverTruncatedFallsBackToTCP(t *testing.T) {
	s := startDNS(t)
	r, _ := newTestResolver(t, s, nil)
	d, err := r.Lookup(context.Background(), "trunc.test")
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Hosts(); !slices.Equal(got, []string{"mx1.mx.test"}) {
		t.Fatalf("Hosts() = %q", got)
	}
	if u, c := s.count("trunc.test", dns.TypeMX, "udp"), s.count("trunc.test", dns.TypeMX, "tcp"); u != 1 || c != 1 {
		t.Fatalf("trunc.test MX: %d UDP, %d TCP queries; want 1, 1", u, c)
	}
}

func TestResolverCNAME(t *testing.T) {
	s := startDNS(t)
	r, clock := newTestResolver(t, s, nil)
	d, err := r.Lookup(context.Background(), "cname.test")
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Hosts(); !slices.Equal(got, []string{"mx1.mx.test"}) {
		t.Fatalf("Hosts() = %q", got)
	}
	if got := d.Expires.Sub(clock.Now()); got != 120*time.Second {
		t.Fatalf("expires in %v; want the CNAME's 2m0s", got)
	}
}

// TestResolverTTL: a hit within the TTL asks nothing; after the TTL the MX is
// asked again while the MX host's addresses (longer TTL) stay cached.
func TestResolverTTL(t *testing.T) {
	s := startDNS(t)
	r, clock := newTestResolver(t, s, func(c *ResolverConfig) { c.MinTTL = 30 * time.Second })
	ctx := context.Background()
	d1, err := r.Lookup(ctx, "ttl.test")
	if err != nil {
		t.Fatal(err)
	}
	if mx, a := s.count("ttl.test", dns.TypeMX, "udp"), s.count("mx1.mx.test", dns.TypeA, "udp"); mx != 1 || a != 1 {
		t.Fatalf("first lookup: %d MX, %d A queries; want 1, 1", mx, a)
	}
	clock.Advance(59 * time.Second)
	if d2, _ := r.Lookup(ctx, "ttl.test"); d2 != d1 || s.count("ttl.test", dns.TypeMX, "udp") != 1 {
		t.Fatal("lookup within the TTL was not a cache hit")
	}
	clock.Advance(2 * time.Second)
	d3, err := r.Lookup(ctx, "ttl.test")
	if err != nil || d3 == d1 {
		t.Fatalf("after the TTL: %p, %v; want a fresh Destination", d3, err)
	}
	if mx, a := s.count("ttl.test", dns.TypeMX, "udp"), s.count("mx1.mx.test", dns.TypeA, "udp"); mx != 2 || a != 1 {
		t.Fatalf("after the TTL: %d MX, %d A queries; want 2 (re-query), 1 (host still cached)", mx, a)
	}
	// MinTTL clamps a 5 s TTL up to 30 s.
	d4, err := r.Lookup(ctx, "short.test")
	if err != nil {
		t.Fatal(err)
	}
	if got := d4.Expires.Sub(clock.Now()); got != 30*time.Second {
		t.Fatalf("short.test expires in %v; want MinTTL 30s", got)
	}
}

// TestResolverSingleflight: concurrent lookups of one domain share one query.
func TestResolverSingleflight(t *testing.T) {
	s := startDNS(t)
	r, _ := newTestResolver(t, s, nil)
	const n = 20
	var wg sync.WaitGroup
	dests := make([]*Destination, n)
	for i := range n {
		wg.Go(func() {
			d, err := r.Lookup(context.Background(), "slowmx.test")
			if err != nil {
				t.Error(err)
			}
			dests[i] = d
		})
	}
	wg.Wait()
	if q := s.count("slowmx.test", dns.TypeMX, "udp"); q != 1 {
		t.Fatalf("%d concurrent lookups sent %d MX queries; want 1", n, q)
	}
	for i, d := range dests {
		if d == nil || d != dests[0] {
			t.Fatalf("#%d got %p; want the shared %p", i, d, dests[0])
		}
	}
}

// TestResolverContext: a caller whose context ends gets a temporary error at
// once; the shared query still completes and fills the cache.
func TestResolverContext(t *testing.T) {
	s := startDNS(t)
	r, _ := newTestResolver(t, s, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.Lookup(ctx, "slowmx.test")
	var le *LookupError
	if !errors.As(err, &le) || le.Permanent || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v; want a temporary LookupError wrapping DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 250*time.Millisecond {
		t.Fatalf("Lookup took %v after its context ended", el)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if d, err := r.Lookup(context.Background(), "slowmx.test"); err == nil && d != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the shared query never completed")
		}
	}
	if q := s.count("slowmx.test", dns.TypeMX, "udp"); q != 1 {
		t.Fatalf("%d MX queries; want 1 (the abandoned one filled the cache)", q)
	}
}

func TestResolverStaticRoutes(t *testing.T) {
	s := startDNS(t)
	rt, err := ParseRoutes("mx.test=127.0.0.1:2525, *.wild.test=[::1]:2526")
	if err != nil {
		t.Fatal(err)
	}
	r, _ := newTestResolver(t, s, func(c *ResolverConfig) { c.Routes = rt })
	for i, tt := range []struct{ domain, host string }{
		{"mx.test", "127.0.0.1:2525"},
		{"A.Wild.Test", "[::1]:2526"},
	} {
		d, err := r.Lookup(context.Background(), tt.domain)
		if err != nil {
			t.Fatalf("#%d: %v", i, err)
		}
		if !d.Static || len(d.MXs) != 1 || d.MXs[0].Host != tt.host ||
			!slices.Equal(d.MXs[0].Addrs, []netip.AddrPort{dnsAP(tt.host)}) || !slices.Equal(d.Hosts(), []string{tt.host}) {
			t.Fatalf("#%d: %+v; want static %s", i, d, tt.host)
		}
		if d.Domain != strings.ToLower(tt.domain) {
			t.Fatalf("#%d: Domain %q", i, d.Domain)
		}
	}
	if n := s.total("mx.test") + s.total("a.wild.test"); n != 0 {
		t.Fatalf("static routes sent %d DNS queries", n)
	}
	// Not routed: DNS as usual.
	if _, err := r.Lookup(context.Background(), "nx.test"); !errors.Is(err, ErrNoSuchDomain) {
		t.Fatalf("unrouted nx.test: %v", err)
	}
}

func TestResolverAddressLiteral(t *testing.T) {
	s := startDNS(t)
	r, _ := newTestResolver(t, s, nil)
	for i, tt := range []struct {
		domain string
		want   string
		ok     bool
	}{
		{"[192.0.2.9]", "192.0.2.9:25", true},
		{"[IPv6:2001:db8::9]", "[2001:db8::9]:25", true},
		{"[2001:db8::9]", "", false},
		{"[300.1.1.1]", "", false},
		{"[192.0.2.9", "", false},
	} {
		d, err := r.Lookup(context.Background(), tt.domain)
		if !tt.ok {
			if !permanent(err) {
				t.Errorf("#%d %s: got %v; want a permanent error", i, tt.domain, err)
			}
			continue
		}
		if err != nil || len(d.MXs) != 1 || !slices.Equal(d.MXs[0].Addrs, []netip.AddrPort{dnsAP(tt.want)}) {
			t.Errorf("#%d %s: got %+v, %v; want %s", i, tt.domain, d, err, tt.want)
		}
	}
}

func TestNewResolverServer(t *testing.T) {
	for i, tt := range []struct{ in, want string }{
		{"127.0.0.1:5353", "127.0.0.1:5353"},
		{"127.0.0.1", "127.0.0.1:53"},
		{"::1", "[::1]:53"},
		{"[::1]:5353", "[::1]:5353"},
	} {
		r, err := NewResolver(ResolverConfig{Server: tt.in})
		if err != nil {
			t.Fatal(err)
		}
		if r.Server() != tt.want {
			t.Errorf("#%d: Server() = %q; want %q", i, r.Server(), tt.want)
		}
		r.Close()
	}
	// "" reads /etc/resolv.conf; it exists on the machines we test on.
	if r, err := NewResolver(ResolverConfig{}); err == nil {
		if _, _, err := net.SplitHostPort(r.Server()); err != nil {
			t.Errorf("server from resolv.conf %q: %v", r.Server(), err)
		}
		r.Close()
	}
}

func TestResolverCachedLookupAllocs(t *testing.T) {
	if resolverRaceBuild() {
		t.Skip("allocation counts are not meaningful under -race")
	}
	s := startDNS(t)
	r, _ := newTestResolver(t, s, nil)
	ctx := context.Background()
	if _, err := r.Lookup(ctx, "mx.test"); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(1000, func() { r.Lookup(ctx, "mx.test") }); n != 0 {
		t.Fatalf("cached Lookup allocates %v times; want 0", n)
	}
}
