package codec

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"strings"
	"testing"
)

var newsletterCols = []string{"email", "first_name", "city", "plan", "unsubscribe_url", "unused"}

func loadNewsletter(t testing.TB) *Template {
	t.Helper()
	src, err := os.ReadFile("testdata/newsletter.eml")
	if err != nil {
		t.Fatal(err)
	}
	tp, err := CompileTemplate(src, newsletterCols)
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

// renderString renders one message and returns the wire bytes.
func renderString(t testing.TB, tp *Template, values []string, extra string) string {
	t.Helper()
	m := AcquireMessage()
	defer m.Release()
	if err := tp.Render(m, values, []byte(extra)); err != nil {
		t.Fatalf("Render: %v", err)
	}
	var b bytes.Buffer
	for _, s := range m.Segs {
		b.Write(s)
	}
	if b.Len() != m.Len() {
		t.Fatalf("Len() = %d; segments hold %d bytes", m.Len(), b.Len())
	}
	checkMessageUnstuffed(t, m)
	return b.String()
}

// unstuff returns the message content of wire bytes (dot-stuffing removed,
// end-of-data line dropped), checking the wire invariants on the way.
func unstuff(t testing.TB, wire string) string {
	t.Helper()
	if !strings.HasSuffix(wire, "\r\n.\r\n") && wire != ".\r\n" {
		t.Fatalf("wire does not end with CRLF.CRLF: %q", tail(wire))
	}
	body := wire[:len(wire)-3]
	if i := strings.Index(body, "\r\n.\r\n"); i >= 0 || strings.HasPrefix(body, ".\r\n") {
		t.Fatalf("end of data before the end at %d: %q", i, body[max(i-40, 0):])
	}
	for i := 0; i < len(body); i++ {
		if body[i] == '\n' && (i == 0 || body[i-1] != '\r') || body[i] == '\r' && (i+1 == len(body) || body[i+1] != '\n') {
			t.Fatalf("bare CR or LF at %d: %q", i, body[max(i-20, 0):min(i+20, len(body))])
		}
	}
	return string(appendUnstuffed(nil, [][]byte{[]byte(wire)}))
}

func tail(s string) string { return s[max(len(s)-40, 0):] }

func TestNewsletterRender(t *testing.T) {
	tp := loadNewsletter(t)
	if got, want := strings.Join(tp.Fields(), ","), "first_name,email,city,plan,unsubscribe_url"; got != want {
		t.Fatalf("Fields() = %q; want %q", got, want)
	}
	if !tp.HasBodyHoles() {
		t.Fatal("HasBodyHoles() = false")
	}
	if got, want := tp.Header("from"), `"Gare Centrale News" <news@example.com>`; got != want {
		t.Fatalf("Header(from) = %q; want %q", got, want)
	}
	vals := []string{"zoe@example.org", "Zoë", "Liège & <Namur>", "pro", "https://example.com/u?a=1&b=2", "x"}
	wire := renderString(t, tp, vals, "Message-ID: <1@example.com>\r\n")
	msg, err := mail.ReadMessage(strings.NewReader(unstuff(t, wire)))
	if err != nil {
		t.Fatal(err)
	}
	if got := msg.Header.Get("Message-ID"); got != "<1@example.com>" {
		t.Fatalf("Message-ID = %q", got)
	}
	to, err := mail.ParseAddress(msg.Header.Get("To"))
	if err != nil || to.Name != "Zoë" || to.Address != "zoe@example.org" {
		t.Fatalf("To = %q (%v): %+v", msg.Header.Get("To"), err, to)
	}
	subj, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if want := "Zoë, your Liège & <Namur> digest for April"; err != nil || subj != want {
		t.Fatalf("Subject = %q (%v); want %q", subj, err, want)
	}
	_, params, _ := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var parts []string
	for {
		p, err := mr.NextPart() // decodes quoted-printable
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, string(b))
	}
	if len(parts) != 2 {
		t.Fatalf("got %d parts; want 2", len(parts))
	}
	for i, c := range []struct {
		part int
		want string
	}{
		{0, "Hello Zoë,\r\n"},
		{0, "digest for Liège & <Namur>. You are on the pro plan."},
		{0, "\r\n.\r\nA line that starts with a dot"},
		{0, "Unsubscribe: https://example.com/u?a=1&b=2\r\n"},
		{1, "Hello Zoë,</p>"},
		{1, "<title>Liège &amp; &lt;Namur&gt; digest</title>"},
		{1, `<a href="https://example.com/u?a=1&amp;b=2">Unsubscribe</a>`},
	} {
		if !strings.Contains(parts[c.part], c.want) {
			t.Errorf("#%d: part %d lacks %q", i, c.part, c.want)
		}
	}
}

