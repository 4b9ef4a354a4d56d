package codec

import (
	"bufio"
	"bytes"
	"crypto"
	"encoding/base64"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/textproto"
	"os"
	"regexp"
	"strings"
	"testing"
	"text/template"

	"github.com/emersion/go-msgauth/dkim"
)

var benchValues = []string{"zoe.martin@example.org", "Zoë", "Liège", "pro", "https://example.com/u/8f3a9c2e?list=digest&id=123456", ""}

var benchExtra = []byte("Message-ID: <20261122.123456.8f3a9c2e@mail.example.com>\r\nDate: Sun, 22 Nov 2026 18:00:00 +0000\r\n")

// BenchmarkRender renders one recipient of the ~22 KB newsletter (text and
// quoted-printable HTML, 5 merge fields): the steady state of a campaign.
func BenchmarkRender(b *testing.B) {
	tp := loadNewsletter(b)
	m := AcquireMessage()
	if err := tp.Render(m, benchValues, benchExtra); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(m.Len()))
	m.Release()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		m := AcquireMessage()
		if err := tp.Render(m, benchValues, benchExtra); err != nil {
			b.Fatal(err)
		}
		m.Release()
	}
}

// BenchmarkRenderTextTemplate is the baseline: text/template executes the
// same newsletter into a buffer, then net/textproto's DotWriter stuffs it.
// It does no header or QP encoding of values, so it does less work.
func BenchmarkRenderTextTemplate(b *testing.B) {
	src, err := os.ReadFile("testdata/newsletter.eml")
	if err != nil {
		b.Fatal(err)
	}
	re := regexp.MustCompile(`\{\{([^}]*)\}\}`)
	text := re.ReplaceAllStringFunc(string(src), func(s string) string {
		name := strings.NewReplacer("=\n", "", " ", "", "{", "", "}", "").Replace(s)
		return `{{index . "` + name + `"}}`
	})
	tt := template.Must(template.New("n").Parse(text))
	data := map[string]string{}
	for i, c := range newsletterCols {
		data[c] = benchValues[i]
	}
	var body, wire bytes.Buffer
	bw := bufio.NewWriter(&wire)
	tw := textproto.NewWriter(bw)
	run := func() {
		body.Reset()
		wire.Reset()
		body.Write(benchExtra)
		if err := tt.Execute(&body, data); err != nil {
			b.Fatal(err)
		}
		d := tw.DotWriter()
		d.Write(body.Bytes())
		d.Close()
	}
	run()
	b.SetBytes(int64(wire.Len()))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		run()
	}
}

func newsletterContent(b *testing.B) []byte {
	tp := loadNewsletter(b)
	m := AcquireMessage()
	defer m.Release()
	if err := tp.Render(m, benchValues, benchExtra); err != nil {
		b.Fatal(err)
	}
	return appendUnstuffed(nil, m.Segs)
}

func BenchmarkStuffer(b *testing.B) {
	src := newsletterContent(b)
	dst := make([]byte, 0, 2*len(src))
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		var s Stuffer
		dst = s.Finish(s.Append(dst[:0], src))
	}
}

func BenchmarkStufferDotWriter(b *testing.B) {
	src := newsletterContent(b)
	bw := bufio.NewWriterSize(io.Discard, 4096)
	tw := textproto.NewWriter(bw)
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		d := tw.DotWriter()
		d.Write(src)
		d.Close()
	}
}

var benchText = []byte(strings.Repeat("Grüße aus Liège: the café re-opens at 06:30, menu du jour €12.50.\r\n", 60))

func BenchmarkAppendQuotedPrintable(b *testing.B) {
	dst := make([]byte, 0, 3*len(benchText))
	b.SetBytes(int64(len(benchText)))
	b.ReportAllocs()
	for b.Loop() {
		dst = AppendQuotedPrintable(dst[:0], benchText)
	}
}

func BenchmarkAppendQuotedPrintableStdlib(b *testing.B) {
	var out bytes.Buffer
	b.SetBytes(int64(len(benchText)))
	b.ReportAllocs()
	for b.Loop() {
		out.Reset()
		w := quotedprintable.NewWriter(&out)
		w.Write(benchText)
		w.Close()
	}
}

func BenchmarkAppendBase64Lines(b *testing.B) {
	dst := make([]byte, 0, 2*len(benchText))
	b.SetBytes(int64(len(benchText)))
	b.ReportAllocs()
	for b.Loop() {
		dst = AppendBase64Lines(dst[:0], benchText)
	}
}

