// Package scenarios names the bench runs that `spate bench --scenarios`
// and `make bench` perform, each a bench.Config with modest default counts
// (the bench machine has two shared cores).
package scenarios

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spate-mta/spate/bench"
)

// Scenario is one named run: Apply sets its parameters on a base config.
type Scenario struct {
	Name, Desc string
	// N is the default message count per peer (overridden by a base N > 0).
	N     int
	Apply func(*bench.Config)
}

// DefaultN is the default message count per peer per scenario.
const DefaultN = 20000

// All lists the scenarios in report order.
var All = []Scenario{
	{Name: "throughput-1k", Desc: "Raw throughput: 100 sessions, 1 KB bodies, 1 recipient, no sink latency.",
		N: DefaultN, Apply: func(c *bench.Config) { c.Sessions, c.Size, c.Rcpts = 100, 1000, 1 }},
	{Name: "chunking-1k", Desc: "throughput-1k with a sink offering CHUNKING: spate sends BDAT, several whole messages per write (no 354 round trip); the other peers have no BDAT and send DATA.",
		N: DefaultN, Apply: func(c *bench.Config) { c.Sessions, c.Size, c.Rcpts, c.Chunking = 100, 1000, 1, true }},
	{Name: "large-50k", Desc: "Large bodies: 100 sessions, 50 KB bodies.",
		N: 5000, Apply: func(c *bench.Config) { c.Sessions, c.Size, c.Rcpts = 100, 50000, 1 }},
	// 10,000 sessions whose every reply takes 100 ms: a pipelining client
	// needs about two round trips per message, a lock-step one about five,
	// plus greeting and EHLO; 20,000 messages is two messages per session,
	// which ends in a few seconds per peer.
	{Name: "latency-10k", Desc: "Remote-MX round trips: 10,000 sessions, 1 KB, the sink answers every command 100 ms late.",
		N: 20000, Apply: func(c *bench.Config) {
			c.Sessions, c.Size, c.Rcpts, c.Latency = 10000, 1000, 1, 100*time.Millisecond
		}},
	{Name: "tls", Desc: "STARTTLS on every session: 100 sessions, 1 KB (peers without TLS are skipped).",
		N: DefaultN, Apply: func(c *bench.Config) { c.Sessions, c.Size, c.Rcpts, c.StartTLS = 100, 1000, 1, true }},
	{Name: "faults", Desc: "Sink faults on every recipient domain: 5 % defers, 2 % bounces, 1 % dropped connections.",
		N: DefaultN, Apply: func(c *bench.Config) {
			c.Sessions, c.Size, c.Rcpts = 100, 1000, 1
			c.Faults = []bench.Fault{{Domain: "*", Defer: 0.05, Bounce: 0.02, Drop: 0.01}}
		}},
}

// Names returns the scenario names in order.
func Names() []string {
	var ns []string
	for _, s := range All {
		ns = append(ns, s.Name)
	}
	return ns
}

// Select parses "all" or a comma-separated list of names.
func Select(spec string) ([]Scenario, error) {
	spec = strings.TrimSpace(spec)
	if spec == "all" {
		return All, nil
	}
	var out []Scenario
	for _, n := range strings.Split(spec, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		found := false
		for _, s := range All {
			if s.Name == n {
				out, found = append(out, s), true
			}
		}
		if !found {
			return nil, fmt.Errorf("scenarios: unknown scenario %q (all, %s)", n, strings.Join(Names(), ", "))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("scenarios: none selected (all, %s)", strings.Join(Names(), ", "))
	}
	return out, nil
}

// Config returns the scenario's config: base (peers, timeout, command,
// N if > 0) with the scenario's parameters, then override applied (the
// caller's explicitly set options; nil = none).
func (s Scenario) Config(base bench.Config, override func(*bench.Config)) bench.Config {
	c := base
	n := c.N
	s.Apply(&c)
	c.N = s.N
	if n > 0 {
		c.N = n
	}
	if override != nil {
		override(&c)
	}
	return c
}

// Run runs each scenario in turn; a scenario whose sink did not start is
// recorded with Err and the others still run.
func Run(ctx context.Context, scs []Scenario, base bench.Config, override func(*bench.Config)) []bench.Scenario {
	var out []bench.Scenario
	for _, s := range scs {
		c := s.Config(base, override)
		if c.Logf != nil {
			c.Logf("bench: scenario %s: %s", s.Name, c.Describe())
		}
		rs, err := bench.Run(ctx, c)
		bs := bench.Scenario{Name: s.Name, Desc: s.Desc, Config: c, Results: rs}
		if err != nil {
			bs.Err = err.Error()
		}
		out = append(out, bs)
	}
	return out
}
