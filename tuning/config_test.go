package tuning

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestBadConfigs(t *testing.T) {
	tests := []struct {
		file    string
		line    int
		key     string
		msgPart string
	}{
		{"typo_key.toml", 5, "default.conection_limit", `unknown key (did you mean "connection_limit"?)`},
		{"bad_throttle.toml", 2, "default.max_message_rate", `unknown unit "fortnight"`},
		{"negative_limit.toml", 3, "provider.google.connection_limit", "below the minimum 1"},
		{"unknown_source.toml", 7, "pool.default.members[1].source", `unknown source "ip3" (did you mean "ip1"?)`},
		{"bad_regex.toml", 8, "rule[1].pattern", "bad regular expression"},
		{"caps_decrease.toml", 3, "source.ip1.warmup.caps[2]", "must not decrease"},
		{"caps_zero.toml", 6, "source.ip1.warmup[0].caps[0]", "at least 1"},
		{"unknown_provider.toml", 6, "rule[0].provider", `unknown provider "gogle" (did you mean "google"?)`},
		{"bad_duration.toml", 2, `domain.'example.com'.max_age`, `unknown unit " days"`},
		{"bad_tls.toml", 2, "default.enable_tls", `enable_tls "sometimes"`},
		{"bad_address.toml", 2, "source.ip1.source_address", "bad IP address"},
		{"throttle_not_string.toml", 5, `site.'mx.example.net'.max_message_rate`, "got integer 100"},
		{"duplicate_key.toml", 3, "default.connection_limit", "already"},
		{"alias_twice.toml", 3, "default.connection_limit", "set twice"},
		{"rule_no_duration.toml", 4, "rule[0].action", "needs a duration"},
		{"unknown_section.toml", 1, "defaults", `unknown key (did you mean "default"?)`},
		{"unknown_timeout.toml", 3, "default.timeouts.greting", `did you mean "greeting"?`},
		{"unknown_pool.toml", 2, "campaign.pool", `unknown pool "nope"`},
		{"bad_bounce_class.toml", 2, "bounce_rule[0].class", `unknown class "mailbox_full"`},
		{"syntax.toml", 3, "default.retry_interval", "syntax error"},
		{"bad_code.toml", 3, "rule[0].codes[0]", `bad code "4x1"`},
		{"provider_no_match.toml", 1, "provider.google", "needs match_mx"},
		{"empty_match_mx.toml", 3, "provider.google.match_mx", "match_mx is empty"},
		{"duplicate_domain.toml", 4, "domain.'example.com'", "already defined"},
		{"bad_chunking.toml", 2, "default.chunking", "true or false"},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		seen[tt.file] = true
		path := filepath.Join("testdata", "bad", tt.file)
		c, err := Load(path)
		if err == nil {
			t.Errorf("%s: loaded %v; want error", tt.file, c)
			continue
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%s: error %T %v; want *Error", tt.file, err, err)
			continue
		}
		if e.File != path || e.Line != tt.line || e.Key != tt.key || !strings.Contains(e.Msg, tt.msgPart) {
			t.Errorf("%s: got %s:%d key %q msg %q; want line %d key %q msg containing %q", tt.file, e.File, e.Line, e.Key, e.Msg, tt.line, tt.key, tt.msgPart)
		}
		if want := path + ":"; !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), `key "`+tt.key+`"`) {
			t.Errorf("%s: Error() = %q; want it to start with %q and name the key", tt.file, err, want)
		}
	}
	all, _ := filepath.Glob(filepath.Join("testdata", "bad", "*.toml"))
	for _, f := range all {
		if !seen[filepath.Base(f)] {
			t.Errorf("%s has no test case", f)
		}
	}
}

func TestErrorString(t *testing.T) {
	e := &Error{File: "tuning.toml", Line: 14, Key: "conection_limit", Msg: `unknown key (did you mean "connection_limit"?)`}
	want := `tuning.toml:14: key "conection_limit": unknown key (did you mean "connection_limit"?)`
	if got := e.Error(); got != want {
		t.Fatalf("got %q; want %q", got, want)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.toml")); err == nil || !strings.Contains(err.Error(), "missing.toml") {
		t.Fatalf("Load(missing) error %v; want it to name the file", err)
	}
}

