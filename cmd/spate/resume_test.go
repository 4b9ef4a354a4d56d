package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/spate-mta/spate/engine/journal"
)

// TestKillResume kills `spate send` with SIGKILL at four points (1 %, 20 %,
// 50 %, 80 % of a 20,000-recipient campaign, counted at the server) and
// finishes it with `--resume`. It checks: no row is lost; a row is journalled
// delivered only in a run in which the server accepted it; a row final in the
// journal is never sent again; every duplicate at the server is a row that a
// kill caught accepted but not yet final in the journal, re-sent once with
// the same Message-ID; the results file lists every row exactly once.
//
// What "in flight" means, and the bounds asserted. All recipients route to
// one server address, so the campaign has one egress path, limited by the
// test's tuning file to connLimit connections, which stay open for the whole
// run (max_deliveries_per_connection = 0). The engine's Session holds at
// most two transactions (the one whose final dot awaits its reply and the
// next, pipelined behind it) with one recipient each. The counting server
// is go-smtp with a backend that notes which connection accepted each
// message, so a row re-sent after a kill falls in one of two classes:
//
//   - unacknowledged: it was the last message its connection accepted, so the
//     client may not have read its 250. Only one transaction per connection
//     can be in this state (the next body is sent only after the 354 that
//     follows that 250), so there are at most connLimit per kill: asserted.
//   - acknowledged: a later message was accepted on the same connection, so
//     the client had read this row's 250 and reported it delivered, and the
//     kill took its journal record before it reached the file. The journal
//     writes a record within its 1 ms WriteInterval (longer while an fsync
//     is running: one goroutine does both, in turn). The test asserts
//     that every such row had its 250 sent less than maxAckAge before the
//     kill: the journal loses only a short recent window, never an old row.
//
// The sum of the two is the number of rows re-sent for that kill; it is
// logged next to the engine's maximum in flight (2 × connLimit) but not
// asserted against it, because the acknowledged class is bounded by time,
// not by the engine. Observed here: 0 to connLimit acknowledged rows per kill
// (about one per connection: its previous message, answered about 1 ms before
// the kill), so 9 to 20 re-sent per kill.
func TestKillResume(t *testing.T) {
	const (
		n         = 20000 // fast enough under -race: the binary is not race-built
		domains   = 40
		connLimit = 10
		maxAckAge = 250 * time.Millisecond // generous: 2 cores shared with the race-built server
	)
	dir := t.TempDir()
	srv := &countingServer{count: make(map[string]int, n), ids: make(map[string][]string, n),
		byConn: map[int64][]string{}, connOf: make(map[string]int64, n), repliedAt: make(map[string]time.Time, n),
		latency: time.Millisecond}
	addr := startGoSMTP(t, srv)

	// The list: rows 100, 200, … 500 are permfail@ (the server answers 550
	// at RCPT: bounced, never accepted), the rest distinct addresses.
	rowEmail := make([]string, n)
	permfail := map[int]bool{}
	var b bytes.Buffer
	b.WriteString("email,name\n")
	for i := range n {
		e := fmt.Sprintf("r%05d@k%02d.test", i, i%domains)
		if i > 0 && i%100 == 0 && i <= 500 {
			e = fmt.Sprintf("permfail@k%02d.test", i%domains+i/100) // distinct: the list skips duplicates
			permfail[i] = true
		}
		rowEmail[i] = e
		fmt.Fprintf(&b, "%s,Person %d\n", e, i)
	}
	list := writeFile(t, filepath.Join(dir, "big.csv"), b.String())
	tmplText := "From: news@example.com\r\nTo: {{email}}\r\nSubject: hello {{name}}\r\n\r\nHi {{name}}.\r\n"
	tmpl := writeFile(t, filepath.Join(dir, "t.eml"), tmplText)
	// Connections never QUIT for a message count (max_deliveries 0): a QUIT
	// is pipelined behind the last body, so a closing connection and its
	// replacement could both hold an unacknowledged row for a moment.
	conf := writeFile(t, filepath.Join(dir, "tuning.toml"), fmt.Sprintf(
		"[default]\nconnection_limit = %d\nmax_deliveries_per_connection = 0\nenable_tls = \"disabled\"\n", connLimit))
	jpath := filepath.Join(dir, "big.journal")
	fp := journal.Fingerprint(list, []byte(tmplText))
	base := []string{"send", "--list", list, "--template", tmpl, "--config", conf, "--route", "*=" + addr,
		"--progress", "off", "--linger", "1s"}

	deadline := time.Now().Add(75 * time.Second)
	type killStat struct {
		target, atKill, settled int64
		final                   int           // rows final in the journal after the kill
		resend                  int           // rows accepted in this run, not final: re-sent on resume
		unacked, acked          int           // resend split by whether the client had read the 250
		maxAge                  time.Duration // oldest 250 among acked
		carried                 int           // rows caught by an earlier kill, not yet re-sent at this one (32 resolver workers admit rows out of list order)
	}
	var kills []killStat
	caught := make(map[string]int, 128) // address → kills that caught it accepted but not final
	prevFinal := make([]bool, n)
	for i, pct := range []int{1, 20, 50, 80} {
		target := int64(n * pct / 100)
		args := base
		if i > 0 {
			args = append(args[:len(args):len(args)], "--resume")
		}
		srv.mu.Lock()
		before := make(map[string]int, len(srv.count))
		for e, c := range srv.count {
			before[e] = c
		}
		srv.mu.Unlock()

		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		cmd := exec.CommandContext(ctx, spateBin, args...)
		cmd.Dir, cmd.Env = dir, cleanEnv()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatal(err)
		}
		srv.pid.Store(int64(cmd.Process.Pid))
		srv.killAt.Store(target)
		err := cmd.Wait()
		timedOut := ctx.Err() != nil
		cancel()
		srv.pid.Store(0)
		srv.killAt.Store(0)
		ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
		if timedOut || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("run %d: not killed at %d messages (server has %d): %v\n%s", i+1, target, srv.total.Load(), err, stderr.String())
		}
		atKill := srv.total.Load()
		killedAt := time.Unix(0, srv.killedAt.Load())
		settled := settleCount(&srv.total)

		// What the killed run left in the journal.
		snap, err := journal.Replay(jpath, fp)
		if err != nil {
			t.Fatalf("run %d: replay: %v", i+1, err)
		}
		ks := killStat{target: target, atKill: atKill, settled: settled, final: snap.Final()}
		srv.mu.Lock()
		for row, e := range rowEmail {
			rec, ok := snap.Get(row)
			final := ok && rec.State.Final()
			acceptedNow := srv.count[e] > before[e]
			switch {
			case prevFinal[row] && !final:
				t.Errorf("run %d: row %d (%s) was final in the journal and is not any more", i+1, row, e)
			case prevFinal[row] && acceptedNow:
				t.Errorf("run %d: row %d (%s) was final in the journal before the run and was sent again", i+1, row, e)
			case !prevFinal[row] && rec.State == journal.StateDelivered && !acceptedNow:
				t.Errorf("run %d: row %d (%s) journalled delivered, but the server did not accept it in this run", i+1, row, e)
			}
			switch {
			case acceptedNow && !final:
				ks.resend++
				caught[e]++
				if conn := srv.byConn[srv.connOf[e]]; conn[len(conn)-1] == e {
					ks.unacked++
				} else {
					ks.acked++
					age := killedAt.Sub(srv.repliedAt[e])
					ks.maxAge = max(ks.maxAge, age)
					if age > maxAckAge {
						t.Errorf("run %d: row %d (%s): its 250 went out %v before the kill, yet it is not in the journal", i+1, row, e, age)
					}
				}
			case srv.count[e] > 0 && !final:
				ks.carried++
			}
			prevFinal[row] = final
		}
		srv.mu.Unlock()
		kills = append(kills, ks)
		if ks.unacked > connLimit {
			t.Errorf("kill %d: %d rows re-sent whose 250 the client had not read; at most one per connection (%d)", i+1, ks.unacked, connLimit)
		}
	}

	// Finish: --resume until the campaign is done (one run should do).
	var last result
	for range 3 {
		last = runSpate(t, dir, time.Until(deadline)+5*time.Second, append(base[:len(base):len(base)], "--resume")...)
		if last.code != exitDeferred {
			break
		}
	}
	if last.code != exitOK {
		t.Fatalf("final --resume: exit %d\n%s\n%s", last.code, last.stdout, last.stderr)
	}
	settleCount(&srv.total)

	// The journal: every row final, delivered or (permfail) bounced.
	snap, err := journal.Replay(jpath, fp)
	if err != nil {
		t.Fatal(err)
	}
	for row, e := range rowEmail {
		rec, ok := snap.Get(row)
		want := journal.StateDelivered
		if permfail[row] {
			want = journal.StateBounced
		}
		if !ok || rec.State != want {
			t.Errorf("journal row %d (%s): %v %v, want %v", row, e, ok, rec.State, want)
		}
	}

	// The server: every deliverable address at least once; each extra copy
	// explained by one kill that caught the row in flight; one Message-ID.
	srv.mu.Lock()
	var dups, explained int
	for row, e := range rowEmail {
		c := srv.count[e]
		switch {
		case permfail[row]:
			if c != 0 {
				t.Errorf("%s accepted %d times", e, c)
			}
		case c == 0:
			t.Errorf("row %d (%s) lost: never accepted", row, e)
		case c != 1+caught[e]:
			t.Errorf("row %d (%s) accepted %d times; caught in flight by %d kills", row, e, c, caught[e])
		}
		if c > 1 {
			dups += c - 1
			for _, id := range srv.ids[e] {
				if id != srv.ids[e][0] {
					t.Errorf("%s re-sent with another Message-ID: %q", e, srv.ids[e])
					break
				}
			}
		}
		explained += caught[e]
	}
	total := srv.total.Load()
	srv.mu.Unlock()
	if dups != explained {
		t.Errorf("server saw %d duplicates; the kills caught %d rows in flight", dups, explained)
	}
	for i, k := range kills {
		t.Logf("kill %d at %d (server %d at the kill, %d settled): journal final %d; re-sent %d = %d unacknowledged (≤ %d) + %d acknowledged (oldest 250 %v before the kill); engine max in flight %d; earlier not yet re-sent %d",
			i+1, k.target, k.atKill, k.settled, k.final, k.resend, k.unacked, connLimit, k.acked, k.maxAge.Round(10*time.Microsecond), 2*connLimit, k.carried)
	}
	t.Logf("server total %d messages for %d deliverable rows: %d duplicates", total, n-len(permfail), dups)

	// The results file: every row exactly once, with its final state.
	res := readResults(t, filepath.Join(dir, "big.results.csv")) // fails on a row listed twice
	var missing []int
	for row, e := range rowEmail {
		r := res[row]
		if r == nil {
			missing = append(missing, row)
			continue
		}
		want := "delivered"
		if permfail[row] {
			want = "bounced"
		}
		if r["email"] != e || r["state"] != want {
			t.Errorf("results row %d: %s %s, want %s %s", row, r["email"], r["state"], e, want)
		}
	}
	if len(missing) > 0 {
		// Results lines are buffered and a kill loses the last ones; the
		// resumed run must restore them from the journal.
		t.Errorf("results lack %d rows journalled final before a kill (e.g. %v)", len(missing), missing[:min(len(missing), 8)])
	}
}

