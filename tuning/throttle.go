package tuning

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Day is the period of a "/d" throttle spec.
const Day = 24 * time.Hour

// ParseThrottleSpec parses a rate: a count, a slash, a unit, and optional
// comma-separated options.
//
//	100/s   1,000/h   10/min   500/d,max_burst=10   100/second   1000/hour   500/day
//
// The count may group thousands with commas ("1,000"; groups of exactly three
// digits). Units: s, sec, second; min, minute, m; h, hr, hour; d, day (plural
// forms accepted, case-insensitive). The only option is max_burst=N (N ≥ 1).
// "", "unlimited" and "none" give the zero (unlimited) spec; "0/s" is rejected
// because it would read as "never". The count may not exceed one event per
// nanosecond of the period, so Interval is never zero.
func ParseThrottleSpec(s string) (ThrottleSpec, error) {
	t := strings.TrimSpace(s)
	switch strings.ToLower(t) {
	case "", "unlimited", "none":
		return ThrottleSpec{}, nil
	}
	fail := func(msg string) (ThrottleSpec, error) {
		return ThrottleSpec{}, fmt.Errorf("tuning: throttle spec %q: %s", s, msg)
	}
	num, rest, ok := strings.Cut(t, "/")
	if !ok {
		return fail(`want COUNT/UNIT such as "100/s", "1,000/h" or "500/d,max_burst=10"`)
	}
	limit, err := parseGroupedUint(strings.TrimSpace(num))
	if err != nil {
		return fail(err.Error())
	}
	if limit == 0 {
		return fail(`count must be at least 1 (use "unlimited" for no limit)`)
	}
	parts := strings.Split(rest, ",")
	var spec ThrottleSpec
	spec.Limit = limit
	spec.Period, ok = throttleUnits[strings.ToLower(strings.TrimSpace(parts[0]))]
	if !ok {
		return fail(fmt.Sprintf("unknown unit %q (want s, min, h or d)", strings.TrimSpace(parts[0])))
	}
	if limit > uint64(spec.Period) {
		return fail("rate above one per nanosecond")
	}
	for _, opt := range parts[1:] {
		k, v, ok := strings.Cut(strings.TrimSpace(opt), "=")
		k = strings.TrimSpace(k)
		if !ok || (k != "max_burst" && k != "burst") {
			return fail(fmt.Sprintf("unknown option %q (want max_burst=N)", strings.TrimSpace(opt)))
		}
		if spec.MaxBurst != 0 {
			return fail("max_burst given twice")
		}
		b, err := parseGroupedUint(strings.TrimSpace(v))
		if err != nil {
			return fail("max_burst: " + err.Error())
		}
		if b == 0 {
			return fail("max_burst must be at least 1")
		}
		spec.MaxBurst = b
	}
	return spec, nil
}

var throttleUnits = map[string]time.Duration{
	"s": time.Second, "sec": time.Second, "secs": time.Second, "second": time.Second, "seconds": time.Second,
	"m": time.Minute, "min": time.Minute, "mins": time.Minute, "minute": time.Minute, "minutes": time.Minute,
	"h": time.Hour, "hr": time.Hour, "hrs": time.Hour, "hour": time.Hour, "hours": time.Hour,
	"d": Day, "day": Day, "days": Day,
}

var errBadCount = errors.New("count must be digits, optionally grouped by commas (1,000)")

// parseGroupedUint parses "1000" or "1,000" (commas between groups of three).
func parseGroupedUint(s string) (uint64, error) {
	if s == "" {
		return 0, errBadCount
	}
	if strings.Contains(s, ",") {
		groups := strings.Split(s, ",")
		if len(groups[0]) < 1 || len(groups[0]) > 3 {
			return 0, errBadCount
		}
		for _, g := range groups[1:] {
			if len(g) != 3 {
				return 0, errBadCount
			}
		}
		s = strings.Join(groups, "")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errBadCount
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, errors.New("count out of range")
	}
	return n, nil
}

// IsZero reports whether t is the unlimited spec.
func (t ThrottleSpec) IsZero() bool { return t.Limit == 0 }

// Interval is the GCRA emission interval, Period/Limit (at least 1ns); zero
// for the unlimited spec.
func (t ThrottleSpec) Interval() time.Duration {
	if t.Limit == 0 {
		return 0
	}
	if t.Limit > uint64(math.MaxInt64) {
		return 1
	}
	iv := t.Period / time.Duration(t.Limit)
	if iv < 1 {
		iv = 1
	}
	return iv
}

// Burst is the number of events allowed back to back: MaxBurst, or Limit
// when MaxBurst is zero. Zero for the unlimited spec.
func (t ThrottleSpec) Burst() uint64 {
	if t.Limit == 0 {
		return 0
	}
	if t.MaxBurst != 0 {
		return t.MaxBurst
	}
	return t.Limit
}

// PerSecond is the rate in events per second (0 for unlimited), for display.
func (t ThrottleSpec) PerSecond() float64 {
	if t.Limit == 0 || t.Period <= 0 {
		return 0
	}
	return float64(t.Limit) / t.Period.Seconds()
}

// String returns the canonical form: "unlimited", or COUNT/UNIT with UNIT one
// of s, min, h, d, plain digits, and ",max_burst=N" when MaxBurst is set.
// ParseThrottleSpec(t.String()) == t for every spec it produced.
func (t ThrottleSpec) String() string {
	if t.Limit == 0 {
		return "unlimited"
	}
	return string(t.AppendText(nil))
}

// AppendText appends the canonical form of t to dst.
func (t ThrottleSpec) AppendText(dst []byte) []byte {
	if t.Limit == 0 {
		return append(dst, "unlimited"...)
	}
	dst = strconv.AppendUint(dst, t.Limit, 10)
	dst = append(dst, '/')
	switch t.Period {
	case time.Second:
		dst = append(dst, 's')
	case time.Minute:
		dst = append(dst, "min"...)
	case time.Hour:
		dst = append(dst, 'h')
	case Day:
		dst = append(dst, 'd')
	default:
		dst = append(dst, t.Period.String()...) // not produced by the parser
	}
	if t.MaxBurst != 0 {
		dst = append(dst, ",max_burst="...)
		dst = strconv.AppendUint(dst, t.MaxBurst, 10)
	}
	return dst
}

// MarshalText implements encoding.TextMarshaler.
func (t ThrottleSpec) MarshalText() ([]byte, error) { return t.AppendText(nil), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (t *ThrottleSpec) UnmarshalText(b []byte) error {
	v, err := ParseThrottleSpec(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}
