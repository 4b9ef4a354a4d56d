package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/spate-mta/spate/engine"
)

func init() {
	register("resolve", "show the MX hosts, addresses, site and provider for domains", runResolve)
}

func runResolve(args []string) int {
	fs := flag.NewFlagSet("resolve", flag.ContinueOnError)
	dns := fs.String("dns", "", "DNS server host:port (default: /etc/resolv.conf)")
	routes := fs.String("route", "", "static routes, e.g. '*=127.0.0.1:2525'")
	config := fs.String("config", "", "tuning file, to show the provider and site settings layer")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: spate resolve [--dns host:port] [--route ...] [--config tuning.toml] domain...")
		return exitUsage
	}
	cfg, err := loadConfig(*config)
	if err != nil {
		fmt.Fprintln(os.Stderr, "spate:", err)
		return exitUsage
	}
	rc := engine.ResolverConfig{Server: *dns, Timeout: 5 * time.Second}
	if *routes != "" {
		if rc.Routes, err = engine.ParseRoutes(*routes); err != nil {
			fmt.Fprintln(os.Stderr, "spate: --route:", err)
			return exitUsage
		}
	}
	res, err := engine.NewResolver(rc)
	if err != nil {
		fmt.Fprintln(os.Stderr, "spate:", err)
		return exitUsage
	}
	defer res.Close()
	code := exitOK
	for _, dom := range fs.Args() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		d, err := res.Lookup(ctx, dom)
		cancel()
		if err != nil {
			fmt.Printf("%s: %v\n", dom, err)
			code = exitRuntime
			continue
		}
		hosts := d.Hosts()
		fmt.Printf("%s: site %q provider %q (expires %s)\n", dom, cfg.SiteLabel(hosts), cfg.ProviderFor(hosts), d.Expires.Format(time.RFC3339))
		for _, mx := range d.MXs {
			fmt.Printf("  MX %-5d %s %v\n", mx.Pref, mx.Host, mx.Addrs)
		}
	}
	return code
}
