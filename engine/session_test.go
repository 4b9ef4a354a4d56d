package engine

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spate-mta/spate/codec"
)

var _ driverSession = (*Session)(nil)

// A golden transcript (testdata/session/*.txt) is a list of lines:
//
//	# comment
//	cfg key=value ...        SessionConfig (maxmessages, maxrcpts, nopipelining,
//	                         tls=opportunistic|required|disabled|implicit,
//	                         auth=user:pass, allowplain, chunking=auto|off,
//	                         depth=n, pipebytes=n)
//	E: from=a rcpts=b,c body=word [size=n] [utf8]   an envelope the Feeder offers
//	S: text                  server line; consecutive S lines are one Feed
//	C: text                  client line; consecutive C lines are one Output
//	R: event                 what the Reporter saw, in order
//	tls ok|fail              WantsTLS must be true; TLSDone(nil or an error)
//	expire                   Expire at Deadline (which must be set)
//	close                    Closed(nil): the driver closed as asked
//	drop                     Closed(EOF): the server went away
//	poll                     Poll
//	drain                    Drain
//	! wantclose|retryplain|!wantclose   assertions
//
// The body of an envelope is "Subject: test\r\n\r\n" + word + "\r\n" + ".\r\n",
// as DATA sends it (word is taken as already dot-stuffed: "..x" is the line
// ".x", which BDAT sends un-stuffed).

type fakeFeeder struct{ q []*Envelope }

func (f *fakeFeeder) Next(c ConnInfo, now time.Time) *Envelope {
	if len(f.q) == 0 {
		return nil
	}
	e := f.q[0]
	f.q = f.q[1:]
	return e
}

type fakeReporter struct {
	ids    map[*Envelope]int
	events []string
	closed int
}

func (r *fakeReporter) Outcome(env *Envelope, i int, o Outcome) {
	res := [...]string{"none", "delivered", "deferred", "bounced"}[o.Result]
	ev := fmt.Sprintf("%d.%d %s %d", r.ids[env], i, res, o.Code)
	if !o.Enhanced.IsZero() {
		ev += " " + o.Enhanced.String()
	}
	if o.Local {
		ev += " local"
	}
	if o.Text != "" {
		ev += " " + strconv.Quote(o.Text)
	}
	if o.Host != "mx.test" {
		ev += " host=" + o.Host
	}
	r.events = append(r.events, ev)
}

func (r *fakeReporter) Done(env *Envelope) {
	r.events = append(r.events, fmt.Sprintf("done %d", r.ids[env]))
}

func (r *fakeReporter) ConnClosed(c ConnInfo, err error) {
	r.closed++
	es := "nil"
	if err != nil {
		es = err.Error()
	}
	r.events = append(r.events, "closed "+es)
}

type tline struct {
	no         int
	kind, text string
}

type transcript struct {
	name  string
	cfg   SessionConfig
	lines []tline
}

func loadTranscript(t testing.TB, path string) *transcript {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return parseTranscript(t, filepath.Base(path), b)
}

func parseTranscript(t testing.TB, name string, b []byte) *transcript {
	tr := &transcript{name: name, cfg: SessionConfig{EHLOName: "client.test"}}
	sc := bufio.NewScanner(bytes.NewReader(b))
	no := 0
	for sc.Scan() {
		no++
		l := sc.Text()
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "cfg "):
			for _, kv := range strings.Fields(l[4:]) {
				k, v, _ := strings.Cut(kv, "=")
				n, _ := strconv.Atoi(v)
				switch k {
				case "maxmessages":
					tr.cfg.MaxMessages = n
				case "maxrcpts":
					tr.cfg.MaxRcpts = n
				case "nopipelining":
					tr.cfg.NoPipelining = true
				case "chunking":
					if err := tr.cfg.Chunking.UnmarshalText([]byte(v)); err != nil {
						t.Fatalf("%s:%d: %v", name, no, err)
					}
				case "depth":
					tr.cfg.PipelineDepth = n
				case "pipebytes":
					tr.cfg.PipelineBytes = n
				case "tls":
					tr.cfg.TLS = map[string]TLSPolicy{"opportunistic": TLSOpportunistic, "required": TLSRequired,
						"disabled": TLSDisabled, "implicit": TLSImplicit}[v]
				case "auth":
					u, p, _ := strings.Cut(v, ":")
					tr.cfg.Auth = &Auth{Username: u, Password: p}
				case "allowplain":
					tr.cfg.Auth.AllowPlaintext = true
				default:
					t.Fatalf("%s:%d: unknown cfg key %q", name, no, k)
				}
			}
		case len(l) >= 2 && l[1] == ':' && strings.ContainsRune("SCRE", rune(l[0])):
			tr.lines = append(tr.lines, tline{no, l[:1], strings.TrimPrefix(l[2:], " ")})
		default:
			tr.lines = append(tr.lines, tline{no, "do", l})
		}
	}
	return tr
}

