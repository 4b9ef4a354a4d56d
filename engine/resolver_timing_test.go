package engine

import (
	"context"
	"net"
	"strconv"
	"testing"
)

// BenchmarkLookupCached is the hot path: a Lookup answered from the cache
// (target: 0 allocs/op).
func BenchmarkLookupCached(b *testing.B) {
	s := startDNS(b)
	r, _ := newTestResolver(b, s, nil)
	ctx := context.Background()
	if _, err := r.Lookup(ctx, "mx.test"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if d, err := r.Lookup(ctx, "mx.test"); err != nil || d == nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkLookupStatic is a Lookup answered by the static route table.
func BenchmarkLookupStatic(b *testing.B) {
	rt, _ := ParseRoutes("*=127.0.0.1:2525")
	r, err := NewResolver(ResolverConfig{Server: "127.0.0.1:1", Routes: rt})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Lookup(ctx, "example.com"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLookupMiss resolves a new domain each time (one MX query over
// loopback UDP; its MX host's addresses come from the cache).
func BenchmarkLookupMiss(b *testing.B) {
	s := startDNS(b)
	r, _ := newTestResolver(b, s, nil)
	ctx := context.Background()
	r.Lookup(ctx, "warm.bulk.test")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := r.Lookup(ctx, "d"+strconv.Itoa(i)+".bulk.test"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStdlibLookupMX is the standard-library baseline: net.Resolver
// (pure Go) LookupMX against the same server. It has no cache and does not
// resolve the MX hosts' addresses.
func BenchmarkStdlibLookupMX(b *testing.B) {
	s := startDNS(b)
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, s.addr)
	}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if mx, err := res.LookupMX(ctx, "mx.test"); err != nil || len(mx) != 2 {
			b.Fatal(mx, err)
		}
	}
}

func BenchmarkTLSCacheGet(b *testing.B) {
	tc := NewTLSCache(0, nil)
	defer tc.Close()
	tc.MarkOK("mx.example.com")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if tc.Broken("mx.example.com") {
				b.Error("broken")
			}
		}
	})
}
