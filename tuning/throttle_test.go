package tuning

import (
	"encoding"
	"strings"
	"testing"
	"time"
)

var (
	_ encoding.TextMarshaler   = ThrottleSpec{}
	_ encoding.TextUnmarshaler = (*ThrottleSpec)(nil)
)

func TestParseThrottleSpec(t *testing.T) {
	tests := []struct {
		in    string
		want  ThrottleSpec
		canon string
	}{
		{"100/s", ThrottleSpec{Limit: 100, Period: time.Second}, "100/s"},
		{"1,000/h", ThrottleSpec{Limit: 1000, Period: time.Hour}, "1000/h"},
		{"1,000,000/d", ThrottleSpec{Limit: 1000000, Period: Day}, "1000000/d"},
		{"500/d,max_burst=10", ThrottleSpec{Limit: 500, Period: Day, MaxBurst: 10}, "500/d,max_burst=10"},
		{" 500 / d , max_burst = 10 ", ThrottleSpec{Limit: 500, Period: Day, MaxBurst: 10}, "500/d,max_burst=10"},
		{"10/min", ThrottleSpec{Limit: 10, Period: time.Minute}, "10/min"},
		{"10/m", ThrottleSpec{Limit: 10, Period: time.Minute}, "10/min"},
		{"100/second", ThrottleSpec{Limit: 100, Period: time.Second}, "100/s"},
		{"1000/hour", ThrottleSpec{Limit: 1000, Period: time.Hour}, "1000/h"},
		{"500/day", ThrottleSpec{Limit: 500, Period: Day}, "500/d"},
		{"3/H", ThrottleSpec{Limit: 3, Period: time.Hour}, "3/h"},
		{"7/hr", ThrottleSpec{Limit: 7, Period: time.Hour}, "7/h"},
		{"", ThrottleSpec{}, "unlimited"},
		{"unlimited", ThrottleSpec{}, "unlimited"},
	}
	for i, tt := range tests {
		got, err := ParseThrottleSpec(tt.in)
		if err != nil {
			t.Fatalf("#%d: ParseThrottleSpec(%q): %v", i, tt.in, err)
		}
		if got != tt.want {
			t.Errorf("#%d: ParseThrottleSpec(%q) = %+v; want %+v", i, tt.in, got, tt.want)
		}
		if s := got.String(); s != tt.canon {
			t.Errorf("#%d: String() = %q; want %q", i, s, tt.canon)
		}
		back, err := ParseThrottleSpec(got.String())
		if err != nil || back != got {
			t.Errorf("#%d: round trip of %q: got %+v, %v; want %+v", i, got.String(), back, err, got)
		}
		var u ThrottleSpec
		b, _ := got.MarshalText()
		if err := u.UnmarshalText(b); err != nil || u != got {
			t.Errorf("#%d: text round trip %q: got %+v, %v", i, b, u, err)
		}
		if got.IsZero() != (tt.want.Limit == 0) {
			t.Errorf("#%d: IsZero() = %v", i, got.IsZero())
		}
	}
}

func TestParseThrottleSpecErrors(t *testing.T) {
	tests := []struct{ in, wantSub string }{
		{"100", "COUNT/UNIT"},
		{"0/s", "at least 1"},
		{"-5/s", "digits"},
		{"1.5/s", "digits"},
		{"1,00/s", "digits"},
		{"10000,000/s", "digits"},
		{",100/s", "digits"},
		{"/s", "digits"},
		{"100/fortnight", "unknown unit"},
		{"100/", "unknown unit"},
		{"100/s,burst", "unknown option"},
		{"100/s,max_brust=3", "unknown option"},
		{"100/s,max_burst=0", "at least 1"},
		{"100/s,max_burst=x", "max_burst"},
		{"100/s,max_burst=1,max_burst=2", "twice"},
		{"99999999999999999999/s", "out of range"},
		{"2000000000/s", "nanosecond"},
	}
	for i, tt := range tests {
		got, err := ParseThrottleSpec(tt.in)
		if err == nil {
			t.Errorf("#%d: ParseThrottleSpec(%q) = %+v; want error", i, tt.in, got)
			continue
		}
		if !strings.Contains(err.Error(), tt.wantSub) || !strings.Contains(err.Error(), "tuning: throttle spec") {
			t.Errorf("#%d: ParseThrottleSpec(%q) error %q; want it to mention %q", i, tt.in, err, tt.wantSub)
		}
	}
}

func TestThrottleSpecIntervalBurst(t *testing.T) {
	tests := []struct {
		in       string
		interval time.Duration
		burst    uint64
	}{
		{"100/s", 10 * time.Millisecond, 100},
		{"1,000/h", 3600 * time.Millisecond, 1000},
		{"500/d,max_burst=10", Day / 500, 10},
		{"10/min", 6 * time.Second, 10},
		{"1000000000/s", time.Nanosecond, 1000000000},
		{"unlimited", 0, 0},
	}
	for i, tt := range tests {
		s, err := ParseThrottleSpec(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Interval(); got != tt.interval {
			t.Errorf("#%d: %q.Interval() = %v; want %v", i, tt.in, got, tt.interval)
		}
		if got := s.Burst(); got != tt.burst {
			t.Errorf("#%d: %q.Burst() = %d; want %d", i, tt.in, got, tt.burst)
		}
	}
}
