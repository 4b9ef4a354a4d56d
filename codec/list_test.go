package codec

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
)

// readWholeList reads a whole list and returns a compact transcript: one entry
// per good row "row:line email [values]" and per bad row "bad row:line: reason".
func readWholeList(t *testing.T, in string, opts ListOptions) (got []string, lr *ListReader) {
	t.Helper()
	opts.OnBadRow = func(e *RowError) {
		got = append(got, fmt.Sprintf("bad %d:%d %v", e.Row, e.Line, e.Err))
	}
	lr, err := NewListReader(strings.NewReader(in), opts)
	if err != nil {
		t.Fatalf("NewListReader: %v", err)
	}
	for {
		r, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		got = append(got, fmt.Sprintf("%d:%d %s %s %q", r.Row, r.Line, r.Email, r.Domain, r.Values))
	}
	st := lr.Stats()
	if st.Rows != st.Good+st.Bad+st.Duplicates {
		t.Errorf("stats %+v do not add up", st)
	}
	return got, lr
}

func TestListReader(t *testing.T) {
	tests := []struct {
		in   string
		opts ListOptions
		want []string
	}{
		{ // BOM, CRLF, blank lines, quoted newline, case-insensitive header
			"\uFEFFName,EMAIL\r\n\r\nAnn,ann@Example.COM\r\n\"Bob\r\nJr\",bob@example.com\r\n\r\n",
			ListOptions{},
			[]string{
				`0:3 ann@example.com example.com ["Ann" "ann@Example.COM"]`,
				`1:4 bob@example.com example.com ["Bob\nJr" "bob@example.com"]`,
			},
		},
		{ // bad rows: field count, address, injection, UTF-8, duplicate
			"email,name\na@x.com,A\nb@x.com\nc@@x.com,C\n\"d@x.com>\r\nDATA\",D\ne@x.com,\xff\nA@X.com,dup\nf@x.com,F",
			ListOptions{},
			[]string{
				`0:2 a@x.com x.com ["a@x.com" "A"]`,
				`bad 1:3 wrong number of fields`,
				`bad 2:4 codec: invalid address "c@@x.com": character '@' not allowed in local part (outside quotes)`,
				`bad 3:5 codec: invalid address "d@x.com>\nDATA": contains '<' or '>'`,
				`bad 4:7 codec: invalid UTF-8`,
				`bad 5:8 codec: duplicate address`,
				`6:9 f@x.com x.com ["f@x.com" "F"]`,
			},
		},
		{ // duplicates by normalised address
			"email\na@x.com\n a@X.COM \na@x.com\nA@x.com\n",
			ListOptions{},
			[]string{`0:2 a@x.com x.com ["a@x.com"]`, `bad 1:3 codec: duplicate address`, `bad 2:4 codec: duplicate address`, `bad 3:5 codec: duplicate address`},
		},
		{
			"email\na@x.com\na@x.com\n",
			ListOptions{KeepDuplicates: true},
			[]string{`0:2 a@x.com x.com ["a@x.com"]`, `1:3 a@x.com x.com ["a@x.com"]`},
		},
		{ // unterminated quote at EOF: only its line is lost
			"email,name\na@x.com,\"Ann\nb@x.com,Bob\nc@x.com,Cy\n",
			ListOptions{},
			[]string{`bad 0:2 codec: unterminated quoted field`, `1:3 b@x.com x.com ["b@x.com" "Bob"]`, `2:4 c@x.com x.com ["c@x.com" "Cy"]`},
		},
		{ // stray quote pairing with a later quote; csv error inside
			"email,name\na@x.com,Ann\"s\nb@x.com,\"Bob\nc@x.com,Cy\n",
			ListOptions{},
			[]string{`bad 0:2 bare " in non-quoted-field`, `bad 1:3 codec: unterminated quoted field`, `2:4 c@x.com x.com ["c@x.com" "Cy"]`},
		},
		{ // stray quote pairing later with a csv error
			"email,name\na@x.com,\"Ann\nb@x.com,Bob\nc@x.com,C\"y,z\n",
			ListOptions{},
			[]string{`bad 0:2 extraneous or missing " in quoted-field`, `1:3 b@x.com x.com ["b@x.com" "Bob"]`, `bad 2:4 codec: unterminated quoted field`},
		},
		{ // stray quote pairing later with a wrong field count
			"email,name\na@x.com,\"Ann\nb@x.com,Bob\nc@x.com\",x,y\n",
			ListOptions{},
			[]string{`bad 0:2 wrong number of fields`, `1:3 b@x.com x.com ["b@x.com" "Bob"]`, `bad 2:4 codec: unterminated quoted field`},
		},
		{ // delimiter, IDN, SMTPUTF8 off and on
			"email;n\nJosé@x.com;1\nb@Bücher.example;2\n",
			ListOptions{Comma: ';'},
			[]string{`bad 0:2 codec: invalid address "José@x.com": non-ASCII local part needs SMTPUTF8`, `1:3 b@xn--bcher-kva.example xn--bcher-kva.example ["b@Bücher.example" "2"]`},
		},
		{
			"email\tn\nJosé@x.com\t1\n",
			ListOptions{Comma: '\t', SMTPUTF8: true},
			[]string{`0:2 José@x.com x.com ["José@x.com" "1"]`},
		},
		{ // listmonk attributes
			"email,name,attributes\na@x.com,A,\"{\"\"city\"\":\"\"Paris\"\",\"\"age\"\":30,\"\"tags\"\":[1]}\"\nb@x.com,B,\nc@x.com,C,{oops}\n",
			ListOptions{AttributeKeys: []string{"city", "age", "zip"}},
			[]string{
				`0:2 a@x.com x.com ["a@x.com" "A" "{\"city\":\"Paris\",\"age\":30,\"tags\":[1]}" "Paris" "30" ""]`,
				`1:3 b@x.com x.com ["b@x.com" "B" "" "" "" ""]`,
				`bad 2:4 invalid character 'o' looking for beginning of object key string`,
			},
		},
		{ // fuzz finding: a last lone CR is a blank line, as in encoding/csv
			"EmAil \n\r",
			ListOptions{},
			[]string{},
		},
		{ // an over-long line is one bad row
			"email,n\n" + strings.Repeat("x", MaxRecordLen+10) + "\nb@x.com,1\n",
			ListOptions{},
			[]string{`bad 0:2 codec: record too long`, `1:3 b@x.com x.com ["b@x.com" "1"]`},
		},
		{ // an over-long quoted record resynchronises
			"email,n\na@x.com,\"" + strings.Repeat("x\n", MaxRecordLen/2+10) + "\nb@x.com,1\n",
			ListOptions{},
			nil, // checked below: first line bad, b@x.com good
		},
	}
	for i, tt := range tests {
		got, _ := readWholeList(t, tt.in, tt.opts)
		if tt.want == nil {
			if len(got) < 2 || got[0] != "bad 0:2 codec: record too long" || !strings.Contains(got[len(got)-1], "b@x.com") {
				t.Errorf("#%d: got %q", i, got)
			}
			continue
		}
		if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
			t.Errorf("#%d: got\n%s\nwant\n%s", i, strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
		}
	}
}

