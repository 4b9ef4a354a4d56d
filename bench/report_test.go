package bench

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"
)

func sampleResults() []Result {
	return []Result{
		{Peer: PeerSpate, Sent: 20000, SinkMessages: 20000, Wall: 2 * time.Second, CPU: time.Second, MaxRSS: 30 << 20,
			P50: 1500 * time.Microsecond, P99: 12 * time.Millisecond, SinkCPU: 500 * time.Millisecond},
		{Peer: PeerNetSMTP, Sent: 20000, SinkMessages: 20000, Wall: 8 * time.Second, CPU: 4 * time.Second, MaxRSS: 20 << 20,
			P50: 3 * time.Millisecond, P99: 20 * time.Millisecond},
		{Peer: PeerSMTPSource, Skipped: "smtp-source not installed (Debian package postfix)", SinkMessages: -1},
		{Peer: PeerGopipe, Sent: 20000, SinkMessages: -1, Wall: 4 * time.Second, CPU: 2 * time.Second, MaxRSS: 10 << 20},
	}
}

func TestRowsValues(t *testing.T) {
	rows := Rows(sampleResults())
	want := [][]string{
		{"spate", "10000", "1.5ms", "12.0ms", "1.00", "50.0", "30.0", "1.00", "20000", "0", "0.50"},
		{"netsmtp", "2500", "3.0ms", "20.0ms", "4.00", "200.0", "20.0", "4.00", "20000", "0", "n/a"},
		{"smtp-source", "skipped (smtp-source not installed (Debian package postfix))", "", "", "", "", "", "", "", "", ""},
		{"gopipe", "5000", "n/a", "n/a", "2.00", "100.0", "10.0", "2.00", "20000", "0", "n/a"},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows; want %d", len(rows), len(want))
	}
	for i := range want {
		if strings.Join(rows[i], "|") != strings.Join(want[i], "|") {
			t.Errorf("#%d: got %q; want %q", i, rows[i], want[i])
		}
	}
}

// TestSkippedIsNeverZero: a peer that did not run shows its reason and no
// number at all, in the table and in the chart.
func TestSkippedIsNeverZero(t *testing.T) {
	rs := []Result{
		{Peer: PeerSpate, Skipped: "no bench-peer command configured"},
		{Peer: PeerSMTPSource, Err: "exit status 1: smtp-source: fatal: connect"},
		{Peer: PeerGopipe, Sent: 100, SinkMessages: 100, Wall: time.Second, CPU: time.Second, MaxRSS: 1 << 20},
	}
	var b bytes.Buffer
	if err := WriteTable(&b, rs); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d lines; want header, rule and 3 rows:\n%s", len(lines), b.String())
	}
	for _, l := range lines[2:4] {
		if regexp.MustCompile(`\|\s*0(\.0+)?\s*\|`).MatchString(l) {
			t.Errorf("row %q shows a zero", l)
		}
	}
	if !strings.Contains(lines[2], "| skipped (no bench-peer command configured) |") {
		t.Errorf("skipped row %q", lines[2])
	}
	if !strings.Contains(lines[3], "| failed (exit status 1: smtp-source: fatal: connect) |") {
		t.Errorf("failed row %q", lines[3])
	}
	// Without a spate measurement there is no ratio.
	if !strings.Contains(lines[4], "| 100 | n/a | n/a | 1.00 | 10000.0 | 1.0 | n/a |") {
		t.Errorf("gopipe row %q", lines[4])
	}

	var svg bytes.Buffer
	if err := WriteChart(&svg, []Scenario{{Name: "s1", Results: rs}}); err != nil {
		t.Fatal(err)
	}
	s := svg.String()
	if n := strings.Count(s, `class="bar"`); n != 1 {
		t.Errorf("%d bars; want 1 (gopipe only)", n)
	}
	if !strings.Contains(s, "spate skipped") || !strings.Contains(s, "smtp-source failed") {
		t.Errorf("chart lacks the skipped/failed labels:\n%s", s)
	}
}

func TestTableEscapesPipes(t *testing.T) {
	var b bytes.Buffer
	WriteTable(&b, []Result{{Peer: "x", Err: "a|b"}})
	if !strings.Contains(b.String(), `failed (a\|b)`) {
		t.Fatalf("pipe not escaped:\n%s", b.String())
	}
}

func TestReportAndChart(t *testing.T) {
	scs := []Scenario{
		{Name: "throughput-1k", Desc: "Raw throughput.", Config: Config{N: 20000, Sessions: 100, Size: 1000, Rcpts: 1}, Results: sampleResults()},
		{Name: "tls", Config: Config{N: 20000, Sessions: 100, Size: 1000, Rcpts: 1, StartTLS: true}, Err: "sink: boom"},
	}
	var b bytes.Buffer
	if err := WriteReport(&b, scs, "bench-report.svg", time.Date(2026, 11, 22, 19, 0, 0, 0, time.UTC), "host1"); err != nil {
		t.Fatal(err)
	}
	r := b.String()
	for _, want := range []string{"# spate bench report", "2026-11-22T19:00:00Z on host1", "![msgs/s per peer per scenario](bench-report.svg)",
		"## throughput-1k", "20000 messages per peer, 100 sessions, 1000 B body, 1 rcpt(s)/msg; spate-send: `spate send` with a 50-domain list", "spate-send is the whole product", "| spate | 10000 |",
		"## tls", "STARTTLS", "Run failed: sink: boom"} {
		if !strings.Contains(r, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	var svg bytes.Buffer
	if err := WriteChart(&svg, scs); err != nil {
		t.Fatal(err)
	}
	s := svg.String()
	if !strings.HasPrefix(s, "<svg") || !strings.HasSuffix(s, "</svg>\n") {
		t.Fatalf("not an SVG document")
	}
	if n := strings.Count(s, `class="bar"`); n != 3 {
		t.Errorf("%d bars; want 3", n)
	}
	// The tallest bar (spate, 10k/s) reaches the top of a 10k axis.
	if !strings.Contains(s, `y="40.0" width="26" height="320.0"`) {
		t.Errorf("spate bar not full height:\n%s", s)
	}
}

func TestNiceCeil(t *testing.T) {
	for _, c := range []struct{ in, want float64 }{{0, 1}, {1, 1}, {1.2, 2}, {3, 5}, {7, 10}, {10000, 10000}, {12345, 20000}} {
		if got := niceCeil(c.in); got != c.want {
			t.Errorf("niceCeil(%v) = %v; want %v", c.in, got, c.want)
		}
	}
}

func TestTableNotes(t *testing.T) {
	var b bytes.Buffer
	WriteTable(&b, []Result{
		{Peer: PeerGopipe, Sent: 8485, Failed: 11515, SinkMessages: 8485, Wall: time.Second, CPU: time.Second, MaxRSS: 1 << 20,
			Note: "10884 of 20000 messages never attempted"},
		{Peer: PeerSpate, Skipped: "x", Note: "not shown"},
	})
	s := b.String()
	if !strings.HasSuffix(s, "\n\n- gopipe: 10884 of 20000 messages never attempted\n") || strings.Contains(s, "not shown") {
		t.Fatalf("notes:\n%s", s)
	}
}
