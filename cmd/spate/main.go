// Command spate is the bulk-mail engine's CLI: send, demo, plan, bench, sink,
// config check|explain, resolve. Flags live here only; packages take structs.
package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"sort"
)

// Exit codes (documented in README.md).
const (
	exitOK       = 0 // every recipient reached a final state
	exitUsage    = 1 // usage or configuration error
	exitRuntime  = 2 // runtime failure
	exitDeferred = 3 // finished, but some recipients are still deferred
)

// command is one subcommand; run gets the arguments after its name and
// returns the process exit code.
type command struct {
	summary string
	run     func(args []string) int
}

var commands = map[string]command{}

// register adds a subcommand; each lives in its own file.
func register(name, summary string, run func(args []string) int) {
	commands[name] = command{summary: summary, run: run}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: spate <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-8s %s\n", n, commands[n].summary)
	}
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(exitUsage)
	}
	c, ok := commands[os.Args[1]]
	if !ok {
		if os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
			usage()
			os.Exit(exitOK)
		}
		fmt.Fprintf(os.Stderr, "spate: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(exitUsage)
	}
	os.Exit(profiled(func() int { return c.run(os.Args[2:]) }))
}

// profiled runs f under a CPU profile written to $SPATE_CPUPROFILE, if set
// (for `go tool pprof bin/spate $SPATE_CPUPROFILE`).
func profiled(f func() int) int {
	path := os.Getenv("SPATE_CPUPROFILE")
	if path == "" {
		return f()
	}
	pf, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(pf)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "spate: SPATE_CPUPROFILE:", err)
		return f()
	}
	code := f()
	pprof.StopCPUProfile()
	pf.Close()
	return code
}
