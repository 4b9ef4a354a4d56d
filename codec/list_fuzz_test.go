package codec

import (
	"bytes"
	"encoding/csv"
	"io"
	"slices"
	"testing"
	"unicode/utf8"
)

// FuzzListReader: never panics, Stats add up, rows are numbered in order,
// every recipient is valid and aligned with Columns. Differential: when
// encoding/csv reads the whole input (BOM removed) without error, every
// record having the header's field count and valid UTF-8, ListReader must
// see the same records (no resynchronisation can have happened) and return
// exactly csv's fields for each good row.
func FuzzListReader(f *testing.F) {
	for _, s := range []string{
		"email,name\na@x.com,Ann\nb@x.com,\"Bob\nJr\"\n",
		"\uFEFFEmail;n\r\na@x.com;1\r\n\r\nA@X.COM;2\r\n",
		"email,name\na@x.com,\"Ann\nb@x.com,Bob\nc@x.com,Cy\n",
		"email,name\na@x.com,Ann\"s\nb@x.com,\"Bob\nc@x.com,Cy\n",
		"email,name,attributes\na@x.com,A,\"{\"\"city\"\":\"\"Paris\"\"}\"\nb@x.com,B,{oops}\n",
		"email\n\xff@x.com\n\"a@b>\r\nDATA\"\n",
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, in []byte, attrs bool) {
		opts := ListOptions{Name: "f.csv"}
		if bytes.Contains(in, []byte{';'}) {
			opts.Comma = ';'
		}
		if attrs {
			opts.AttributeKeys = []string{"city"}
		}
		bad := 0
		opts.OnBadRow = func(e *RowError) {
			bad++
			if e.Line < 1 || e.Reason == "" || e.Err == nil {
				t.Fatalf("bad RowError %+v", e)
			}
		}
		lr, err := NewListReader(bytes.NewReader(in), opts)
		if err != nil {
			return
		}
		var good []*Recipient
		for {
			r, err := lr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			if len(good) > 0 && (r.Row <= good[len(good)-1].Row || r.Line <= good[len(good)-1].Line) {
				t.Fatalf("rows out of order: %+v after %+v", r, good[len(good)-1])
			}
			if len(r.Values) != len(lr.Columns()) {
				t.Fatalf("%d values for %d columns", len(r.Values), len(lr.Columns()))
			}
			if err := ValidateAddress(r.Email, false); err != nil {
				t.Fatalf("recipient %q: %v", r.Email, err)
			}
			good = append(good, r)
		}
		st := lr.Stats()
		if st.Rows != st.Good+st.Bad+st.Duplicates || st.Good != len(good) || st.Bad+st.Duplicates != bad {
			t.Fatalf("stats %+v, %d good, %d reported", st, len(good), bad)
		}

		// Differential against encoding/csv on well-formed input.
		in = bytes.TrimPrefix(in, []byte("\uFEFF"))
		cr := csv.NewReader(bytes.NewReader(in))
		cr.Comma = opts.Comma
		if cr.Comma == 0 {
			cr.Comma = ','
		}
		cr.FieldsPerRecord = -1
		recs, err := cr.ReadAll()
		if err != nil || len(recs) == 0 || len(in) > MaxRecordLen {
			return
		}
		for _, rec := range recs {
			if len(rec) != len(recs[0]) {
				return
			}
			for _, f := range rec {
				if !utf8.ValidString(f) {
					return
				}
			}
		}
		if st.Rows != len(recs)-1 {
			t.Fatalf("ListReader saw %d rows; encoding/csv %d", st.Rows, len(recs)-1)
		}
		n := len(recs[0])
		for _, r := range good {
			if !slices.Equal(r.Values[:n], recs[r.Row+1]) {
				t.Fatalf("row %d: got %q; encoding/csv %q", r.Row, r.Values[:n], recs[r.Row+1])
			}
		}
	})
}
