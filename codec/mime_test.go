package codec

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"
	"testing"
)

func TestAppendQuotedPrintable(t *testing.T) {
	for i, c := range []struct {
		in, want string
	}{
		{"", ""},
		{"hello", "hello"},
		{"a=b", "a=3Db"},
		{"café", "caf=C3=A9"},
		{"end ", "end=20"},
		{"tab\t\r\nx", "tab=09\r\nx"},
		{"a\nb\rc\r\nd", "a\r\nb\r\nc\r\nd"},
		{".dot\r\n.x", "=2Edot\r\n=2Ex"},
		{"--b\r\n-", "=2D-b\r\n=2D"},
		{"a.b-c", "a.b-c"},
		{strings.Repeat("x", 80), strings.Repeat("x", 75) + "=\r\n" + "xxxxx"},
		{strings.Repeat("x", 74) + "é", strings.Repeat("x", 74) + "=\r\n=C3=A9"},
		{strings.Repeat("x", 75) + ".", strings.Repeat("x", 75) + "=\r\n=2E"},
	} {
		if got := string(AppendQuotedPrintable(nil, []byte(c.in))); got != c.want {
			t.Errorf("#%d: got %q; want %q", i, got, c.want)
		}
	}
}

func TestQuotedPrintableRoundTrip(t *testing.T) {
	var in []byte
	for i := range 3000 {
		in = append(in, byte(i*7919>>3))
		if i%97 == 0 {
			in = append(in, " \r\n"...)
		}
	}
	in = canonicalCRLF(in)
	enc := AppendQuotedPrintable(nil, in)
	for i, line := range bytes.Split(enc, []byte("\r\n")) {
		if len(line) > qpLineMax {
			t.Fatalf("line %d has %d chars", i, len(line))
		}
		if len(line) > 0 && (line[0] == '.' || line[0] == '-') {
			t.Fatalf("line %d starts with %q", i, line[0])
		}
	}
	dec, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(enc)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dec, in) {
		t.Fatalf("round trip differs:\n got %q\nwant %q", dec[:80], in[:80])
	}
}

func TestAppendBase64Lines(t *testing.T) {
	for i, n := range []int{0, 1, 56, 57, 58, 114, 1000} {
		in := bytes.Repeat([]byte{0xA5, 'x', 0}, n)[:n]
		got := AppendBase64Lines([]byte("pre"), in)
		want := base64.StdEncoding.EncodeToString(in)
		var lines []string
		for len(want) > 76 {
			lines, want = append(lines, want[:76]), want[76:]
		}
		if want != "" || n == 0 {
			lines = append(lines, want)
		}
		if w := "pre" + strings.Join(lines, "\r\n"); string(got) != w {
			t.Errorf("#%d: got %q; want %q", i, got, w)
		}
	}
}

func TestAppendEncodedWords(t *testing.T) {
	for i, c := range []struct {
		in   string
		enc  byte
		want string
	}{
		{"", 'B', ""},
		{"Zoë", 'Q', "=?UTF-8?Q?Zo=C3=AB?="},
		{"Zoë", 'B', "=?UTF-8?B?Wm/Dqw==?="},
		{"a b_c?=", 'Q', "=?UTF-8?Q?a_b=5Fc=3F=3D?="},
		{"x", 'x', "=?UTF-8?B?eA==?="},
	} {
		if got := string(AppendEncodedWords(nil, []byte(c.in), c.enc)); got != c.want {
			t.Errorf("#%d: got %q; want %q", i, got, c.want)
		}
	}
	for i, in := range []string{strings.Repeat("日本語テキスト", 20), strings.Repeat("é", 100), strings.Repeat("a", 200), "🎉" + strings.Repeat("ü", 70)} {
		for _, enc := range []byte{'B', 'Q'} {
			out := AppendEncodedWords(nil, []byte(in), enc)
			for _, line := range strings.Split(string(out), "\r\n") {
				if len(line) > headerFoldAt {
					t.Errorf("#%d/%c: line of %d chars", i, enc, len(line))
				}
				for _, w := range strings.Fields(line) {
					if len(w) > encodedWordMax {
						t.Errorf("#%d/%c: word of %d chars", i, enc, len(w))
					}
				}
			}
			got, err := new(mime.WordDecoder).DecodeHeader(strings.ReplaceAll(string(out), "\r\n", ""))
			if err != nil || got != in {
				t.Errorf("#%d/%c: decoded %q (%v); want %q", i, enc, got, err, in)
			}
		}
	}
}

func TestEncodersAllocs(t *testing.T) {
	src := []byte(strings.Repeat("Grüße aus Liège, ça va? ", 40))
	dst := make([]byte, 0, 8192)
	n := testing.AllocsPerRun(50, func() {
		dst = AppendQuotedPrintable(dst[:0], src)
		dst = AppendBase64Lines(dst[:0], src)
		dst = AppendEncodedWords(dst[:0], src, 'Q')
		dst = appendHTMLEscaped(dst[:0], "a<b>&c")
	})
	if n != 0 {
		t.Fatalf("got %v allocs; want 0", n)
	}
}
