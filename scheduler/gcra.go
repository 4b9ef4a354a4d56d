// Package scheduler decides what the engine does: which egress paths (source
// IP × site, where a site is the rolled-up MX host set) open connections, and
// which recipient goes next on each connection, within the tuning limits
// (connection_limit, max_connection_rate, max_message_rate, warm-up caps),
// reacting to reply rules (KumoMTA TSA style), adapting concurrency per site,
// and scheduling retries until max_age. It opens no sockets: the engine acts.
package scheduler

import (
	"time"

	"github.com/spate-mta/spate/tuning"
)

// Throttle is a GCRA (generic cell rate algorithm) limiter: it admits events
// at spec.Interval() on average with bursts of spec.Burst(). The zero
// Throttle (from a zero spec) admits everything. Not safe for concurrent use;
// the Scheduler guards its throttles with its lock.
type Throttle struct {
	interval  int64 // ns between events; 0 = unlimited
	tolerance int64 // (burst-1) × interval
	tat       int64 // theoretical arrival time, unix ns
}

// NewThrottle returns a throttle for spec (unlimited when spec is zero).
// Without an explicit max_burst, per-second and per-minute rates are paced
// evenly (burst 1: "100/s" is one event every 10 ms, never 100 at once, the
// way a receiving MTA's rate limiter sees it); hourly and daily allowances
// may be spent in one burst (burst = limit), as KumoMTA does.
func NewThrottle(spec tuning.ThrottleSpec) Throttle {
	if spec.IsZero() {
		return Throttle{}
	}
	iv := int64(spec.Interval())
	if iv <= 0 {
		iv = 1
	}
	b := int64(spec.MaxBurst)
	if b == 0 && spec.Period > time.Minute {
		b = int64(spec.Limit)
	}
	if b < 1 {
		b = 1
	}
	return Throttle{interval: iv, tolerance: (b - 1) * iv}
}

// Unlimited reports whether the throttle admits everything.
func (t *Throttle) Unlimited() bool { return t.interval == 0 }

// pacingSlack is how much lateness a throttle makes up for. Sessions ask for
// work when a reply arrives or on the engine's tick (a few ms), rarely at the
// exact instant the next event conforms; a plain GCRA would forfeit that
// lateness every time, so "500/s" polled every 5 ms ran at ~360/s. Up to
// pacingSlack of it is carried over instead: over any window W a throttle
// admits at most (W+pacingSlack)/interval + burst events, and a fresh or
// long-idle throttle still starts with no more than its burst.
const pacingSlack = int64(20 * time.Millisecond)

// Allow admits one event at now, or returns how long to wait.
func (t *Throttle) Allow(now time.Time) (bool, time.Duration) {
	if t.interval == 0 {
		return true, 0
	}
	n := now.UnixNano()
	tat := t.tat
	if tat < n-pacingSlack {
		tat = n // idle (or new: tat is 0): no credit beyond the burst
	}
	if tat-n > t.tolerance {
		return false, time.Duration(tat - n - t.tolerance)
	}
	t.tat = tat + t.interval
	return true, 0
}

// Ready reports whether Allow would admit an event at now, without taking it.
func (t *Throttle) Ready(now time.Time) bool {
	if t.interval == 0 {
		return true
	}
	tat := max(t.tat, now.UnixNano())
	return tat-now.UnixNano() <= t.tolerance
}
