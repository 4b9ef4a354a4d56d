package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Scenario is one named run and its results, for reports and charts.
type Scenario struct {
	Name, Desc string
	Config     Config
	Results    []Result
	Err        string // the run itself failed (sink did not start)
}

// Columns of the table WriteTable prints.
var tableHeader = []string{"peer", "msgs/s", "p50", "p99", "CPU s", "CPU µs/msg", "peak RSS MB", "spate/peer", "sent", "failed", "sink CPU s"}

// Rows returns the table as text cells. A peer that did not run shows
// "skipped (reason)" or "failed (reason)" in the msgs/s column and blanks
// elsewhere — never a zero that reads like a measurement.
func Rows(rs []Result) [][]string {
	var spate float64
	for _, r := range rs {
		if r.Peer == PeerSpate && r.Ran() {
			spate = r.Rate()
		}
	}
	var rows [][]string
	for _, r := range rs {
		row := []string{r.Peer}
		switch {
		case r.Skipped != "":
			row = append(row, "skipped ("+r.Skipped+")")
			row = pad(row)
		case r.Err != "":
			row = append(row, "failed ("+r.Err+")")
			row = pad(row)
		default:
			row = append(row, fmt.Sprintf("%.0f", r.Rate()))
			if r.HasLatency() {
				row = append(row, fmtDur(r.P50), fmtDur(r.P99))
			} else {
				row = append(row, "n/a", "n/a")
			}
			row = append(row, fmt.Sprintf("%.2f", r.CPU.Seconds()))
			if m := r.Messages(); m > 0 {
				row = append(row, fmt.Sprintf("%.1f", float64(r.CPU.Microseconds())/float64(m)))
			} else {
				row = append(row, "n/a")
			}
			row = append(row, fmt.Sprintf("%.1f", float64(r.MaxRSS)/(1<<20)))
			switch {
			case spate > 0 && r.Rate() > 0:
				row = append(row, fmt.Sprintf("%.2f", spate/r.Rate()))
			default:
				row = append(row, "n/a")
			}
			row = append(row, fmt.Sprint(r.Sent), fmt.Sprint(r.Failed))
			if r.SinkCPU > 0 {
				row = append(row, fmt.Sprintf("%.2f", r.SinkCPU.Seconds()))
			} else {
				row = append(row, "n/a")
			}
		}
		rows = append(rows, row)
	}
	return rows
}

func pad(row []string) []string {
	for len(row) < len(tableHeader) {
		row = append(row, "")
	}
	return row
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000)
	default:
		return fmt.Sprintf("%dµs", d.Microseconds())
	}
}

// WriteTable writes rs as a markdown table, then a list of the notes of
// peers that ran (messages never attempted, sink counts that differ).
func WriteTable(w io.Writer, rs []Result) error {
	var b strings.Builder
	b.WriteString("| " + strings.Join(tableHeader, " | ") + " |\n|")
	for i := range tableHeader {
		if i == 0 {
			b.WriteString("---|")
		} else {
			b.WriteString("---:|")
		}
	}
	b.WriteString("\n")
	for _, row := range Rows(rs) {
		for i := range row {
			row[i] = strings.ReplaceAll(row[i], "|", `\|`)
		}
		b.WriteString("| " + strings.Join(row, " | ") + " |\n")
	}
	notes := false
	for _, r := range rs {
		if r.Ran() && r.Note != "" {
			if !notes {
				b.WriteString("\n")
				notes = true
			}
			fmt.Fprintf(&b, "- %s: %s\n", r.Peer, r.Note)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Describe is the one-line summary of a run's parameters.
func (c Config) Describe() string {
	s := fmt.Sprintf("%d messages per peer, %d sessions, %d B body, %d rcpt(s)/msg", c.N, c.Sessions, c.Size, c.Rcpts)
	if c.StartTLS {
		s += ", STARTTLS"
	}
	if c.Chunking {
		s += ", sink offers CHUNKING (spate and spate-send send BDAT; the other peers DATA)"
	}
	if c.Latency > 0 {
		s += fmt.Sprintf(", sink latency %s/reply", c.Latency)
	}
	for _, f := range c.Faults {
		s += fmt.Sprintf(", faults %s: %g%% defer %g%% bounce %g%% drop", f.Domain, f.Defer*100, f.Bounce*100, f.Drop*100)
	}
	peers := c.Peers
	if peers == nil {
		peers = AllPeers
	}
	for _, p := range peers {
		if p == PeerSpateSend {
			d := c.Domains
			if d <= 0 {
				d = DefaultDomains
			}
			s += fmt.Sprintf("; spate-send: `spate send` with a %d-domain list, template with merge fields, journal and results", d)
		}
	}
	return s
}

// WriteReport writes a markdown report of scenarios; chart, if not empty,
// is the file name of the SVG chart to link.
func WriteReport(w io.Writer, scs []Scenario, chart string, when time.Time, host string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# spate bench report\n\n%s on %s.\n\n", when.UTC().Format(time.RFC3339), host)
	b.WriteString("Each peer runs in its own child process against the same sink (in the harness's process); " +
		"CPU s and peak RSS are the child's rusage (user+sys, Maxrss), sink CPU s is the harness process during that peer's run. " +
		"msgs/s counts messages the sink accepted over the child's wall time (start to exit). " +
		"p50/p99 are per-message latencies measured by the peer itself (spate: Feeder.Next to the last recipient's Outcome; " +
		"netsmtp: MAIL to the final dot's reply); n/a where the peer cannot report them. " +
		"spate drives the engine directly; spate-send is the whole product, `spate send` as a child process " +
		"with a generated CSV list (N recipients over a weighted mix of domains), so its figures include list reading, " +
		"template rendering with merge fields, scheduling, the journal and the results file " +
		"(its files are written before the run starts; p50/p99 n/a). " +
		"spate/peer is spate's msgs/s over the peer's.\n\n")
	if chart != "" {
		fmt.Fprintf(&b, "![msgs/s per peer per scenario](%s)\n\n", chart)
	}
	for _, sc := range scs {
		fmt.Fprintf(&b, "## %s\n\n", sc.Name)
		if sc.Desc != "" {
			fmt.Fprintf(&b, "%s\n\n", sc.Desc)
		}
		fmt.Fprintf(&b, "%s.\n\n", sc.Config.Describe())
		if sc.Err != "" {
			fmt.Fprintf(&b, "Run failed: %s\n\n", sc.Err)
			continue
		}
		if err := WriteTable(&b, sc.Results); err != nil {
			return err
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
