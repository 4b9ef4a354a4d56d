package engine

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
)

// Routes is a static route table that sends mail for some domains to a fixed
// address instead of their MX: for relays, tests and the demo. Patterns are
//
//	example.com     exactly that domain
//	*.example.org   any subdomain of example.org (not example.org itself)
//	*               every domain (catch-all)
//
// Match prefers an exact pattern, then the longest wildcard suffix, then the
// catch-all. Patterns are case-insensitive and a trailing dot is ignored.
// Routes is safe for concurrent use; the zero value is an empty table.
type Routes struct {
	mu       sync.RWMutex
	exact    map[string]*route
	suffix   map[string]*route // key ".example.org"
	catchAll *route
}

// route is one entry, with the MX list a static Destination shares.
type route struct {
	addr  netip.AddrPort
	mxs   []MX
	hosts []string
}

func newRoute(addr netip.AddrPort) *route {
	host := addr.String()
	return &route{addr: addr, mxs: []MX{{Host: host, Addrs: []netip.AddrPort{addr}}}, hosts: []string{host}}
}

// ErrRoute is wrapped by every error of ParseRoutes and Add.
var ErrRoute = errors.New("engine: bad route")

// ParseRoutes parses a comma-separated list of pattern=address entries, such
// as "example.com=127.0.0.1:2525, *.example.org=[::1]:2526, *=127.0.0.1:2527".
// The address is an IP literal with an optional port (default 25); host names
// are refused (the table must not depend on DNS). Errors wrap ErrRoute and
// name the entry. An empty spec yields an empty table.
func ParseRoutes(spec string) (*Routes, error) {
	rt := &Routes{}
	for i, entry := range strings.Split(spec, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		pattern, addr, ok := strings.Cut(entry, "=")
		if !ok {
			return nil, fmt.Errorf("%w: entry %d %q: want pattern=address", ErrRoute, i+1, entry)
		}
		ap, err := parseRouteAddr(strings.TrimSpace(addr))
		if err != nil {
			return nil, fmt.Errorf("%w: entry %d %q: %v", ErrRoute, i+1, entry, err)
		}
		if err := rt.Add(strings.TrimSpace(pattern), ap); err != nil {
			return nil, fmt.Errorf("%w (entry %d)", err, i+1)
		}
	}
	return rt, nil
}

// parseRouteAddr parses "1.2.3.4:25", "[::1]:25", "1.2.3.4" or "[::1]"/"::1".
func parseRouteAddr(s string) (netip.AddrPort, error) {
	if s == "" {
		return netip.AddrPort{}, errors.New("empty address")
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return netip.AddrPort{}, errors.New("port 0")
		}
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil {
		return netip.AddrPortFrom(a.Unmap(), 25), nil
	}
	return netip.AddrPort{}, fmt.Errorf("address %q is not an IP literal with an optional port (1.2.3.4:25, [::1]:25)", s)
}

// Add adds a route for pattern (see Routes). Errors wrap ErrRoute: an invalid
// pattern or address, or a pattern that is already in the table.
func (rt *Routes) Add(pattern string, addr netip.AddrPort) error {
	p := strings.ToLower(strings.TrimSpace(pattern))
	if !addr.IsValid() || addr.Port() == 0 {
		return fmt.Errorf("%w: %q: invalid address %v", ErrRoute, pattern, addr)
	}
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	rt.mu.Lock()
	defer rt.mu.Unlock()
	switch {
	case p == "*":
		if rt.catchAll != nil {
			return fmt.Errorf("%w: duplicate catch-all *", ErrRoute)
		}
		rt.catchAll = newRoute(addr)
	case strings.HasPrefix(p, "*."):
		dom := strings.TrimSuffix(p[2:], ".")
		if err := checkRouteDomain(dom); err != nil {
			return fmt.Errorf("%w: %q: %v", ErrRoute, pattern, err)
		}
		suf := "." + dom
		p = "*" + suf
		if _, dup := rt.suffix[suf]; dup {
			return fmt.Errorf("%w: duplicate pattern %q", ErrRoute, p)
		}
		if rt.suffix == nil {
			rt.suffix = make(map[string]*route)
		}
		rt.suffix[suf] = newRoute(addr)
	default:
		p = strings.TrimSuffix(p, ".")
		if err := checkRouteDomain(p); err != nil {
			return fmt.Errorf("%w: %q: %v", ErrRoute, pattern, err)
		}
		if _, dup := rt.exact[p]; dup {
			return fmt.Errorf("%w: duplicate pattern %q", ErrRoute, p)
		}
		if rt.exact == nil {
			rt.exact = make(map[string]*route)
		}
		rt.exact[p] = newRoute(addr)
	}
	return nil
}