const layered = `[default]
connection_limit = 10
max_message_rate = "100/s"
idle_timeout = "30s"
mx_rollup = false

[default.timeouts]
connect = "20s"

[provider.google]
match_mx = [".google.com"]
connection_limit = 20
max_message_rate = "500/s"
max-rcpt-per-message = 30

[provider.gapps]
match_mx = ["aspmx.l.google.com"]
retry_interval = "5m"

[site."alt1.gmail-smtp-in.l.google.com"]
connection_limit = 5
enable_tls = "required"

[domain."example.com"]
connection_limit = 3
max_age = "1d"

[source.ip1]
source_address = "127.0.0.2"
connection_limit = 2
timeouts.data = "1m"
`

func TestResolvePrecedence(t *testing.T) {
	c, err := Parse("layered.toml", []byte(layered))
	if err != nil {
		t.Fatal(err)
	}
	gmx := []string{"gmail-smtp-in.l.google.com", "alt1.gmail-smtp-in.l.google.com"}
	apps := []string{"aspmx.l.google.com", "alt1.aspmx.l.google.com"}
	other := []string{"mx.other.test"}
	tests := []struct {
		q     Query
		limit int
		rate  string
		rcpt  int
		tls   TLSMode
		retry time.Duration
	}{
		{Query{Domain: "other.test", MXHosts: other}, 10, "100/s", 100, TLSOpportunistic, 20 * time.Minute},
		{Query{Domain: "gmail.com", MXHosts: gmx[:1]}, 20, "500/s", 30, TLSOpportunistic, 20 * time.Minute},
		{Query{Domain: "gmail.com", MXHosts: gmx}, 5, "500/s", 30, TLSRequired, 20 * time.Minute},        // site alt1
		{Query{Domain: "corp.test", MXHosts: apps}, 10, "100/s", 100, TLSOpportunistic, 5 * time.Minute}, // gapps: the longer suffix wins over .google.com
		{Query{Domain: "EXAMPLE.com", MXHosts: gmx}, 3, "500/s", 30, TLSRequired, 20 * time.Minute},
		{Query{Domain: "example.com", MXHosts: gmx, Source: "ip1"}, 2, "500/s", 30, TLSRequired, 20 * time.Minute},
		{Query{Domain: "other.test", MXHosts: other, Source: "nosuch"}, 10, "100/s", 100, TLSOpportunistic, 20 * time.Minute},
	}
	for i, tt := range tests {
		s := c.Resolve(tt.q)
		if s.ConnectionLimit != tt.limit || s.MaxMessageRate.String() != tt.rate || s.MaxRecipientsPerTransaction != tt.rcpt || s.EnableTLS != tt.tls || s.RetryInterval != tt.retry {
			t.Errorf("#%d: got limit %d rate %s rcpt %d tls %v retry %v; want %d %s %d %v %v", i,
				s.ConnectionLimit, s.MaxMessageRate, s.MaxRecipientsPerTransaction, s.EnableTLS, s.RetryInterval,
				tt.limit, tt.rate, tt.rcpt, tt.tls, tt.retry)
		}
		if s.IdleTimeout != 30*time.Second || s.MXRollup || s.Timeouts.Connect != 20*time.Second || s.Timeouts.Final != 10*time.Minute {
			t.Errorf("#%d: default layer or builtin lost: %+v", i, s)
		}
	}
	if got := c.ProviderFor(apps); got != "gapps" {
		t.Errorf("ProviderFor(gmx) = %q; want gapps", got)
	}
	if got := c.ProviderFor([]string{"mx.other.test", "ALT2.gmail-smtp-in.l.google.com."}); got != "google" {
		t.Errorf("ProviderFor(other, google) = %q; want google", got)
	}
	if got := c.ProviderFor(other); got != "" {
		t.Errorf("ProviderFor(other) = %q; want none", got)
	}
	if got := c.ProviderFor([]string{"notgoogle.com"}); got != "" {
		t.Errorf("ProviderFor(notgoogle.com) = %q; want none", got)
	}
}

