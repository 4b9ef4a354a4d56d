package main

// More end-to-end tests of the real binary (built by TestMain in
// e2e_test.go): direct-to-MX delivery through a real DNS exchange, the
// suppression list across campaigns, Ctrl-C (graceful and immediate) with
// --resume, the Prometheus endpoint, and BDAT against bench/sink.

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spate-mta/spate/bench/demo"
	"github.com/spate-mta/spate/bench/sink"
	"github.com/spate-mta/spate/engine/journal"
)

// proc is a spate process running in the background (for signals and
// scraping while it runs).
type proc struct {
	cmd      *exec.Cmd
	out, err bytes.Buffer // read only after done is closed
	start    time.Time
	done     chan struct{}
	waitErr  error
}

// startSpate starts the binary in dir; the test's cleanup kills it if it is
// still running.
func startSpate(t *testing.T, dir string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(spateBin, args...), done: make(chan struct{})}
	p.cmd.Dir, p.cmd.Env = dir, cleanEnv()
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.err
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.start = time.Now()
	go func() { p.waitErr = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// wait waits up to limit for the process to exit (killing it and failing the
// test otherwise) and returns its result; took is measured from the start.
func (p *proc) wait(t *testing.T, limit time.Duration) result {
	t.Helper()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		failKilled(t, p.cmd.Args[1:], limit, result{stdout: p.out.String(), stderr: p.err.String()})
	}
	r := result{stdout: p.out.String(), stderr: p.err.String(), took: time.Since(p.start)}
	return exited(t, p.cmd.Args[1:], p.waitErr, r)
}

// waitFor polls cond every 5 ms until it holds, the process exits or limit
// passes; it reports whether cond held.
func waitFor(p *proc, limit time.Duration, cond func() bool) bool {
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
		if p != nil && !p.running() {
			return cond()
		}
	}
	return cond()
}

// ---- 1. direct to MX through DNS ----

// TestSendDirectMX sends through a real DNS exchange: an in-process miekg/dns
// zone (bench/demo) on loopback, `--dns` pointing at it and `--mx-port` at
// the sink. The zone holds
//
//   - one.test: MX → the sink (plus permfail@one.test: 550 5.1.1);
//   - two.test: two MX records; the preferred one resolves to 127.0.0.2,
//     where nothing listens on the sink's port (connection refused), the
//     second to the sink: mail must arrive through the second;
//   - implicit.test: no MX, an A record (RFC 5321 §5.1 implicit MX);
//   - null.test: a null MX (RFC 7505): bounced at once, 550 5.1.2 bad-domain;
//   - nx.test: absent (NXDOMAIN): the same.
//
// It checks every results row (state, code, enhanced code, class, MX used),
// the sink's count per domain and the suppression file.
//
// connection_limit = 1: with more, the MX fallback fails (see
// TestSendDirectMXParallelDials).
func TestSendDirectMX(t *testing.T) {
	runDirectMX(t, "[default]\nconnection_limit = 1\n")
}

// TestSendDirectMXParallelDials is TestSendDirectMX with the default
// connection_limit (10): several connections dial the refusing preferred MX
// at once; their refusals must move every later dial to the second MX, not
// declare the site unreachable before it was tried.
func TestSendDirectMXParallelDials(t *testing.T) {
	runDirectMX(t, "")
}

