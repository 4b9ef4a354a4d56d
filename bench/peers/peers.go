// Package peers holds the SMTP clients that spate's bench runs side by side,
// each in its own child process (`spate bench-peer <kind> ...`), so that the
// rusage of the child is that client's CPU time and peak RSS alone:
//
//   - spate: the engine (gnet driver, RFC 2920 pipelining, RFC 3207 STARTTLS)
//     with a Feeder that hands out N envelopes and a Reporter that counts;
//   - netsmtp: the standard library's net/smtp, one goroutine per connection,
//     one command at a time (RFC 5321 without PIPELINING).
//
// A peer writes exactly one line of JSON (a Result) to stdout when it ends.
// The argument parser lives here rather than in cmd/ so that the CLI and the
// tests (which re-exec their own binary as the child) share one definition of
// the child-process protocol.
package peers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Kinds are the peers this package implements.
var Kinds = []string{"spate", "netsmtp"}

// Options describe one peer run. Every peer sends N messages of Size body
// bytes with Rcpts recipients each from sender@bench.test to
// user<k>@bench.test over Sessions connections to Addr.
type Options struct {
	Addr     string
	Sessions int
	N        int
	Size     int
	Rcpts    int
	StartTLS bool
	// Chunking sends with BDAT when the server offers CHUNKING (spate only).
	Chunking bool
	// Loops is the engine's event-loop count (spate only; 0 = NumCPU).
	Loops int
	// Timeout bounds the whole run (0 = 2 minutes).
	Timeout time.Duration
}

// Args renders o as the flags ParseArgs reads.
func (o Options) Args() []string {
	a := []string{"--addr", o.Addr, "--sessions", fmt.Sprint(o.Sessions), "--n", fmt.Sprint(o.N),
		"--size", fmt.Sprint(o.Size), "--rcpts", fmt.Sprint(o.Rcpts)}
	if o.StartTLS {
		a = append(a, "--starttls")
	}
	if o.Chunking {
		a = append(a, "--chunking")
	}
	if o.Loops > 0 {
		a = append(a, "--loops", fmt.Sprint(o.Loops))
	}
	if o.Timeout > 0 {
		a = append(a, "--timeout", o.Timeout.String())
	}
	return a
}

// ErrLoopback is returned for a target that is not a loopback address.
var ErrLoopback = errors.New("peers: target must be a loopback address")

// ParseArgs reads `<kind> --addr A --sessions S --n N --size B --rcpts R
// [--starttls] [--loops L] [--timeout D]`.
func ParseArgs(args []string, stderr io.Writer) (kind string, o Options, err error) {
	if len(args) == 0 {
		return "", o, fmt.Errorf("peers: missing peer kind (one of %s)", strings.Join(Kinds, ", "))
	}
	kind = args[0]
	known := false
	for _, k := range Kinds {
		known = known || k == kind
	}
	if !known {
		return "", o, fmt.Errorf("peers: unknown peer %q (one of %s)", kind, strings.Join(Kinds, ", "))
	}
	fs := flag.NewFlagSet("bench-peer "+kind, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Addr, "addr", "", "sink host:port (loopback only)")
	fs.IntVar(&o.Sessions, "sessions", 10, "concurrent connections")
	fs.IntVar(&o.N, "n", 1000, "messages to send")
	fs.IntVar(&o.Size, "size", 1000, "body bytes per message")
	fs.IntVar(&o.Rcpts, "rcpts", 1, "recipients per message")
	fs.BoolVar(&o.StartTLS, "starttls", false, "use STARTTLS (certificate not verified)")
	fs.BoolVar(&o.Chunking, "chunking", false, "BDAT when the server offers CHUNKING (spate only)")
	fs.IntVar(&o.Loops, "loops", 0, "engine event loops (spate only; 0 = NumCPU)")
	fs.DurationVar(&o.Timeout, "timeout", 2*time.Minute, "bound on the whole run")
	if err := fs.Parse(args[1:]); err != nil {
		return "", o, err
	}
	if fs.NArg() > 0 {
		return "", o, fmt.Errorf("peers: unexpected arguments %q", fs.Args())
	}
	if err := o.check(); err != nil {
		return "", o, err
	}
	return kind, o, nil
}

