package engine

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spate-mta/spate/codec"
)

// The engine against a real Postfix smtpd (Debian package postfix, 3.4 or
// later for maillog_file): a private instance in a temporary directory with
// its own main.cf, master.cf, queue and data directories, listening only on
// 127.0.0.1:<free port>, every accepted recipient handed to discard(8) so
// nothing leaves the machine, reject@ refused with 550 5.1.1 and tempfail@
// with 450 4.2.0 by check_recipient_access, PIPELINING and CHUNKING left on
// (Postfix's defaults), logging to a file in the directory (postlogd), so
// no syslog is needed. The tests skip when not root, when Postfix is not
// installed or when the instance cannot start (the skip message carries the
// log's tail).
//
// Start-up is "postfix -c DIR check" (it creates the queue's subdirectories
// with their owners), then the master as this process's child with "-s -e"
// rather than "postfix start-fg", whose master is a grandchild that would
// outlive a killed test binary: with -e it exits by itself after
// pfxMasterLife seconds, and its children exit when they see it gone.
// Cleanup runs "postfix -c DIR stop", then kills the master if it is still
// there, then any Postfix daemon left in its process group.

const (
	pfxPostfix    = "/usr/sbin/postfix"
	pfxPostconf   = "/usr/sbin/postconf"
	pfxPostqueue  = "/usr/sbin/postqueue"
	pfxDomain     = "postfix.test"
	pfxMasterLife = 180 // seconds: the master's -e bound
	pfxDiscarded  = "discarded"
)

// pfxInstance is one private Postfix.
type pfxInstance struct {
	dir, conf, log string
	addr           netip.AddrPort
	daemonDir      string
}

const pfxMainCF = `# private test instance of engine/postfix_test.go
compatibility_level = 3.6
queue_directory = {{dir}}/queue
data_directory = {{dir}}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.postfix.test
mydomain = postfix.test
myorigin = $mydomain
mydestination = postfix.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
local_recipient_maps =
alias_maps =
alias_database =
local_transport = discard:discarded
default_transport = discard:discarded
relay_transport = discard:discarded
virtual_transport = discard:discarded
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = check_recipient_access texthash:{{dir}}/etc/recipient_access, permit_mynetworks, reject_unauth_destination
smtpd_peername_lookup = no
smtpd_banner = $myhostname ESMTP Postfix
smtputf8_enable = no
biff = no
max_idle = 20s
maillog_file = {{dir}}/maillog
maillog_file_prefixes = {{dir}}
`

// Only the services this needs; the smtpd is the only listener.
const pfxMasterCF = `127.0.0.1:{{port}} inet n - n - 50 smtpd
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
discard   unix - - n - - discard
error     unix - - n - - error
retry     unix - - n - - error
anvil     unix - - n - 1 anvil
showq     unix n - n - - showq
postlog   unix-dgram n - n - 1 postlogd
`

const pfxAccess = "reject@ 550 5.1.1 no such user here\ntempfail@ 450 4.2.0 mailbox busy, try later\n"

