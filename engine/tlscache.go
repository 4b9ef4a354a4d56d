package engine

import (
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/dgraph-io/ristretto/v2"
)

// TLSInfo is what spate remembers about one MX host's STARTTLS.
type TLSInfo struct {
	// Offered is true if the host's last EHLO reply listed STARTTLS.
	Offered bool
	// OK is true if the last handshake with the host succeeded.
	OK bool
	// BrokenUntil is set by MarkBroken: until then, opportunistic sessions
	// should not try STARTTLS with this host.
	BrokenUntil time.Time
	// Updated is when the entry last changed (by the cache's clock).
	Updated time.Time
}

// TLSCacheTTL is how long a TLS-capability entry is kept after its last
// update (a broken mark is kept at least until BrokenUntil).
const TLSCacheTTL = 24 * time.Hour

// TLSCache remembers per MX host whether it offers STARTTLS, whether the
// handshake succeeded, and until when it is considered broken. Entries live
// in a ristretto cache keyed by the xxhash of the lower-case host name and
// expire TLSCacheTTL after their last update. All methods are safe for
// concurrent use from any goroutine; Get and Broken do not allocate or lock.
type TLSCache struct {
	c   *ristretto.Cache[uint64, *tlsEntry]
	now func() time.Time
	mu  sync.Mutex // serialises read-modify-write updates
}

// tlsEntry is immutable once stored (updates store a new entry).
type tlsEntry struct {
	host string
	info TLSInfo
}

// NewTLSCache returns a cache holding up to maxCost hosts (0 = 65,536). now
// is the clock (nil = time.Now); tests inject one. Close releases it.
func NewTLSCache(maxCost int64, now func() time.Time) *TLSCache {
	if maxCost <= 0 {
		maxCost = 1 << 16
	}
	if now == nil {
		now = time.Now
	}
	c, err := ristretto.NewCache(&ristretto.Config[uint64, *tlsEntry]{
		NumCounters:        10 * maxCost,
		MaxCost:            maxCost,
		BufferItems:        64,
		IgnoreInternalCost: true,
		KeyToHash:          func(k uint64) (uint64, uint64) { return k, 0 },
	})
	if err != nil {
		panic("engine: BUG: TLS cache config: " + err.Error())
	}
	return &TLSCache{c: c, now: now}
}

// tlsHostKey is the cache key of an MX host: xxhash of its lower-case name
// without a trailing dot (ASCII upper case costs one allocation).
func tlsHostKey(host string) (string, uint64) {
	host = strings.TrimSuffix(host, ".")
	if domainHasUpper(host) {
		host = strings.ToLower(host)
	}
	return host, xxhash.Sum64String(host)
}

// Get returns what is known about host; ok is false if nothing is (or the
// entry is older than TLSCacheTTL and not broken).
func (tc *TLSCache) Get(host string) (TLSInfo, bool) {
	h, k := tlsHostKey(host)
	e, ok := tc.c.Get(k)
	if !ok || e.host != h {
		return TLSInfo{}, false
	}
	now := tc.now()
	if now.Sub(e.info.Updated) > TLSCacheTTL && !now.Before(e.info.BrokenUntil) {
		return TLSInfo{}, false
	}
	return e.info, true
}

// Broken reports whether host was marked broken until a time still in the
// future.
func (tc *TLSCache) Broken(host string) bool {
	info, ok := tc.Get(host)
	return ok && tc.now().Before(info.BrokenUntil)
}

// MarkOffered records whether host's EHLO reply offered STARTTLS.
func (tc *TLSCache) MarkOffered(host string, offered bool) {
	tc.update(host, func(i *TLSInfo) { i.Offered = offered })
}

// MarkOK records a successful handshake with host: it offers STARTTLS, the
// handshake works, and any broken mark is cleared.
func (tc *TLSCache) MarkOK(host string) {
	tc.update(host, func(i *TLSInfo) { i.Offered, i.OK, i.BrokenUntil = true, true, time.Time{} })
}

// MarkBroken records a failed handshake with host: opportunistic sessions
// should connect without STARTTLS until until.
func (tc *TLSCache) MarkBroken(host string, until time.Time) {
	tc.update(host, func(i *TLSInfo) { i.OK, i.BrokenUntil = false, until })
}

func (tc *TLSCache) update(host string, f func(*TLSInfo)) {
	h, k := tlsHostKey(host)
	tc.mu.Lock()
	defer tc.mu.Unlock()
	var info TLSInfo
	if old, ok := tc.Get(h); ok {
		info = old
	}
	f(&info)
	now := tc.now()
	info.Updated = now
	ttl := max(TLSCacheTTL, info.BrokenUntil.Sub(now))
	tc.c.SetWithTTL(k, &tlsEntry{host: h, info: info}, 1, ttl)
	// Make the update visible to the next Get (ristretto applies new keys
	// asynchronously). Updates happen once per connection at most.
	tc.c.Wait()
}

// Close stops the cache's background goroutines. The cache must not be used
// afterwards.
func (tc *TLSCache) Close() { tc.c.Close() }