func runDirectMX(t *testing.T, conf string) {
	dir := t.TempDir()
	srv, addr := startSink(t, sink.Config{})
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	// The preferred MX of two.test must refuse: 127.0.0.2 is loopback on
	// Linux and the sink listens on 127.0.0.1 only.
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.2", port), time.Second); err == nil {
		c.Close()
		t.Skipf("127.0.0.2:%s accepts connections here; cannot build a refusing MX", port)
	}

	z := demo.NewZone()
	z.AddMX("one.test", "mx.one.test")
	z.AddA("mx.one.test", "127.0.0.1")
	z.AddMX("two.test", "mx1.two.test", "mx2.two.test") // preferences 10, 20
	z.AddA("mx1.two.test", "127.0.0.2")
	z.AddA("mx2.two.test", "127.0.0.1")
	z.AddA("implicit.test", "127.0.0.1")
	z.AddNullMX("null.test")
	dnsAddr, err := z.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(z.Close)

	type want struct {
		state, code, enhanced, class, mx, text string
	}
	const perDomain = 12
	var rows [][]string
	var wants []want
	add := func(email string, w want) {
		rows = append(rows, []string{email, "N", "C"})
		wants = append(wants, w)
	}
	for i := range perDomain {
		add(fmt.Sprintf("a%02d@one.test", i), want{state: "delivered", code: "250", mx: "mx.one.test"})
		add(fmt.Sprintf("b%02d@two.test", i), want{state: "delivered", code: "250", mx: "mx2.two.test"})
		add(fmt.Sprintf("c%02d@implicit.test", i), want{state: "delivered", code: "250", mx: "implicit.test"})
	}
	var suppressed = []string{"permfail@one.test"}
	for i := range 3 {
		add(fmt.Sprintf("n%d@null.test", i), want{state: "bounced", code: "550", enhanced: "5.1.2", class: "bad-domain", text: "null MX"})
		add(fmt.Sprintf("x%d@nx.test", i), want{state: "bounced", code: "550", enhanced: "5.1.2", class: "bad-domain", text: "NXDOMAIN"})
		// Bad-domain bounces from the resolver belong in the suppression
		// file as much as those from a server's reply.
		suppressed = append(suppressed, fmt.Sprintf("n%d@null.test", i), fmt.Sprintf("x%d@nx.test", i))
	}
	add("permfail@one.test", want{state: "bounced", code: "550", enhanced: "5.1.1", class: "invalid-recipient", mx: "mx.one.test"})
	list := writeList(t, filepath.Join(dir, "mx.csv"), []string{"email", "name", "city"}, rows)
	tmpl := writeFile(t, filepath.Join(dir, "t.eml"), basicTemplate)
	supp := filepath.Join(dir, "suppressed.txt")
	args := []string{"send", "--list", list, "--template", tmpl, "--dns", dnsAddr, "--mx-port", port,
		"--progress", "off", "--linger", "2s", "--suppression", supp}
	if conf != "" {
		args = append(args, "--config", writeFile(t, filepath.Join(dir, "c.toml"), conf))
	}

	r := runSpate(t, dir, 30*time.Second, args...)
	if r.code != exitOK {
		t.Errorf("exit %d, want 0 (every row final)\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	res := readResults(t, filepath.Join(dir, "mx.results.csv"))
	if len(res) != len(rows) {
		t.Errorf("results: %d rows, want %d", len(res), len(rows))
	}
	for i, w := range wants {
		got := res[i]
		if got == nil {
			t.Errorf("results: row %d (%s) missing", i, rows[i][0])
			continue
		}
		if got["email"] != rows[i][0] || got["state"] != w.state || got["code"] != w.code ||
			(w.enhanced != "" && got["enhanced"] != w.enhanced) || (w.class != "" && got["class"] != w.class) ||
			(w.mx != "" && got["mx"] != w.mx) || !strings.Contains(got["text"], w.text) {
			t.Errorf("row %d %s: state=%s code=%s enhanced=%s class=%s mx=%s text=%q; want %+v",
				i, got["email"], got["state"], got["code"], got["enhanced"], got["class"], got["mx"], got["text"], w)
		}
	}
	st := srv.Stats()
	for _, d := range []string{"one.test", "two.test", "implicit.test"} {
		if st.Domains[d] != perDomain {
			t.Errorf("sink: %d messages for %s, want %d", st.Domains[d], d, perDomain)
		}
	}
	for _, d := range []string{"null.test", "nx.test"} {
		if st.Domains[d] != 0 {
			t.Errorf("sink: %d messages for %s, want none", st.Domains[d], d)
		}
	}
	if st.Messages != 3*perDomain {
		t.Errorf("sink: %d messages, want %d", st.Messages, 3*perDomain)
	}
	b, err := os.ReadFile(supp)
	if err != nil {
		t.Fatalf("suppression file: %v", err)
	}
	var inFile []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		a, _, _ := strings.Cut(l, "\t")
		inFile = append(inFile, a)
	}
	slices.Sort(inFile)
	slices.Sort(suppressed)
	if !slices.Equal(inFile, suppressed) {
		t.Errorf("suppression file holds %q, want %q", inFile, suppressed)
	}
}

// ---- 2. suppression across campaigns ----

