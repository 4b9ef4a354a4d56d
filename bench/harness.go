// Package bench runs SMTP clients ("peers") side by side against one sink
// and reports their throughput, latency, CPU time and peak memory: spate's
// engine, the whole `spate send` product, net/smtp, Postfix's smtp-source
// and the gopipe reference client.
//
// Every peer runs in its own child process, one after the other, against
// the same sink, so its CPU time (user+sys) and peak RSS come from the
// child's rusage and are its own. The sink runs in the harness's process by
// default; its CPU time during each peer's run is reported separately.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spate-mta/spate/bench/peers"
)

// Peer names, in the order a run uses by default.
const (
	PeerSpate      = "spate"
	PeerSpateSend  = "spate-send"
	PeerNetSMTP    = "netsmtp"
	PeerSMTPSource = "smtp-source"
	PeerGopipe     = "gopipe"
)

// AllPeers lists every peer the harness knows.
var AllPeers = []string{PeerSpate, PeerSpateSend, PeerNetSMTP, PeerSMTPSource, PeerGopipe}

// Fault is a per-domain fault rate injected by the sink (fractions 0..1).
type Fault struct {
	Domain              string
	Defer, Bounce, Drop float64
}

// SinkOptions configure the sink a run starts.
type SinkOptions struct {
	StartTLS bool
	// Chunking makes the sink offer CHUNKING (BDAT, RFC 3030).
	Chunking bool
	// Latency delays every reply (a remote MX round trip).
	Latency time.Duration
	Faults  []Fault
}

// Sink is a running SMTP sink as the harness sees it.
type Sink interface {
	Addr() string
	// Messages is the number of messages accepted so far.
	Messages() int64
	Close() error
}

// Config describes one run: every peer in Peers sends N messages.
type Config struct {
	Sessions int
	N        int
	Size     int // body bytes
	Rcpts    int // recipients per message
	StartTLS bool
	// Chunking: the sink offers CHUNKING and spate sends with BDAT, whole
	// transactions pipelined (spate-send too, `chunking = true` in its tuning
	// file; the other peers keep DATA: they have no BDAT).
	Chunking bool
	Latency  time.Duration // sink reply latency
	Faults   []Fault
	// Peers to run (nil = AllPeers).
	Peers []string
	// Loops is the spate engine's event-loop count (0 = NumCPU).
	Loops int
	// Timeout bounds each peer's run (0 = 2 minutes).
	Timeout time.Duration
	// Repeat runs every peer this many times (rounds, order rotated) and
	// reports the run with the median rate (0 = 1).
	Repeat int

	// SinkAddr targets an already running sink instead of starting one;
	// sink-side counts are then unknown.
	SinkAddr string
	// StartSink starts the sink when SinkAddr is empty (the CLI passes
	// bench/sink in its own process; tests pass their own).
	StartSink func(SinkOptions) (Sink, error)
	// Self is the command line that runs `bench-peer` (e.g. {"/usr/bin/spate",
	// "bench-peer"}); the spate and netsmtp peers are skipped without it.
	// SelfEnv is added to its environment.
	Self    []string
	SelfEnv []string
	// Send is the command line that runs `spate send` (e.g. {"/usr/bin/spate",
	// "send"}) for the spate-send peer, which is skipped without it; SelfEnv
	// is added to its environment too.
	Send []string
	// Domains is the number of domains in the spate-send peer's generated
	// list (0 = DefaultDomains).
	Domains int
	// SMTPSource is the smtp-source binary ("" = /usr/sbin/smtp-source, then $PATH).
	SMTPSource string
	// GopipeDir is the gopipe source folder ("" = /work/shared/peers/gopipe);
	// it is built with `go build` into WorkDir.
	GopipeDir string
	// WorkDir holds built binaries ("" = a temporary directory per Run).
	WorkDir string
	// Logf receives progress lines (nil = none).
	Logf func(format string, args ...any)
}

// DefaultGopipeDir is where gopipe's source is looked for.
const DefaultGopipeDir = "/work/shared/peers/gopipe"

