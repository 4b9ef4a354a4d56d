package codec

import (
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"slices"
	"strings"
	"testing"
)

// safetySrc has holes in every context: unstructured header, display name,
// address, 7bit text, quoted-printable HTML, base64 text. Bare LF line
// breaks on purpose (canonicalised at compile time).
const safetySrc = "From: News <news@example.com>\n" +
	"To: \"{{name}}\" <{{email}}>\n" +
	"Subject: Hello {{name}}, about {{topic}}\n" +
	"X-Topic: {{topic}}\n" +
	"MIME-Version: 1.0\n" +
	"Content-Type: multipart/mixed; boundary=\"BOUNDARY\"\n" +
	"\n" +
	"--BOUNDARY\n" +
	"Content-Type: text/plain; charset=utf-8\n" +
	"\n" +
	"Hi {{name}},\n" +
	"{{topic}}\n" +
	".leading dot\n" +
	"--BOUNDARY\n" +
	"Content-Type: text/html; charset=utf-8\n" +
	"Content-Transfer-Encoding: quoted-printable\n" +
	"\n" +
	"<p>Hi {{name}}, <b>{{topic}}</b></p>\n" +
	"--BOUNDARY\n" +
	"Content-Type: text/plain; charset=utf-8\n" +
	"Content-Transfer-Encoding: base64\n" +
	"\n" +
	"SGkge3tuYW1lfX0sIHRoaXMgcGFydCBpcyBiYXNlNjQuCg==\n" + // "Hi {{name}}, this part is base64.\n"
	"--BOUNDARY--\n"

var safetyCols = []string{"email", "name", "topic"}

type renderedParts struct {
	header mail.Header
	keys   []string // header names in order
	parts  []string // decoded part bodies
}

// parseRendered un-stuffs wire bytes and parses them with net/mail and
// mime/multipart.
func parseRendered(t testing.TB, wire string) renderedParts {
	t.Helper()
	content := unstuff(t, wire)
	var r renderedParts
	hdrEnd := strings.Index(content, "\r\n\r\n")
	if hdrEnd < 0 {
		t.Fatalf("no header block end in %q", content)
	}
	for _, line := range strings.Split(content[:hdrEnd], "\r\n") {
		if line == "" || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		i := strings.IndexByte(line, ':')
		if i < 0 {
			t.Fatalf("header line without colon: %q", line)
		}
		r.keys = append(r.keys, line[:i])
	}
	msg, err := mail.ReadMessage(strings.NewReader(content))
	if err != nil {
		t.Fatalf("net/mail: %v", err)
	}
	r.header = msg.Header
	_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("multipart: %v", err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatalf("multipart part: %v", err)
		}
		if p.Header.Get("Content-Transfer-Encoding") == "base64" {
			if b, err = base64.StdEncoding.DecodeString(strings.ReplaceAll(string(b), "\r\n", "")); err != nil {
				t.Fatalf("base64 part: %v", err)
			}
		}
		r.parts = append(r.parts, string(b))
	}
	return r
}

var safetyHeaderKeys = []string{"From", "To", "Subject", "X-Topic", "MIME-Version", "Content-Type"}

