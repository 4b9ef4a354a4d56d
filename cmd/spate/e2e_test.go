package main

// End-to-end tests of the real spate binary: TestMain builds it once, each
// test runs it as a child process against an in-process SMTP server on
// loopback (bench/sink, or emersion/go-smtp's server, which checks the
// protocol independently) and inspects the exit code, stdout/stderr, the
// results file and what the server received.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/csv"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/spate-mta/spate/bench/sink"
)

// spateBin is the binary under test, built by TestMain.
var spateBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "spate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(2)
	}
	spateBin = filepath.Join(dir, "spate")
	// A plain build (no -race): the binary is the thing under test, the race
	// detector runs on the test process (sinks, servers, helpers).
	build := exec.Command("go", "build", "-o", spateBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: go build:", err)
		os.RemoveAll(dir)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is one finished run of the binary.
type result struct {
	code           int
	stdout, stderr string
	took           time.Duration
}

// runSpate runs the binary in dir with args and fails the test if it does not
// exit within limit. SPATE_RELAY_AUTH is removed from the environment.
func runSpate(t *testing.T, dir string, limit time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, spateBin, args...)
	cmd.Dir = dir
	cmd.Env = cleanEnv()
	cmd.WaitDelay = 2 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	if ctx.Err() != nil {
		failKilled(t, args, limit, r)
	}
	return exited(t, args, err, r)
}

// failKilled fails the test for a run that was killed after limit.
func failKilled(t *testing.T, args []string, limit time.Duration, r result) {
	t.Helper()
	t.Fatalf("spate %s: still running after %v (killed)\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), limit, r.stdout, r.stderr)
}

// exited completes r from the error Wait returned: the exit code, or a
// failed test if the process did not exit by itself; then it checks the
// output for a crash.
func exited(t *testing.T, args []string, err error, r result) result {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		r.code = ee.ExitCode()
	default:
		t.Fatalf("spate %s: %v\nstderr:\n%s", strings.Join(args, " "), err, r.stderr)
	}
	assertNoCrash(t, r)
	return r
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SPATE_") {
			env = append(env, kv)
		}
	}
	return env
}

// assertNoCrash fails on any sign of a Go panic or runtime trace.
func assertNoCrash(t *testing.T, r result) {
	t.Helper()
	for _, s := range []string{"goroutine ", "panic:", "runtime error", "[signal ", "runtime/debug", ".go:"} {
		if strings.Contains(r.stderr, s) || strings.Contains(r.stdout, s) {
			t.Fatalf("output contains %q (a crash or stack trace):\nstdout:\n%s\nstderr:\n%s", s, r.stdout, r.stderr)
		}
	}
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeList writes a CSV list (encoding/csv quotes fields holding CR, LF,
// quotes or commas).
func writeList(t *testing.T, path string, header []string, rows [][]string) string {
	t.Helper()
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	_ = w.Write(header)
	_ = w.WriteAll(rows)
	return writeFile(t, path, b.String())
}

// startSink starts a recording bench/sink on loopback.
func startSink(t *testing.T, cfg sink.Config) (*sink.Server, string) {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	cfg.Loops = 1
	srv, err := sink.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, srv.Addr()
}

// resultRow is one line of <list>.results.csv, by column name.
type resultRow map[string]string

// readResults parses a results CSV and fails on a row listed twice.
func readResults(t *testing.T, path string) map[int]resultRow {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("results: %v", err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("results %s: %v", path, err)
	}
	if len(recs) == 0 || recs[0][0] != "row" || recs[0][3] != "state" {
		t.Fatalf("results %s: no header: %q", path, recs)
	}
	out := make(map[int]resultRow, len(recs)-1)
	for _, rec := range recs[1:] {
		r := resultRow{}
		for i, k := range recs[0] {
			r[k] = rec[i]
		}
		row, err := strconv.Atoi(r["row"])
		if err != nil {
			t.Fatalf("results: bad row %q", r["row"])
		}
		if _, dup := out[row]; dup {
			t.Errorf("results: row %d listed twice", row)
		}
		out[row] = r
	}
	return out
}

// parseMsg parses a received message (CRLF line ends).
func parseMsg(t *testing.T, data []byte) (*mail.Message, string) {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("received message does not parse: %v\n%s", err, data)
	}
	body, _ := io.ReadAll(m.Body)
	return m, string(body)
}

// headerBlock returns the raw header section of a message, lines split.
func headerLines(data []byte) []string {
	h := data
	if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
		h = data[:i]
	}
	return strings.Split(string(h), "\r\n")
}

