package codec

import (
	"bufio"
	"bytes"
	"net/textproto"
	"slices"
	"testing"
)

func TestStuffer(t *testing.T) {
	for i, c := range []struct {
		in   []string // pieces fed to Append
		want string
	}{
		{nil, ".\r\n"},
		{[]string{""}, ".\r\n"},
		{[]string{"a"}, "a\r\n.\r\n"},
		{[]string{"a\r\n"}, "a\r\n.\r\n"},
		{[]string{".a\r\n"}, "..a\r\n.\r\n"},
		{[]string{"."}, "..\r\n.\r\n"},
		{[]string{"a\r\n.\r\nb"}, "a\r\n..\r\nb\r\n.\r\n"},
		{[]string{"a\r", "\n.b"}, "a\r\n..b\r\n.\r\n"},
		{[]string{"a\r\n", ".", "b"}, "a\r\n..b\r\n.\r\n"},
		{[]string{"a\r", ".b"}, "a\r\n..b\r\n.\r\n"}, // bare CR
		{[]string{"a\nb\n"}, "a\r\nb\r\n.\r\n"},      // bare LF
		{[]string{"a\r\rb"}, "a\r\n\r\nb\r\n.\r\n"},
		{[]string{"a\n\r\nb"}, "a\r\n\r\nb\r\n.\r\n"},
		{[]string{"\n.\n..\n"}, "\r\n..\r\n...\r\n.\r\n"},
		{[]string{"x.y\r\n"}, "x.y\r\n.\r\n"},
		{[]string{"a\r"}, "a\r\n.\r\n"},
		{[]string{"a\r", ""}, "a\r\n.\r\n"},
	} {
		var s Stuffer
		var dst []byte
		for _, p := range c.in {
			dst = s.Append(dst, []byte(p))
		}
		dst = s.Finish(dst)
		if string(dst) != c.want {
			t.Errorf("#%d: got %q; want %q", i, dst, c.want)
		}
		if !s.AtLineStart() {
			t.Errorf("#%d: Finish did not reset", i)
		}
	}
}

func TestStufferAllocs(t *testing.T) {
	p := bytes.Repeat([]byte("hello world\r\n.dot line\r\n"), 100)
	dst := make([]byte, 0, 4096)
	n := testing.AllocsPerRun(100, func() {
		var s Stuffer
		dst = s.Finish(s.Append(dst[:0], p))
	})
	if n != 0 {
		t.Fatalf("got %v allocs; want 0", n)
	}
}

func TestAppendUnstuffed(t *testing.T) {
	for i, c := range []struct {
		segs []string
		want string
	}{
		{[]string{".\r\n"}, ""},
		{[]string{"a\r\n..b\r\n", ".\r\n"}, "a\r\n.b\r\n"},
		{[]string{"a\r\n.", ".b\r\n.", "\r\n"}, "a\r\n.b\r\n"},
		{[]string{"..\r\n", ".\r\n"}, ".\r\n"},
	} {
		var segs [][]byte
		for _, s := range c.segs {
			segs = append(segs, []byte(s))
		}
		if got := string(appendUnstuffed(nil, segs)); got != c.want {
			t.Errorf("#%d: got %q; want %q", i, got, c.want)
		}
	}
}

// dotWriter returns what net/textproto's DotWriter writes for p.
func dotWriter(p []byte) []byte {
	var b bytes.Buffer
	w := textproto.NewWriter(bufioWriter(&b))
	d := w.DotWriter()
	d.Write(p)
	d.Close()
	return b.Bytes()
}