// checkRouteDomain accepts a lower-case domain: dot-separated non-empty
// labels of letters, digits, '-', '_' (and UTF-8 for IDNs).
func checkRouteDomain(d string) error {
	if d == "" {
		return errors.New("empty domain")
	}
	if strings.Contains(d, "*") {
		return errors.New("'*' is allowed only as the whole pattern or as a leading \"*.\"")
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" {
			return errors.New("empty label")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if c <= ' ' || c == '=' || c == ',' || c == '@' || c == '[' || c == ']' || c == ':' || c == '/' || c == 0x7f {
				return fmt.Errorf("invalid character %q", c)
			}
		}
	}
	return nil
}

// Match returns the address for domain and whether a route applies. domain
// should be lower case (ASCII upper case is folded at the cost of an
// allocation); a trailing dot is ignored. Match does not allocate otherwise.
func (rt *Routes) Match(domain string) (netip.AddrPort, bool) {
	domain = strings.TrimSuffix(domain, ".")
	if domainHasUpper(domain) {
		domain = strings.ToLower(domain)
	}
	if e, ok := rt.match(domain); ok {
		return e.addr, true
	}
	return netip.AddrPort{}, false
}

// match finds the route of a lower-case domain without a trailing dot.
func (rt *Routes) match(domain string) (*route, bool) {
	if rt == nil {
		return nil, false
	}
	rt.mu.RLock()
	defer rt.mu.RUnlock()
	if e, ok := rt.exact[domain]; ok {
		return e, true
	}
	if len(rt.suffix) > 0 {
		// Longest suffix first: for a.b.example.org try .b.example.org,
		// then .example.org, then .org.
		for i := strings.IndexByte(domain, '.'); i >= 0; {
			if e, ok := rt.suffix[domain[i:]]; ok {
				return e, true
			}
			j := strings.IndexByte(domain[i+1:], '.')
			if j < 0 {
				break
			}
			i += 1 + j
		}
	}
	return rt.catchAll, rt.catchAll != nil
}

// Len returns the number of routes.
func (rt *Routes) Len() int {
	if rt == nil {
		return 0
	}
	rt.mu.RLock()
	defer rt.mu.RUnlock()
	n := len(rt.exact) + len(rt.suffix)
	if rt.catchAll != nil {
		n++
	}
	return n
}

// String returns the table in ParseRoutes syntax, canonical order (exact
// patterns, then wildcards, each sorted, then the catch-all), so that
// ParseRoutes(rt.String()) is an equal table.
func (rt *Routes) String() string {
	if rt == nil {
		return ""
	}
	rt.mu.RLock()
	defer rt.mu.RUnlock()
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(rt.exact)) {
		parts = append(parts, k+"="+rt.exact[k].addr.String())
	}
	for _, k := range slices.Sorted(maps.Keys(rt.suffix)) {
		parts = append(parts, "*"+k+"="+rt.suffix[k].addr.String())
	}
	if rt.catchAll != nil {
		parts = append(parts, "*="+rt.catchAll.addr.String())
	}
	return strings.Join(parts, ", ")
}

// MarshalText implements encoding.TextMarshaler (the String form).
func (rt *Routes) MarshalText() ([]byte, error) { return []byte(rt.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (ParseRoutes syntax). It
// replaces the table's contents.
func (rt *Routes) UnmarshalText(b []byte) error {
	p, err := ParseRoutes(string(b))
	if err != nil {
		return err
	}
	rt.mu.Lock()
	rt.exact, rt.suffix, rt.catchAll = p.exact, p.suffix, p.catchAll
	rt.mu.Unlock()
	return nil
}

func domainHasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}
