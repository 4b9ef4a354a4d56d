package peers

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// hist is a log-linear latency histogram: 32 linear sub-buckets per power of
// two of microseconds (about 3 % resolution), fixed memory whatever the
// message count, so the latency record does not inflate the peer's peak RSS.
// Record is safe for concurrent use.
type hist struct {
	b [64 * histSub]atomic.Int64
}

const histSubBits = 5
const histSub = 1 << histSubBits

func histIndex(us uint64) int {
	if us < histSub {
		return int(us)
	}
	e := bits.Len64(us) - 1 - histSubBits // us >> e is in [histSub, 2*histSub)
	return (e+1)*histSub + int(us>>e) - histSub
}

// histValue returns the lower bound (µs) of bucket i.
func histValue(i int) uint64 {
	if i < histSub {
		return uint64(i)
	}
	e := i/histSub - 1
	return uint64(i%histSub+histSub) << e
}

func (h *hist) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.b[histIndex(uint64(d/time.Microsecond))].Add(1)
}

// Quantile returns the q-quantile (0 < q ≤ 1), 0 when nothing was recorded.
func (h *hist) Quantile(q float64) time.Duration {
	var total int64
	for i := range h.b {
		total += h.b[i].Load()
	}
	if total == 0 {
		return 0
	}
	rank := int64(q*float64(total) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var seen int64
	for i := range h.b {
		seen += h.b[i].Load()
		if seen >= rank {
			return time.Duration(histValue(i)) * time.Microsecond
		}
	}
	return 0
}