// FuzzStuff checks the Stuffer against net/textproto's DotWriter on
// CRLF-canonical input split at fuzzed offsets, and checks that any input
// (canonical or not) comes out canonical and round-trips.
func FuzzStuff(f *testing.F) {
	f.Add([]byte("a\r\n.b\r\n"), uint16(3), uint16(4))
	f.Add([]byte(".\r\n.\r\n"), uint16(1), uint16(2))
	f.Add([]byte("\r\n..\r\nx"), uint16(0), uint16(7))
	f.Add([]byte("a\rb\nc"), uint16(2), uint16(3))
	f.Fuzz(func(t *testing.T, in []byte, a, b uint16) {
		canon := appendCRLF(nil, in)
		i, j := int(a)%(len(canon)+1), int(b)%(len(canon)+1)
		if i > j {
			i, j = j, i
		}
		var s Stuffer
		got := s.Append(nil, canon[:i])
		got = s.Append(got, canon[i:j])
		got = s.Append(got, canon[j:])
		got = s.Finish(got)
		want := dotWriter(canon)
		if len(canon) == 0 {
			// The one documented difference: DotWriter writes an empty
			// line for empty content; the Stuffer writes none.
			want = []byte(".\r\n")
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("split %d,%d of %q: got %q; want %q", i, j, canon, got, want)
		}
		// Raw input: same as canonicalising first.
		var s2 Stuffer
		i = min(i, len(in))
		raw := s2.Finish(s2.Append(s2.Append(nil, in[:i]), in[i:]))
		if !bytes.Equal(raw, got) {
			t.Fatalf("raw %q split at %d: got %q; want %q", in, i, raw, got)
		}
		if back := appendUnstuffed(nil, [][]byte{got}); len(canon) > 0 && !bytes.Equal(bytes.TrimSuffix(back, []byte("\r\n")), bytes.TrimSuffix(canon, []byte("\r\n"))) {
			t.Fatalf("round trip of %q: got %q", canon, back)
		}
	})
}

func bufioWriter(b *bytes.Buffer) *bufio.Writer { return bufio.NewWriter(b) }

func TestAppendUnstuffedSegs(t *testing.T) {
	for i, c := range []struct {
		segs []string
		want []string // the slices appended
	}{
		{[]string{".\r\n"}, nil},
		{[]string{"a\r\nb\r\n", "c\r\n", ".\r\n"}, []string{"a\r\nb\r\n", "c\r\n"}},
		{[]string{"a\r\n..b\r\n", ".\r\n"}, []string{"a\r\n", ".b\r\n"}},
		{[]string{"a\r\n.", ".b\r\n.", "\r\n"}, []string{"a\r\n", ".b\r\n"}},
		{[]string{"..\r\n", ".\r\n"}, []string{".\r\n"}},
		{[]string{"x\r\n", "..y\r\n..z\r\n.\r\n"}, []string{"x\r\n", ".y\r\n", ".z\r\n"}},
		{[]string{"x\r", "\n..y\r\n", ".\r\n"}, []string{"x\r", "\n", ".y\r\n"}},
		{[]string{"", "a\r\n", "", ".\r\n"}, []string{"a\r\n"}},
		{[]string{"no end\r\n"}, []string{"no end\r\n"}},
	} {
		var segs [][]byte
		for _, s := range c.segs {
			segs = append(segs, []byte(s))
		}
		got, n := AppendUnstuffedSegs(nil, segs)
		var gs []string
		total := 0
		for _, g := range got {
			gs = append(gs, string(g))
			total += len(g)
		}
		if !slices.Equal(gs, c.want) || n != total {
			t.Errorf("#%d: got %q (n=%d); want %q", i, gs, n, c.want)
		}
	}
}

// TestAppendUnstuffedSegsShares: the slices point into the segments.
func TestAppendUnstuffedSegsShares(t *testing.T) {
	seg := []byte("a\r\n..b\r\n.\r\n")
	got, _ := AppendUnstuffedSegs(nil, [][]byte{seg})
	if len(got) != 2 || &got[0][0] != &seg[0] || &got[1][0] != &seg[4] {
		t.Fatalf("got %q; want two slices of the segment", got)
	}
}

func TestAppendUnstuffedSegsAllocs(t *testing.T) {
	segs := [][]byte{[]byte("Subject: x\r\n\r\n"), []byte("..dot\r\nline\r\n"), []byte(".\r\n")}
	dst := make([][]byte, 0, 8)
	n := testing.AllocsPerRun(100, func() { dst, _ = AppendUnstuffedSegs(dst[:0], segs) })
	if n != 0 {
		t.Fatalf("got %v allocs; want 0", n)
	}
}