func TestExplain(t *testing.T) {
	c, err := Parse("layered.toml", []byte(layered))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Field{}
	fs := c.Explain(Query{Domain: "example.com", MXHosts: []string{"gmail-smtp-in.l.google.com", "alt1.gmail-smtp-in.l.google.com"}, Source: "ip1"})
	for _, f := range fs {
		got[f.Key] = f
	}
	if len(fs) != len(fields) || len(got) != len(fields) {
		t.Fatalf("Explain gave %d fields (%d distinct); want %d", len(fs), len(got), len(fields))
	}
	want := []Field{
		{"connection_limit", "2", "source:ip1", "layered.toml:30"},
		{"max_message_rate", "500/s", "provider:google", "layered.toml:13"},
		{"max_recipients_per_transaction", "30", "provider:google", "layered.toml:14"},
		{"retry_interval", "20m", "builtin", ""},
		{"enable_tls", "required", "site:alt1.gmail-smtp-in.l.google.com", "layered.toml:22"},
		{"max_age", "1d", "domain:example.com", "layered.toml:26"},
		{"idle_timeout", "30s", "default", "layered.toml:4"},
		{"mx_rollup", "false", "default", "layered.toml:5"},
		{"timeouts.connect", "20s", "default", "layered.toml:8"},
		{"timeouts.data", "1m", "source:ip1", "layered.toml:31"},
		{"timeouts.final", "10m", "builtin", ""},
		{"max_connection_rate", "unlimited", "builtin", ""},
	}
	for _, w := range want {
		if g := got[w.Key]; g != w {
			t.Errorf("Explain %s = %+v; want %+v", w.Key, g, w)
		}
	}
	// Resolve and Explain agree.
	s := c.Resolve(Query{Domain: "example.com", MXHosts: []string{"gmail-smtp-in.l.google.com"}, Source: "ip1"})
	if s.ConnectionLimit != 2 || s.MaxAge != Day {
		t.Errorf("Resolve disagrees with Explain: %+v", s)
	}
}

