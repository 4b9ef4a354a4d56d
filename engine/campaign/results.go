package campaign

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Result is one line of the per-recipient results file.
type Result struct {
	Row       int       `json:"row"`
	Email     string    `json:"email"`
	Domain    string    `json:"domain"`
	State     string    `json:"state"` // delivered, bounced, deferred, expired, suppressed, invalid
	Class     string    `json:"class,omitempty"`
	Code      int       `json:"code,omitempty"`
	Enhanced  string    `json:"enhanced,omitempty"`
	Text      string    `json:"text,omitempty"`
	MX        string    `json:"mx,omitempty"`
	Site      string    `json:"site,omitempty"`
	Source    string    `json:"source,omitempty"`
	Attempts  int       `json:"attempts"`
	FirstTry  time.Time `json:"first_attempt,omitzero"`
	LastTry   time.Time `json:"last_attempt,omitzero"`
	Completed time.Time `json:"completed"`
}

var csvHeader = []string{"row", "email", "domain", "state", "class", "code", "enhanced", "text", "mx", "site", "source", "attempts", "first_attempt", "last_attempt", "completed"}

func (r *Result) csvRecord() []string {
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	code := ""
	if r.Code != 0 {
		code = strconv.Itoa(r.Code)
	}
	// One line per result: multi-line reply texts are joined with " | ".
	text := strings.ReplaceAll(strings.ReplaceAll(r.Text, "\r", ""), "\n", " | ")
	return []string{strconv.Itoa(r.Row), r.Email, r.Domain, r.State, r.Class, code, r.Enhanced, text,
		r.MX, r.Site, r.Source, strconv.Itoa(r.Attempts), ts(r.FirstTry), ts(r.LastTry), ts(r.Completed)}
}

// ResultsWriter appends results to a CSV file, a JSONL file, or both. It is
// safe for concurrent use; lines are buffered and reach the files on Flush and
// Close.
type ResultsWriter struct {
	mu    sync.Mutex
	files []*os.File
	csvw  *csv.Writer
	jsonw *bufio.Writer
	buf   bytes.Buffer
	enc   *json.Encoder
	// csvRows and jsonRows are the rows already in each file when it was
	// opened for a resume (nil otherwise).
	csvRows, jsonRows map[int]bool
}

// OpenResults opens the results files; an empty path skips that format.
// Without keep (a fresh campaign) the files are truncated. With keep (resume)
// each line already present is kept if keep accepts its row, once per row,
// and the rest dropped by rewriting the file, so that a resumed campaign lists
// every recipient once, as its journal says; WriteMissing then fills in final
// rows whose lines were lost with the crash.
func OpenResults(csvPath, jsonlPath string, keep func(row int) bool) (*ResultsWriter, error) {
	w := &ResultsWriter{}
	if csvPath != "" {
		f, fresh, rows, err := openFiltered(csvPath, keep, csvRow)
		if err != nil {
			return nil, err
		}
		w.csvRows = rows
		w.files = append(w.files, f)
		w.csvw = csv.NewWriter(f)
		if fresh {
			_ = w.csvw.Write(csvHeader)
		}
	}
	if jsonlPath != "" {
		f, _, rows, err := openFiltered(jsonlPath, keep, jsonRow)
		if err != nil {
			w.Close()
			return nil, err
		}
		w.jsonRows = rows
		w.files = append(w.files, f)
		w.jsonw = bufio.NewWriterSize(f, 64<<10)
		w.enc = json.NewEncoder(&w.buf)
	}
	return w, nil
}

// csvRow extracts the row number of a CSV results line (-1 for the header).
func csvRow(line []byte) int {
	i := bytes.IndexByte(line, ',')
	if i < 0 {
		return -1
	}
	n, err := strconv.Atoi(string(line[:i]))
	if err != nil {
		return -1
	}
	return n
}

// jsonRow extracts the row number of a JSONL results line.
func jsonRow(line []byte) int {
	var r struct {
		Row *int `json:"row"`
	}
	if json.Unmarshal(line, &r) != nil || r.Row == nil {
		return -1
	}
	return *r.Row
}