func TestListReaderHeaderErrors(t *testing.T) {
	tests := []struct {
		in   string
		opts ListOptions
		want string
	}{
		{"", ListOptions{Name: "l.csv"}, `codec: l.csv:1: empty list: no header row`},
		{"\n\n", ListOptions{Name: "l.csv"}, `codec: l.csv:1: empty list: no header row`},
		{"name,mail\n", ListOptions{Name: "l.csv"}, `codec: l.csv:1: header has no "email" column (columns: name, mail)`},
		{"email,Email\n", ListOptions{}, `codec: :1: header: column "Email" appears twice`},
		{"email,name\n", ListOptions{AttributeKeys: []string{"city"}}, `codec: :1: attribute keys given but the header has no "attributes" column`},
		{"email,attributes\n", ListOptions{AttributeKeys: []string{"Email"}}, `codec: :1: attribute key "Email" clashes with a column`},
		{"email,\"na\"me\n", ListOptions{}, `codec: :1: header: extraneous or missing " in quoted-field`},
		{"email\n", ListOptions{Comma: '"'}, `codec: : invalid delimiter '"'`},
	}
	for i, tt := range tests {
		_, err := NewListReader(strings.NewReader(tt.in), tt.opts)
		if err == nil || err.Error() != tt.want {
			t.Errorf("#%d: got %v; want %q", i, err, tt.want)
		}
	}
}