func (c *Config) defaults() {
	if c.Sessions <= 0 {
		c.Sessions = 100
	}
	if c.N <= 0 {
		c.N = 20000
	}
	if c.Size < 0 {
		c.Size = 0
	}
	if c.Rcpts <= 0 {
		c.Rcpts = 1
	}
	if c.Peers == nil {
		c.Peers = AllPeers
	}
	if c.Timeout <= 0 {
		c.Timeout = 2 * time.Minute
	}
	if c.Repeat <= 0 {
		c.Repeat = 1
	}
	if c.Domains <= 0 {
		c.Domains = DefaultDomains
	}
	if c.GopipeDir == "" {
		c.GopipeDir = DefaultGopipeDir
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
}

// Result is one peer's outcome in one run. Exactly one of Skipped, Err or
// the measurements is meaningful: a peer that did not run is never zero.
type Result struct {
	Peer    string
	Skipped string // why the peer did not run ("" = it ran)
	Err     string // why the run failed ("" = it completed)

	Sent, Failed int64         // messages accepted / not accepted, by the peer's count
	SinkMessages int64         // accepted by the sink during the run (-1 = unknown)
	Wall         time.Duration // child start to exit, measured by the harness
	P50, P99     time.Duration // per-message latency; 0 = the peer cannot report it
	CPU          time.Duration // child user+sys
	MaxRSS       int64         // child peak RSS, bytes
	SinkCPU      time.Duration // the harness process (the sink) during the run; 0 = unknown
	// Note qualifies a run that completed: messages never attempted, or a
	// sink count that differs from the peer's.
	Note string
}

func (r *Result) addNote(s string) {
	if r.Note != "" {
		r.Note += "; "
	}
	r.Note += s
}

// Ran reports whether the peer ran to completion.
func (r Result) Ran() bool { return r.Skipped == "" && r.Err == "" }

// Messages is the count msgs/s is computed from: the sink's when known,
// else the peer's.
func (r Result) Messages() int64 {
	if r.SinkMessages >= 0 {
		return r.SinkMessages
	}
	return r.Sent
}

// Rate is messages accepted per second of wall time (0 if it did not run).
func (r Result) Rate() float64 {
	if !r.Ran() || r.Wall <= 0 {
		return 0
	}
	return float64(r.Messages()) / r.Wall.Seconds()
}

// HasLatency reports whether the peer measured per-message latency.
func (r Result) HasLatency() bool { return r.P50 > 0 || r.P99 > 0 }

// Run starts (or targets) the sink and runs every peer of cfg in turn.
// A peer that cannot run is returned with Skipped set; one that fails with
// Err set. The error is for the harness itself (the sink did not start).
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	cfg.defaults()
	raiseNoFile()
	if cfg.WorkDir == "" {
		d, err := os.MkdirTemp("", "spate-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		cfg.WorkDir = d
	}
	var sk Sink
	addr := cfg.SinkAddr
	if addr == "" {
		if cfg.StartSink == nil {
			return nil, errors.New("bench: neither SinkAddr nor StartSink set")
		}
		var err error
		sk, err = cfg.StartSink(SinkOptions{StartTLS: cfg.StartTLS, Chunking: cfg.Chunking, Latency: cfg.Latency, Faults: cfg.Faults})
		if err != nil {
			return nil, fmt.Errorf("bench: sink: %w", err)
		}
		defer sk.Close()
		addr = sk.Addr()
	}
	// Rounds: every peer once per round; later rounds rotate the order so
	// that no peer always runs first (a warm sink) or last.
	runs := make(map[string][]Result, len(cfg.Peers))
	for round := 0; round < cfg.Repeat; round++ {
		for k := range cfg.Peers {
			p := cfg.Peers[(k+round)%len(cfg.Peers)]
			if prev := runs[p]; len(prev) > 0 && !prev[0].Ran() {
				continue // skipped or failed once: do not retry
			}
			if ctx.Err() != nil {
				runs[p] = []Result{{Peer: p, Skipped: "interrupted", SinkMessages: -1}}
				continue
			}
			cfg.Logf("bench: %s: %d messages, %d sessions, %d B, %d rcpt(s) → %s", p, cfg.N, cfg.Sessions, cfg.Size, cfg.Rcpts, addr)
			r := runPeer(ctx, &cfg, p, addr, sk)
			if r.Skipped != "" {
				cfg.Logf("bench: %s: skipped (%s)", p, r.Skipped)
			} else if r.Err != "" {
				cfg.Logf("bench: %s: failed (%s)", p, r.Err)
			}
			if !r.Ran() {
				runs[p] = []Result{r}
				continue
			}
			runs[p] = append(runs[p], r)
		}
	}
	out := make([]Result, 0, len(cfg.Peers))
	for _, p := range cfg.Peers {
		out = append(out, median(runs[p]))
	}
	return out, nil
}

// median returns the run with the median rate (the lower middle one for an
// even count), noting how many runs it was chosen from.
func median(rs []Result) Result {
	if len(rs) == 1 {
		return rs[0]
	}
	sorted := append([]Result(nil), rs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Rate() < sorted[j].Rate() })
	m := sorted[(len(sorted)-1)/2]
	m.addNote(fmt.Sprintf("median of %d runs (%.0f–%.0f msgs/s)", len(rs), sorted[0].Rate(), sorted[len(sorted)-1].Rate()))
	return m
}

