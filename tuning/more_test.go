package tuning

import (
	"testing"
	"time"
)

func TestWarmupCapOn(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		paris = time.FixedZone("CET", 3600)
	}
	w := &Warmup{Start: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), Caps: []uint64{50, 100, 200}}
	wp := &Warmup{Start: time.Date(2026, 11, 1, 0, 0, 0, 0, paris), Caps: []uint64{10, 20}}
	tests := []struct {
		w    *Warmup
		at   time.Time
		cap  uint64
		warm bool
	}{
		{w, time.Date(2026, 10, 30, 12, 0, 0, 0, time.UTC), 50, false}, // before start: day 0's cap
		{w, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), 50, false},
		{w, time.Date(2026, 11, 1, 23, 59, 59, 0, time.UTC), 50, false},
		{w, time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC), 100, false},
		{w, time.Date(2026, 11, 3, 18, 0, 0, 0, time.UTC), 200, false},
		{w, time.Date(2026, 11, 4, 0, 0, 0, 0, time.UTC), 0, true}, // past the last entry
		{w, time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC), 0, true},
		// Days turn at midnight in Start's zone: 23:30 UTC on Nov 1 is Nov 2 in Paris.
		{wp, time.Date(2026, 11, 1, 22, 59, 0, 0, time.UTC), 10, false},
		{wp, time.Date(2026, 11, 1, 23, 30, 0, 0, time.UTC), 20, false},
		{wp, time.Date(2026, 11, 2, 23, 30, 0, 0, time.UTC), 0, true},
		{nil, time.Now(), 0, true},
		{&Warmup{}, time.Now(), 0, true},
	}
	for i, tt := range tests {
		c, warm := tt.w.CapOn(tt.at)
		if c != tt.cap || warm != tt.warm {
			t.Errorf("#%d: CapOn(%v) = %d, %v; want %d, %v", i, tt.at, c, warm, tt.cap, tt.warm)
		}
	}
}

func TestWarmupFromConfig(t *testing.T) {
	data := `[provider.google]
match_mx = [".google.com"]

[source.a]
source_address = "127.0.0.2"
warmup = { start = "2026-11-01", caps = [50, 100, 100, 400] }

[source.b]
source_address = "127.0.0.3"
[[source.b.warmup]]
start = 2026-11-01T00:00:00+01:00
provider = "google"
caps = [5, 10]
[[source.b.warmup]]
start = 2026-11-02
caps = [1000]
`
	c, err := Parse("w.toml", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := c.Source("a")
	b, _ := c.Source("b")
	day2 := time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC)
	if got, warm := a.Warmup.CapOn(day2); got != 100 || warm {
		t.Errorf("a day 2: %d, %v; want 100", got, warm)
	}
	if b.Warmup == nil || b.Warmup.Provider != "" || len(b.Warmups) != 2 {
		t.Fatalf("b: Warmup %+v, Warmups %+v; want the all-destinations schedule", b.Warmup, b.Warmups)
	}
	if w := b.WarmupFor("google"); w == nil || w.Caps[0] != 5 || w.Start.Hour() != 0 {
		t.Errorf("b.WarmupFor(google) = %+v", w)
	}
	if w := b.WarmupFor("yahoo"); w == nil || w.Caps[0] != 1000 {
		t.Errorf("b.WarmupFor(yahoo) = %+v; want the general schedule", w)
	}
	if w := a.WarmupFor("google"); w == nil || w.Caps[0] != 50 {
		t.Errorf("a.WarmupFor(google) = %+v; want the general schedule", w)
	}
	var none Source
	if none.WarmupFor("google") != nil {
		t.Errorf("a source without schedules must be warm")
	}
}