// TestSuppressionAcrossCampaigns: a hard bounce in one campaign lands in the
// --suppression file, and the next campaign (a new list, not a resume)
// reports that address suppressed without sending it a single command.
func TestSuppressionAcrossCampaigns(t *testing.T) {
	dir := t.TempDir()
	srv, addr := startSink(t, sink.Config{Record: true})
	supp := filepath.Join(dir, "suppressed.txt")
	tmpl := writeFile(t, filepath.Join(dir, "t.eml"), basicTemplate)
	const bad = "permfail@d1.test"

	list1, rowOf := smallList(t, dir, 20, []string{bad, "Perm", "Nowhere"})
	r := runSpate(t, dir, 30*time.Second, "send", "--list", list1, "--template", tmpl, "--route", "*="+addr,
		"--progress", "off", "--suppression", supp)
	if r.code != exitOK {
		t.Fatalf("run 1: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	res1 := readResults(t, filepath.Join(dir, "list.results.csv"))
	if g := res1[rowOf[bad]]; g["state"] != "bounced" || g["code"] != "550" || g["enhanced"] != "5.1.1" || g["class"] != "invalid-recipient" {
		t.Fatalf("run 1: %s: %v, want bounced 550 5.1.1 invalid-recipient", bad, g)
	}
	b, err := os.ReadFile(supp)
	if err != nil {
		t.Fatalf("run 1 wrote no suppression file: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], bad+"\tinvalid-recipient\t") {
		t.Fatalf("suppression file after run 1:\n%s\nwant one line for %s", b, bad)
	}
	before := srv.Stats()

	// Run 2: a new list holding the bounced address among fresh ones.
	rows := [][]string{{"new1@d1.test", "A", "X"}, {bad, "Perm", "Nowhere"}, {"new2@d2.test", "B", "Y"}, {"new3@d1.test", "C", "Z"}}
	list2 := writeList(t, filepath.Join(dir, "second.csv"), []string{"email", "name", "city"}, rows)
	r = runSpate(t, dir, 30*time.Second, "send", "--list", list2, "--template", tmpl, "--route", "*="+addr,
		"--progress", "off", "--suppression", supp)
	if r.code != exitOK {
		t.Fatalf("run 2: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	res2 := readResults(t, filepath.Join(dir, "second.results.csv"))
	if len(res2) != len(rows) {
		t.Errorf("run 2 results: %d rows, want %d", len(res2), len(rows))
	}
	for i, row := range rows {
		want := "delivered"
		if row[0] == bad {
			want = "suppressed"
		}
		if g := res2[i]; g == nil || g["email"] != row[0] || g["state"] != want {
			t.Errorf("run 2 row %d: %v, want %s %s", i, g, row[0], want)
		}
	}
	after := srv.Stats()
	if n := after.Replies[5] - before.Replies[5]; n != 0 {
		t.Errorf("run 2: the sink sent %d 5xx replies: the suppressed address was offered to it", n)
	}
	if n := after.Messages - before.Messages; n != 3 {
		t.Errorf("run 2: sink accepted %d messages, want 3", n)
	}
	for _, m := range srv.Received() {
		for _, rc := range m.Rcpts {
			if rc == bad {
				t.Errorf("the sink received a message for %s", bad)
			}
		}
	}
	if b2, _ := os.ReadFile(supp); !bytes.Equal(b2, b) {
		t.Errorf("suppression file changed in run 2:\n%s", b2)
	}
}

// ---- 3. Ctrl-C ----

// countAddrs counts messages per recipient across servers' records.
func countAddrs(counts map[string]int, msgs []sink.Received) {
	for _, m := range msgs {
		for _, rc := range m.Rcpts {
			counts[rc]++
		}
	}
}

// bigList writes n recipients "r%05d@k%d.test" (six domains); a row listed in
// slow is "slow-<ms>@s<row>.test" instead (the sink delays its replies).
func bigList(t *testing.T, path string, n int, slow map[int]int) []string {
	t.Helper()
	emails := make([]string, n)
	var b bytes.Buffer
	b.WriteString("email,name,city\n")
	for i := range n {
		e := fmt.Sprintf("r%05d@k%d.test", i, i%6)
		if ms, ok := slow[i]; ok {
			e = fmt.Sprintf("slow-%d@s%d.test", ms, i) // distinct: the list skips duplicates
		}
		emails[i] = e
		fmt.Fprintf(&b, "%s,Name %d,City %d\n", e, i, i)
	}
	writeFile(t, path, b.String())
	return emails
}

const interruptTemplate = "From: news@example.com\r\nTo: {{email}}\r\nSubject: hello {{name}}\r\n\r\nHi {{name}} from {{city}}.\r\n"

// interruptCampaign is the campaign the Ctrl-C tests interrupt: n rows
// (bigList, slow rows as given) in dir/big.csv, sent over connLimit
// connections to a recording sink that answers after 2 ms; slowConf limits
// the run to 300 msg/s so that it is still going when the signal comes,
// fastConf is the same without the limit, for the --resume.
type interruptCampaign struct {
	dir, list, tmpl    string
	slowConf, fastConf string
	srv                *sink.Server
	addr               string
	emails             []string
}

func newInterruptCampaign(t *testing.T, n, connLimit int, slow map[int]int) *interruptCampaign {
	t.Helper()
	c := &interruptCampaign{dir: t.TempDir()}
	c.srv, c.addr = startSink(t, sink.Config{Record: true, Latency: 2 * time.Millisecond})
	c.list = filepath.Join(c.dir, "big.csv")
	c.emails = bigList(t, c.list, n, slow)
	c.tmpl = writeFile(t, filepath.Join(c.dir, "t.eml"), interruptTemplate)
	c.slowConf = writeFile(t, filepath.Join(c.dir, "slow.toml"), fmt.Sprintf(
		"[default]\nconnection_limit = %d\nmax_message_rate = \"300/s\"\nenable_tls = \"disabled\"\n", connLimit))
	c.fastConf = writeFile(t, filepath.Join(c.dir, "fast.toml"), fmt.Sprintf(
		"[default]\nconnection_limit = %d\nenable_tls = \"disabled\"\n", connLimit))
	return c
}

// replay reads the interrupted run's journal (after names the interruption
// in failures) and fails on a torn tail.
func (c *interruptCampaign) replay(t *testing.T, after string) *journal.Snapshot {
	t.Helper()
	snap, err := journal.Replay(filepath.Join(c.dir, "big.journal"), journal.Fingerprint(c.list, []byte(interruptTemplate)))
	if err != nil {
		t.Fatalf("journal after %s: %v", after, err)
	}
	if snap.Dropped != 0 {
		t.Errorf("journal after %s: %d bytes of torn tail", after, snap.Dropped)
	}
	return snap
}

// TestInterruptGraceful sends SIGINT once in the middle of a rate-limited
// 3,000-recipient run. The process must stop within a few seconds with exit
// code 3 (recipients remain; README: "finished with recipients still
// deferred ... run again with --resume"), leave an intact journal in which a
// row is delivered exactly when the sink accepted it (the in-flight
// transactions were finished, not abandoned), and --resume must deliver the
// rest: every row delivered once in the results, and, since a graceful stop
// leaves nothing unacknowledged, no message accepted twice.
func TestInterruptGraceful(t *testing.T) {
	const n, connLimit = 3000, 10
	c := newInterruptCampaign(t, n, connLimit, nil)
	dir, srv, list, emails := c.dir, c.srv, c.list, c.emails
	args := []string{"send", "--list", list, "--template", c.tmpl, "--route", "*=" + c.addr, "--progress", "off", "--linger", "1s"}

	p := startSpate(t, dir, append(args[:len(args):len(args)], "--config", c.slowConf)...)
	if !waitFor(p, 20*time.Second, func() bool { return srv.Messages() >= 300 }) {
		r := p.wait(t, time.Second)
		t.Fatalf("the run did not reach 300 messages (sink %d) while running\n%s\n%s", srv.Messages(), r.stdout, r.stderr)
	}
	if !p.running() {
		t.Fatalf("the run ended before the interrupt (sink %d): the rate limit did not hold", srv.Messages())
	}
	atSignal := srv.Messages()
	sigAt := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	r := p.wait(t, 15*time.Second)
	stopTook := time.Since(sigAt)
	t.Logf("SIGINT at %d messages; exited %v later with code %d; sink %d", atSignal, stopTook.Round(time.Millisecond), r.code, srv.Messages())
	if stopTook > 5*time.Second {
		t.Errorf("graceful stop took %v (in flight: at most %d transactions with 2 ms replies)", stopTook, 2*connLimit)
	}
	if r.code != exitDeferred {
		t.Errorf("interrupted run: exit %d, want %d (recipients remain for --resume)\n%s\n%s", r.code, exitDeferred, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "stopping: finishing in-flight transactions") {
		t.Errorf("no graceful-stop message on stderr:\n%s", r.stderr)
	}
	if srv.Messages() >= n {
		t.Fatalf("the interrupted run delivered everything (%d): nothing left to resume", srv.Messages())
	}

	// The journal: intact, and delivered exactly for the rows the sink took.
	counts := map[string]int{}
	countAddrs(counts, srv.Received())
	snap := c.replay(t, "SIGINT")
	final := 0
	for row, e := range emails {
		rec, ok := snap.Get(row)
		delivered := ok && rec.State == journal.StateDelivered
		if ok && rec.State.Final() {
			final++
		}
		if delivered != (counts[e] == 1) {
			t.Errorf("row %d (%s): journal %v (%v), sink accepted it %d times", row, e, rec.State, ok, counts[e])
		}
	}
	// The results of the interrupted run list what happened so far.
	res := readResults(t, filepath.Join(dir, "big.results.csv"))
	if len(res) != n {
		t.Errorf("interrupted run: results list %d rows, want all %d (delivered, or deferred for --resume)", len(res), n)
	}
	resDelivered := 0
	for _, rr := range res {
		switch rr["state"] {
		case "delivered":
			resDelivered++
		case "deferred":
		default:
			t.Errorf("interrupted run: results row %s state %q", rr["row"], rr["state"])
		}
	}
	if resDelivered != final {
		t.Errorf("interrupted run: results list %d delivered, journal %d final", resDelivered, final)
	}

	// --resume (without the rate limit) finishes the campaign.
	r = runSpate(t, dir, 30*time.Second, append(args[:len(args):len(args)], "--config", c.fastConf, "--resume")...)
	if r.code != exitOK {
		t.Fatalf("resume: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, fmt.Sprintf("resumed: %d rows were already final", final)) {
		t.Errorf("resume: no 'resumed: %d rows were already final' line:\n%s", final, r.stdout)
	}
	checkCompleted(t, list, emails, srv.Received(), nil, 0)
}

// checkCompleted asserts a finished campaign: every row delivered in the
// journal and exactly once in the results; every address accepted at least
// once across the servers' records, and at most maxDups addresses more than
// once (each at most twice).
func checkCompleted(t *testing.T, list string, emails []string, a, b []sink.Received, maxDups int) {
	t.Helper()
	counts := map[string]int{}
	countAddrs(counts, a)
	countAddrs(counts, b)
	dups := 0
	for row, e := range emails {
		switch c := counts[e]; {
		case c == 0:
			t.Errorf("row %d (%s) never delivered", row, e)
		case c == 2:
			dups++
		case c > 2:
			t.Errorf("row %d (%s) delivered %d times", row, e, c)
		}
	}
	if dups > maxDups {
		t.Errorf("%d rows delivered twice; at most %d allowed", dups, maxDups)
	}
	if dups > 0 {
		t.Logf("%d rows delivered twice (bound %d)", dups, maxDups)
	}
	fp := journal.Fingerprint(list, []byte(interruptTemplate))
	snap, err := journal.Replay(strings.TrimSuffix(list, ".csv")+".journal", fp)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Final() != len(emails) || snap.Count(journal.StateDelivered) != len(emails) {
		t.Errorf("journal: %d final, %d delivered; want %d", snap.Final(), snap.Count(journal.StateDelivered), len(emails))
	}
	res := readResults(t, strings.TrimSuffix(list, ".csv")+".results.csv") // fails on a row listed twice
	if len(res) != len(emails) {
		t.Errorf("results: %d rows, want %d", len(res), len(emails))
	}
	for row, e := range emails {
		if g := res[row]; g == nil || g["email"] != e || g["state"] != "delivered" {
			t.Errorf("results row %d: %v, want %s delivered", row, g, e)
		}
	}
}

// TestInterruptTwice sends SIGINT twice, 50 ms apart, while five
// transactions are held by the sink's slow-6000@ recipients (each of their
// reply batches comes 6 s late). A graceful stop waits for them (with one
// SIGINT the process exits about 5.5 s after it); the second signal must
// stop the process at once: it exits within 2 s of the first signal, with
// the journal intact. A --resume (to a
// plain sink, so the slow rows do not hold it up) then delivers every row,
// once in the results; rows the abort caught in flight may be accepted twice,
// at most two per connection.
func TestInterruptTwice(t *testing.T) {
	const n, connLimit = 3000, 10
	slow := map[int]int{}
	for i := 30; i <= 150; i += 30 {
		slow[i] = 6000
	}
	c := newInterruptCampaign(t, n, connLimit, slow)
	dir, srv, list, emails := c.dir, c.srv, c.list, c.emails
	args := []string{"send", "--list", list, "--template", c.tmpl, "--progress", "off", "--linger", "1s"}

	p := startSpate(t, dir, append(args[:len(args):len(args)], "--config", c.slowConf, "--route", "*="+c.addr)...)
	if !waitFor(p, 20*time.Second, func() bool { return srv.Messages() >= 300 }) || !p.running() {
		r := p.wait(t, 10*time.Second)
		t.Fatalf("the run did not reach 300 messages while running (sink %d)\n%s\n%s", srv.Messages(), r.stdout, r.stderr)
	}
	var slowDone int
	for _, m := range srv.Received() {
		if strings.HasPrefix(m.Rcpts[0], "slow-") {
			slowDone++
		}
	}
	sigAt := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil && p.running() {
		t.Fatal(err)
	}
	r := p.wait(t, 15*time.Second)
	stopTook := time.Since(sigAt)
	t.Logf("two SIGINTs at %d messages (%d slow rows accepted before); exited %v after the first with code %d",
		srv.Messages(), slowDone, stopTook.Round(time.Millisecond), r.code)
	if slowDone == len(slow) {
		t.Fatalf("all slow rows were done before the signals: the test did not hold transactions in flight")
	}
	if stopTook > 2*time.Second {
		t.Errorf("after a second SIGINT the process took %v to exit; want at once (< 2 s; a graceful stop waits for the slow rows, about 5 s)", stopTook)
	}
	if !strings.Contains(r.stderr, "stopping now; the journal is intact") {
		t.Errorf("no immediate-stop message on stderr:\n%s", r.stderr)
	}
	if r.code != exitDeferred {
		t.Errorf("aborted run: exit %d, want %d (recipients remain for --resume)\n%s\n%s", r.code, exitDeferred, r.stdout, r.stderr)
	}
	snap := c.replay(t, "abort")
	for row, e := range emails {
		if rec, ok := snap.Get(row); ok && rec.State == journal.StateDelivered && strings.HasPrefix(e, "slow-") {
			// Delivered needs the 250, which the sink holds back 6 s.
			if !containsRcpt(srv.Received(), e) {
				t.Errorf("row %d (%s) journalled delivered but never accepted", row, e)
			}
		}
	}

	// Resume to go-smtp (--route may change; the journal's fingerprint is
	// the list and template): a bench/sink would hold the slow-N rows again.
	be := &gsBackend{}
	gsAddr := startGoSMTP(t, be)
	sinkAtResume := srv.Messages()
	r = runSpate(t, dir, 30*time.Second, append(args[:len(args):len(args)], "--config", c.fastConf, "--route", "*="+gsAddr, "--resume")...)
	if r.code != exitOK {
		t.Fatalf("resume: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if m := srv.Messages(); m != sinkAtResume {
		t.Logf("sink accepted %d more messages from the aborted run's connections after the resume started", m-sinkAtResume)
	}
	be.mu.Lock()
	var second []sink.Received
	for _, m := range be.msgs {
		second = append(second, sink.Received{From: m.from, Rcpts: m.rcpts, Data: m.data})
	}
	be.mu.Unlock()
	checkCompleted(t, list, emails, srv.Received(), second, 2*connLimit)
}

func containsRcpt(msgs []sink.Received, e string) bool {
	for _, m := range msgs {
		for _, rc := range m.Rcpts {
			if rc == e {
				return true
			}
		}
	}
	return false
}

// ---- 4. metrics ----

// TestMetrics scrapes --metrics while a rate-limited run (600 recipients at
// 300/s) is going: /metrics must be valid Prometheus text holding every
// spate gauge, the delivered count must be seen above 0 and below the total
// at some scrape, never decrease, and never exceed the recipients read.
func TestMetrics(t *testing.T) {
	const n = 600
	dir := t.TempDir()
	srv, addr := startSink(t, sink.Config{})
	list, _ := smallList(t, dir, n)
	tmpl := writeFile(t, filepath.Join(dir, "t.eml"), basicTemplate)
	conf := writeFile(t, filepath.Join(dir, "rate.toml"), "[default]\nmax_message_rate = \"300/s\"\nenable_tls = \"disabled\"\n")
	maddr := closedPort(t)
	p := startSpate(t, dir, "send", "--list", list, "--template", tmpl, "--config", conf, "--route", "*="+addr,
		"--progress", "off", "--metrics", maddr)

	names := []string{"spate_recipients_read", "spate_delivered_total", "spate_bounced_total", "spate_deferrals_total",
		"spate_in_flight", "spate_connections", "spate_rate_msgs_per_second"}
	client := &http.Client{Timeout: 2 * time.Second}
	var scrapes, midRun int
	var lastDelivered, maxConns float64
	var lastBody string
	for p.running() {
		time.Sleep(100 * time.Millisecond)
		resp, err := client.Get("http://" + maddr + "/metrics")
		if err != nil {
			continue // not listening yet, or already stopped
		}
		var body bytes.Buffer
		_, err = body.ReadFrom(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("GET /metrics: %d %v", resp.StatusCode, err)
			continue
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("Content-Type %q, want text/plain (Prometheus text format)", ct)
		}
		scrapes++
		lastBody = body.String()
		val, err := parseGauges(body.String(), names)
		if err != nil {
			t.Fatalf("/metrics: %v\n%s", err, body.String())
		}
		d := val["spate_delivered_total"]
		if d < lastDelivered {
			t.Errorf("spate_delivered_total went down: %v after %v", d, lastDelivered)
		}
		if d > val["spate_recipients_read"] {
			t.Errorf("delivered %v > recipients read %v", d, val["spate_recipients_read"])
		}
		if d > 0 && d < n {
			midRun++
		}
		lastDelivered = d
		maxConns = max(maxConns, val["spate_connections"])
	}
	r := p.wait(t, 30*time.Second)
	if r.code != exitOK || srv.Messages() != n {
		t.Fatalf("exit %d, sink %d messages (want 0, %d)\n%s\n%s", r.code, srv.Messages(), n, r.stdout, r.stderr)
	}
	t.Logf("%d scrapes, %d mid-run; last delivered %v; max connections %v", scrapes, midRun, lastDelivered, maxConns)
	if midRun == 0 {
		t.Errorf("no scrape saw 0 < delivered < %d (scrapes %d); last:\n%s", n, scrapes, lastBody)
	}
	if maxConns == 0 {
		t.Errorf("spate_connections never above 0")
	}
}

// parseGauges reads Prometheus text exposition format (version 0.0.4): every
// line is a "# HELP", a "# TYPE" or a sample "name[{labels}] value". It
// returns the value of each gauge in names, each of which must have its
// HELP, a TYPE of gauge and exactly one unlabelled sample.
func parseGauges(text string, names []string) (map[string]float64, error) {
	help, typ := map[string]bool{}, map[string]string{}
	val := map[string]float64{}
	samples := map[string]int{}
	for i, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		switch {
		case strings.HasPrefix(l, "# HELP "):
			name, _, _ := strings.Cut(l[len("# HELP "):], " ")
			help[name] = true
		case strings.HasPrefix(l, "# TYPE "):
			f := strings.Fields(l[len("# TYPE "):])
			if len(f) != 2 {
				return nil, fmt.Errorf("line %d: bad TYPE line %q", i+1, l)
			}
			typ[f[0]] = f[1]
		case strings.HasPrefix(l, "#") || l == "":
			return nil, fmt.Errorf("line %d: unexpected %q", i+1, l)
		default:
			f := strings.Fields(l)
			if len(f) < 2 || len(f) > 3 {
				return nil, fmt.Errorf("line %d: bad sample %q", i+1, l)
			}
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: bad value in %q", i+1, l)
			}
			name := f[0]
			if j := strings.IndexByte(name, '{'); j >= 0 {
				if !strings.HasSuffix(name, "}") {
					return nil, fmt.Errorf("line %d: bad labels in %q", i+1, l)
				}
				name = name[:j]
			} else {
				val[name] = v
			}
			samples[name]++
		}
	}
	out := map[string]float64{}
	for _, n := range names {
		v, ok := val[n]
		want := "gauge"
		if strings.HasSuffix(n, "_total") {
			want = "counter"
		}
		if !help[n] || typ[n] != want || !ok || samples[n] != 1 {
			return nil, fmt.Errorf("metric %s: help %v, type %q (want %s), %d samples", n, help[n], typ[n], want, samples[n])
		}
		out[n] = v
	}
	return out, nil
}

// ---- 5. BDAT ----

// TestSendBDAT sends with `chunking = true` to a sink offering CHUNKING and
// compares every message with a DATA run of the same campaign into a plain
// sink (minus the Date line). That BDAT was used shows in the sink's byte
// count: with BDAT it is the chunks' octets (the message exactly), with DATA
// the dot-stuffed body plus its terminator. permfail@ still bounces 550 5.1.1
// although its transaction is pipelined with others.
func TestSendBDAT(t *testing.T) {
	const n = 60
	run := func(cfg sink.Config, conf string) (*sink.Server, map[int]resultRow, map[string]int) {
		dir := t.TempDir()
		srv, addr := startSink(t, cfg)
		list, rowOf := smallList(t, dir, n, []string{"permfail@d1.test", "Perm", "Nowhere"})
		tmpl := writeFile(t, filepath.Join(dir, "t.eml"), basicTemplate)
		args := []string{"send", "--list", list, "--template", tmpl, "--route", "*=" + addr, "--progress", "off", "--campaign-id", "bd"}
		if conf != "" {
			args = append(args, "--config", writeFile(t, filepath.Join(dir, "c.toml"), conf))
		}
		r := runSpate(t, dir, 30*time.Second, args...)
		if r.code != exitOK {
			t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
		}
		return srv, readResults(t, filepath.Join(dir, "list.results.csv")), rowOf
	}
	ref, _, _ := run(sink.Config{Record: true}, "")
	bd, res, rowOf := run(sink.Config{Record: true, Chunking: true}, "[default]\nchunking = true\npipeline_depth = 4\n")

	want := map[string][]byte{}
	var refLen int64
	for _, m := range ref.Received() {
		want[m.Rcpts[0]] = withoutDate(m.Data)
		refLen += int64(len(m.Data))
	}
	got := bd.Received()
	if len(got) != n || len(want) != n {
		t.Fatalf("BDAT sink got %d messages, DATA sink %d; want %d each", len(got), len(want), n)
	}
	var bdLen int64
	seen := map[string]bool{}
	for _, m := range got {
		if len(m.Rcpts) != 1 || seen[m.Rcpts[0]] {
			t.Fatalf("BDAT: recipients %q (repeated or several)", m.Rcpts)
		}
		rc := m.Rcpts[0]
		seen[rc] = true
		bdLen += int64(len(m.Data))
		if w, ok := want[rc]; !ok || !bytes.Equal(withoutDate(m.Data), w) {
			t.Errorf("%s: BDAT message differs from DATA's\n got: %q\nwant: %q", rc, withoutDate(m.Data), w)
		}
	}
	if st := bd.Stats(); st.Bytes != bdLen {
		t.Errorf("chunking sink counted %d body bytes for %d message bytes: not BDAT (DATA adds stuffing and terminator)", st.Bytes, bdLen)
	}
	if st := ref.Stats(); st.Bytes <= refLen {
		t.Errorf("DATA sink counted %d body bytes for %d message bytes; the byte check cannot tell DATA from BDAT", st.Bytes, refLen)
	}
	if g := res[rowOf["permfail@d1.test"]]; g["state"] != "bounced" || g["code"] != "550" || g["enhanced"] != "5.1.1" {
		t.Errorf("BDAT run: permfail result %v, want bounced 550 5.1.1", g)
	}
	delivered := 0
	for _, rr := range res {
		if rr["state"] == "delivered" {
			delivered++
		}
	}
	if delivered != n || len(res) != n+1 {
		t.Errorf("BDAT run results: %d delivered of %d rows; want %d of %d", delivered, len(res), n, n+1)
	}
}
