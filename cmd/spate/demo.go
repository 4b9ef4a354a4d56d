package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spate-mta/spate/bench/demo"
	"github.com/spate-mta/spate/bench/sink"
	"github.com/spate-mta/spate/engine"
	"github.com/spate-mta/spate/engine/campaign"
	"github.com/spate-mta/spate/tuning"
)

func init() {
	register("demo", "run a demo campaign offline: generated list, fake DNS, embedded sink", runDemo)
}

func runDemo(args []string) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	dir := fs.String("dir", "demo-out", "folder for the demo's list, template, config, journal and results")
	n := fs.Int("recipients", 20000, "recipients in the generated list")
	domains := fs.Int("domains", 200, "domains in the generated list")
	latency := fs.Duration("latency", 2*time.Millisecond, "sink reply latency (a remote MX round trip)")
	progress := fs.String("progress", "auto", "progress display: auto, tty, plain, off")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "spate demo:", err)
		return exitRuntime
	}
	out := os.Stdout

	// 1. The list, the template and the tuning file, as a user would have them.
	mix := demo.Mix(*domains)
	listPath := filepath.Join(*dir, "list.csv")
	lf, err := os.Create(listPath)
	if err == nil {
		err = demo.WriteList(lf, *n, mix, 42, 2)
		if cerr := lf.Close(); err == nil {
			err = cerr
		}
	}
	tmplPath := filepath.Join(*dir, "newsletter.eml")
	if err == nil {
		err = os.WriteFile(tmplPath, demo.Newsletter, 0o644)
	}
	cfgPath := filepath.Join(*dir, "tuning.toml")
	if err == nil {
		// The warm-up schedule starts today, so ip2 is on its first day.
		cfgText := strings.Replace(string(tuning.DemoConfig), "start = 2026-11-22", "start = "+time.Now().Format("2006-01-02"), 1)
		err = os.WriteFile(cfgPath, []byte(cfgText), 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "spate demo:", err)
		return exitRuntime
	}
	for _, p := range []string{"list.journal", "list.results.csv", "suppressed.txt"} {
		os.Remove(filepath.Join(*dir, p)) // a fresh campaign each run
	}

	// 2. The fake Internet: DNS for the demo domains, the sink as every MX.
	zone := demo.ZoneFor(mix, "127.0.0.1")
	dnsAddr, err := zone.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "spate demo: dns:", err)
		return exitRuntime
	}
	defer zone.Close()
	srv, err := sink.Start(sink.Config{
		Addr: "127.0.0.1:0", Hostname: "mx.demo.test", Latency: *latency, Size: 10 << 20, EightBitMIME: true, Chunking: true,
		Faults: []sink.RateFault{{Domain: "yahoo.test", Defer: 0.03}, {Domain: "outlook.test", Defer: 0.01}}, Seed: 7,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "spate demo: sink:", err)
		return exitRuntime
	}
	defer srv.Close()
	_, portStr, _ := net.SplitHostPort(srv.Addr())
	port, _ := strconv.Atoi(portStr)

	fmt.Fprintf(out, "spate demo: %d recipients over %d domains → sink %s (MX answers from fake DNS %s)\n", *n, *domains, srv.Addr(), dnsAddr)
	fmt.Fprintf(out, "files: %s, %s, %s\n\n", listPath, tmplPath, cfgPath)

	// 3. The plan: what the limits predict.
	cfg, err := tuning.Load(cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "spate demo:", err)
		return exitRuntime
	}
	res, err := engine.NewResolver(engine.ResolverConfig{Server: dnsAddr, Port: uint16(port), Timeout: 2 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "spate demo:", err)
		return exitRuntime
	}
	lf2, _ := os.Open(listPath)
	plan, err := campaign.MakePlan(context.Background(), campaign.PlanOptions{List: lf2, ListName: listPath, Config: cfg, Resolver: res,
		PerConnRate: 1 / (2*latency.Seconds() + 0.0005)})
	lf2.Close()
	res.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "spate demo: plan:", err)
		return exitRuntime
	}
	printPlan(out, plan, 8)
	fmt.Fprintln(out)

	// 4. The campaign, exactly as `spate send` runs it.
	f := &sendFlags{list: listPath, template: tmplPath, config: cfgPath, dns: dnsAddr, mxPort: port,
		unsubURL: "https://news.example.com/unsubscribe?e={{email}}", unsubMailto: "unsubscribe@news.example.com",
		campaignID: "demo", progress: *progress, linger: 30 * time.Second, comma: ",",
		suppression: filepath.Join(*dir, "suppressed.txt")}
	start := time.Now()
	code := sendCampaign(f, out)
	took := time.Since(start)

	st := srv.Stats()
	fmt.Fprintf(out, "\nsink received %d messages over %d connections\n", st.Messages, st.Connections)
	if plan.Makespan > 0 {
		// The plan models first attempts under the limits; the run also
		// waits for retries of what the sink deferred (retry_interval).
		first, retried := firstPass(f.results, start)
		pct := func(d time.Duration) float64 {
			return 100 * (d.Seconds() - plan.Makespan.Seconds()) / plan.Makespan.Seconds()
		}
		r := func(d time.Duration) time.Duration { return d.Round(100 * time.Millisecond) }
		if first > 0 {
			fmt.Fprintf(out, "plan predicted %s; first attempts done in %s (error %+.0f%%); all done in %s, with retries of %d deferred recipients\n",
				r(plan.Makespan), r(first), pct(first), r(took), retried)
		} else {
			fmt.Fprintf(out, "plan predicted %s, measured %s (error %+.0f%%)\n", r(plan.Makespan), r(took), pct(took))
		}
	}
	return code
}

// firstPass reads a results CSV and returns when the last recipient settled
// at its first attempt (relative to start) and how many needed more.
func firstPass(path string, start time.Time) (time.Duration, int) {
	var last time.Time
	retried := 0
	err := campaign.ReadResultsCSV(path, func(r *campaign.Result) {
		if r.Attempts != 1 {
			retried++
		} else if r.Completed.After(last) {
			last = r.Completed
		}
	})
	if err != nil || last.IsZero() {
		return 0, retried
	}
	return last.Sub(start), retried
}