func BenchmarkAppendBase64LinesStdlib(b *testing.B) {
	var out bytes.Buffer
	b.SetBytes(int64(len(benchText)))
	b.ReportAllocs()
	for b.Loop() { // no line breaking: less work than ours
		out.Reset()
		w := base64.NewEncoder(base64.StdEncoding, &out)
		w.Write(benchText)
		w.Close()
	}
}

var benchSubject = []byte("Zoë, your Liège digest for April: café, bike parking and more")

func BenchmarkAppendEncodedWords(b *testing.B) {
	dst := make([]byte, 0, 512)
	b.SetBytes(int64(len(benchSubject)))
	b.ReportAllocs()
	for b.Loop() {
		dst = AppendEncodedWords(dst[:0], benchSubject, 'Q')
	}
}

func BenchmarkAppendEncodedWordsStdlib(b *testing.B) {
	s := string(benchSubject)
	b.SetBytes(int64(len(benchSubject)))
	b.ReportAllocs()
	for b.Loop() { // no folding: less work than ours
		_ = mime.QEncoding.Encode("UTF-8", s)
	}
}

func benchDKIM(b *testing.B, key string) {
	s, _ := loadDKIMKey(b, key)
	tp := loadNewsletter(b)
	m := AcquireMessage()
	if err := tp.Render(m, benchValues, benchExtra); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(m.Len()))
	m.Release()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		m := AcquireMessage()
		if err := tp.Render(m, benchValues, benchExtra); err != nil {
			b.Fatal(err)
		}
		if err := s.Sign(m); err != nil {
			b.Fatal(err)
		}
		m.Release()
	}
}

// BenchmarkDKIMSign measures render + sign of the ~22 KB newsletter; the
// Stdlib-style baseline is go-msgauth's dkim.Sign over the same bytes.
func BenchmarkDKIMSign(b *testing.B) {
	b.Run("RSA2048", func(b *testing.B) { benchDKIM(b, "dkim_rsa2048_pkcs1.pem") })
	b.Run("Ed25519", func(b *testing.B) { benchDKIM(b, "dkim_ed25519.pem") })
}

func BenchmarkDKIMSignMsgauth(b *testing.B) {
	content := newsletterContent(b)
	for _, key := range []string{"dkim_rsa2048_pkcs1.pem", "dkim_ed25519.pem"} {
		pemBytes, _ := os.ReadFile("testdata/" + key)
		k, err := ParseDKIMKey(pemBytes)
		if err != nil {
			b.Fatal(err)
		}
		opts := &dkim.SignOptions{Domain: "example.com", Selector: "s1", Signer: k, Hash: crypto.SHA256,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
			HeaderKeys: DefaultDKIMHeaders}
		b.Run(strings.TrimSuffix(strings.TrimPrefix(key, "dkim_"), ".pem"), func(b *testing.B) {
			var out bytes.Buffer
			b.SetBytes(int64(len(content)))
			b.ReportAllocs()
			for b.Loop() {
				out.Reset()
				if err := dkim.Sign(&out, bytes.NewReader(content), opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchUnstuffed measures the BDAT view (un-stuffed slices, no copy) of one
// rendered ~22 KB newsletter.
func benchUnstuffed(b *testing.B, view func(m *Message, dst [][]byte) ([][]byte, int)) {
	tp := loadNewsletter(b)
	m := AcquireMessage()
	defer m.Release()
	if err := tp.Render(m, benchValues, benchExtra); err != nil {
		b.Fatal(err)
	}
	dst := make([][]byte, 0, 256)
	dst, n := view(m, dst)
	b.SetBytes(int64(n))
	b.ReportAllocs()
	for b.Loop() {
		dst, _ = view(m, dst[:0])
	}
}

// BenchmarkUnstuffedNewsletter: Message.AppendUnstuffed, the static
// segments' dots found at compile time.
func BenchmarkUnstuffedNewsletter(b *testing.B) {
	benchUnstuffed(b, (*Message).AppendUnstuffed)
}

// BenchmarkUnstuffedSegsNewsletter is the baseline: AppendUnstuffedSegs
// scans every segment.
func BenchmarkUnstuffedSegsNewsletter(b *testing.B) {
	benchUnstuffed(b, func(m *Message, dst [][]byte) ([][]byte, int) { return AppendUnstuffedSegs(dst, m.Segs) })
}