const basicTemplate = "From: \"News\" <news@example.com>\r\n" +
	"To: {{name}} <{{email}}>\r\n" +
	"Subject: Hello {{name}}\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: 8bit\r\n" +
	"\r\n" +
	"Dear {{name}},\r\n" +
	"your city is {{city}}.\r\n" +
	".a line that starts with a dot\r\n" +
	"Bye.\r\n"

// smallList writes n recipients over six domains, plus extra rows.
func smallList(t *testing.T, dir string, n int, extra ...[]string) (string, map[string]int) {
	t.Helper()
	var rows [][]string
	rowOf := map[string]int{}
	for i := range n {
		email := fmt.Sprintf("u%03d@d%d.test", i, i%6)
		rowOf[email] = len(rows)
		rows = append(rows, []string{email, fmt.Sprintf("Name%03d", i), fmt.Sprintf("City%03d", i)})
	}
	for _, e := range extra {
		rowOf[e[0]] = len(rows)
		rows = append(rows, e)
	}
	return writeList(t, filepath.Join(dir, "list.csv"), []string{"email", "name", "city"}, rows), rowOf
}

// TestSendSink sends a 300-recipient list (six domains, one permanent and two
// temporary failures) to bench/sink and checks the exit code, the results
// file, what the sink received, and a --resume of the deferred rest.
func TestSendSink(t *testing.T) {
	dir := t.TempDir()
	srv, addr := startSink(t, sink.Config{Record: true})
	const n = 300
	list, rowOf := smallList(t, dir, n,
		[]string{"permfail@d1.test", "Perm", "Nowhere"},
		[]string{"tempfail@d2.test", "Temp", "Later"},
		[]string{"drop-in-data@d3.test", "Drop", "Gone"})
	tmpl := writeFile(t, filepath.Join(dir, "t.eml"), basicTemplate)
	args := []string{"send", "--list", list, "--template", tmpl, "--route", "*=" + addr, "--linger", "300ms",
		"--progress", "off", "--campaign-id", "spring",
		"--unsubscribe-url", "https://example.com/u?e={{email}}", "--unsubscribe-mailto", "unsub@example.com",
		"--verp", "bounces+{local}={domain}@example.com"}
	r := runSpate(t, dir, 30*time.Second, args...)
	if r.code != exitDeferred {
		t.Fatalf("exit %d, want %d (deferrals remain)\nstdout:\n%s\nstderr:\n%s", r.code, exitDeferred, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, fmt.Sprintf("summary: %d delivered, 2 deferred, 1 bounced", n)) {
		t.Errorf("summary line missing or wrong:\n%s", r.stdout)
	}

	// Results: one line per list row, with the right state.
	res := readResults(t, filepath.Join(dir, "list.results.csv"))
	if len(res) != n+3 {
		t.Errorf("results has %d rows, want %d", len(res), n+3)
	}
	for email, row := range rowOf {
		got := res[row]
		if got == nil {
			t.Errorf("results: row %d (%s) missing", row, email)
			continue
		}
		want := "delivered"
		switch email {
		case "permfail@d1.test":
			want = "bounced"
			if got["code"] != "550" || got["enhanced"] != "5.1.1" || got["class"] == "" {
				t.Errorf("permfail result %v: want 550 5.1.1 with a class", got)
			}
		case "tempfail@d2.test", "drop-in-data@d3.test":
			want = "deferred"
		}
		if got["email"] != email || got["state"] != want {
			t.Errorf("results row %d: %s %s, want %s %s", row, got["email"], got["state"], email, want)
		}
	}
	// (The 450 itself is not in the results line: a row still deferred at
	// exit is written without its last reply; see the report.)
	if txt := res[rowOf["tempfail@d2.test"]]["text"]; !strings.Contains(txt, "--resume") {
		t.Errorf("deferred row's text %q does not point to --resume", txt)
	}

	// The sink: one message per deliverable recipient, merged, with unique
	// Message-IDs and the list headers.
	got := srv.Received()
	if len(got) != n {
		t.Fatalf("sink received %d messages, want %d", len(got), n)
	}
	ids := map[string]string{}
	for _, m := range got {
		if len(m.Rcpts) != 1 {
			t.Fatalf("message with %d recipients: %q", len(m.Rcpts), m.Rcpts)
		}
		rcpt := m.Rcpts[0]
		row, ok := rowOf[rcpt]
		if !ok || row >= n {
			t.Fatalf("sink got a message for %q", rcpt)
		}
		local, dom, _ := strings.Cut(rcpt, "@")
		if want := "bounces+" + local + "=" + dom + "@example.com"; m.From != want {
			t.Errorf("MAIL FROM %q, want VERP %q", m.From, want)
		}
		msg, body := parseMsg(t, m.Data)
		name, city := fmt.Sprintf("Name%03d", row), fmt.Sprintf("City%03d", row)
		if s := msg.Header.Get("Subject"); s != "Hello "+name {
			t.Errorf("%s: Subject %q", rcpt, s)
		}
		if to, err := mail.ParseAddress(msg.Header.Get("To")); err != nil || to.Name != name || to.Address != rcpt {
			t.Errorf("%s: To %q (%v)", rcpt, msg.Header.Get("To"), err)
		}
		wantBody := "Dear " + name + ",\r\nyour city is " + city + ".\r\n.a line that starts with a dot\r\nBye.\r\n"
		if body != wantBody {
			t.Errorf("%s: body %q, want %q", rcpt, body, wantBody)
		}
		id := msg.Header.Get("Message-Id")
		if want := fmt.Sprintf("<spring.%d@example.com>", row); id != want {
			t.Errorf("%s: Message-ID %q, want %q", rcpt, id, want)
		}
		if prev, dup := ids[id]; dup {
			t.Errorf("Message-ID %s used for %s and %s", id, prev, rcpt)
		}
		ids[id] = rcpt
		if msg.Header.Get("Date") == "" {
			t.Errorf("%s: no Date", rcpt)
		}
		lu := msg.Header.Get("List-Unsubscribe")
		if want := "<https://example.com/u?e=" + rcpt + ">, <mailto:unsub@example.com>"; lu != want {
			t.Errorf("%s: List-Unsubscribe %q, want %q", rcpt, lu, want)
		}
		if p := msg.Header.Get("List-Unsubscribe-Post"); p != "List-Unsubscribe=One-Click" {
			t.Errorf("%s: List-Unsubscribe-Post %q", rcpt, p)
		}
	}

	// --resume retries only the two deferred rows (still failing): the sink
	// gets nothing new and the results still list every row once.
	r = runSpate(t, dir, 30*time.Second, append(args, "--resume")...)
	if r.code != exitDeferred {
		t.Fatalf("resume: exit %d, want %d\n%s\n%s", r.code, exitDeferred, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, fmt.Sprintf("resumed: %d rows were already final", n+1)) {
		t.Errorf("resume: no 'resumed' line for %d rows:\n%s", n+1, r.stdout)
	}
	if m := srv.Messages(); m != n {
		t.Errorf("after resume the sink has %d messages, want still %d", m, n)
	}
	res2 := readResults(t, filepath.Join(dir, "list.results.csv"))
	if len(res2) != n+3 {
		t.Errorf("after resume results has %d rows, want %d", len(res2), n+3)
	}
	for row, a := range res {
		if b := res2[row]; b == nil || b["state"] != a["state"] {
			t.Errorf("after resume row %d: %v, was %v", row, b, a)
		}
	}
	// Not asserted: the attempts column restarts at 1 on --resume (the
	// runner does not carry the journal's attempt count into the new run).
}

// TestSendAllFinalExitsZero: with no deferral left the exit code is 0, and
// the JSON-lines results option replaces the CSV default.
func TestSendAllFinalExitsZero(t *testing.T) {
	dir := t.TempDir()
	srv, addr := startSink(t, sink.Config{})
	list, _ := smallList(t, dir, 40, []string{"permfail@d0.test", "P", "X"})
	tmpl := writeFile(t, filepath.Join(dir, "t.eml"), basicTemplate)
	jsonl := filepath.Join(dir, "out.jsonl")
	r := runSpate(t, dir, 30*time.Second, "send", "--list", list, "--template", tmpl, "--route", "*="+addr,
		"--progress", "off", "--results-jsonl", jsonl)
	if r.code != exitOK {
		t.Fatalf("exit %d, want 0\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if srv.Messages() != 40 {
		t.Errorf("sink got %d messages, want 40", srv.Messages())
	}
	b, err := os.ReadFile(jsonl)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(string(b), "\n"); lines != 41 {
		t.Errorf("%s has %d lines, want 41", jsonl, lines)
	}
	if !strings.Contains(string(b), `"state":"bounced"`) {
		t.Errorf("no bounced line in %s", jsonl)
	}
	if _, err := os.Stat(filepath.Join(dir, "list.results.csv")); err == nil {
		t.Errorf("results CSV written although --results-jsonl was given")
	}
}

// ---- emersion/go-smtp server as an independent protocol check ----

type gsMsg struct {
	from  string
	rcpts []string
	data  []byte
}

type gsBackend struct {
	mu    sync.Mutex
	msgs  []gsMsg
	auths int
	user  string
	pass  string
}

func (b *gsBackend) NewSession(c *smtp.Conn) (smtp.Session, error) { return &gsSession{be: b}, nil }

type gsSession struct {
	be     *gsBackend
	authed bool
	from   string
	rcpts  []string
}

func (s *gsSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *gsSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if user != s.be.user || pass != s.be.pass {
			return errors.New("invalid credentials")
		}
		s.authed = true
		s.be.mu.Lock()
		s.be.auths++
		s.be.mu.Unlock()
		return nil
	}), nil
}

func (s *gsSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.be.user != "" && !s.authed {
		return smtp.ErrAuthRequired
	}
	s.from = from
	return nil
}

func (s *gsSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *gsSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.be.mu.Lock()
	s.be.msgs = append(s.be.msgs, gsMsg{from: s.from, rcpts: append([]string(nil), s.rcpts...), data: b})
	s.be.mu.Unlock()
	return nil
}

func (s *gsSession) Reset()        { s.from, s.rcpts = "", nil }
func (s *gsSession) Logout() error { return nil }

func startGoSMTP(t *testing.T, be smtp.Backend) string {
	t.Helper()
	s := smtp.NewServer(be)
	s.Domain = "gosmtp.test"
	s.AllowInsecureAuth = true
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}

// TestSendGoSMTP sends through go-smtp's server, once as MX (static route) and
// once as an authenticated relay, and compares the bodies with the sink's.
func TestSendGoSMTP(t *testing.T) {
	const n = 60
	tmplText := basicTemplate
	// The reference: the same campaign (same campaign id) into bench/sink.
	refDir := t.TempDir()
	ref, refAddr := startSink(t, sink.Config{Record: true})
	list, rowOf := smallList(t, refDir, n)
	tmpl := writeFile(t, filepath.Join(refDir, "t.eml"), tmplText)
	r := runSpate(t, refDir, 30*time.Second, "send", "--list", list, "--template", tmpl, "--route", "*="+refAddr,
		"--progress", "off", "--campaign-id", "c1")
	if r.code != exitOK || ref.Messages() != n {
		t.Fatalf("reference run: exit %d, %d messages\n%s", r.code, ref.Messages(), r.stderr)
	}
	want := map[string][]byte{}
	for _, m := range ref.Received() {
		want[m.Rcpts[0]] = withoutDate(m.Data)
	}

	for _, mode := range []string{"route", "relay-auth"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			be := &gsBackend{}
			args := []string{"send", "--template", tmpl, "--progress", "off", "--campaign-id", "c1"}
			if mode == "relay-auth" {
				be.user, be.pass = "alice", "s3cret"
			}
			addr := startGoSMTP(t, be)
			if mode == "route" {
				args = append(args, "--route", "*="+addr)
			} else {
				args = append(args, "--relay", addr, "--relay-tls", "none", "--relay-auth", "alice:s3cret")
			}
			l, _ := smallList(t, dir, n)
			args = append(args, "--list", l)
			// The Message-ID depends on the campaign id and row only: the
			// list lives elsewhere but the bodies must be identical.
			r := runSpate(t, dir, 30*time.Second, args...)
			if r.code != exitOK {
				t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
			}
			be.mu.Lock()
			defer be.mu.Unlock()
			if len(be.msgs) != n {
				t.Fatalf("go-smtp got %d messages, want %d", len(be.msgs), n)
			}
			if mode == "relay-auth" && be.auths == 0 {
				t.Errorf("relay: no AUTH")
			}
			seen := map[string]bool{}
			for _, m := range be.msgs {
				if len(m.rcpts) != 1 || m.from != "news@example.com" {
					t.Fatalf("envelope %q → %q", m.from, m.rcpts)
				}
				rc := m.rcpts[0]
				if _, ok := rowOf[rc]; !ok || seen[rc] {
					t.Fatalf("unexpected or repeated recipient %q", rc)
				}
				seen[rc] = true
				// go-smtp hands over the body with CRLF line ends, dots unstuffed.
				if got := withoutDate(m.data); !bytes.Equal(got, want[rc]) {
					t.Errorf("%s: body differs from the sink's\n got: %q\nwant: %q", rc, got, want[rc])
				}
			}
		})
	}
}

