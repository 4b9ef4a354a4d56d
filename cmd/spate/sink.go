package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spate-mta/spate/bench/sink"
)

func init() { register("sink", "run the benchmark SMTP sink (counts, faults, latency)", runSink) }

// rateFlag collects repeated "--defer domain=5%" style values.
type rateFlag struct {
	kind   string
	faults *map[string]*sink.RateFault
}

func (r rateFlag) String() string { return "" }

func (r rateFlag) Set(v string) error {
	for _, item := range strings.Split(v, ",") {
		dom, pct, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || dom == "" {
			return fmt.Errorf("want domain=percent (e.g. gmail.test=5%%), got %q", item)
		}
		p, err := strconv.ParseFloat(strings.TrimSuffix(pct, "%"), 64)
		if err != nil || p < 0 || p > 100 {
			return fmt.Errorf("bad percentage %q in %q", pct, item)
		}
		f := (*r.faults)[strings.ToLower(dom)]
		if f == nil {
			f = &sink.RateFault{Domain: strings.ToLower(dom)}
			(*r.faults)[f.Domain] = f
		}
		switch r.kind {
		case "defer":
			f.Defer = p / 100
		case "bounce":
			f.Bounce = p / 100
		case "drop":
			f.Drop = p / 100
		}
	}
	return nil
}

func runSink(args []string) int {
	fs := flag.NewFlagSet("sink", flag.ContinueOnError)
	var cfg sink.Config
	fs.StringVar(&cfg.Addr, "listen", "127.0.0.1:2525", "listen address (loopback only for tests and benchmarks)")
	fs.StringVar(&cfg.Hostname, "hostname", "sink.test", "name in the greeting and EHLO reply")
	fs.IntVar(&cfg.Loops, "loops", 0, "event loops (0 = number of CPUs)")
	fs.BoolVar(&cfg.NoPipelining, "no-pipelining", false, "do not advertise PIPELINING")
	fs.Int64Var(&cfg.Size, "size", 0, "advertise and enforce SIZE (bytes; 0 = none)")
	fs.BoolVar(&cfg.EightBitMIME, "8bitmime", true, "advertise 8BITMIME")
	fs.BoolVar(&cfg.SMTPUTF8, "smtputf8", false, "advertise SMTPUTF8")
	fs.BoolVar(&cfg.Chunking, "chunking", true, "advertise CHUNKING and accept BDAT (RFC 3030), as Gmail and Outlook do (--chunking=false: DATA only)")
	fs.BoolVar(&cfg.StartTLS, "starttls", false, "offer STARTTLS with a generated certificate (goroutine transport)")
	auth := fs.String("auth", "", "require AUTH PLAIN/LOGIN with user:password")
	fs.DurationVar(&cfg.Latency, "latency", 0, "delay every batch of replies (a remote MX round trip)")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "seed for rate faults")
	faults := map[string]*sink.RateFault{}
	fs.Var(rateFlag{"defer", &faults}, "defer", "defer (451 4.7.1 at RCPT) a share of a domain's recipients: gmail.test=5% (* = all; repeatable)")
	fs.Var(rateFlag{"bounce", &faults}, "bounce", "bounce (550 5.7.1 at RCPT) a share of a domain's recipients: yahoo.test=2%")
	fs.Var(rateFlag{"drop", &faults}, "drop", "drop the connection during DATA for a share of a domain's recipients")
	every := fs.Duration("stats-every", 5*time.Second, "print counters this often (0 = only at exit)")
	duration := fs.Duration("duration", 0, "exit after this long (0 = until interrupted)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: spate sink [--listen 127.0.0.1:2525] [--latency 100ms] [--defer dom=5%] [--bounce dom=2%] [--drop dom=1%]")
		fmt.Fprintln(fs.Output(), "\nLocal parts script faults: tempfail@ (450), permfail@ (550 5.1.1), 421@ (421 and close),\nslow-N@ (replies delayed N ms), drop-in-data@ (connection closed in DATA).")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "spate sink: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if *auth != "" {
		u, p, ok := strings.Cut(*auth, ":")
		if !ok {
			fmt.Fprintln(os.Stderr, "spate sink: --auth wants user:password")
			return exitUsage
		}
		cfg.Auth = &sink.AuthConfig{User: u, Pass: p}
	}
	for _, f := range faults {
		cfg.Faults = append(cfg.Faults, *f)
	}
	srv, err := sink.Start(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "spate sink: %v\n", err)
		return exitRuntime
	}
	fmt.Fprintf(os.Stderr, "spate sink: listening on %s\n", srv.Addr())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	var tick <-chan time.Time
	if *every > 0 {
		t := time.NewTicker(*every)
		defer t.Stop()
		tick = t.C
	}
	var done <-chan time.Time
	if *duration > 0 {
		done = time.After(*duration)
	}
loop:
	for {
		select {
		case <-tick:
			fmt.Fprintln(os.Stderr, "spate sink:", srv.Stats())
		case <-sig:
			break loop
		case <-done:
			break loop
		}
	}
	st := srv.Stats()
	if err := srv.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "spate sink: close: %v\n", err)
	}
	fmt.Println(st)
	return exitOK
}