func (o Options) check() error {
	if o.Sessions < 1 || o.N < 0 || o.Size < 0 || o.Rcpts < 1 {
		return fmt.Errorf("peers: need sessions ≥ 1, n ≥ 0, size ≥ 0, rcpts ≥ 1 (got %d, %d, %d, %d)",
			o.Sessions, o.N, o.Size, o.Rcpts)
	}
	host, _, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return fmt.Errorf("peers: --addr: %v", err)
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%w: %q", ErrLoopback, o.Addr)
	}
	return nil
}

// Result is what a peer reports on stdout (one JSON line).
type Result struct {
	Peer string `json:"peer"`
	// Sent is the number of messages whose final dot was accepted (250);
	// Failed the rest of the N attempted (deferred, bounced, dropped).
	Sent   int64 `json:"sent"`
	Failed int64 `json:"failed"`
	// Rcpts counts recipients accepted.
	Rcpts int64 `json:"rcpts"`
	// Wall is the peer's own time from first dial to last reply.
	WallNS int64 `json:"wall_ns"`
	// P50NS and P99NS are per-message latencies measured by the peer (0 =
	// not measured): spate from Feeder.Next to the last recipient's Outcome,
	// netsmtp from MAIL to the reply to the final dot.
	P50NS int64 `json:"p50_ns"`
	P99NS int64 `json:"p99_ns"`
	// Conns counts connections opened (redials after a drop included).
	Conns int64 `json:"conns"`
	// MaxRSS is the process's VmHWM in bytes just before it reported (0 =
	// unknown): unlike ru_maxrss it excludes the parent's high-water mark
	// that Linux carries over at exec.
	MaxRSS int64  `json:"max_rss"`
	Error  string `json:"error,omitempty"`
}

// Run runs one peer in this process.
func Run(ctx context.Context, kind string, o Options) (Result, error) {
	if err := o.check(); err != nil {
		return Result{}, err
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	switch kind {
	case "spate":
		return RunSpate(ctx, o)
	case "netsmtp":
		return RunNetSMTP(ctx, o)
	}
	return Result{}, fmt.Errorf("peers: unknown peer %q", kind)
}

// Main is the body of `spate bench-peer`: it parses args, runs the peer and
// writes its Result as one JSON line to stdout. It returns 0 when every
// message was attempted (failures by the sink's design included), 1 on a
// usage error and 2 when the run did not complete.
func Main(args []string, stdout, stderr io.Writer) int {
	kind, o, err := ParseArgs(args, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "spate bench-peer:", err)
		return 1
	}
	res, err := Run(context.Background(), kind, o)
	res.Peer = kind
	res.MaxRSS = selfHWM()
	if err != nil {
		res.Error = err.Error()
	}
	b, _ := json.Marshal(res)
	fmt.Fprintf(stdout, "%s\n", b)
	if err != nil {
		fmt.Fprintln(stderr, "spate bench-peer:", err)
		return 2
	}
	return 0
}

// selfHWM returns this process's VmHWM in bytes (0 if unreadable).
func selfHWM() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	return ParseHWM(b)
}

// ParseHWM returns VmHWM in bytes from a /proc/<pid>/status text (0 = absent).
func ParseHWM(status []byte) int64 {
	for _, line := range bytes.Split(status, []byte("\n")) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmHWM:")); ok {
			if f := bytes.Fields(rest); len(f) > 0 {
				kb, _ := strconv.ParseInt(string(f[0]), 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

// bodyText returns a message of header lines plus at least size body bytes
// in 78-column CRLF lines (no line starts with a dot, so it needs no
// stuffing), addressed to rcpt.
func bodyText(rcpt string, size int) []byte {
	var b []byte
	b = append(b, "From: <sender@bench.test>\r\nTo: <"...)
	b = append(b, rcpt...)
	b = append(b, ">\r\nSubject: bench\r\n\r\n"...)
	line := strings.Repeat("X", 76) + "\r\n"
	for n := 0; n < size; n += len(line) {
		b = append(b, line...)
	}
	return b
}

// rcptList returns the r recipient addresses of message i.
func rcptList(i, r int) []string {
	rs := make([]string, r)
	for k := range rs {
		rs[k] = fmt.Sprintf("user%d@bench.test", i*r+k)
	}
	return rs
}