func TestRenderInjection(t *testing.T) {
	tp, err := CompileTemplate([]byte(safetySrc), safetyCols)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct {
		name, topic string
		wantName    string // decoded display name
		wantTopic   string // decoded Subject tail
		wantBody    string // topic as it reads in the text part
	}{
		{"Ann", "news", "Ann", "news", "news"},
		{"Ann\r\nBcc: evil@example.net", "x\r\n\r\nbody", "Ann  Bcc: evil@example.net", "x    body", "x\r\n\r\nbody"},
		{"Zoë", "\r\n.\r\nMAIL FROM:<evil@example.net>\r\n", "Zoë", "  .  MAIL FROM:<evil@example.net>  ", "\r\n.\r\nMAIL FROM:<evil@example.net>\r\n"},
		{"\"quoted\" \\ name", ".\n.\r.", `"quoted" \ name`, ". . .", ".\r\n.\r\n."},
		{"nul\x00byte", "=?UTF-8?Q?evil?= \r\nX-Evil: 1", "nul byte", "=?UTF-8?Q?evil?=   X-Evil: 1", "=?UTF-8?Q?evil?= \r\nX-Evil: 1"},
		{strings.Repeat("long name ", 20), strings.Repeat("wörd ", 40), strings.Repeat("long name ", 20), strings.Repeat("wörd ", 40), strings.Repeat("wörd ", 40)},
	} {
		wire := renderString(t, tp, []string{"ann@example.org", c.name, c.topic}, "Message-ID: <m@example.com>\r\n")
		r := parseRendered(t, wire)
		if want := append([]string{"Message-ID"}, safetyHeaderKeys...); !slices.Equal(r.keys, want) {
			t.Errorf("#%d: header names: got %q; want %q", i, r.keys, want)
			continue
		}
		to, err := mail.ParseAddress(r.header.Get("To"))
		if err != nil || to.Name != c.wantName || to.Address != "ann@example.org" {
			t.Errorf("#%d: To %q: got %+v (%v); want name %q", i, r.header.Get("To"), to, err, c.wantName)
		}
		subj, err := new(mime.WordDecoder).DecodeHeader(r.header.Get("Subject"))
		if want := "Hello " + c.wantName + ", about " + c.wantTopic; err != nil || subj != want {
			t.Errorf("#%d: Subject: got %q (%v); want %q", i, subj, err, want)
		}
		if len(r.parts) != 3 {
			t.Fatalf("#%d: got %d parts; want 3", i, len(r.parts))
		}
		if want := "{{topic}}"; strings.Contains(wire, want) {
			t.Errorf("#%d: unfilled hole in output", i)
		}
		if want := "Hi " + c.name + ",\r\n" + c.wantBody + "\r\n.leading dot"; !strings.Contains(r.parts[0], canonStr(want)) {
			t.Errorf("#%d: text part: got %q; want it to contain %q", i, r.parts[0], canonStr(want))
		}
		if want := "<b>" + escapeStr(canonStr(c.topic)) + "</b>"; !strings.Contains(r.parts[1], want) {
			t.Errorf("#%d: html part: got %q; want it to contain %q", i, r.parts[1], want)
		}
		if want := "Hi " + canonStr(c.name) + ", this part is base64.\r\n"; r.parts[2] != want {
			t.Errorf("#%d: base64 part: got %q; want %q", i, r.parts[2], want)
		}
	}
}

func canonStr(s string) string  { return string(appendCRLF(nil, []byte(s))) }
func escapeStr(s string) string { return string(appendHTMLEscaped(nil, s)) }

func TestRenderBoundaryInValue(t *testing.T) {
	tp, err := CompileTemplate([]byte(safetySrc), safetyCols)
	if err != nil {
		t.Fatal(err)
	}
	m := AcquireMessage()
	defer m.Release()
	if err := tp.Render(m, []string{"a@example.org", "x", "\r\n--BOUNDARY--\r\n"}, nil); !errors.Is(err, ErrBoundaryInValue) {
		t.Fatalf("got %v; want ErrBoundaryInValue", err)
	}
	// In a header or a QP/base64 context the boundary is harmless: only the
	// 7bit part refuses it, so a template without a 7bit hole renders.
}

func TestRenderBadAddress(t *testing.T) {
	tp, err := CompileTemplate([]byte(safetySrc), safetyCols)
	if err != nil {
		t.Fatal(err)
	}
	m := AcquireMessage()
	defer m.Release()
	for i, addr := range []string{"a@b>\r\nBcc: x@y", "", "no-at-sign", "a@example.org\r\n"} {
		var ae *AddressError
		if err := tp.Render(m, []string{addr, "x", "y"}, nil); !errors.As(err, &ae) {
			t.Errorf("#%d: got %v; want an *AddressError", i, err)
		}
	}
}

