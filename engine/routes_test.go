package engine

import (
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

func TestParseRoutes(t *testing.T) {
	rt, err := ParseRoutes(" example.com=127.0.0.1:2525, *.example.org=127.0.0.1:2526,*.b.example.org=[::1]:2528 , Upper.Example.NET.=192.0.2.7,*=127.0.0.1:2527,")
	if err != nil {
		t.Fatal(err)
	}
	if rt.Len() != 5 {
		t.Fatalf("Len() = %d; want 5", rt.Len())
	}
	for i, tt := range []struct {
		domain string
		want   string // "" = the catch-all is expected... see below
	}{
		{"example.com", "127.0.0.1:2525"},
		{"EXAMPLE.com.", "127.0.0.1:2525"},
		{"a.example.com", "127.0.0.1:2527"}, // exact pattern: subdomains fall to the catch-all
		{"a.example.org", "127.0.0.1:2526"},
		{"x.a.example.org", "127.0.0.1:2526"},
		{"example.org", "127.0.0.1:2527"}, // *.example.org does not match the apex
		{"c.b.example.org", "[::1]:2528"}, // longest suffix wins
		{"b.example.org", "127.0.0.1:2526"},
		{"upper.example.net", "192.0.2.7:25"}, // default port 25
		{"other.test", "127.0.0.1:2527"},
	} {
		got, ok := rt.Match(tt.domain)
		if !ok || got.String() != tt.want {
			t.Errorf("#%d: Match(%q) = %v, %v; want %s", i, tt.domain, got, ok, tt.want)
		}
	}

	// Without a catch-all, unmatched domains are not routed.
	rt2, err := ParseRoutes("example.com=127.0.0.1:2525")
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := rt2.Match("example.net"); ok {
		t.Fatalf("Match(example.net) = %v; want no route", got)
	}
	var nilRT *Routes
	if _, ok := nilRT.Match("example.com"); ok || nilRT.Len() != 0 {
		t.Fatal("nil *Routes matched")
	}
	if rt3, err := ParseRoutes("  "); err != nil || rt3.Len() != 0 {
		t.Fatalf("empty spec: %v, %d routes", err, rt3.Len())
	}
}

func TestParseRoutesErrors(t *testing.T) {
	for i, tt := range []struct{ spec, want string }{
		{"example.com", "want pattern=address"},
		{"example.com=", "empty address"},
		{"example.com=mail.example.net:25", "not an IP literal"},
		{"example.com=127.0.0.1:99999", "not an IP literal"},
		{"example.com=127.0.0.1:0", "port 0"},
		{"ex*ample.com=127.0.0.1:25", "'*' is allowed only"},
		{"*.=127.0.0.1:25", "empty domain"},
		{"**.example.com=127.0.0.1:25", "'*' is allowed only"},
		{"a..b=127.0.0.1:25", "empty label"},
		{"=127.0.0.1:25", "empty domain"},
		{"a b.com=127.0.0.1:25", "invalid character"},
		{"example.com=127.0.0.1:25, EXAMPLE.com=127.0.0.1:26", "duplicate pattern"},
		{"*=127.0.0.1:25,*=127.0.0.1:26", "duplicate catch-all"},
		{"ok.com=127.0.0.1:25, bad", "entry 2"},
	} {
		_, err := ParseRoutes(tt.spec)
		if err == nil || !errors.Is(err, ErrRoute) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("#%d: ParseRoutes(%q) = %v; want an ErrRoute containing %q", i, tt.spec, err, tt.want)
		}
	}
	var rt Routes
	if err := rt.Add("example.com", netip.AddrPort{}); !errors.Is(err, ErrRoute) {
		t.Errorf("Add with an invalid address: %v", err)
	}
}

func TestRoutesStringRoundTrip(t *testing.T) {
	const spec = "*=127.0.0.1:2527, b.com=[::1]:25, *.x.org=127.0.0.1:2526, a.com=127.0.0.1:2525"
	rt, err := ParseRoutes(spec)
	if err != nil {
		t.Fatal(err)
	}
	const want = "a.com=127.0.0.1:2525, b.com=[::1]:25, *.x.org=127.0.0.1:2526, *=127.0.0.1:2527"
	if got := rt.String(); got != want {
		t.Fatalf("String() = %q; want %q", got, want)
	}
	var back Routes
	if err := back.UnmarshalText([]byte(rt.String())); err != nil {
		t.Fatal(err)
	}
	if b, _ := back.MarshalText(); string(b) != want {
		t.Fatalf("round trip = %q; want %q", b, want)
	}
}

// TestRoutesConcurrent: Add and Match from several goroutines (run with -race).
func TestRoutesConcurrent(t *testing.T) {
	var rt Routes
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				d := string(rune('a'+g)) + strings.Repeat("x", i%7) + ".test"
				rt.Add("*."+string(rune('a'+g))+string(rune('0'+i%10))+"-"+d, netip.MustParseAddrPort("127.0.0.1:2525"))
				rt.Match("m." + d)
			}
		})
	}
	wg.Wait()
	if rt.Len() == 0 {
		t.Fatal("no routes added")
	}
}

func TestRoutesMatchAllocs(t *testing.T) {
	if resolverRaceBuild() {
		t.Skip("allocation counts are not meaningful under -race")
	}
	rt, _ := ParseRoutes("example.com=127.0.0.1:2525, *.example.org=127.0.0.1:2526")
	if n := testing.AllocsPerRun(1000, func() {
		rt.Match("a.b.example.org")
		rt.Match("no.route.test")
	}); n != 0 {
		t.Fatalf("Match allocates %v times; want 0", n)
	}
}