// withoutDate drops the Date header line (it differs between runs).
func withoutDate(data []byte) []byte {
	var out []byte
	for _, l := range bytes.SplitAfter(data, []byte("\r\n")) {
		if bytes.HasPrefix(l, []byte("Date: ")) {
			continue
		}
		out = append(out, l...)
	}
	return out
}

// TestInjection: merge values holding CR, LF or CRLF followed by header or
// SMTP command text never become a header, a command or an end of data.
func TestInjection(t *testing.T) {
	dir := t.TempDir()
	srv, addr := startSink(t, sink.Config{Record: true})
	evil := []string{
		"Eve\r\nBcc: x@evil.test",
		"Eve\nBcc: x@evil.test",
		"Eve\rBcc: x@evil.test",
		"x\r\n.\r\nMAIL FROM:<evil@evil.test>\r\nRCPT TO:<victim@evil.test>\r\nDATA\r\n",
		"x\n.\nQUIT\n",
		"\r\n\r\nInjected-Header: yes",
	}
	var rows [][]string
	for i, v := range evil {
		rows = append(rows, []string{fmt.Sprintf("v%d@d.test", i), v, v})
	}
	rows = append(rows, []string{"plain@d.test", "Plain", "Town"})
	list := writeList(t, filepath.Join(dir, "list.csv"), []string{"email", "name", "city"}, rows)
	tmpl := writeFile(t, filepath.Join(dir, "t.eml"), basicTemplate)
	r := runSpate(t, dir, 30*time.Second, "send", "--list", list, "--template", tmpl, "--route", "*="+addr,
		"--progress", "off", "--unsubscribe-url", "https://example.com/u?n={{name}}")
	if r.code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	st := srv.Stats()
	if st.Messages != int64(len(rows)) || st.Recipients != int64(len(rows)) {
		t.Errorf("sink: %d messages, %d recipients; want %d each (an injected transaction got through?)", st.Messages, st.Recipients, len(rows))
	}
	if st.Replies[5] != 0 {
		t.Errorf("sink sent %d 5xx replies: a merge value reached the command stream", st.Replies[5])
	}
	for _, m := range srv.Received() {
		if m.From != "news@example.com" || len(m.Rcpts) != 1 || strings.Contains(m.Rcpts[0], "evil") {
			t.Errorf("envelope %q → %q", m.From, m.Rcpts)
		}
		for _, l := range headerLines(m.Data) {
			ll := strings.ToLower(l)
			if strings.HasPrefix(ll, "bcc:") || strings.HasPrefix(ll, "injected-header:") || strings.HasPrefix(ll, "mail from") {
				t.Errorf("%s: injected header line %q", m.Rcpts[0], l)
			}
		}
		msg, body := parseMsg(t, m.Data)
		if msg.Header.Get("Bcc") != "" || msg.Header.Get("Injected-Header") != "" {
			t.Errorf("%s: injected header parsed", m.Rcpts[0])
		}
		// Bare CR or LF never reach the wire: every line ends in CRLF.
		if bytes.Contains(bytes.ReplaceAll(m.Data, []byte("\r\n"), nil), []byte("\r")) ||
			bytes.Contains(bytes.ReplaceAll(m.Data, []byte("\r\n"), nil), []byte("\n")) {
			t.Errorf("%s: bare CR or LF in the message: %q", m.Rcpts[0], m.Data)
		}
		if !strings.HasSuffix(body, "Bye.\r\n") {
			t.Errorf("%s: body cut short (data ended early?): %q", m.Rcpts[0], body)
		}
		if lu := msg.Header.Get("List-Unsubscribe"); strings.ContainsAny(lu, "\r\n") {
			t.Errorf("List-Unsubscribe %q", lu)
		}
	}
}

