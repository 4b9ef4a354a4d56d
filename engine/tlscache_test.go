package engine

import (
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestTLSCache(t *testing.T) {
	clock := newDNSClock()
	tc := NewTLSCache(100, clock.Now)
	defer tc.Close()

	if _, ok := tc.Get("mx1.example.com"); ok {
		t.Fatal("empty cache has an entry")
	}
	if tc.Broken("mx1.example.com") {
		t.Fatal("unknown host is broken")
	}

	tc.MarkOffered("MX1.Example.com.", true)
	info, ok := tc.Get("mx1.example.com")
	if !ok || !info.Offered || info.OK || !info.Updated.Equal(clock.Now()) {
		t.Fatalf("after MarkOffered: %+v, %v; want Offered only (case and dot folded)", info, ok)
	}

	tc.MarkOK("mx1.example.com")
	if info, _ = tc.Get("mx1.example.com"); !info.Offered || !info.OK || !info.BrokenUntil.IsZero() {
		t.Fatalf("after MarkOK: %+v", info)
	}

	until := clock.Now().Add(10 * time.Minute)
	tc.MarkBroken("mx1.example.com", until)
	if info, _ = tc.Get("mx1.example.com"); info.OK || !info.Offered || !info.BrokenUntil.Equal(until) {
		t.Fatalf("after MarkBroken: %+v", info)
	}
	if !tc.Broken("mx1.example.com") {
		t.Fatal("not Broken right after MarkBroken")
	}
	clock.Advance(10*time.Minute - time.Second)
	if !tc.Broken("mx1.example.com") {
		t.Fatal("not Broken one second before until")
	}
	clock.Advance(time.Second)
	if tc.Broken("mx1.example.com") {
		t.Fatal("still Broken at until")
	}
	if _, ok := tc.Get("mx1.example.com"); !ok {
		t.Fatal("entry lost when the broken mark ended")
	}

	// A later success clears a broken mark.
	tc.MarkBroken("mx2.example.com", clock.Now().Add(time.Hour))
	tc.MarkOK("mx2.example.com")
	if tc.Broken("mx2.example.com") {
		t.Fatal("Broken after MarkOK")
	}

	// MarkOffered(false) is remembered as a known "no STARTTLS".
	tc.MarkOffered("plain.example.com", false)
	if info, ok := tc.Get("plain.example.com"); !ok || info.Offered {
		t.Fatalf("plain host: %+v, %v; want known, not offered", info, ok)
	}

	// Entries age out TLSCacheTTL after their last update, but a broken mark
	// further in the future keeps its entry.
	tc.MarkBroken("long.example.com", clock.Now().Add(48*time.Hour))
	clock.Advance(TLSCacheTTL + time.Second)
	if _, ok := tc.Get("plain.example.com"); ok {
		t.Fatal("entry older than TLSCacheTTL returned")
	}
	if !tc.Broken("long.example.com") {
		t.Fatal("broken mark dropped before until")
	}
}

// TestTLSCacheConcurrent updates and reads from several goroutines (run with
// -race); each goroutine's own host must end in the state it set last.
func TestTLSCacheConcurrent(t *testing.T) {
	clock := newDNSClock()
	tc := NewTLSCache(0, clock.Now)
	defer tc.Close()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			own := "g" + strconv.Itoa(g) + ".example.com"
			for i := range 100 {
				tc.MarkOffered(own, true)
				tc.MarkBroken("shared.example.com", clock.Now().Add(time.Minute))
				tc.Get("shared.example.com")
				tc.Broken(own)
				if i%2 == 0 {
					tc.MarkOK(own)
				} else {
					tc.MarkBroken(own, clock.Now().Add(time.Hour))
				}
			}
		})
	}
	wg.Wait()
	for g := range 8 {
		own := "g" + strconv.Itoa(g) + ".example.com"
		if info, ok := tc.Get(own); !ok || !info.Offered || info.OK || !tc.Broken(own) {
			t.Fatalf("%s: %+v, %v; want offered and broken (last update)", own, info, ok)
		}
	}
}

func TestTLSCacheGetAllocs(t *testing.T) {
	if resolverRaceBuild() {
		t.Skip("allocation counts are not meaningful under -race")
	}
	tc := NewTLSCache(0, nil)
	defer tc.Close()
	tc.MarkOK("mx.example.com")
	if n := testing.AllocsPerRun(1000, func() {
		tc.Get("mx.example.com")
		tc.Broken("mx.example.com")
	}); n != 0 {
		t.Fatalf("Get/Broken allocate %v times; want 0", n)
	}
}
