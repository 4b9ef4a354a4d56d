package codec

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"
)

const benchRows = 100_000

// benchList is a generated 100k-row list: email plus 5 merge columns, a
// quoted field with a comma every 7th row and mixed-case domains.
var benchList = sync.OnceValue(func() []byte {
	var b bytes.Buffer
	b.WriteString("email,first_name,last_name,city,company,plan\r\n")
	domains := []string{"gmail.com", "Yahoo.com", "outlook.com", "example.org", "mail.example.net"}
	cities := []string{"Paris", "Berlin", "New York", "São Paulo", "Tokyo"}
	for i := range benchRows {
		company := fmt.Sprintf("Company %d", i%977)
		if i%7 == 0 {
			company = fmt.Sprintf("\"Acme, Inc. %d\"", i%977)
		}
		fmt.Fprintf(&b, "user.%d@%s,First%d,Last%d,%s,%s,plan-%d\r\n",
			i, domains[i%len(domains)], i, i, cities[i%len(cities)], company, i%3)
	}
	return b.Bytes()
})

func reportRows(b *testing.B, start time.Time, rows int) {
	b.ReportMetric(float64(rows)/time.Since(start).Seconds(), "rows/s")
}

func BenchmarkListReader(b *testing.B) {
	in := benchList()
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	start, rows := time.Now(), 0
	for b.Loop() {
		lr, err := NewListReader(bytes.NewReader(in), ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		for {
			_, err := lr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			rows++
		}
		if st := lr.Stats(); st.Good != benchRows {
			b.Fatalf("stats %+v", st)
		}
	}
	reportRows(b, start, rows)
}

// BenchmarkListReaderEncodingCSV is the baseline: encoding/csv reading the
// same file, records only (no validation, normalisation or de-duplication).
func BenchmarkListReaderEncodingCSV(b *testing.B) {
	in := benchList()
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	start, rows := time.Now(), 0
	for b.Loop() {
		cr := csv.NewReader(bytes.NewReader(in))
		if _, err := cr.Read(); err != nil { // header
			b.Fatal(err)
		}
		for {
			rec, err := cr.Read()
			if err == io.EOF {
				break
			}
			if err != nil || len(rec) != 6 {
				b.Fatal(err)
			}
			rows++
		}
	}
	if rows != b.N*benchRows {
		b.Fatalf("%d rows", rows)
	}
	reportRows(b, start, rows)
}
