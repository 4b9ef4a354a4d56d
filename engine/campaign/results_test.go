package campaign

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestResultsResumeKeepsOneLinePerFinalRow(t *testing.T) {
	dir := t.TempDir()
	csvPath, jsonPath := filepath.Join(dir, "r.csv"), filepath.Join(dir, "r.jsonl")
	w, err := OpenResults(csvPath, jsonPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, r := range []Result{
		{Row: 0, Email: "a@x.test", State: "delivered", Code: 250, Completed: now},
		{Row: 1, Email: "b@x.test", State: "bounced", Code: 550, Text: "no such\nuser", Completed: now},
		{Row: 2, Email: "c@x.test", State: "delivered", Code: 250, Completed: now}, // not journalled before the crash
		{Row: 0, Email: "a@x.test", State: "delivered", Code: 250, Completed: now}, // duplicate line
	} {
		if err := w.Write(&r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	final := map[int]bool{0: true, 1: true}
	w, err = OpenResults(csvPath, jsonPath, func(row int) bool { return final[row] })
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(&Result{Row: 2, Email: "c@x.test", State: "delivered", Completed: now}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	for _, p := range []string{csvPath, jsonPath} {
		b, _ := os.ReadFile(p)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		want := 3
		if strings.HasSuffix(p, ".csv") {
			want = 4 // header
		}
		if len(lines) != want {
			t.Fatalf("%s: got %d lines; want %d:\n%s", p, len(lines), want, b)
		}
	}
}

func TestSummaryTallies(t *testing.T) {
	s := newSummary(time.Unix(0, 0))
	s.Add("x.test", "mx.x.test", "delivered", "")
	s.Add("x.test", "mx.x.test", "bounced", "invalid-recipient")
	s.Add("y.test", "mx.y.test", "expired", "")
	s.End = time.Unix(2, 0)
	if s.Total.Delivered != 1 || s.Total.Bounced != 2 || s.PerSite["mx.x.test"].BouncedBy["invalid-recipient"] != 1 || s.Total.BouncedBy["other"] != 1 {
		t.Fatalf("got %+v", s.Total)
	}
	var b strings.Builder
	s.Print(&b, 10)
	if !strings.Contains(b.String(), "1 delivered") || !strings.Contains(b.String(), "mx.y.test") {
		t.Fatalf("summary: %s", b.String())
	}
}

// A fresh campaign starts its results over; a resume fills in, per format,
// only the rows each file lacks.
func TestResultsFreshTruncatesResumeFillsMissing(t *testing.T) {
	dir := t.TempDir()
	csvPath, jsonPath := filepath.Join(dir, "r.csv"), filepath.Join(dir, "r.jsonl")
	write := func(keep func(int) bool, rows ...int) *ResultsWriter {
		w, err := OpenResults(csvPath, jsonPath, keep)
		if err != nil {
			t.Fatal(err)
		}
		for _, row := range rows {
			if err := w.Write(&Result{Row: row, Email: "a@x.test", State: "delivered", Completed: time.Now()}); err != nil {
				t.Fatal(err)
			}
		}
		return w
	}
	count := func(path string) int {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(b), "\n")
	}
	write(nil, 0, 1, 2).Close()
	write(nil, 0, 1).Close() // a new campaign
	if n := count(csvPath); n != 3 {
		t.Errorf("fresh run: %d CSV lines, want header + 2", n)
	}
	if n := count(jsonPath); n != 2 {
		t.Errorf("fresh run: %d JSONL lines, want 2", n)
	}
	// Resume: the JSONL lost row 1's line, both lost row 2's.
	os.WriteFile(jsonPath, []byte(`{"row":0,"state":"delivered"}`+"\n"), 0o644)
	w := write(func(int) bool { return true })
	for _, row := range []int{0, 1, 2} {
		if err := w.WriteMissing(&Result{Row: row, State: "delivered"}); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	if n := count(csvPath); n != 4 {
		t.Errorf("resume: %d CSV lines, want header + rows 0, 1, 2", n)
	}
	if n := count(jsonPath); n != 3 {
		t.Errorf("resume: %d JSONL lines, want rows 0, 1, 2", n)
	}
}