// messageIDOf returns the Message-ID header value of a raw message.
func messageIDOf(data []byte) string {
	i := bytes.Index(data, []byte("Message-ID: "))
	if i < 0 {
		return ""
	}
	rest := data[i+len("Message-ID: "):]
	if j := bytes.IndexByte(rest, '\r'); j >= 0 {
		rest = rest[:j]
	}
	return string(rest)
}

// settleCount waits until n has not moved for 100 ms (at most 3 s): after a
// kill the server may still be reading what the dead client had written.
func settleCount(n *atomic.Int64) int64 {
	last, still := n.Load(), time.Now()
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
		if m := n.Load(); m != last {
			last, still = m, time.Now()
		} else if time.Since(still) >= 100*time.Millisecond {
			break
		}
	}
	return last
}

// countingServer is a go-smtp Backend that counts accepted messages per
// recipient, remembers which connection accepted each and when its 250 went
// out, answers 550 5.1.1 to permfail@ recipients, and SIGKILLs pid when the
// total reaches killAt.
type countingServer struct {
	mu        sync.Mutex
	count     map[string]int       // address → messages accepted
	ids       map[string][]string  // address → Message-ID of each copy
	byConn    map[int64][]string   // connection → addresses accepted, in order
	connOf    map[string]int64     // address → connection of its last acceptance
	repliedAt map[string]time.Time // address → when its last 250 was handed to go-smtp
	latency   time.Duration        // before each 250 (a round trip)

	conns    atomic.Int64
	total    atomic.Int64
	killAt   atomic.Int64
	pid      atomic.Int64
	killedAt atomic.Int64 // unix ns of the last SIGKILL
}

