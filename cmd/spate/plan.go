package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spate-mta/spate/engine"
	"github.com/spate-mta/spate/engine/campaign"
	"github.com/spate-mta/spate/tuning"
)

func init() {
	register("plan", "predict per-site and overall campaign time under the configured limits", runPlan)
}

func runPlan(args []string) int {
	fs := flag.NewFlagSet("plan", flag.ContinueOnError)
	list := fs.String("list", "", "recipient list (CSV)")
	config := fs.String("config", "", "tuning file (TOML); empty = built-in defaults")
	resolve := fs.Bool("resolve", false, "resolve MX to group domains into sites (else one site per domain)")
	dns := fs.String("dns", "", "DNS server host:port (with --resolve)")
	routes := fs.String("route", "", "static routes (with --resolve)")
	perConn := fs.Float64("per-conn-rate", 50, "messages/s one pipelined connection sustains (about 1/RTT)")
	engineRate := fs.Float64("engine-rate", 0, "cap on the whole campaign's messages/s (0 = none)")
	top := fs.Int("top", 20, "sites to list")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *list == "" {
		fmt.Fprintln(os.Stderr, "usage: spate plan --list list.csv [--config tuning.toml] [--resolve --dns host:port]")
		return exitUsage
	}
	cfg, err := loadConfig(*config)
	if err != nil {
		fmt.Fprintln(os.Stderr, "spate:", err)
		return exitUsage
	}
	f, err := os.Open(*list)
	if err != nil {
		fmt.Fprintln(os.Stderr, "spate:", err)
		return exitUsage
	}
	defer f.Close()
	o := campaign.PlanOptions{List: f, ListName: *list, Config: cfg, PerConnRate: *perConn, EngineRate: *engineRate}
	if *resolve {
		rc := engine.ResolverConfig{Server: *dns, Timeout: 5 * time.Second}
		if *routes != "" {
			if rc.Routes, err = engine.ParseRoutes(*routes); err != nil {
				fmt.Fprintln(os.Stderr, "spate: --route:", err)
				return exitUsage
			}
		}
		if o.Resolver, err = engine.NewResolver(rc); err != nil {
			fmt.Fprintln(os.Stderr, "spate:", err)
			return exitUsage
		}
	}
	p, err := campaign.MakePlan(context.Background(), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "spate:", err)
		return exitUsage
	}
	printPlan(os.Stdout, p, *top)
	return exitOK
}

func loadConfig(path string) (*tuning.Config, error) {
	if path == "" {
		return tuning.Parse("(built-in defaults)", nil)
	}
	return tuning.Load(path)
}

func printPlan(w io.Writer, p *campaign.Plan, top int) {
	round := time.Second
	if p.Makespan < time.Minute {
		round = 100 * time.Millisecond
	}
	fmt.Fprintf(w, "plan: %d recipients, %d domains, %d sites; predicted makespan %s (set by %s)\n",
		p.Recipients+p.Unroutable, p.Domains, len(p.Sites), p.Makespan.Round(round), p.Bound)
	if p.Unroutable > 0 {
		fmt.Fprintf(w, "      %d recipients are in domains that accept no mail (null MX or no such domain): they bounce at once\n", p.Unroutable)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SITE\tPROVIDER\tDOMAINS\tRCPTS\tSOURCES\tCONNS\tMSGS/S\tBOUND\tTIME")
	for i, s := range p.Sites {
		if top > 0 && i == top {
			fmt.Fprintf(tw, "… %d more sites\n", len(p.Sites)-top)
			break
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%.1f\t%s\t%s\n", trunc(s.Site, 40), s.Provider, s.Domains, s.Recipients,
			s.Sources, s.ConnLimit, s.Rate, s.Bound, s.Duration.Round(100*time.Millisecond))
	}
	tw.Flush()
}