// openFiltered opens path for appending. Without keep the file is
// truncated. With keep and the file present, it first rewrites the file
// keeping the header and the first line of each row that keep accepts, and
// returns those rows. Lines are assumed not to contain raw newlines (CSV
// quoting keeps reply texts on one line because they never contain CR/LF).
func openFiltered(path string, keep func(int) bool, rowOf func([]byte) int) (*os.File, bool, map[int]bool, error) {
	var old []byte
	if keep != nil {
		var err error
		old, err = os.ReadFile(path)
		if err != nil && !os.IsNotExist(err) {
			return nil, false, nil, fmt.Errorf("campaign: results: %w", err)
		}
	}
	if len(old) == 0 {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return nil, false, nil, fmt.Errorf("campaign: results: %w", err)
		}
		return f, true, map[int]bool{}, nil
	}
	var out bytes.Buffer
	seen := make(map[int]bool)
	for _, line := range bytes.SplitAfter(old, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 || line[len(line)-1] != '\n' {
			continue // blank, or a torn last line
		}
		row := rowOf(line)
		if row < 0 {
			if out.Len() == 0 {
				out.Write(line) // header
			}
			continue
		}
		if seen[row] || !keep(row) {
			continue
		}
		seen[row] = true
		out.Write(line)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, out.Bytes(), 0o644); err != nil {
		return nil, false, nil, fmt.Errorf("campaign: results: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, false, nil, fmt.Errorf("campaign: results: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, false, nil, fmt.Errorf("campaign: results: %w", err)
	}
	return f, false, seen, nil
}

// ReadResultsCSV reads a results CSV as ResultsWriter writes it (columns
// found by the header) and calls fn for each line in file order.
func ReadResultsCSV(path string, fn func(*Result)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	cr := csv.NewReader(bufio.NewReader(f))
	cr.FieldsPerRecord = -1
	head, err := cr.Read()
	if err != nil {
		return fmt.Errorf("campaign: results %s: %w", path, err)
	}
	col := make(map[string]int, len(head))
	for i, h := range head {
		col[h] = i
	}
	if _, ok := col["state"]; !ok {
		return fmt.Errorf("campaign: results %s: no state column", path)
	}
	get := func(rec []string, name string) string {
		if i, ok := col[name]; ok && i < len(rec) {
			return rec[i]
		}
		return ""
	}
	ts := func(v string) time.Time {
		t, _ := time.Parse(time.RFC3339Nano, v)
		return t
	}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("campaign: results %s: %w", path, err)
		}
		r := Result{Email: get(rec, "email"), Domain: get(rec, "domain"), State: get(rec, "state"), Class: get(rec, "class"),
			Enhanced: get(rec, "enhanced"), Text: get(rec, "text"), MX: get(rec, "mx"), Site: get(rec, "site"), Source: get(rec, "source"),
			FirstTry: ts(get(rec, "first_attempt")), LastTry: ts(get(rec, "last_attempt")), Completed: ts(get(rec, "completed"))}
		for _, n := range []struct {
			name string
			dst  *int
		}{{"row", &r.Row}, {"code", &r.Code}, {"attempts", &r.Attempts}} {
			if v := get(rec, n.name); v != "" {
				if *n.dst, err = strconv.Atoi(v); err != nil {
					return fmt.Errorf("campaign: results %s:%d: %s %q", path, line, n.name, v)
				}
			}
		}
		fn(&r)
	}
}

// WriteMissing writes r to each file that did not hold a line for r.Row
// when it was opened for a resume.
func (w *ResultsWriter) WriteMissing(r *Result) error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.write(r, w.csvw != nil && !w.csvRows[r.Row], w.jsonw != nil && !w.jsonRows[r.Row])
}

// Write appends one result.
func (w *ResultsWriter) Write(r *Result) error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.write(r, w.csvw != nil, w.jsonw != nil)
}

func (w *ResultsWriter) write(r *Result, toCSV, toJSON bool) error {
	if toCSV {
		if err := w.csvw.Write(r.csvRecord()); err != nil {
			return err
		}
	}
	if toJSON {
		w.buf.Reset()
		if err := w.enc.Encode(r); err != nil {
			return err
		}
		if _, err := w.jsonw.Write(w.buf.Bytes()); err != nil {
			return err
		}
	}
	return nil
}

// Flush pushes buffered lines to the files.
func (w *ResultsWriter) Flush() error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.csvw != nil {
		w.csvw.Flush()
		if err := w.csvw.Error(); err != nil {
			return err
		}
	}
	if w.jsonw != nil {
		return w.jsonw.Flush()
	}
	return nil
}

// Close flushes and closes the files.
func (w *ResultsWriter) Close() error {
	if w == nil {
		return nil
	}
	err := w.Flush()
	for _, f := range w.files {
		if e := f.Close(); err == nil {
			err = e
		}
	}
	return err
}