func (c *countingServer) NewSession(*smtp.Conn) (smtp.Session, error) {
	return &countingSession{srv: c, conn: c.conns.Add(1)}, nil
}

type countingSession struct {
	srv   *countingServer
	conn  int64
	rcpts []string
}

func (s *countingSession) Mail(string, *smtp.MailOptions) error { return nil }

func (s *countingSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if strings.HasPrefix(to, "permfail@") {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

// Data accepts the message: it is counted before the 250 goes out, as a real
// server commits it before answering.
func (s *countingSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	c := s.srv
	id := messageIDOf(data)
	c.mu.Lock()
	for _, rc := range s.rcpts {
		c.count[rc]++
		c.ids[rc] = append(c.ids[rc], id)
		c.byConn[s.conn] = append(c.byConn[s.conn], rc)
		c.connOf[rc] = s.conn
	}
	c.mu.Unlock()
	if n := c.total.Add(1); n >= c.killAt.Load() {
		if k := c.killAt.Load(); k > 0 && c.killAt.CompareAndSwap(k, 0) {
			if p := c.pid.Load(); p > 0 {
				c.killedAt.Store(time.Now().UnixNano())
				_ = syscall.Kill(int(p), syscall.SIGKILL)
			}
		}
	}
	time.Sleep(c.latency)
	c.mu.Lock()
	now := time.Now()
	for _, rc := range s.rcpts {
		c.repliedAt[rc] = now
	}
	c.mu.Unlock()
	return nil
}

func (s *countingSession) Reset()        { s.rcpts = s.rcpts[:0] }
func (s *countingSession) Logout() error { return nil }