// peerCmd is how one peer is run.
type peerCmd struct {
	path string
	args []string
	env  []string
	// parse reads the child's stdout into r (nil = no report).
	parse func(out []byte, r *Result) error
	// okExit accepts a non-zero exit when parse succeeded (gopipe exits 1
	// when some messages failed).
	okExit bool
	// cleanup, if set, runs after the child has exited and been counted.
	cleanup func()
}

func runPeer(ctx context.Context, cfg *Config, name, addr string, sk Sink) Result {
	r := Result{Peer: name, SinkMessages: -1}
	pc, skip := resolvePeer(cfg, name, addr)
	if skip != "" {
		r.Skipped = skip
		return r
	}
	if pc.cleanup != nil {
		defer pc.cleanup()
	}
	var before int64
	if sk != nil {
		before = sk.Messages()
	}
	cctx, cancel := context.WithTimeout(ctx, cfg.Timeout+15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, pc.path, pc.args...)
	cmd.Env = append(os.Environ(), pc.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	self0 := selfCPU()
	t0 := time.Now()
	err := cmd.Start()
	var hwm int64
	if err == nil {
		stopPoll := make(chan struct{})
		polled := make(chan int64, 1)
		go pollHWM(cmd.Process.Pid, stopPoll, polled)
		err = cmd.Wait()
		close(stopPoll)
		hwm = <-polled
	}
	r.Wall = time.Since(t0)
	r.SinkCPU = selfCPU() - self0
	if sk != nil {
		// Messages accepted by the sink are counted when their final dot
		// is answered, before the client can have exited.
		r.SinkMessages = sk.Messages() - before
	}
	if ps := cmd.ProcessState; ps != nil {
		r.CPU = ps.UserTime() + ps.SystemTime()
		// The child's ru_maxrss is no good: Linux carries the parent's
		// high-water mark into it at exec (the sink shares this process),
		// so every peer would show at least the harness's peak. VmHWM of
		// the child's own address space, sampled while it runs, is used
		// instead, or the peer's own report when it gives one.
		r.MaxRSS = hwm
		if r.MaxRSS == 0 {
			if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
				r.MaxRSS = ru.Maxrss * 1024 // Linux reports KB
				r.addNote("peak RSS from rusage (includes the harness's)")
			}
		}
	}
	var perr error
	if pc.parse != nil {
		perr = pc.parse(stdout.Bytes(), &r)
	} else {
		// smtp-source reports nothing: the sink's count, or all N on a
		// clean exit when the sink is not ours to ask.
		r.Sent = int64(cfg.N)
		if r.SinkMessages >= 0 {
			r.Sent = r.SinkMessages
		} else {
			r.addNote("count assumed from a clean exit (external sink)")
		}
		r.Failed = int64(cfg.N) - r.Sent
	}
	if attempted := r.Sent + r.Failed; attempted < int64(cfg.N) && perr == nil {
		r.addNote(fmt.Sprintf("%d of %d messages never attempted", int64(cfg.N)-attempted, cfg.N))
	}
	r.Failed = int64(cfg.N) - r.Sent
	if r.SinkMessages >= 0 && r.SinkMessages != r.Sent && perr == nil {
		r.addNote(fmt.Sprintf("the sink accepted %d", r.SinkMessages))
	}
	switch {
	case cctx.Err() != nil:
		r.Err = fmt.Sprintf("killed after %s", cfg.Timeout+15*time.Second)
	case err != nil && !(pc.okExit && perr == nil):
		r.Err = fmt.Sprintf("%v: %s", err, tail(stderr.String()))
	case perr != nil:
		r.Err = perr.Error()
	}
	return r
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// resolvePeer returns how to run name, or why it cannot run.
func resolvePeer(cfg *Config, name, addr string) (pc peerCmd, skip string) {
	switch name {
	case PeerSpate, PeerNetSMTP:
		if len(cfg.Self) == 0 {
			return pc, "no bench-peer command configured"
		}
		o := peers.Options{Addr: addr, Sessions: cfg.Sessions, N: cfg.N, Size: cfg.Size, Rcpts: cfg.Rcpts,
			StartTLS: cfg.StartTLS, Timeout: cfg.Timeout}
		if name == PeerSpate {
			o.Loops, o.Chunking = cfg.Loops, cfg.Chunking
		}
		pc.path = cfg.Self[0]
		pc.args = append(append(append([]string{}, cfg.Self[1:]...), name), o.Args()...)
		pc.env = cfg.SelfEnv
		pc.parse = parsePeerJSON
		return pc, ""
	case PeerSpateSend:
		return resolveSend(cfg, addr)
	case PeerSMTPSource:
		if cfg.StartTLS {
			return pc, "smtp-source has no STARTTLS"
		}
		path, why := findSMTPSource(cfg.SMTPSource)
		if why != "" {
			return pc, why
		}
		pc.path = path
		pc.args = []string{"-d", "-s", strconv.Itoa(cfg.Sessions), "-m", strconv.Itoa(cfg.N),
			"-l", strconv.Itoa(cfg.Size), "-r", strconv.Itoa(cfg.Rcpts),
			"-f", "sender@bench.test", "-t", "user@bench.test", "-M", "smtp-source.bench.test", addr}
		return pc, ""
	case PeerGopipe:
		if cfg.StartTLS {
			return pc, "gopipe has no TLS"
		}
		bin, why := buildGopipe(cfg)
		if why != "" {
			return pc, why
		}
		pc.path = bin
		pc.args = []string{"-addr", addr, "-c", strconv.Itoa(cfg.Sessions), "-n", strconv.Itoa(cfg.N),
			"-size", strconv.Itoa(cfg.Size), "-r", strconv.Itoa(cfg.Rcpts), "-timeout", cfg.Timeout.String()}
		pc.parse = parseGopipe
		pc.okExit = true
		return pc, ""
	}
	return pc, "unknown peer"
}

func findSMTPSource(path string) (string, string) {
	if path != "" {
		if _, err := os.Stat(path); err != nil {
			return "", "smtp-source not installed at " + path
		}
		return path, ""
	}
	if _, err := os.Stat("/usr/sbin/smtp-source"); err == nil {
		return "/usr/sbin/smtp-source", ""
	}
	if p, err := exec.LookPath("smtp-source"); err == nil {
		return p, ""
	}
	return "", "smtp-source not installed (Debian package postfix)"
}

// buildGopipe builds gopipe into WorkDir once per Run.
func buildGopipe(cfg *Config) (string, string) {
	bin := filepath.Join(cfg.WorkDir, "gopipe")
	if _, err := os.Stat(bin); err == nil {
		return bin, ""
	}
	if _, err := os.Stat(filepath.Join(cfg.GopipeDir, "main.go")); err != nil {
		return "", "gopipe source not found in " + cfg.GopipeDir
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", "go not on PATH to build gopipe"
	}
	cmd := exec.Command(gobin, "build", "-o", bin, ".")
	cmd.Dir = cfg.GopipeDir
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GO111MODULE=on")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Sprintf("gopipe build failed: %v: %s", err, tail(string(out)))
	}
	return bin, ""
}