func TestQPLines(t *testing.T) {
	tp := loadNewsletter(t)
	long := strings.Repeat("é", 100)
	wire := renderString(t, tp, []string{"a@example.org", long, long, long, long, ""}, "")
	for i, line := range strings.Split(wire, "\r\n") {
		if len(line) > 998 {
			t.Fatalf("line %d has %d bytes", i, len(line))
		}
	}
	// The QP part decodes back to the values.
	i := strings.Index(wire, "quoted-printable\r\n\r\n")
	j := strings.LastIndex(wire, "\r\n--=_spate_b1_7f3a9c--")
	qp := wire[i+len("quoted-printable\r\n\r\n") : j]
	for k, line := range strings.Split(qp, "\r\n") {
		if len(line) > 76 {
			t.Fatalf("QP line %d has %d chars: %q", k, len(line), line)
		}
	}
	dec, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(qp)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(dec), "Hello "+long+",</p>") {
		t.Fatalf("decoded QP lacks the value")
	}
}

// checkMessageUnstuffed: Message.AppendUnstuffed, which does not scan the
// static segments, returns the very slices AppendUnstuffedSegs finds in
// m.Segs, and so does it once m.Segs no longer match the spans.
func checkMessageUnstuffed(t testing.TB, m *Message) {
	t.Helper()
	want, wn := AppendUnstuffedSegs(nil, m.Segs)
	got, n := m.AppendUnstuffed(nil)
	if !sameRuns(got, want) || n != wn {
		t.Fatalf("Message.AppendUnstuffed: got %q (n=%d); want %q (n=%d)", got, n, want, wn)
	}
	if len(m.Segs) > 1 { // a re-sliced list: scanned as any segments
		segs := m.Segs
		m.Segs = segs[1:]
		want, wn = AppendUnstuffedSegs(nil, m.Segs)
		got, n = m.AppendUnstuffed(nil)
		m.Segs = segs
		if !sameRuns(got, want) || n != wn {
			t.Fatalf("Message.AppendUnstuffed, re-sliced: got %q (n=%d); want %q (n=%d)", got, n, want, wn)
		}
	}
}

func TestNewsletterSegments(t *testing.T) {
	tp := loadNewsletter(t)
	m := AcquireMessage()
	defer m.Release()
	if err := tp.Render(m, []string{"a@example.org", "Ann", "Gent", "pro", "https://u.example/1", ""}, []byte("Message-ID: <1@x>\r\n")); err != nil {
		t.Fatal(err)
	}
	if n := len(m.Segs); n > 40 {
		t.Errorf("got %d segments; want at most 40", n)
	}
	if last := m.Segs[len(m.Segs)-1]; &last[0] != &dataEnd[0] {
		t.Errorf("last segment is not the shared end-of-data line: %q", last)
	}
	static := 0
	for _, s := range m.Segs {
		if len(s) == 0 {
			t.Fatal("empty segment")
		}
		for _, o := range tp.ops {
			if len(o.static) > 0 && &o.static[0] == &s[0] {
				static += len(s)
			}
		}
	}
	if static < m.Len()*8/10 {
		t.Errorf("only %d of %d bytes are shared static segments", static, m.Len())
	}
	t.Logf("%d segments, %d bytes, %d static", len(m.Segs), m.Len(), static)
	checkMessageUnstuffed(t, m)
}
