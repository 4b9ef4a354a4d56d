package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spate-mta/spate/tuning"
)

func init() {
	register("config", "check a tuning file, or explain the settings for a destination", runConfig)
}

func runConfig(args []string) int {
	if len(args) == 0 || (args[0] != "check" && args[0] != "explain") {
		fmt.Fprintln(os.Stderr, "usage: spate config check FILE\n       spate config explain FILE --domain D [--mx host1,host2] [--source NAME]")
		return exitUsage
	}
	sub := args[0]
	fs := flag.NewFlagSet("config "+sub, flag.ContinueOnError)
	domain := fs.String("domain", "", "destination domain")
	mx := fs.String("mx", "", "comma-separated MX hosts in preference order (for provider and site layers)")
	source := fs.String("source", "", "egress source name (for the source layer)")
	// Accept the file before or after the flags.
	var file string
	rest := args[1:]
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		file, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return exitUsage
	}
	if file == "" && fs.NArg() > 0 {
		file = fs.Arg(0)
	}
	if file == "" {
		fmt.Fprintln(os.Stderr, "spate config: no file given")
		return exitUsage
	}
	cfg, err := tuning.Load(file)
	if err != nil {
		fmt.Fprintln(os.Stderr, "spate:", err)
		return exitUsage
	}
	if sub == "check" {
		fmt.Printf("%s: ok (%d sources, %d rules, %d bounce rules)\n", file, len(cfg.Sources()), len(cfg.Rules()), len(cfg.BounceRules()))
		return exitOK
	}
	if *domain == "" {
		fmt.Fprintln(os.Stderr, "spate config explain: --domain is required")
		return exitUsage
	}
	q := tuning.Query{Domain: strings.ToLower(*domain), Source: *source}
	if *mx != "" {
		q.MXHosts = strings.Split(strings.ToLower(*mx), ",")
	}
	if p := cfg.ProviderFor(q.MXHosts); p != "" {
		fmt.Printf("provider: %s\n", p)
	}
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tVALUE\tSET BY\tWHERE")
	for _, f := range cfg.Explain(q) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Key, f.Value, f.Layer, f.Where)
	}
	tw.Flush()
	return exitOK
}