func TestRenderExtraHeaders(t *testing.T) {
	tp, err := CompileTemplate([]byte(safetySrc), safetyCols)
	if err != nil {
		t.Fatal(err)
	}
	m := AcquireMessage()
	defer m.Release()
	vals := []string{"a@example.org", "x", "y"}
	for i, c := range []struct {
		extra string
		ok    bool
	}{
		{"", true},
		{"Message-ID: <1@x>\r\n", true},
		{"List-Unsubscribe: <https://x/u>,\r\n <mailto:u@x>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", true},
		{"Message-ID: <1@x>", false},
		{"Message-ID: <1@x>\n", false},
		{"Message-ID: <1@x>\r\nX: a\rb\r\n", false},
		{" continuation first\r\n", false},
		{"no colon\r\n", false},
		{": empty name\r\n", false},
		{".Dot: x\r\n", false},
		{"X: a\x00b\r\n", false},
		{"X: a\r\n\r\nbody\r\n", false},
	} {
		err := tp.Render(m, vals, []byte(c.extra))
		if (err == nil) != c.ok {
			t.Errorf("#%d: %q: got %v; want ok=%v", i, c.extra, err, c.ok)
		}
		if err != nil && !errors.Is(err, ErrExtraHeaders) {
			t.Errorf("#%d: got %v; want ErrExtraHeaders", i, err)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	cols := []string{"email", "name", "first_name"}
	for i, c := range []struct {
		src, want string
	}{
		{"From: a@b\r\nSubject: x\r\n\r\nline 4\r\nHello {{frist_name}}\r\n", `codec: template line 5: unknown merge field "frist_name" (columns: email, name, first_name)`},
		{"From: a@b\nSubject: {{ nope }}\n\nx\n", `codec: template line 2: unknown merge field "nope" (columns: email, name, first_name)`},
		{"From: a@b\r\n\r\nHello {{name\r\n}}\r\n", "codec: template line 3: unclosed merge field (want {{name}} on one line)"},
		{"From: a@b\r\n\r\n{{}}\r\n", "codec: template line 3: empty merge field {{}}"},
		{"From: a@b\r\n\r\n{{a b}}\r\n", `codec: template line 3: malformed merge field "{{a b}}"`},
		{"From: a@b\r\nX-{{name}}: 1\r\n\r\nx\r\n", "codec: template line 2: merge field in a header name"},
		{"From: a@b\r\nContent-Type: text/{{name}}\r\n\r\nx\r\n", "codec: template line 2: merge field not allowed in Content-Type"},
		{"From: a@b\r\nbroken line\r\n\r\nx\r\n", `codec: template line 2: malformed header line "broken line"`},
		{"\r\nbody only\r\n", "codec: template line 1: no header block"},
		{"From: a@b\r\nContent-Type: multipart/alternative\r\n\r\nx\r\n", "codec: template line 2: multipart without a boundary parameter"},
		{"From: a@b\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n\r\nx\r\n", `codec: template line 4: multipart boundary "b" not closed`},
		{"From: a@b\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nx\r\n", `codec: template line 1: unsupported Content-Transfer-Encoding "x-uuencode"`},
		{"From: a@b\r\nContent-Transfer-Encoding: base64\r\n\r\ne3tub3BlfX0=\r\n", `codec: template line 4: unknown merge field "nope" (columns: email, name, first_name)`},
	} {
		_, err := CompileTemplate([]byte(c.src), cols)
		var te *TemplateError
		if err == nil || err.Error() != c.want || !errors.As(err, &te) {
			t.Errorf("#%d: got %v; want %q", i, err, c.want)
		}
	}
}

func TestCompileCanonical(t *testing.T) {
	for i, c := range []struct {
		src, want string
	}{
		{"Subject: x\n\nbody\n", "Subject: x\r\n\r\nbody\r\n.\r\n"},
		{"Subject: x\r\rbody", "Subject: x\r\n\r\nbody\r\n.\r\n"},
		{"Subject: x\r\n\r\n.dot\r\n..two\r\n", "Subject: x\r\n\r\n..dot\r\n...two\r\n.\r\n"},
		{"Subject: x\r\n\r\nA{{name}}.B\r\n{{name}}\r\n.C", "Subject: x\r\n\r\nAv.B\r\nv\r\n..C\r\n.\r\n"},
		{"Subject: x", "Subject: x\r\n\r\n.\r\n"},
		{"Subject: {{ name }}\r\n\r\n", "Subject: v\r\n\r\n.\r\n"},
	} {
		tp, err := CompileTemplate([]byte(c.src), []string{"name"})
		if err != nil {
			t.Errorf("#%d: %v", i, err)
			continue
		}
		if got := renderString(t, tp, []string{"v"}, ""); got != c.want {
			t.Errorf("#%d: got %q; want %q", i, got, c.want)
		}
	}
}

// A value that ends a line right before a static line starting with '.'
// must get that dot stuffed at render time.
func TestRenderLeadDot(t *testing.T) {
	tp, err := CompileTemplate([]byte("Subject: x\r\n\r\n{{a}}{{b}}.static\r\n"), []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct {
		a, b, want string
	}{
		{"", "", "..static\r\n"},
		{"x", "", "x.static\r\n"},
		{"x\r\n", "", "x\r\n..static\r\n"},
		{"x\r", "", "x\r\n..static\r\n"},
		{"x\n", ".", "x\r\n...static\r\n"},
		{".", "\r\n", "..\r\n..static\r\n"},
	} {
		got := renderString(t, tp, []string{c.a, c.b}, "")
		if want := "Subject: x\r\n\r\n" + c.want + ".\r\n"; got != want {
			t.Errorf("#%d: got %q; want %q", i, got, want)
		}
	}
	// A static past mergeBelow stays a static segment: its leading dot is
	// the Render-time one, its inner ones were stuffed at compile time
	// (renderString checks Message.AppendUnstuffed on each).
	long := ".static\r\n." + strings.Repeat("x", mergeBelow) + "\r\n.\r\nend\r\n."
	tp, err = CompileTemplate([]byte("Subject: x\r\n\r\n{{a}}"+long), []string{"a"})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"", "x", "x\r\n", ".", "\r\n."} {
		got := renderString(t, tp, []string{a}, "")
		if content := unstuff(t, got); !strings.HasSuffix(content, "\r\n.\r\nend\r\n.\r\n") {
			t.Errorf("%q: content %q", a, content)
		}
	}
}

func TestHeaderValues(t *testing.T) {
	tp, err := CompileTemplate([]byte("To: {{name}} <{{email}}>, {{email}}\r\nCc: \"{{name}}\" <c@example.org>\r\nSubject: {{name}}\r\n\r\nx\r\n"), []string{"email", "name"})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct {
		name, want string
	}{
		{"Ann", "To: \"Ann\" <a@example.org>, a@example.org\r\nCc: \"Ann\" <c@example.org>\r\nSubject: Ann\r\n"},
		{"A \"B\"", "To: \"A \\\"B\\\"\" <a@example.org>, a@example.org\r\nCc: \"A \\\"B\\\"\" <c@example.org>\r\nSubject: A \"B\"\r\n"},
		{"Zoë Smith", "To: =?UTF-8?Q?Zo=C3=AB_Smith?= <a@example.org>, a@example.org\r\nCc: =?UTF-8?Q?Zo=C3=AB_Smith?= <c@example.org>\r\nSubject: =?UTF-8?Q?Zo=C3=AB_Smith?=\r\n"},
		{"Zoë", "To: =?UTF-8?B?Wm/Dqw==?= <a@example.org>, a@example.org\r\nCc: =?UTF-8?B?Wm/Dqw==?= <c@example.org>\r\nSubject: =?UTF-8?B?Wm/Dqw==?=\r\n"},
		{"a\tb", "To: =?UTF-8?Q?a_b?= <a@example.org>, a@example.org\r\nCc: =?UTF-8?Q?a_b?= <c@example.org>\r\nSubject: =?UTF-8?Q?a_b?=\r\n"},
	} {
		got := renderString(t, tp, []string{"a@example.org", c.name}, "")
		if want := c.want + "\r\nx\r\n.\r\n"; got != want {
			t.Errorf("#%d: got %q; want %q", i, got, want)
		}
	}
}

func TestHeaderFolding(t *testing.T) {
	tp, err := CompileTemplate([]byte("Subject: {{s}}\r\n\r\nx\r\n"), []string{"s"})
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range []string{
		strings.Repeat("word ", 60),
		strings.Repeat("日本語", 40),
		strings.Repeat("é", 200) + " " + strings.Repeat("a", 30),
	} {
		wire := renderString(t, tp, []string{s}, "")
		hdr := wire[:strings.Index(wire, "\r\n\r\n")]
		lines := strings.Split(hdr, "\r\n")
		if len(lines) < 2 {
			t.Errorf("#%d: not folded: %q", i, hdr)
		}
		for _, l := range lines {
			if len(l) > headerFoldAt {
				t.Errorf("#%d: line of %d chars: %q", i, len(l), l)
			}
		}
		msg, err := mail.ReadMessage(strings.NewReader(unstuff(t, wire)))
		if err != nil {
			t.Fatal(err)
		}
		got, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
		if want := strings.TrimRight(s, " "); err != nil || strings.TrimRight(got, " ") != want {
			t.Errorf("#%d: got %q (%v); want %q", i, got, err, want)
		}
	}
}

func TestRenderAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	tp := loadNewsletter(t)
	vals := []string{"zoe@example.org", "Zoë", "Liège", "pro", "https://example.com/u?a=1&b=2", ""}
	extra := []byte("Message-ID: <1@example.com>\r\n")
	render := func() {
		m := AcquireMessage()
		if err := tp.Render(m, vals, extra); err != nil {
			t.Fatal(err)
		}
		m.Release()
	}
	for range 10 {
		render()
	}
	if n := testing.AllocsPerRun(200, render); n != 0 {
		t.Fatalf("got %v allocs per render; want 0", n)
	}
}

func TestRenderTooFewValues(t *testing.T) {
	tp := loadNewsletter(t)
	m := AcquireMessage()
	defer m.Release()
	if err := tp.Render(m, []string{"a@example.org"}, nil); !errors.Is(err, ErrTemplateValues) {
		t.Fatalf("got %v; want ErrTemplateValues", err)
	}
}

func TestCompileShapes(t *testing.T) {
	cols := []string{"name"}
	for i, c := range []struct {
		src, want string
	}{
		// A part without headers, a part without a body, nested multipart.
		{"Subject: s\r\nContent-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n\r\nA {{name}}\r\n--o\r\nContent-Type: text/plain\r\n--o\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\n\r\nB {{name}}\r\n--i--\r\n--o--\r\n",
			"Subject: s\r\nContent-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n\r\nA v\r\n--o\r\nContent-Type: text/plain\r\n\r\n\r\n--o\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\n\r\nB v\r\n--i--\r\n--o--\r\n.\r\n"},
		// Single-part quoted-printable and base64 bodies with holes.
		{"Subject: s\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\na=3D{{name}}\r\n",
			"Subject: s\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\na=3Dv\r\n.\r\n"},
		{"Subject: s\r\nContent-Transfer-Encoding: base64\r\n\r\nYSB7e25hbWV9fQ==\r\n", // "a {{name}}"
			"Subject: s\r\nContent-Transfer-Encoding: base64\r\n\r\nYSB2\r\n.\r\n"},
		// Parts without holes are kept as written.
		{"Subject: s\r\nContent-Transfer-Encoding: base64\r\n\r\nYWJj\r\n", "Subject: s\r\nContent-Transfer-Encoding: base64\r\n\r\nYWJj\r\n.\r\n"},
	} {
		tp, err := CompileTemplate([]byte(c.src), cols)
		if err != nil {
			t.Errorf("#%d: %v", i, err)
			continue
		}
		if got := renderString(t, tp, []string{"v"}, ""); got != c.want {
			t.Errorf("#%d: got %q; want %q", i, got, c.want)
		}
	}
}
