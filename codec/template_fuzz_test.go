package codec

import (
	"errors"
	"net/mail"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzRender renders the safety template (holes in every context) with
// fuzzed values and checks that the data never ends early, has no bare CR
// or LF, keeps exactly the template's header names, keeps its three parts,
// and carries the values intact where they can be decoded.
func FuzzRender(f *testing.F) {
	tp, err := CompileTemplate([]byte(safetySrc), safetyCols)
	if err != nil {
		f.Fatal(err)
	}
	f.Add("Ann", "news")
	f.Add("Ann\r\nBcc: evil@example.net", "\r\n.\r\nMAIL FROM:<x@y>\r\n")
	f.Add("Zoë \"Z\"", ".\n.\r.")
	f.Add("=?UTF-8?Q?a?=", "\x00\x7f\t -- .")
	f.Add(strings.Repeat("é ", 50), strings.Repeat("x", 200))
	f.Fuzz(func(t *testing.T, name, topic string) {
		m := AcquireMessage()
		defer m.Release()
		err := tp.Render(m, []string{"ann@example.org", name, topic}, []byte("Message-ID: <m@example.com>\r\n"))
		if errors.Is(err, ErrBoundaryInValue) {
			if !strings.Contains(name, "BOUNDARY") && !strings.Contains(topic, "BOUNDARY") {
				t.Fatalf("ErrBoundaryInValue without a boundary in %q, %q", name, topic)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		checkMessageUnstuffed(t, m)
		var b strings.Builder
		for _, s := range m.Segs {
			b.Write(s)
		}
		r := parseRendered(t, b.String()) // checks the end of data and line breaks
		if want := append([]string{"Message-ID"}, safetyHeaderKeys...); !slices.Equal(r.keys, want) {
			t.Fatalf("header names: got %q; want %q", r.keys, want)
		}
		if utf8.ValidString(name) {
			to, err := mail.ParseAddress(r.header.Get("To"))
			if err != nil || to.Address != "ann@example.org" {
				t.Fatalf("To %q: %v %+v", r.header.Get("To"), err, to)
			}
		}
		if len(r.parts) != 3 {
			t.Fatalf("got %d parts; want 3", len(r.parts))
		}
		if want := "Hi " + canonStr(name) + ",\r\n" + canonStr(topic) + "\r\n.leading dot"; !strings.HasPrefix(r.parts[0], want) {
			t.Fatalf("text part: got %q; want prefix %q", r.parts[0], want)
		}
		if want := "<b>" + canonStr(escapeStr(topic)) + "</b>"; !strings.Contains(r.parts[1], want) {
			t.Fatalf("html part: got %q; want it to contain %q", r.parts[1], want)
		}
		if want := "Hi " + canonStr(name) + ", this part is base64.\r\n"; r.parts[2] != want {
			t.Fatalf("base64 part: got %q; want %q", r.parts[2], want)
		}
	})
}