func TestListReaderColumnsAndRowError(t *testing.T) {
	var bad []*RowError
	lr, err := NewListReader(strings.NewReader("email,name,attributes\nx,y,{}\n"), ListOptions{
		Name: "list.csv", AttributeKeys: []string{"city"},
		OnBadRow: func(e *RowError) { bad = append(bad, e) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(lr.Columns(), ","), "email,name,attributes,city"; got != want {
		t.Fatalf("got %q; want %q", got, want)
	}
	if _, err := lr.Next(); err != io.EOF {
		t.Fatalf("got %v; want EOF", err)
	}
	if len(bad) != 1 {
		t.Fatalf("got %d bad rows; want 1", len(bad))
	}
	if got, want := bad[0].Error(), `list.csv:2: invalid address "x": no '@'`; got != want {
		t.Fatalf("got %q; want %q", got, want)
	}
	var ae *AddressError
	if !errors.As(bad[0], &ae) {
		t.Fatalf("RowError does not unwrap to *AddressError")
	}
	if got, want := lr.Stats(), (ListStats{Rows: 1, Bad: 1}); got != want {
		t.Fatalf("got %+v; want %+v", got, want)
	}
}

// failingReader fails after its data.
type failingReader struct{ s string }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, errors.New("disk on fire")
	}
	n := copy(p, r.s)
	r.s = r.s[n:]
	return n, nil
}

func TestListReaderReadError(t *testing.T) {
	lr, err := NewListReader(&failingReader{"email\na@x.com\n"}, ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := lr.Next(); err != nil || r.Email != "a@x.com" {
		t.Fatalf("got %v, %v", r, err)
	}
	if _, err := lr.Next(); err == nil || err == io.EOF {
		t.Fatalf("got %v; want the read error", err)
	}
}

func TestDedupeSet(t *testing.T) {
	var s dedupeSet
	for i := range uint64(5000) {
		if !s.add(i * 0x9E3779B97F4A7C15) {
			t.Fatalf("#%d: reported present before insertion", i)
		}
	}
	for i := range uint64(5000) {
		if s.add(i * 0x9E3779B97F4A7C15) {
			t.Fatalf("#%d: not found after insertion", i)
		}
	}
	if s.n != 5000 || 4*s.n > 3*len(s.slots) {
		t.Fatalf("got n=%d slots=%d", s.n, len(s.slots))
	}
	if s.add(1) { // 0 (inserted first above) is stored as 1
		t.Fatal("hash 1 should collide with hash 0")
	}
}

// genListReader is an io.Reader producing a header and n generated rows.
type genListReader struct {
	n, i int
	buf  []byte
}

func (g *genListReader) Read(p []byte) (int, error) {
	for len(g.buf) < len(p) && g.i <= g.n {
		if g.i == 0 {
			g.buf = append(g.buf, "email,name,city\n"...)
		} else {
			g.buf = fmt.Appendf(g.buf, "user%d@example.com,\"Name %d\",City\n", g.i, g.i)
		}
		g.i++
	}
	if len(g.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, g.buf)
	g.buf = g.buf[:copy(g.buf, g.buf[n:])]
	return n, nil
}

// TestListReaderConstantMemory streams rows with the duplicate set off and
// checks that the live heap does not grow with the number of rows read.
func TestListReaderConstantMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 60k rows")
	}
	lr, err := NewListReader(&genListReader{n: 60_000}, ListOptions{KeepDuplicates: true})
	if err != nil {
		t.Fatal(err)
	}
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	var at10k uint64
	rows := 0
	for {
		_, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if rows++; rows == 10_000 {
			at10k = heap()
		}
	}
	if rows != 60_000 {
		t.Fatalf("got %d rows; want 60000", rows)
	}
	grown := int64(heap()) - int64(at10k)
	runtime.KeepAlive(lr)
	if grown > 256<<10 {
		t.Fatalf("live heap grew by %d bytes over 50k rows", grown)
	}
}

func TestDedupeKey(t *testing.T) {
	if dedupeKey("Ann.Lee@example.com") != dedupeKey("ann.lee@example.com") {
		t.Fatal("keys differ by case")
	}
	if dedupeKey("ann@example.com") == dedupeKey("anne@example.com") {
		t.Fatal("different addresses share a key")
	}
	if allocs := testing.AllocsPerRun(100, func() { _ = dedupeKey("Ann.Lee@example.com") }); allocs != 0 {
		t.Fatalf("got %v allocs; want 0", allocs)
	}
}