// TestDKIMEd25519 signs with a generated Ed25519 key and verifies every
// received message with go-msgauth; a tampered copy must fail.
func TestDKIMEd25519(t *testing.T) {
	dir := t.TempDir()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	keyPath := writeFile(t, filepath.Join(dir, "dkim.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	srv, addr := startSink(t, sink.Config{Record: true})
	list, _ := smallList(t, dir, 20)
	tmpl := writeFile(t, filepath.Join(dir, "t.eml"), basicTemplate)
	// No --from and no --dkim-domain: d= is the template's From domain.
	r := runSpate(t, dir, 30*time.Second, "send", "--list", list, "--template", tmpl, "--route", "*="+addr,
		"--progress", "off", "--dkim-key", keyPath, "--dkim-selector", "s1",
		"--unsubscribe-url", "https://example.com/u?e={{email}}")
	if r.code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	record := "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	lookups := 0
	opts := &dkim.VerifyOptions{LookupTXT: func(domain string) ([]string, error) {
		lookups++
		if domain != "s1._domainkey.example.com" {
			return nil, fmt.Errorf("unexpected DKIM lookup %q", domain)
		}
		return []string{record}, nil
	}}
	got := srv.Received()
	if len(got) != 20 {
		t.Fatalf("sink got %d messages", len(got))
	}
	for _, m := range got {
		vs, err := dkim.VerifyWithOptions(bytes.NewReader(m.Data), opts)
		if err != nil || len(vs) != 1 {
			t.Fatalf("%s: verify: %v (%d signatures)", m.Rcpts[0], err, len(vs))
		}
		if vs[0].Err != nil || vs[0].Domain != "example.com" {
			t.Errorf("%s: signature domain %q: %v", m.Rcpts[0], vs[0].Domain, vs[0].Err)
		}
		for _, h := range []string{"from", "subject", "message-id", "list-unsubscribe"} {
			if !containsFold(vs[0].HeaderKeys, h) {
				t.Errorf("%s: %s not signed (h=%v)", m.Rcpts[0], h, vs[0].HeaderKeys)
			}
		}
	}
	// The check is real: change one body byte and it fails.
	bad := bytes.Replace(got[0].Data, []byte("Dear "), []byte("Deer "), 1)
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(bad), opts)
	if err != nil || len(vs) != 1 || vs[0].Err == nil {
		t.Errorf("tampered message verified: %v %v", err, vs)
	}
	if lookups == 0 {
		t.Error("LookupTXT never called")
	}
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestBadInputs: each mistake gives a non-zero exit (1 for usage and
// configuration, 2 for runtime, per README) and one clear message naming the
// problem; never a stack trace. Broken CSV rows are reported and skipped
// while the run succeeds.
func TestBadInputs(t *testing.T) {
	dir := t.TempDir()
	srv, addr := startSink(t, sink.Config{})
	route := "*=" + addr
	writeFile(t, filepath.Join(dir, "t.eml"), basicTemplate)
	good, _ := smallList(t, dir, 5)
	writeFile(t, filepath.Join(dir, "broken.csv"), "email,name,city\n"+
		"ok1@d.test,A,X\n"+
		"not-an-address,B,Y\n"+ // line 3: invalid address
		"ok2@d.test,C\n"+ // line 4: wrong column count
		"ok3@d.test,\xff\xfe,Z\n"+ // line 5: invalid UTF-8
		"ok1@d.test,D,W\n"+ // line 6: duplicate
		"ok4@d.test,E,V\n")
	writeFile(t, filepath.Join(dir, "noemail.csv"), "mail,name,city\na@d.test,A,X\n")
	writeFile(t, filepath.Join(dir, "missing.eml"), "From: news@example.com\r\nTo: {{email}}\r\nSubject: Hi {{frist_name}}\r\n\r\nHello\r\n")
	writeFile(t, filepath.Join(dir, "typo.toml"), "[default]\nconnection_limit = 5\nconection_limit = 3\n")
	writeFile(t, filepath.Join(dir, "syntax.toml"), "[default]\nconnection_limit = 5\nmax_message_rate = \"10/s\n")
	writeFile(t, filepath.Join(dir, "value.toml"), "[default]\n\n[domain.\"x.test\"]\nmax_message_rate = \"fast\"\n")
	writeFile(t, filepath.Join(dir, "notakey.pem"), "not a key\n")

	cases := []struct {
		name string
		args []string
		code int
		want []string // substrings of stderr
	}{
		{"broken-rows", []string{"send", "--list", "broken.csv", "--template", "t.eml", "--route", route}, exitOK,
			[]string{"broken.csv:3:", "not-an-address", "broken.csv:4:", "fields", "broken.csv:5:", "UTF-8", "broken.csv:6:", "duplicate"}},
		{"missing-merge-field", []string{"send", "--list", good, "--template", "missing.eml", "--route", route}, exitUsage,
			[]string{"missing.eml", "line 3", `"frist_name"`}},
		{"no-email-column", []string{"send", "--list", "noemail.csv", "--template", "t.eml", "--route", route}, exitUsage,
			[]string{"noemail.csv", "email"}},
		{"config-unknown-key", []string{"send", "--list", good, "--template", "t.eml", "--route", route, "--config", "typo.toml"}, exitUsage,
			[]string{"typo.toml:3:", "default.conection_limit", `did you mean "connection_limit"`}},
		{"config-toml-syntax", []string{"send", "--list", good, "--template", "t.eml", "--route", route, "--config", "syntax.toml"}, exitUsage,
			[]string{"syntax.toml:3:", "max_message_rate"}},
		{"config-bad-value", []string{"send", "--list", good, "--template", "t.eml", "--route", route, "--config", "value.toml"}, exitUsage,
			[]string{"value.toml:4:", `domain.'x.test'.max_message_rate`, "fast"}},
		{"config-missing-file", []string{"send", "--list", good, "--template", "t.eml", "--route", route, "--config", "nope.toml"}, exitUsage,
			[]string{"nope.toml", "no such file"}},
		{"unreachable-relay", []string{"send", "--list", good, "--template", "t.eml", "--relay", closedPort(t), "--relay-tls", "none"}, exitRuntime,
			[]string{"relay", "unreachable", "connection refused"}},
		{"missing-list", []string{"send", "--list", "nope.csv", "--template", "t.eml", "--route", route}, exitUsage,
			[]string{"nope.csv", "no such file"}},
		{"missing-template", []string{"send", "--list", good, "--template", "nope.eml", "--route", route}, exitUsage,
			[]string{"nope.eml", "no such file"}},
		{"bad-route", []string{"send", "--list", good, "--template", "t.eml", "--route", "*=mx.example.com:25"}, exitUsage,
			[]string{"--route", "mx.example.com"}},
		{"bad-dkim-key", []string{"send", "--list", good, "--template", "t.eml", "--route", route, "--dkim-key", "notakey.pem", "--dkim-selector", "s"}, exitUsage,
			[]string{"--dkim-key", "notakey.pem"}},
		{"bad-from", []string{"send", "--list", good, "--template", "t.eml", "--route", route, "--from", "no at sign"}, exitUsage,
			[]string{"--from"}},
		{"resume-without-journal", []string{"send", "--list", good, "--template", "t.eml", "--route", route, "--resume", "--journal", "none.journal"}, exitUsage,
			[]string{"--resume", "none.journal"}},
		{"unknown-flag", []string{"send", "--lits", good}, exitUsage, []string{"-lits"}},
		{"unknown-command", []string{"sned"}, exitUsage, []string{`unknown command "sned"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := srv.Messages()
			args := c.args
			if args[0] == "send" && c.name != "unknown-flag" {
				args = append(args[:len(args):len(args)], "--progress", "off")
			}
			r := runSpate(t, dir, 30*time.Second, args...)
			if r.code != c.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, c.code, r.stdout, r.stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
			if c.code == exitOK {
				return
			}
			if c.name == "unknown-flag" || c.name == "unknown-command" {
				return // flag package and usage text follow the one-line error
			}
			if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "spate") {
				t.Errorf("want one 'spate: ...' line on stderr, got %d:\n%s", len(lines), r.stderr)
			}
			if srv.Messages() != before {
				t.Errorf("a failed run sent %d messages", srv.Messages()-before)
			}
		})
	}
	// The broken-rows run delivered the two good rows.
	res := readResults(t, filepath.Join(dir, "broken.results.csv"))
	if len(res) != 2 || res[0]["email"] != "ok1@d.test" || res[0]["state"] != "delivered" {
		t.Errorf("broken.csv results: %v", res)
	}
}

// TestUnreachableMX: a route (or MX) nobody listens on must end the run
// with the recipients deferred and a message, not retry forever.
func TestUnreachableMX(t *testing.T) {
	dir := t.TempDir()
	list, _ := smallList(t, dir, 5)
	tmpl := writeFile(t, filepath.Join(dir, "t.eml"), basicTemplate)
	r := runSpate(t, dir, 20*time.Second, "send", "--list", list, "--template", tmpl, "--route", "*="+closedPort(t),
		"--progress", "off", "--linger", "1s")
	if r.code != exitDeferred {
		t.Fatalf("exit %d, want %d (deferred)\n%s%s", r.code, exitDeferred, r.stdout, r.stderr)
	}
	res := readResults(t, filepath.Join(dir, "list.results.csv"))
	if len(res) != 5 {
		t.Fatalf("results: %d rows, want 5", len(res))
	}
	for _, row := range res {
		if row["state"] != "deferred" || row["code"] != "451" || row["enhanced"] != "4.4.1" || !strings.Contains(row["text"], "unreachable") {
			t.Errorf("row %s: %s %s %s %q; want deferred 451 4.4.1 site unreachable", row["row"], row["state"], row["code"], row["enhanced"], row["text"])
		}
	}
}

// TestConfigCommands: config check on good and bad files, config explain,
// plan.
func TestConfigCommands(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "good.toml"), "[default]\nconnection_limit = 7\n\n[domain.\"x.test\"]\nmax_message_rate = \"5/s\"\n")
	writeFile(t, filepath.Join(dir, "typo.toml"), "[default]\nconection_limit = 3\n")

	r := runSpate(t, dir, 20*time.Second, "config", "check", "good.toml")
	if r.code != exitOK || !strings.Contains(r.stdout, "good.toml: ok") {
		t.Errorf("check good: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	sample, err := filepath.Abs("../../tuning/sample.toml")
	if err != nil {
		t.Fatal(err)
	}
	r = runSpate(t, dir, 20*time.Second, "config", "check", sample)
	if r.code != exitOK || !strings.Contains(r.stdout, "ok (2 sources") {
		t.Errorf("check sample.toml: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runSpate(t, dir, 20*time.Second, "config", "check", "typo.toml")
	if r.code != exitUsage || !strings.Contains(r.stderr, `typo.toml:2: key "default.conection_limit"`) || r.stdout != "" {
		t.Errorf("check typo: exit %d\nstdout:%s\nstderr:%s", r.code, r.stdout, r.stderr)
	}
	r = runSpate(t, dir, 20*time.Second, "config", "check")
	if r.code != exitUsage {
		t.Errorf("check without file: exit %d", r.code)
	}

	r = runSpate(t, dir, 20*time.Second, "config", "explain", "good.toml", "--domain", "x.test")
	if r.code != exitOK {
		t.Fatalf("explain: exit %d\n%s", r.code, r.stderr)
	}
	explain := map[string][]string{}
	for _, l := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(l); len(f) >= 3 {
			explain[f[0]] = f[1:]
		}
	}
	if got := explain["connection_limit"]; len(got) < 3 || got[0] != "7" || got[1] != "default" || got[2] != "good.toml:2" {
		t.Errorf("explain connection_limit: %q\n%s", got, r.stdout)
	}
	if got := explain["max_message_rate"]; len(got) < 3 || got[0] != "5/s" || got[1] != "domain:x.test" || got[2] != "good.toml:5" {
		t.Errorf("explain max_message_rate: %q", got)
	}
	if got := explain["max_deliveries_per_connection"]; len(got) < 2 || got[1] != "builtin" {
		t.Errorf("explain max_deliveries_per_connection: %q", got)
	}
	// Another domain does not get the domain layer.
	r = runSpate(t, dir, 20*time.Second, "config", "explain", "good.toml", "--domain", "y.test")
	if !strings.Contains(r.stdout, "unlimited") || strings.Contains(r.stdout, "domain:x.test") {
		t.Errorf("explain y.test:\n%s", r.stdout)
	}
	r = runSpate(t, dir, 20*time.Second, "config", "explain", "good.toml")
	if r.code != exitUsage || !strings.Contains(r.stderr, "--domain") {
		t.Errorf("explain without --domain: exit %d %s", r.code, r.stderr)
	}

	// plan: 12 recipients on 3 domains, one site per domain without --resolve.
	var rows [][]string
	for i := range 12 {
		rows = append(rows, []string{fmt.Sprintf("p%d@%s", i, []string{"x.test", "y.test", "z.test"}[i%3])})
	}
	writeList(t, filepath.Join(dir, "plan.csv"), []string{"email"}, rows)
	r = runSpate(t, dir, 20*time.Second, "plan", "--list", "plan.csv", "--config", "good.toml")
	if r.code != exitOK {
		t.Fatalf("plan: exit %d\n%s", r.code, r.stderr)
	}
	if !strings.HasPrefix(r.stdout, "plan: 12 recipients, 3 domains, 3 sites; predicted makespan ") {
		t.Errorf("plan header:\n%s", r.stdout)
	}
	var sites int
	for _, l := range strings.Split(r.stdout, "\n") {
		f := strings.Fields(l)
		// SITE PROVIDER(empty here) DOMAINS RCPTS SOURCES CONNS MSGS/S BOUND TIME
		if len(f) >= 5 && strings.HasSuffix(f[0], ".test") {
			sites++
			if f[1] != "1" || f[2] != "4" || f[4] != "7" {
				t.Errorf("plan line %q: want 1 domain, 4 rcpts, 7 conns", l)
			}
		}
	}
	if sites != 3 {
		t.Errorf("plan lists %d sites, want 3:\n%s", sites, r.stdout)
	}
	r = runSpate(t, dir, 20*time.Second, "plan", "--config", "good.toml")
	if r.code != exitUsage {
		t.Errorf("plan without --list: exit %d", r.code)
	}
}

// TestFreshRunResults: a second run without --resume is a new campaign (its
// journal starts over), so its results file must list every row once, not
// append to the previous run's lines.
func TestFreshRunResults(t *testing.T) {
	dir := t.TempDir()
	_, addr := startSink(t, sink.Config{})
	list, _ := smallList(t, dir, 10)
	tmpl := writeFile(t, filepath.Join(dir, "t.eml"), basicTemplate)
	args := []string{"send", "--list", list, "--template", tmpl, "--route", "*=" + addr, "--progress", "off"}
	for run := 1; run <= 2; run++ {
		if r := runSpate(t, dir, 30*time.Second, args...); r.code != exitOK {
			t.Fatalf("run %d: exit %d\n%s", run, r.code, r.stderr)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "list.results.csv"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Count(string(b), "\n")
	if res := readResults(t, filepath.Join(dir, "list.results.csv")); len(res) != 10 || lines != 11 {
		t.Errorf("results: %d rows in %d lines, want 10 in 11", len(res), lines)
	}
}