func TestRules(t *testing.T) {
	c, err := Parse("sample.toml", SampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	rs := c.Rules()
	if len(rs) != 3 {
		t.Fatalf("got %d rules; want 3", len(rs))
	}
	want := []struct {
		name     string
		action   RuleAction
		trigger  string
		dur      time.Duration
		rate     string
		provider string
		codes    int
	}{
		{"gmail-ts04", ActionSuspend, "3/h", time.Hour, "unlimited", "google", 1},
		{"yahoo-ts03", ActionThrottle, "unlimited", 2 * time.Hour, "100/h", "yahoo", 2},
		{"user-unknown-no-retry", ActionBounce, "unlimited", 0, "unlimited", "", 1},
	}
	for i, w := range want {
		r := rs[i]
		if r.Name != w.name || r.Action != w.action || r.Trigger.String() != w.trigger || r.Duration != w.dur || r.Rate.String() != w.rate || r.Provider != w.provider || len(r.Codes) != w.codes {
			t.Errorf("#%d: got %+v; want %+v", i, r, w)
		}
	}
	if rs[0].Pattern != `\[TS04\]` {
		t.Errorf("pattern = %q", rs[0].Pattern)
	}
	if got := rs[0].Action.String(); got != "suspend" {
		t.Errorf("ActionSuspend.String() = %q", got)
	}
}

func TestBounceClassifier(t *testing.T) {
	c, err := Parse("t.toml", []byte("[[bounce_rule]]\nclass = \"policy\"\ncode = 550\npattern = '(?i)not accepted here'\n"))
	if err != nil {
		t.Fatal(err)
	}
	rules := c.BounceRules()
	if rules[0].Class != "policy" || rules[0].Code != 550 || len(rules) != len(defaultBounceRules)+1 {
		t.Fatalf("the file's rules must come first: %+v", rules[:2])
	}
	bc := NewBounceClassifier(rules)
	tests := []struct {
		code     int
		enhanced string
		text     string
		want     string
	}{
		{550, "5.1.1", "The email account that you tried to reach does not exist", "invalid-recipient"},
		{550, "5.1.0", "Address rejected", "invalid-recipient"},
		{550, "", "User unknown in virtual mailbox table", "invalid-recipient"},
		{550, "", "No such user here", "invalid-recipient"},
		{550, "5.1.2", "Host or domain name not found", "bad-domain"},
		{550, "5.4.4", "Unable to route", "bad-domain"},
		{552, "5.2.2", "Mailbox full", "mailbox-full"},
		{452, "4.2.2", "The email account is over quota", "mailbox-full"},
		{552, "", "Quota exceeded", "mailbox-full"},
		{554, "5.7.1", "Message rejected as spam", "policy"},
		{550, "5.7.606", "Access denied, banned sending IP", "policy"},
		{554, "", "Blocked using zen.spamhaus.org", "policy"},
		{554, "", "Your IP is on a blacklist", "policy"},
		{421, "4.7.0", "[TS04] Messages from 192.0.2.1 temporarily deferred due to rate limits", "rate-limited"},
		{421, "", "Too many connections from your IP", "rate-limited"},
		{450, "", "too many messages, slow down", "rate-limited"},
		{550, "", "Message not accepted here", "policy"}, // the file's rule
		{554, "5.3.4", "Message too big for system", "other"},
		{554, "", "transaction failed", "other"},
		{550, "5.71.0", "weird", "other"}, // "5.7" is a dotted prefix, not a string prefix
	}
	for i, tt := range tests {
		if got := bc.Classify(tt.code, tt.enhanced, tt.text); got != tt.want {
			t.Errorf("#%d: Classify(%d, %q, %q) = %q; want %q", i, tt.code, tt.enhanced, tt.text, got, tt.want)
		}
	}
	classes := map[string]bool{}
	for _, r := range defaultBounceRules {
		classes[r.Class] = true
	}
	for _, cl := range BounceClasses {
		if !classes[cl] {
			t.Errorf("built-in rules lack class %q", cl)
		}
	}
}

func TestSyntaxErrorKeyHasTable(t *testing.T) {
	_, err := Parse("s.toml", []byte("[domain.\"example.com\"]\nmax_age = \"3d\nconnection_limit = 3\n"))
	e, ok := err.(*Error)
	if !ok || e.Line != 2 || e.Key != "domain.\"example.com\".max_age" {
		t.Fatalf("got %#v; want line 2, key domain.\"example.com\".max_age", err)
	}
}

func FuzzParseThrottleSpec(f *testing.F) {
	for _, s := range []string{"100/s", "1,000/h", "500/d,max_burst=10", "10/min", "unlimited", "3/H", "1,0/s", "9/d,max_burst=9,max_burst=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := ParseThrottleSpec(s)
		if err != nil {
			return
		}
		back, err := ParseThrottleSpec(spec.String())
		if err != nil || back != spec {
			t.Fatalf("%q → %+v → %q → %+v, %v", s, spec, spec.String(), back, err)
		}
		if !spec.IsZero() && spec.Interval() <= 0 {
			t.Fatalf("%q: Interval %v", s, spec.Interval())
		}
	})
}

// FuzzParse checks that Parse never panics and that every error it returns
// is an *Error with a line.
func FuzzParse(f *testing.F) {
	f.Add(string(SampleConfig))
	f.Add(string(DemoConfig))
	f.Add("[default]\nconnection_limit = 1\n[[rule]]\ncodes=[\"421\"]\naction=\"bounce\"\n")
	f.Add("[source.a]\nwarmup = [{start=2026-01-01, caps=[1]}, {start=2026-01-01, caps=[1]}]\n[pool.p]\nmembers=[\"a\",\"a\"]\n")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse("f.toml", []byte(s))
		if err != nil {
			e, ok := err.(*Error)
			if !ok || e.File != "f.toml" || e.Line < 1 {
				t.Fatalf("error %#v", err)
			}
			return
		}
		c.Explain(Query{Domain: "a.test", MXHosts: []string{"mx.a.test"}, Source: "a"})
	})
}