func makeEnvelope(t testing.TB, spec string) *Envelope {
	env := &Envelope{}
	word := "hello"
	size := -1
	for _, kv := range strings.Fields(spec) {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "from":
			env.From = v
		case "rcpts":
			env.Rcpts = strings.Split(v, ",")
		case "body":
			word = v
		case "size":
			size, _ = strconv.Atoi(v)
		case "utf8":
			env.UTF8 = true
		default:
			t.Fatalf("unknown envelope key %q", k)
		}
	}
	m := codec.AcquireMessage()
	m.Segs = append(m.Segs, []byte("Subject: test\r\n\r\n"), []byte(word+"\r\n"), []byte(".\r\n"))
	env.Body = m
	env.Size = 0
	for _, s := range m.Segs {
		env.Size += len(s)
	}
	if size >= 0 {
		env.Size = size
	}
	return env
}

// replay runs tr. With cuts == nil it is strict: each S block is one Feed
// (all consumed) and each C block must be exactly one Output. With cuts, S
// bytes are fed in pieces cut at those offsets (mod block length) and only
// the whole client byte stream and the events are collected.
func replay(t testing.TB, tr *transcript, cuts []int) (client []byte, events []string) {
	t.Helper()
	feeder := &fakeFeeder{}
	rep := &fakeReporter{ids: map[*Envelope]int{}}
	now := int64(1_000_000_000_000)
	cfg := tr.cfg
	s := NewSession(&cfg, ConnInfo{Host: "mx.test"}, feeder, rep, now)
	strict := cuts == nil
	var pending []byte // unconsumed server bytes
	matched := 0       // events matched by R lines
	nenv := 0
	fail := func(l tline, f string, a ...any) {
		t.Helper()
		t.Fatalf("%s:%d: %s", tr.name, l.no, fmt.Sprintf(f, a...))
	}
	collect := func() []byte {
		out := s.Output()
		var w []byte
		for _, seg := range out {
			w = append(w, seg...)
		}
		if out != nil {
			s.Flushed()
		}
		client = append(client, w...)
		return w
	}
	checkIdle := func(l tline) {
		if strict {
			if out := s.Output(); out != nil {
				var w []byte
				for _, seg := range out {
					w = append(w, seg...)
				}
				fail(l, "unexpected client output %q", w)
			}
			if matched != len(rep.events) {
				fail(l, "unexpected events %q", rep.events[matched:])
			}
		}
	}
	feed := func(l tline, b []byte) {
		if !strict {
			for _, c := range cuts {
				if len(b) == 0 {
					break
				}
				k := c % (len(b) + 1)
				pending = append(pending, b[:k]...)
				b = b[k:]
				n, err := s.Feed(pending, now)
				pending = pending[n:]
				collect()
				if err != nil || s.WantsClose() {
					return
				}
			}
		}
		pending = append(pending, b...)
		n, err := s.Feed(pending, now)
		pending = pending[n:]
		if strict && err == nil && len(pending) > 0 && !s.WantsTLS() {
			fail(l, "Feed left %q", pending)
		}
		if !strict {
			collect()
		}
		if s.WantsTLS() {
			pending = pending[:0]
		}
	}
	lines := tr.lines
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		now += int64(time.Millisecond)
		switch l.kind {
		case "E":
			env := makeEnvelope(t, l.text)
			rep.ids[env] = nenv
			nenv++
			feeder.q = append(feeder.q, env)
		case "S":
			checkIdle(l)
			var b []byte
			for ; i < len(lines) && lines[i].kind == "S"; i++ {
				b = append(b, lines[i].text...)
				b = append(b, "\r\n"...)
			}
			i--
			feed(l, b)
		case "C":
			var want []byte
			for ; i < len(lines) && lines[i].kind == "C"; i++ {
				want = append(want, lines[i].text...)
				want = append(want, "\r\n"...)
			}
			i--
			if strict {
				if got := collect(); !bytes.Equal(got, want) {
					fail(l, "client wrote\n%s\nwant\n%s", got, want)
				}
			}
		case "R":
			if !strict {
				continue
			}
			if matched >= len(rep.events) {
				fail(l, "got no event; want %q", l.text)
			}
			if got := rep.events[matched]; got != l.text {
				fail(l, "got event %q; want %q", got, l.text)
			}
			matched++
		case "do":
			if l.text[0] != '!' {
				checkIdle(l)
			}
			switch f := strings.Fields(l.text); f[0] {
			case "tls":
				if !s.WantsTLS() {
					fail(l, "WantsTLS false")
				}
				var err error
				if f[1] == "fail" {
					err = errors.New("tls: handshake failure")
				}
				s.TLSDone(err, now)
			case "expire":
				dl := s.Deadline()
				if dl == 0 {
					fail(l, "no deadline")
				}
				if dl <= now {
					fail(l, "deadline %d not after now %d", dl, now)
				}
				now = dl
				s.Expire(now)
			case "close":
				s.Closed(nil, now)
			case "drop":
				s.Closed(errors.New("EOF"), now)
			case "poll":
				s.Poll(now)
			case "drain":
				s.Drain(now)
			case "!":
				var got bool
				switch strings.TrimPrefix(f[1], "!") {
				case "wantclose":
					got = s.WantsClose()
				case "retryplain":
					got = s.RetryPlain()
				case "wanttls":
					got = s.WantsTLS()
				default:
					fail(l, "unknown assertion %q", f[1])
				}
				if got == strings.HasPrefix(f[1], "!") {
					fail(l, "%s is %v", f[1], got)
				}
			default:
				fail(l, "unknown directive %q", l.text)
			}
			if !strict {
				collect()
			}
		}
	}
	end := tline{no: len(lines)}
	if len(lines) > 0 {
		end = lines[len(lines)-1]
	}
	checkIdle(end)
	if rep.closed != 1 && strict {
		fail(end, "ConnClosed reported %d times; every transcript must end with the connection closed", rep.closed)
	}
	return client, rep.events
}

func TestSessionGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/session/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			tr := loadTranscript(t, f)
			_, events := replay(t, tr, nil)
			checkOutcomeInvariants(t, events)
		})
	}
}

// checkOutcomeInvariants: every envelope got Done once, after its
// outcomes, and no recipient was reported twice or after Done.
func checkOutcomeInvariants(t *testing.T, events []string) {
	t.Helper()
	seen := map[string]bool{}
	done := map[string]bool{}
	for _, ev := range events {
		f := strings.Fields(ev)
		switch f[0] {
		case "done":
			if done[f[1]] {
				t.Fatalf("Done twice for envelope %s: %q", f[1], events)
			}
			done[f[1]] = true
		case "closed":
		default:
			envID, _, _ := strings.Cut(f[0], ".")
			if seen[f[0]] || done[envID] {
				t.Fatalf("outcome %s repeated or after Done: %q", f[0], events)
			}
			seen[f[0]] = true
		}
	}
}

func TestSessionStateString(t *testing.T) {
	for st, want := range map[State]string{StateBanner: "banner", StateIdle: "idle", StateClosed: "closed", State(99): "State(99)"} {
		if got := st.String(); got != want {
			t.Errorf("State(%d).String() = %q; want %q", st, got, want)
		}
	}
	if StateReady != StateIdle {
		t.Fatalf("StateReady != StateIdle")
	}
}

// TestSessionDeadlines checks the per-command timeout table: the greeting
// waits Timeouts.Greeting, an idle session Timeouts.Idle, zero fields take
// the defaults.
func TestSessionDeadlines(t *testing.T) {
	cfg := &SessionConfig{EHLOName: "c", Timeouts: Timeouts{Idle: 7 * time.Second}}
	rep := &fakeReporter{ids: map[*Envelope]int{}}
	now := int64(1e12)
	s := NewSession(cfg, ConnInfo{Host: "mx.test"}, &fakeFeeder{}, rep, now)
	if got, want := s.Deadline(), now+int64(5*time.Minute); got != want {
		t.Fatalf("greeting deadline: got %d; want %d", got, want)
	}
	if _, err := s.Feed([]byte("220 hi\r\n"), now+1); err != nil {
		t.Fatal(err)
	}
	s.Output()
	s.Flushed()
	if _, err := s.Feed([]byte("250 hi\r\n"), now+2); err != nil {
		t.Fatal(err)
	}
	if s.State() != StateIdle {
		t.Fatalf("state %s; want idle", s.State())
	}
	if got, want := s.Deadline(), now+2+int64(7*time.Second); got != want {
		t.Fatalf("idle deadline: got %d; want %d", got, want)
	}
	s.Expire(now + 2 + int64(7*time.Second))
	if out := s.Output(); len(out) != 1 || string(out[0]) != "QUIT\r\n" {
		t.Fatalf("after idle expiry got %q; want QUIT", out)
	}
}
