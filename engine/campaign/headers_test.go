package campaign

import (
	"strings"
	"testing"
	"time"
)

func TestHeaderBuilder(t *testing.T) {
	cols := []string{"email", "first_name"}
	h, err := NewHeaderBuilder(HeaderOptions{
		CampaignID: "nov", MessageIDDomain: "example.com",
		UnsubscribeMailto: "unsub+{{email}}@example.com",
		UnsubscribeURL:    "https://example.com/u?e={{email}}&c={{campaign}}",
		VERP:              "bounces+{local}={domain}@example.com",
		Columns:           cols,
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	got := string(h.Append(nil, 42, []string{"a+b@x.test", "Ann\r\nBcc: evil@x"}, now))
	want := "Message-ID: <nov.42@example.com>\r\n" +
		"Date: Sun, 22 Nov 2026 10:00:00 +0000\r\n" +
		"List-Unsubscribe: <https://example.com/u?e=a%2Bb@x.test&c=nov>,\r\n <mailto:unsub+a%2Bb@x.test@example.com>\r\n" +
		"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
	if got != want {
		t.Fatalf("got %q; want %q", got, want)
	}
	if rp := h.ReturnPath("news@example.com", "ann@x.test"); rp != "bounces+ann=x.test@example.com" {
		t.Fatalf("VERP: got %q", rp)
	}
}

func TestHeaderBuilderInjection(t *testing.T) {
	h, err := NewHeaderBuilder(HeaderOptions{CampaignID: "c\r\nX: y", UnsubscribeURL: "https://e.test/{{email}}", Columns: []string{"email"}})
	if err != nil {
		t.Fatal(err)
	}
	got := string(h.Append(nil, 1, []string{"x\r\n.\r\nMAIL FROM:<a@b>"}, time.Unix(0, 0)))
	for i, line := range strings.Split(strings.TrimSuffix(got, "\r\n"), "\r\n") {
		if line == "" || (line[0] != ' ' && !strings.Contains(line, ": ")) {
			t.Fatalf("#%d: line %q is not a header line in %q", i, line, got)
		}
	}
	if strings.Count(got, "\r\n") != 4 || strings.Contains(got, "\r\nX:") {
		t.Fatalf("injection reached the header block: %q", got)
	}
}

func TestHeaderBuilderErrors(t *testing.T) {
	for i, o := range []HeaderOptions{
		{UnsubscribeURL: "ftp://x/{{email}}", Columns: []string{"email"}},
		{UnsubscribeURL: "https://x/{{nope}}", Columns: []string{"email"}},
		{UnsubscribeMailto: "not an address"},
		{VERP: "bounces@example.com"},
	} {
		if _, err := NewHeaderBuilder(o); err == nil {
			t.Fatalf("#%d: got nil error for %+v", i, o)
		}
	}
}