// pfxStart builds and starts a private Postfix, or skips the test.
func pfxStart(t *testing.T) *pfxInstance {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("Postfix tests need root (the queue directory belongs to root and postfix)")
	}
	for _, b := range []string{pfxPostfix, pfxPostconf} {
		if _, err := os.Stat(b); err != nil {
			t.Skipf("Postfix not installed (%v; Debian package postfix)", err)
		}
	}
	pu, err := user.Lookup("postfix")
	if err != nil {
		t.Skipf("no postfix user: %v", err)
	}
	if _, err := user.LookupGroup("postdrop"); err != nil {
		t.Skipf("no postdrop group: %v", err)
	}
	uid, _ := strconv.Atoi(pu.Uid)
	gid, _ := strconv.Atoi(pu.Gid)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, pfxPostconf, "-d", "-h", "daemon_directory", "mail_version").Output()
	if err != nil {
		t.Skipf("postconf -d: %v", err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		t.Skipf("postconf -d: odd output %q", out)
	}
	p := &pfxInstance{daemonDir: f[0]}
	if v := strings.SplitN(f[1], ".", 3); len(v) < 2 || pfxAtoi(v[0])*100+pfxAtoi(v[1]) < 304 {
		t.Skipf("Postfix %s: maillog_file needs 3.4 or later", f[1])
	}
	master := filepath.Join(p.daemonDir, "master")
	if _, err := os.Stat(master); err != nil {
		t.Skipf("Postfix master missing: %v", err)
	}

	// The postfix user must reach the queue: open the temporary directory
	// (t.TempDir makes it and its parent 0700) and check every ancestor.
	p.dir = t.TempDir()
	for _, d := range []string{p.dir, filepath.Dir(p.dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for d := p.dir; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o001 == 0 {
			t.Skipf("the postfix user cannot traverse %s (mode %v): set TMPDIR elsewhere", d, st.Mode().Perm())
		}
		if d == filepath.Dir(d) {
			break
		}
	}
	p.conf = filepath.Join(p.dir, "etc")
	p.log = filepath.Join(p.dir, "maillog")
	for _, d := range []string{p.conf, filepath.Join(p.dir, "queue"), filepath.Join(p.dir, "data")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(filepath.Join(p.dir, "data"), uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(p.dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"main.cf":          strings.ReplaceAll(pfxMainCF, "{{dir}}", p.dir),
		"master.cf":        strings.ReplaceAll(pfxMasterCF, "{{port}}", strconv.Itoa(int(pfxFreePort(t)))), // rewritten below
		"recipient_access": pfxAccess,
	}
	for name, text := range files {
		p.write(t, name, text)
	}

	// "postfix check" creates the queue's subdirectories with their owners
	// (post-install create-missing) and verifies the installation, as
	// "postfix start" would.
	t0 := time.Now()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel2()
	if out, err := exec.CommandContext(ctx2, pfxPostfix, "-c", p.conf, "check").CombinedOutput(); err != nil {
		t.Skipf("postfix -c %s check: %v\n%s\nmaillog:\n%s", p.conf, err, out, p.tail(20))
	}
	checked := time.Since(t0)

	// A port found free may be taken before the master binds it (the
	// master then exits without a word: its fatal message goes to syslog
	// before postlogd runs), so try up to three.
	for attempt := 1; ; attempt++ {
		port := pfxFreePort(t)
		p.addr = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
		p.write(t, "master.cf", strings.ReplaceAll(pfxMasterCF, "{{port}}", strconv.Itoa(int(port))))
		pid, why := p.startMaster(t, master)
		if why == "" {
			t.Logf("Postfix %s (pid %d) on %v, config %s; check %v, greeting after %v", f[1], pid, p.addr, p.conf,
				checked.Round(time.Millisecond), (time.Since(t0) - checked).Round(time.Millisecond))
			return p
		}
		if attempt == 3 {
			t.Skipf("Postfix instance in %s did not start: %s", p.dir, why)
		}
		t.Logf("Postfix start-up attempt %d: %s", attempt, why)
	}
}

// write writes a file of the configuration directory, dated a minute ago:
// Postfix waits (300 ms at a time, up to 2 s) for a main.cf modified less
// than 2 s ago to settle.
func (p *pfxInstance) write(t *testing.T, name, text string) {
	t.Helper()
	path := filepath.Join(p.conf, name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Minute)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
}

// startMaster runs the master in the foreground (-s: no detaching),
// bounded by -e, and waits until the smtpd greets. It returns the master's
// pid, or why it did not start (the master is then gone).
func (p *pfxInstance) startMaster(t *testing.T, master string) (int, string) {
	outf, err := os.Create(filepath.Join(p.dir, "master.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer outf.Close()
	cmd := exec.Command(master, "-c", p.conf, "-s", "-e", strconv.Itoa(pfxMasterLife))
	cmd.Dir = p.dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, outf, outf
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "MAIL_CONFIG=" + p.conf}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Sprintf("start %s: %v", master, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	pid := cmd.Process.Pid
	stop := sync.OnceFunc(func() { p.stop(t, pid, exited) })
	t.Cleanup(stop)

	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-exited:
			mo, _ := os.ReadFile(filepath.Join(p.dir, "master.out"))
			inUse := "free"
			if ln, err := net.Listen("tcp4", p.addr.String()); err != nil {
				inUse = err.Error()
			} else {
				ln.Close()
			}
			return 0, fmt.Sprintf("the master exited during start-up (%v); port %d: %s; master output %q\nmaillog:\n%s",
				cmd.ProcessState, p.addr.Port(), inUse, mo, p.tail(20))
		default:
		}
		greet, err := pfxGreeting(p.addr)
		if err == nil {
			if greet != "220 mx.postfix.test ESMTP Postfix" { // another server on the port?
				stop()
				return 0, fmt.Sprintf("Postfix greeted %q\nmaillog:\n%s", greet, p.tail(20))
			}
			return pid, ""
		}
		if time.Now().After(deadline) {
			stop()
			return 0, fmt.Sprintf("no greeting on %v within 15 s (%v)\nmaillog:\n%s", p.addr, err, p.tail(20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func pfxAtoi(s string) int { n, _ := strconv.Atoi(s); return n }

// pfxFreePort returns a loopback port nothing listens on now.
func pfxFreePort(t *testing.T) uint16 {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// pfxGreeting connects, reads the greeting line and QUITs.
func pfxGreeting(addr netip.AddrPort) (string, error) {
	c, err := net.DialTimeout("tcp", addr.String(), 500*time.Millisecond)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	c.Write([]byte("QUIT\r\n"))
	return strings.TrimRight(line, "\r\n"), nil
}

// stop ends this instance: "postfix stop", then the master itself if it
// is still running, then whatever Postfix daemon is left in its process
// group (the master is a session leader: its group id is its pid).
func (p *pfxInstance) stop(t *testing.T, pid int, exited chan struct{}) {
	select {
	case <-exited: // died by itself (start-up failure)
	default:
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, pfxPostfix, "-c", p.conf, "stop").CombinedOutput(); err != nil {
			t.Logf("postfix stop: %v: %s", err, out)
		}
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Logf("Postfix master %d still running after stop: killing it", pid)
		syscall.Kill(pid, syscall.SIGKILL)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			t.Errorf("Postfix master %d did not exit", pid)
		}
	}
	// Children leave when they see the master gone; wait a little, then
	// kill stragglers of this group that run a daemon from daemonDir.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		left := p.group(pid)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, c := range left {
				t.Logf("killing leftover Postfix process %d", c)
				syscall.Kill(c, syscall.SIGKILL)
			}
			return
		}
	}
}

// group lists the processes in process group pgid whose executable is in
// the Postfix daemon directory.
func (p *pfxInstance) group(pgid int) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces, so split
		// after its closing parenthesis.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fs := strings.Fields(string(stat[i+1:]))
		if len(fs) < 3 || fs[2] != strconv.Itoa(pgid) {
			continue
		}
		exe, err := os.Readlink("/proc/" + e.Name() + "/exe")
		if err != nil || filepath.Dir(exe) != p.daemonDir {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// tail returns the last n lines of the maillog.
func (p *pfxInstance) tail(n int) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return fmt.Sprintf("(no maillog: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// logSize is the maillog's current length: runs read the log from there.
func (p *pfxInstance) logSize() int64 {
	st, err := os.Stat(p.log)
	if err != nil {
		return 0
	}
	return st.Size()
}

// logSince returns the complete maillog lines from byte off on.
func (p *pfxInstance) logSince(off int64) []string {
	b, _ := os.ReadFile(p.log)
	if int64(len(b)) < off {
		return nil
	}
	b = b[off:]
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	} else {
		return nil
	}
	return strings.Split(string(b), "\n")
}

// pfxSummary is what Postfix logged about one run.
type pfxSummary struct {
	sent        map[string]int // recipient → "status=sent (discarded)" lines
	rejects     map[string]int // "550 5.1.1" / "450 4.2.0" → RCPT reject lines
	disconnects int
	cmds        map[string][2]int // smtpd's disconnect counters: verb → ok, total
	msgIDs      map[string]int    // cleanup's message-id= → count
	problems    []string
}

// pfxParse summarises log lines: deliveries to recipients starting with
// prefix, rejections of RCPTs sent with HELO helo.
func pfxParse(lines []string, prefix, helo string) pfxSummary {
	s := pfxSummary{sent: map[string]int{}, rejects: map[string]int{}, cmds: map[string][2]int{}, msgIDs: map[string]int{}}
	for _, l := range lines {
		switch {
		case strings.Contains(l, "status=sent") && strings.Contains(l, " to=<"+prefix):
			if !strings.Contains(l, "status=sent ("+pfxDiscarded+")") {
				s.problems = append(s.problems, l)
			}
			to := l[strings.Index(l, " to=<")+5:]
			s.sent[to[:strings.IndexByte(to, '>')]]++
		case strings.Contains(l, ": reject: RCPT from ") && strings.Contains(l, "helo=<"+helo+">"):
			// "NOQUEUE: reject: …", or "<queue id>: reject: …" once an
			// earlier recipient of the transaction was accepted.
			rest := l[strings.Index(l, ": reject: RCPT from "):]
			if i := strings.Index(rest, "]: "); i >= 0 && len(rest) > i+12 {
				s.rejects[rest[i+3:i+12]]++
			}
		case strings.Contains(l, "postfix/cleanup[") && strings.Contains(l, "message-id=<"+prefix):
			id := l[strings.Index(l, "message-id=<")+12:]
			s.msgIDs[strings.TrimSuffix(id, ">")]++
		case strings.Contains(l, "]: disconnect from "):
			s.disconnects++
			for _, f := range strings.Fields(l[strings.Index(l, "]: disconnect from "):])[3:] {
				k, v, ok := strings.Cut(f, "=")
				if !ok {
					continue
				}
				okN, totN, split := strings.Cut(v, "/")
				c := s.cmds[k]
				c[0] += pfxAtoi(okN)
				if split {
					c[1] += pfxAtoi(totN)
				} else {
					c[1] += pfxAtoi(okN)
				}
				s.cmds[k] = c
			}
		}
		for _, bad := range []string{"improper command pipelining", "non-SMTP command", "fatal:", "panic:", "lost connection", "timeout after", "too many errors"} {
			if strings.Contains(l, bad) {
				s.problems = append(s.problems, l)
			}
		}
	}
	return s
}

func (s pfxSummary) total() int {
	n := 0
	for _, c := range s.sent {
		n += c
	}
	return n
}

// ---- messages ----

// pfxEnvelope is message id of a run with tag: its Message-ID is
// <tag-id@spate.test>; some lines start with a dot (stuffed for DATA,
// sent as is with BDAT).
func pfxEnvelope(tag string, id int, rcpts []string) *Envelope {
	var p bytes.Buffer
	fmt.Fprintf(&p, "From: <sender@spate.test>\r\nTo: <%s>\r\nSubject: %s %d\r\nMessage-ID: <%s-%d@spate.test>\r\n\r\n", rcpts[0], tag, id, tag, id)
	fmt.Fprintf(&p, ".leading dot line %d\r\n", id)
	for k := 0; p.Len() < 300+id%1200; k++ {
		fmt.Fprintf(&p, "line %d of message %d %s\r\n", k, id, strings.Repeat("y", 50))
		if k%9 == 4 {
			p.WriteString(".\r\n..two dots\r\nMAIL FROM:<not-a-command@spate.test>\r\n")
		}
	}
	var w bytes.Buffer
	for _, line := range bytes.SplitAfter(p.Bytes(), []byte("\r\n")) {
		if len(line) > 0 && line[0] == '.' {
			w.WriteByte('.')
		}
		w.Write(line)
	}
	wire := w.Bytes()
	k := len(wire) / 2
	for k < len(wire) && wire[k-1] != '\n' {
		k++
	}
	m := &codec.Message{Segs: [][]byte{wire[:k], wire[k:], []byte(".\r\n")}}
	return &Envelope{From: "sender@spate.test", Rcpts: rcpts, Body: m, Size: len(wire) + 3, ID: uint64(id)}
}

// pfxWant is the outcome Postfix gives rcpt.
func pfxWant(rcpt string) (Result, int, codec.EnhancedCode) {
	switch {
	case strings.HasPrefix(rcpt, "reject@"):
		return ResultBounced, 550, codec.EnhancedCode{Class: 5, Subject: 1, Detail: 1}
	case strings.HasPrefix(rcpt, "tempfail@"):
		return ResultDeferred, 450, codec.EnhancedCode{Class: 4, Subject: 2, Detail: 0}
	}
	return ResultDelivered, 250, codec.EnhancedCode{Class: 2, Subject: 0, Detail: 0}
}

// pfxRun sends envs over conns connections with EHLO <tag>.spate.test,
// stops the engine gracefully, checks every outcome against pfxWant and
// every connection for a clean QUIT, then waits (bounded) until Postfix
// has logged a discard for every accepted recipient and returns its log
// summary of the run.
func pfxRun(t *testing.T, p *pfxInstance, tag string, chunking ChunkingPolicy, conns int, envs []*Envelope) pfxSummary {
	t.Helper()
	off := p.logSize()
	rcpts := make(map[uint64][]string, len(envs))
	wantSent := map[string]bool{}
	wantRej := map[string]int{}
	var wantTx int // transactions with at least one accepted recipient
	for _, env := range envs {
		rcpts[env.ID] = append([]string(nil), env.Rcpts...)
		live := false
		for _, r := range env.Rcpts {
			switch res, code, enh := pfxWant(r); res {
			case ResultDelivered:
				wantSent[r], live = true, true
			default:
				wantRej[fmt.Sprintf("%d %v", code, enh)]++
			}
		}
		if live {
			wantTx++
		}
	}
	e, f, r := itEngine(t, Config{})
	f.add(envs...)
	sc := itSessionConfig()
	sc.EHLOName = tag + ".spate.test"
	sc.Chunking = chunking
	sc.PipelineDepth = 4
	for _, d := range []*time.Duration{&sc.Timeouts.Connect, &sc.Timeouts.Greeting, &sc.Timeouts.EHLO, &sc.Timeouts.Mail,
		&sc.Timeouts.Rcpt, &sc.Timeouts.Data, &sc.Timeouts.DataBlock, &sc.Timeouts.Final, &sc.Timeouts.Quit} {
		*d = 20 * time.Second
	}
	start := time.Now()
	for c := 0; c < conns; c++ {
		e.Dial(Dial{Path: uint64(c % 7), Host: "mx." + pfxDomain, Addr: p.addr, Config: sc})
	}
	itWait(t, r.doneCh, len(envs), 30*time.Second, "Done")
	took := time.Since(start)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}

	r.mu.Lock()
	got := map[Result]int{}
	for id, oc := range r.outcomes {
		for i, o := range oc {
			got[o.Result]++
			res, code, enh := pfxWant(rcpts[id][i])
			if o.Result != res || o.Code != code || o.Enhanced != enh || o.Local {
				t.Errorf("message %d recipient %s: %+v; want %v %d %v from Postfix", id, rcpts[id][i], o, res, code, enh)
			}
			if res == ResultBounced && !strings.Contains(o.Text, "no such user here") {
				t.Errorf("message %d recipient %s: text %q; want Postfix's", id, rcpts[id][i], o.Text)
			}
		}
	}
	if len(r.outcomes) != len(envs) {
		t.Errorf("outcomes for %d envelopes; want %d", len(r.outcomes), len(envs))
	}
	for _, c := range r.closed {
		if c.err != nil {
			t.Errorf("connection %d ended with %v; want a clean QUIT (ErrOutOfStep: %v)", c.info.ID, c.err, errors.Is(c.err, ErrOutOfStep))
		}
	}
	r.mu.Unlock()
	if n := r.nclosed.Load(); n != int64(conns) {
		t.Errorf("ConnClosed %d times; want %d", n, conns)
	}
	if st := e.Stats(); st.Opened != uint64(conns) || st.DialFailures != 0 {
		t.Errorf("stats %+v; want %d connections opened, no dial failure", st, conns)
	}

	// Postfix's side: a discard per accepted recipient, a disconnect per
	// connection (logged after the QUIT).
	var s pfxSummary
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		s = pfxParse(p.logSince(off), tag, sc.EHLOName)
		if (s.total() >= len(wantSent) && s.disconnects >= conns) || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("%s: %d envelopes over %d connections in %v; outcomes %v; Postfix: %d discarded, rejects %v, commands %v",
		tag, len(envs), conns, took.Round(time.Millisecond), got, s.total(), s.rejects, s.cmds)
	if s.total() != len(wantSent) || len(s.sent) != len(wantSent) {
		t.Errorf("Postfix discarded %d recipients (%d distinct); want %d", s.total(), len(s.sent), len(wantSent))
	}
	for rc, n := range s.sent {
		if !wantSent[rc] || n != 1 {
			t.Errorf("Postfix delivered %s %d times; want %d", rc, n, map[bool]int{true: 1}[wantSent[rc]])
		}
	}
	if got[ResultDelivered] != len(wantSent) {
		t.Errorf("spate reported %d delivered; Postfix accepted %d", got[ResultDelivered], len(wantSent))
	}
	if len(s.msgIDs) != wantTx {
		t.Errorf("Postfix queued %d distinct messages; want %d", len(s.msgIDs), wantTx)
	}
	for id, n := range s.msgIDs {
		if n != 1 {
			t.Errorf("Postfix queued message %s %d times", id, n)
		}
	}
	for k, n := range wantRej {
		if s.rejects[k] != n {
			t.Errorf("Postfix logged %d RCPT rejects %q; want %d (all: %v)", s.rejects[k], k, n, s.rejects)
		}
	}
	if s.disconnects != conns {
		t.Errorf("Postfix logged %d disconnects; want %d", s.disconnects, conns)
	}
	if c := s.cmds["quit"]; c[0] != conns {
		t.Errorf("Postfix counted %v QUIT; want %d", c, conns)
	}
	if c := s.cmds["mail"]; c[0] != len(envs) || c[1] != len(envs) {
		t.Errorf("Postfix counted MAIL %v; want %d accepted", c, len(envs))
	}
	for _, l := range s.problems {
		t.Errorf("Postfix logged: %s", l)
	}
	return s
}

// pfxLoad is n messages with tag, two recipients each, the second one
// reject@ on every 10th; then the all-refused transactions (reject@ alone)
// as ids n+1..n+allRefused, interleaved every n/allRefused messages.
func pfxLoad(tag string, n, allRefused int) []*Envelope {
	var envs []*Envelope
	k := 1
	for i := 1; i <= n; i++ {
		second := fmt.Sprintf("%s%d.1@%s", tag, i, pfxDomain)
		if i%10 == 0 {
			second = "reject@" + pfxDomain
		}
		envs = append(envs, pfxEnvelope(tag, i, []string{fmt.Sprintf("%s%d.0@%s", tag, i, pfxDomain), second}))
		if allRefused > 0 && i%(n/allRefused) == n/allRefused/2 && k <= allRefused {
			envs = append(envs, pfxEnvelope(tag, n+k, []string{"reject@" + pfxDomain}))
			k++
		}
	}
	return envs
}

// pfxProbe sends cmds in one write after EHLO and returns the EHLO reply
// and every reply line up to the connection's end.
func pfxProbe(t *testing.T, addr netip.AddrPort, pipeline []byte) (ehlo string, replies []string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("EHLO probe.spate.test\r\n"))
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("EHLO: %v", err)
		}
		ehlo += l
		if len(l) > 3 && l[3] == ' ' {
			break
		}
	}
	if _, err := c.Write(pipeline); err != nil {
		t.Fatal(err)
	}
	for {
		l, err := br.ReadString('\n')
		if l != "" {
			replies = append(replies, l)
		}
		if err != nil {
			break
		}
	}
	return ehlo, replies
}

// ---- tests ----

// TestPostfix runs the engine against one private Postfix smtpd: the raw
// BDAT probe, DATA and BDAT loads with partial and total refusal, and
// tempfail.
func TestPostfix(t *testing.T) {
	p := pfxStart(t)
	begin := time.Now()

	// What Postfix answers to BDAT LAST when every RCPT was refused, with
	// the next transaction pipelined behind the chunk (as spate's BDAT
	// pipeline sends it) and no RSET between: the chunk must be read and
	// discarded, not parsed (it holds a MAIL FROM line), and the next MAIL
	// must be accepted.
	t.Run("probe-bdat-no-valid-rcpt", func(t *testing.T) {
		body := []byte("Subject: probe\r\n\r\nMAIL FROM:<smuggled@spate.test>\r\nRCPT TO:<smuggled@postfix.test>\r\n")
		var w bytes.Buffer
		fmt.Fprintf(&w, "MAIL FROM:<probe@spate.test>\r\nRCPT TO:<reject@%s>\r\nBDAT %d LAST\r\n%s", pfxDomain, len(body), body)
		fmt.Fprintf(&w, "MAIL FROM:<probe@spate.test>\r\nRCPT TO:<probe1@%s>\r\nBDAT %d LAST\r\n%s", pfxDomain, len(body), body)
		w.WriteString("QUIT\r\n")
		ehlo, replies := pfxProbe(t, p.addr, w.Bytes())
		t.Logf("EHLO reply: %q", ehlo)
		t.Logf("sent: %q", w.String())
		for _, l := range replies {
			t.Logf("Postfix: %q", l)
		}
		for _, ext := range []string{"250-PIPELINING\r\n", "CHUNKING\r\n"} {
			if !strings.Contains(ehlo, ext) {
				t.Errorf("EHLO reply lacks %q", ext)
			}
		}
		want := []string{"250 2.1.0 ", "550 5.1.1 ", "554 5.5.1 Error: no valid recipients\r\n", "250 2.1.0 ", "250 2.1.5 ", "250 2.0.0 Ok: ", "221 2.0.0 "}
		if len(replies) != len(want) {
			t.Fatalf("%d replies; want %d (%q)", len(replies), len(want), want)
		}
		for i, w := range want {
			if !strings.HasPrefix(replies[i], w) {
				t.Errorf("reply %d %q; want %q…", i+1, replies[i], w)
			}
		}
	})

	// 2,000 messages, 2 recipients, reject@ every 10th, plus 40
	// transactions with only reject@, over 20 pipelining connections.
	t.Run("data", func(t *testing.T) {
		envs := pfxLoad("data", 2000, 40)
		s := pfxRun(t, p, "data", ChunkingOff, 20, envs)
		if c := s.cmds["data"]; c[0] != 2000 {
			t.Errorf("Postfix counted DATA %v; want 2000 accepted", c)
		}
		if c := s.cmds["bdat"]; c[1] != 0 {
			t.Errorf("Postfix counted BDAT %v; want none with Chunking off", c)
		}
	})

	// The same with BDAT (4 transactions in flight): the 40 transactions
	// without a valid recipient get 554 5.5.1 to their BDAT, inside the
	// pipeline, and the connections go on (no ErrOutOfStep, no fallback to
	// DATA, a clean QUIT each).
	t.Run("bdat", func(t *testing.T) {
		envs := pfxLoad("bdat", 2000, 40)
		s := pfxRun(t, p, "bdat", ChunkingAuto, 20, envs)
		if c := s.cmds["bdat"]; c[0] != 2000 || c[1] != 2040 {
			t.Errorf("Postfix counted BDAT %v; want 2000 accepted of 2040", c)
		}
		if c := s.cmds["data"]; c[1] != 0 {
			t.Errorf("Postfix counted DATA %v; want none (BDAT throughout)", c)
		}
	})

	// tempfail@ is refused with 450 4.2.0: deferred, never delivered, in
	// both modes, alone in its transaction or beside a good recipient.
	for _, mode := range []struct {
		tag      string
		chunking ChunkingPolicy
	}{{"tfdata", ChunkingOff}, {"tfbdat", ChunkingAuto}} {
		t.Run("tempfail-"+mode.tag[2:], func(t *testing.T) {
			var envs []*Envelope
			for i := 1; i <= 200; i++ {
				rc := []string{fmt.Sprintf("%s%d.0@%s", mode.tag, i, pfxDomain)}
				switch {
				case i%20 == 10:
					rc = []string{"tempfail@" + pfxDomain}
				case i%4 == 0:
					rc = append(rc, "tempfail@"+pfxDomain)
				}
				envs = append(envs, pfxEnvelope(mode.tag, i, rc))
			}
			pfxRun(t, p, mode.tag, mode.chunking, 4, envs)
		})
	}

	// Nothing was delivered to tempfail@ or reject@ at all, and nothing
	// waits in Postfix's queue.
	for _, l := range p.logSince(0) {
		if strings.Contains(l, "status=sent") && (strings.Contains(l, "to=<tempfail@") || strings.Contains(l, "to=<reject@")) {
			t.Errorf("Postfix delivered a refused recipient: %s", l)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, pfxPostqueue, "-c", p.conf, "-p").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Mail queue is empty") {
		t.Errorf("postqueue -p: %v\n%s", err, out)
	}
	t.Logf("all runs in %v", time.Since(begin).Round(time.Millisecond))
}
