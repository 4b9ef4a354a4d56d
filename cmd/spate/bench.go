package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/spate-mta/spate/bench"
	"github.com/spate-mta/spate/bench/peers"
	"github.com/spate-mta/spate/bench/scenarios"
	"github.com/spate-mta/spate/bench/sink"
)

func init() {
	register("bench", "compare spate (engine and whole `spate send`) with net/smtp, smtp-source and gopipe against one sink", runBench)
	// bench-peer is the child process the harness runs for the spate and
	// netsmtp peers; it is registered only when invoked so that it stays
	// out of the usage list.
	if len(os.Args) > 1 && os.Args[1] == "bench-peer" {
		register("bench-peer", "", func(args []string) int {
			return peers.Main(args, os.Stdout, os.Stderr)
		})
	}
}

func runBench(args []string) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	sessions := fs.Int("sessions", 100, "concurrent sessions per peer")
	n := fs.Int("n", 0, "messages per peer (0 = 20,000, or the scenario's default)")
	size := fs.Int("size", 1000, "body bytes per message")
	rcpts := fs.Int("rcpts", 1, "recipients per message")
	starttls := fs.Bool("starttls", false, "STARTTLS on every session (peers without TLS are skipped)")
	chunking := fs.Bool("chunking", false, "the sink offers CHUNKING and spate and spate-send send BDAT (other peers keep DATA)")
	latency := fs.Duration("latency", 0, "sink reply latency (a remote MX round trip)")
	peerList := fs.String("peers", strings.Join(bench.AllPeers, ","), "peers to run, comma-separated")
	loops := fs.Int("loops", 0, "spate engine event loops (0 = number of CPUs)")
	domains := fs.Int("domains", bench.DefaultDomains, "domains in the spate-send peer's generated list (weighted mix)")
	timeout := fs.Duration("timeout", 2*time.Minute, "bound on each peer's run")
	repeat := fs.Int("repeat", 1, "run every peer this many times (order rotated) and report its median run")
	sinkAddr := fs.String("sink", "", "target a running sink at host:port instead of starting one (sink counts then unknown)")
	scen := fs.String("scenarios", "", "run named scenarios: all or "+strings.Join(scenarios.Names(), ",")+
		" (explicitly set --sessions/--size/--rcpts/--starttls/--latency override each scenario)")
	report := fs.String("report", "", "with --scenarios: write a markdown report here (and an SVG chart beside it, .svg)")
	quiet := fs.Bool("q", false, "no progress lines on stderr")
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: spate bench [flags]\n\nRuns every peer in its own child process against one sink and prints one table.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "spate bench: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}
	var pl []string
	for _, p := range strings.Split(*peerList, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		ok := false
		for _, k := range bench.AllPeers {
			ok = ok || k == p
		}
		if !ok {
			fmt.Fprintf(os.Stderr, "spate bench: unknown peer %q (%s)\n", p, strings.Join(bench.AllPeers, ", "))
			return exitUsage
		}
		pl = append(pl, p)
	}
	if *sessions < 1 || *n < 0 || *size < 0 || *rcpts < 1 || *domains < 1 {
		fmt.Fprintln(os.Stderr, "spate bench: need --sessions ≥ 1, --n ≥ 0, --size ≥ 0, --rcpts ≥ 1, --domains ≥ 1")
		return exitUsage
	}
	if *report != "" && *scen == "" {
		fmt.Fprintln(os.Stderr, "spate bench: --report needs --scenarios")
		return exitUsage
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "spate bench:", err)
		return exitRuntime
	}
	base := bench.Config{
		Sessions: *sessions, N: *n, Size: *size, Rcpts: *rcpts, StartTLS: *starttls, Chunking: *chunking, Latency: *latency,
		Peers: pl, Loops: *loops, Timeout: *timeout, Repeat: *repeat, SinkAddr: *sinkAddr, Self: []string{exe, "bench-peer"},
		Send: []string{exe, "send"}, Domains: *domains, StartSink: startBenchSink,
	}
	if !*quiet {
		base.Logf = func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	if *scen == "" {
		rs, err := bench.Run(ctx, base)
		if err != nil {
			fmt.Fprintln(os.Stderr, "spate bench:", err)
			return exitRuntime
		}
		cfg := base
		if cfg.N == 0 {
			cfg.N = scenarios.DefaultN
		}
		fmt.Printf("%s.\n\n", cfg.Describe())
		bench.WriteTable(os.Stdout, rs)
		return exitOK
	}

	scs, err := scenarios.Select(*scen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "spate bench:", err)
		return exitUsage
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	override := func(c *bench.Config) {
		if set["sessions"] {
			c.Sessions = *sessions
		}
		if set["size"] {
			c.Size = *size
		}
		if set["rcpts"] {
			c.Rcpts = *rcpts
		}
		if set["starttls"] {
			c.StartTLS = *starttls
		}
		if set["chunking"] {
			c.Chunking = *chunking
		}
		if set["latency"] {
			c.Latency = *latency
		}
	}
	base.StartTLS, base.Chunking, base.Latency = false, false, 0
	results := scenarios.Run(ctx, scs, base, override)
	for _, sc := range results {
		fmt.Printf("## %s\n\n%s.\n\n", sc.Name, sc.Config.Describe())
		if sc.Err != "" {
			fmt.Printf("Run failed: %s\n\n", sc.Err)
			continue
		}
		bench.WriteTable(os.Stdout, sc.Results)
		fmt.Println()
	}
	if *report == "" {
		return exitOK
	}
	chart := strings.TrimSuffix(*report, filepath.Ext(*report)) + ".svg"
	host, _ := os.Hostname()
	if err := bench.WriteFileWith(*report, func(f io.Writer) error {
		return bench.WriteReport(f, results, filepath.Base(chart), time.Now(), host)
	}); err != nil {
		fmt.Fprintln(os.Stderr, "spate bench:", err)
		return exitRuntime
	}
	if err := bench.WriteFileWith(chart, func(f io.Writer) error { return bench.WriteChart(f, results) }); err != nil {
		fmt.Fprintln(os.Stderr, "spate bench:", err)
		return exitRuntime
	}
	fmt.Fprintf(os.Stderr, "spate bench: wrote %s and %s\n", *report, chart)
	return exitOK
}

// benchSink adapts bench/sink's Server to bench.Sink.
type benchSink struct{ s *sink.Server }

func (b benchSink) Addr() string    { return b.s.Addr() }
func (b benchSink) Messages() int64 { return b.s.Messages() }
func (b benchSink) Close() error    { return b.s.Close() }

// startBenchSink runs bench/sink in this process on a free loopback port,
// advertising PIPELINING, SIZE and 8BITMIME (and STARTTLS if asked).
func startBenchSink(o bench.SinkOptions) (bench.Sink, error) {
	var faults []sink.RateFault
	for _, f := range o.Faults {
		faults = append(faults, sink.RateFault{Domain: f.Domain, Defer: f.Defer, Bounce: f.Bounce, Drop: f.Drop})
	}
	s, err := sink.Start(sink.Config{
		Addr: "127.0.0.1:0", Hostname: "sink.bench.test", EightBitMIME: true,
		StartTLS: o.StartTLS, Chunking: o.Chunking, Latency: o.Latency, Faults: faults, Seed: 1,
	})
	if err != nil {
		return nil, err
	}
	return benchSink{s}, nil
}