// pollHWM samples VmHWM (the peak RSS of the process's own address space)
// from /proc every 10 ms until stop is closed, then sends the largest.
func pollHWM(pid int, stop <-chan struct{}, out chan<- int64) {
	path := fmt.Sprintf("/proc/%d/status", pid)
	var peak int64
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if b, err := os.ReadFile(path); err == nil {
			peak = max(peak, peers.ParseHWM(b))
		}
		select {
		case <-stop:
			out <- peak
			return
		case <-t.C:
		}
	}
}

func parsePeerJSON(out []byte, r *Result) error {
	line := bytes.TrimSpace(out)
	if i := bytes.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:]
	}
	var pr peers.Result
	if err := json.Unmarshal(line, &pr); err != nil {
		return fmt.Errorf("bench: peer report %q: %v", tail(string(out)), err)
	}
	r.Sent, r.Failed = pr.Sent, pr.Failed
	r.P50, r.P99 = time.Duration(pr.P50NS), time.Duration(pr.P99NS)
	if pr.MaxRSS > 0 {
		r.MaxRSS = pr.MaxRSS // exact: read by the peer just before it exits
	}
	if pr.Error != "" {
		return errors.New(pr.Error)
	}
	return nil
}

var gopipeRE = regexp.MustCompile(`sent=(\d+) failed=(\d+)`)

func parseGopipe(out []byte, r *Result) error {
	m := gopipeRE.FindSubmatch(out)
	if m == nil {
		return fmt.Errorf("bench: gopipe report %q not understood", tail(string(out)))
	}
	r.Sent, _ = strconv.ParseInt(string(m[1]), 10, 64)
	r.Failed, _ = strconv.ParseInt(string(m[2]), 10, 64)
	return nil
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// raiseNoFile lifts the soft open-file limit to the hard one, explicitly,
// so that children (smtp-source with 10,000 sessions) inherit it too: Go
// raises it for its own process but restores the original for children
// unless the program set it itself.
func raiseNoFile() {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil && rl.Cur < rl.Max {
		rl.Cur = rl.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
}