// sameRuns reports whether a and b are the same slices (memory, length and
// capacity), not only the same bytes.
func sameRuns(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i]) != len(b[i]) || cap(a[i]) != cap(b[i]) || len(a[i]) > 0 && &a[i][0] != &b[i][0] {
			return false
		}
	}
	return true
}

// checkKnownRuns: walking segs as static segments whose line-start dots are
// known (unstuffer.known with lineDots, as Message.AppendUnstuffed walks a
// template's statics), every one or every other one, gives the very slices
// AppendUnstuffedSegs finds by scanning.
func checkKnownRuns(t *testing.T, segs [][]byte) {
	t.Helper()
	want, wn := AppendUnstuffedSegs(nil, segs)
	for mod := 1; mod <= 3; mod++ { // mod 3: every segment scanned
		u := unstuffer{lineStart: true}
		var got [][]byte
		for i, seg := range segs {
			if i%mod == 0 && len(seg) > 0 {
				got = u.known(got, seg, lineDots(seg))
			} else {
				got = u.scan(got, seg)
			}
			if u.done {
				break
			}
		}
		if !sameRuns(got, want) || u.n != wn {
			t.Fatalf("%q (known every %d): got %q (n=%d); want %q (n=%d)", segs, mod, got, u.n, want, wn)
		}
	}
}

// TestKnownRuns: the edge cases of a static segment's first byte (after a
// dropped dot, at a line start) and of dots at its end.
func TestKnownRuns(t *testing.T) {
	for _, segs := range [][]string{
		{".\r\n"},
		{"a\r\n.", ".b\r\n.", "\r\n"},
		{"a\r\n", ".", ".b\r\n", "."},
		{"a\r\n.", "\r\n", "x"},
		{"..\r\n..\r\n\r\n.\r\n"},
		{"x\r", "\n..y\r\n", ".\r\n"},
		{"\n.\n.\n.", "\r\n"},
		{"a\r\n", ".\r\nb"},
		{"a\r\n..", "b\r\n.", "..\r\n", ".\r\n"},
		{"no end\r\n"},
	} {
		var bs [][]byte
		for _, s := range segs {
			bs = append(bs, []byte(s))
		}
		checkKnownRuns(t, bs)
	}
}

// FuzzUnstuffedSegs: content stuffed by the Stuffer and cut into segments
// at fuzzed offsets gives back, without copying, what the copying
// unstuffer (and the original canonical content) holds.
func FuzzUnstuffedSegs(f *testing.F) {
	f.Add([]byte("a\r\n.b\r\n"), uint16(3), uint16(4))
	f.Add([]byte(".\r\n.\r\n"), uint16(1), uint16(2))
	f.Add([]byte("\r\n..\r\nx"), uint16(0), uint16(7))
	f.Fuzz(func(t *testing.T, in []byte, a, b uint16) {
		var s Stuffer
		wire := s.Finish(s.Append(nil, in))
		i, j := int(a)%(len(wire)+1), int(b)%(len(wire)+1)
		if i > j {
			i, j = j, i
		}
		segs := [][]byte{wire[:i], wire[i:j], wire[j:]}
		got, n := AppendUnstuffedSegs(nil, segs)
		var flat []byte
		for _, g := range got {
			flat = append(flat, g...)
		}
		want := appendUnstuffed(nil, [][]byte{wire})
		if !bytes.Equal(flat, want) || n != len(flat) {
			t.Fatalf("%q cut at %d,%d: got %q (n=%d); want %q", wire, i, j, flat, n, want)
		}
		checkKnownRuns(t, segs)
		checkKnownRuns(t, [][]byte{in[:len(in)/2], in[len(in)/2:]}) // not stuffed
		if canon := appendCRLF(nil, in); len(canon) > 0 && !bytes.Equal(bytes.TrimSuffix(flat, []byte("\r\n")), bytes.TrimSuffix(canon, []byte("\r\n"))) {
			t.Fatalf("%q: got %q; want the canonical content %q", in, flat, canon)
		}
	})
}