// Tally counts outcomes for one domain or site.
type Tally struct {
	Delivered, Deferred, Bounced, Suppressed, Invalid int
	BouncedBy                                         map[string]int // bounce class → count
}

func (t *Tally) add(state, class string) {
	switch state {
	case "delivered":
		t.Delivered++
	case "deferred":
		t.Deferred++
	case "bounced", "expired":
		t.Bounced++
		if t.BouncedBy == nil {
			t.BouncedBy = make(map[string]int)
		}
		if class == "" {
			class = "other"
		}
		t.BouncedBy[class]++
	case "suppressed":
		t.Suppressed++
	case "invalid":
		t.Invalid++
	}
}

// Summary is the final report of a campaign. It is safe for concurrent use.
type Summary struct {
	mu       sync.Mutex
	Start    time.Time
	End      time.Time
	Total    Tally
	PerDom   map[string]*Tally
	PerSite  map[string]*Tally
	BadRows  int
	Resumed  int // rows already final in the journal
	Attempts int
}

func newSummary(start time.Time) *Summary {
	return &Summary{Start: start, PerDom: map[string]*Tally{}, PerSite: map[string]*Tally{}}
}

// Add counts one final (or, at the end, still deferred) result.
func (s *Summary) Add(domain, site, state, class string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Total.add(state, class)
	if domain != "" {
		t := s.PerDom[domain]
		if t == nil {
			t = &Tally{}
			s.PerDom[domain] = t
		}
		t.add(state, class)
	}
	if site != "" {
		t := s.PerSite[site]
		if t == nil {
			t = &Tally{}
			s.PerSite[site] = t
		}
		t.add(state, class)
	}
}

// Rate is delivered messages per second over the run.
func (s *Summary) Rate() float64 {
	d := s.End.Sub(s.Start).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(s.Total.Delivered) / d
}

// Print writes the human summary: totals, bounce classes, then the top sites
// and domains by volume (at most top rows each; 0 = all).
func (s *Summary) Print(w io.Writer, top int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	el := s.End.Sub(s.Start)
	fmt.Fprintf(w, "summary: %d delivered, %d deferred, %d bounced, %d suppressed, %d invalid rows in %s (%.0f msgs/s)\n",
		s.Total.Delivered, s.Total.Deferred, s.Total.Bounced, s.Total.Suppressed, s.Total.Invalid+s.BadRows,
		el.Round(time.Millisecond), s.Rate())
	if s.Resumed > 0 {
		fmt.Fprintf(w, "resumed: %d rows were already final in the journal\n", s.Resumed)
	}
	if len(s.Total.BouncedBy) > 0 {
		fmt.Fprintf(w, "bounces by class:")
		for _, k := range sortedKeys(s.Total.BouncedBy) {
			fmt.Fprintf(w, " %s=%d", k, s.Total.BouncedBy[k])
		}
		fmt.Fprintln(w)
	}
	printTallies(w, "site", s.PerSite, top, el)
	printTallies(w, "domain", s.PerDom, top, el)
}

func printTallies(w io.Writer, what string, m map[string]*Tally, top int, el time.Duration) {
	type kv struct {
		k string
		t *Tally
	}
	rows := make([]kv, 0, len(m))
	for k, t := range m {
		rows = append(rows, kv{k, t})
	}
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i].t, rows[j].t
		na, nb := a.Delivered+a.Deferred+a.Bounced, b.Delivered+b.Deferred+b.Bounced
		if na != nb {
			return na > nb
		}
		return rows[i].k < rows[j].k
	})
	if top > 0 && len(rows) > top {
		rows = rows[:top]
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%-40s %10s %9s %8s %9s  %s\n", what, "delivered", "deferred", "bounced", "msgs/s", "bounce classes")
	for _, r := range rows {
		rate := 0.0
		if el > 0 {
			rate = float64(r.t.Delivered) / el.Seconds()
		}
		classes := ""
		for _, k := range sortedKeys(r.t.BouncedBy) {
			classes += fmt.Sprintf("%s=%d ", k, r.t.BouncedBy[k])
		}
		fmt.Fprintf(w, "%-40s %10d %9d %8d %9.1f  %s\n", truncate(r.k, 40), r.t.Delivered, r.t.Deferred, r.t.Bounced, rate, classes)
	}
}

func sortedKeys(m map[string]int) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