func TestAliases(t *testing.T) {
	data := `[default]
max-smtp-out = 7
max-msg-rate = "100/h"
max-msg-per-connection = 50
max-rcpt-per-message = 25
retry-after = "1h30m"
bounce-after = "4d12h"
use-starttls = "required"
max-connect-rate = "10/min"
`
	c, err := Parse("pmta.toml", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	got := c.Resolve(Query{})
	want := builtin
	want.ConnectionLimit = 7
	want.MaxMessageRate = ThrottleSpec{Limit: 100, Period: time.Hour}
	want.MaxDeliveriesPerConnection = 50
	want.MaxRecipientsPerTransaction = 25
	want.RetryInterval = 90 * time.Minute
	want.MaxAge = 4*Day + 12*time.Hour
	want.EnableTLS = TLSRequired
	want.MaxConnectionRate = ThrottleSpec{Limit: 10, Period: time.Minute}
	if got != want {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	for _, tt := range []struct {
		v    string
		want TLSMode
	}{{`"yes"`, TLSOpportunistic}, {`"no"`, TLSDisabled}, {`false`, TLSDisabled}, {`"required-insecure"`, TLSRequiredInsecure}} {
		c, err := Parse("t.toml", []byte("[default]\nuse-starttls = "+tt.v+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Resolve(Query{}).EnableTLS; got != tt.want {
			t.Errorf("use-starttls = %s: got %v; want %v", tt.v, got, tt.want)
		}
	}
}

func TestDurations(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		text string
	}{
		{"20m", 20 * time.Minute, "20m"},
		{"3d", 3 * Day, "3d"},
		{"1h30m", 90 * time.Minute, "1h30m"},
		{"1d12h", 36 * time.Hour, "1d12h"},
		{"1w", 7 * Day, "7d"},
		{"90s", 90 * time.Second, "1m30s"},
		{"500ms", 500 * time.Millisecond, "500ms"},
		{"0", 0, "0s"},
	}
	for i, tt := range tests {
		got, err := ParseDuration(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("#%d: ParseDuration(%q) = %v, %v; want %v", i, tt.in, got, err, tt.want)
		}
		if s := FormatDuration(got); s != tt.text {
			t.Errorf("#%d: FormatDuration(%v) = %q; want %q", i, got, s, tt.text)
		}
	}
	for _, bad := range []string{"", "3 days", "-1h", "1x", "h", "1.2.3d"} {
		if d, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) = %v; want error", bad, d)
		}
	}
}

func TestEmbeddedConfigsLoad(t *testing.T) {
	for _, tt := range []struct {
		name    string
		data    []byte
		sources int
		pool    string
	}{
		{"sample.toml", SampleConfig, 2, "default"},
		{"demo.toml", DemoConfig, 2, "demo"},
	} {
		c, err := Parse(tt.name, tt.data)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if n := len(c.Sources()); n != tt.sources {
			t.Errorf("%s: %d sources; want %d", tt.name, n, tt.sources)
		}
		if c.CampaignPool() != tt.pool {
			t.Errorf("%s: campaign pool %q; want %q", tt.name, c.CampaignPool(), tt.pool)
		}
		p, ok := c.Pool(c.CampaignPool())
		if !ok || len(p.Members) != 2 || p.Members[0].Weight != 2 {
			t.Errorf("%s: pool %+v, %v", tt.name, p, ok)
		}
		if len(c.Rules()) == 0 {
			t.Errorf("%s: no rules", tt.name)
		}
		// The file on disk is the one embedded.
		disk, err := os.ReadFile(tt.name)
		if err != nil || string(disk) != string(tt.data) {
			t.Errorf("%s: embedded copy differs from the file (%v)", tt.name, err)
		}
	}
	demo, _ := Parse("demo.toml", DemoConfig)
	for _, tt := range []struct{ host, provider string }{
		{"mx1.gmail.test", "gmail"}, {"gmail.test", "gmail"}, {"mx.yahoo.test", "yahoo"},
		{"mx.outlook.test", "outlook"}, {"mx.corp.test", ""},
	} {
		if got := demo.ProviderFor([]string{tt.host}); got != tt.provider {
			t.Errorf("demo ProviderFor(%s) = %q; want %q", tt.host, got, tt.provider)
		}
	}
	src, ok := demo.Source("ip2")
	if !ok || src.Address.String() != "127.0.0.2" || src.Warmup == nil {
		t.Fatalf("demo ip2 = %+v, %v", src, ok)
	}
}

func TestEmptyConfigIsBuiltin(t *testing.T) {
	c, err := Parse("(built-in defaults)", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Resolve(Query{Domain: "x.test"}); got != builtin {
		t.Fatalf("got %+v; want builtin", got)
	}
	if c.CampaignPool() != "" || len(c.Sources()) != 0 || len(c.Rules()) != 0 {
		t.Fatalf("empty config has pool %q, %d sources, %d rules", c.CampaignPool(), len(c.Sources()), len(c.Rules()))
	}
	if n := len(c.BounceRules()); n != len(defaultBounceRules) || n < 10 {
		t.Fatalf("got %d bounce rules; want the %d built-in", n, len(defaultBounceRules))
	}
}

func TestSourcesPoolsCampaign(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "t.toml")
	data := `[campaign]
pool = "main"
suppression_file = "sup.txt"

[source.a]
source_address = "10.0.0.1"
ehlo_name = "a.example"
[source.b]
source_address = "2001:db8::2"
warmup = { start = 2026-11-01, caps = [1, 2] }

[pool.main]
members = ["a", { source = "b", weight = 3 }]
`
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.SuppressionFile() != filepath.Join(dir, "sup.txt") {
		t.Errorf("SuppressionFile = %q", c.SuppressionFile())
	}
	p, ok := c.Pool("main")
	want := Pool{Name: "main", Members: []PoolMember{{"a", 1}, {"b", 3}}}
	if !ok || !reflect.DeepEqual(p, want) || c.CampaignPool() != "main" {
		t.Errorf("Pool = %+v, %v (campaign %q); want %+v", p, ok, c.CampaignPool(), want)
	}
	srcs := c.Sources()
	if len(srcs) != 2 || srcs[0].Name != "a" || srcs[0].EHLOName != "a.example" || srcs[1].Address.String() != "2001:db8::2" || srcs[1].Warmup == nil || srcs[0].Warmup != nil {
		t.Errorf("Sources = %+v", srcs)
	}
	srcs[1].Warmup.Caps[0] = 99 // a copy: must not change the config
	if again := c.Sources(); again[1].Warmup.Caps[0] != 1 {
		t.Errorf("Sources shares memory with the config")
	}
}

func TestSiteLabel(t *testing.T) {
	a := SiteLabel([]string{"alt1.aspmx.l.google.com.", "ASPMX.l.google.com", "alt1.aspmx.l.google.com"})
	b := SiteLabel([]string{"aspmx.l.google.com", "alt1.aspmx.l.google.com"})
	if a != b || a != "alt1.aspmx.l.google.com,aspmx.l.google.com" {
		t.Fatalf("SiteLabel: %q vs %q", a, b)
	}
}

func BenchmarkResolve(b *testing.B) {
	c, err := Parse("sample.toml", SampleConfig)
	if err != nil {
		b.Fatal(err)
	}
	q := Query{Domain: "example.com", MXHosts: []string{"gmail-smtp-in.l.google.com", "alt1.gmail-smtp-in.l.google.com"}, Source: "ip2"}
	b.ReportAllocs()
	for b.Loop() {
		c.Resolve(q)
	}
}
