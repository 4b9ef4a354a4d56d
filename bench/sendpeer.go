package bench

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spate-mta/spate/bench/demo"
	"github.com/spate-mta/spate/engine/campaign"
)

// The spate-send peer runs the whole product, `spate send`, as a child
// process: it reads a generated CSV list, renders a template with merge
// fields per recipient, schedules, journals every outcome and writes the
// results file. The harness generates the list, template and tuning file
// in a fresh folder under WorkDir before the child starts (outside the
// measured wall time) and removes it after the run.

// DefaultDomains is the number of domains in the spate-send peer's list.
const DefaultDomains = 50

// sendListSeed makes the spate-send list deterministic for (N, Domains).
const sendListSeed = 2025

// SendMix returns the providers of the spate-send peer's list over about
// domains domains: bench/demo's weighted mix (big mailbox providers, a
// hosting company, a long tail) without its null-MX domain, since the
// static route sends every domain to the sink anyway.
func SendMix(domains int) []demo.Provider {
	var ps []demo.Provider
	for _, p := range demo.Mix(domains) {
		if len(p.MX) > 0 {
			ps = append(ps, p)
		}
	}
	return ps
}

// WriteSendList writes the spate-send peer's list: n deliverable
// recipients (no scripted failures, no bad rows) over SendMix(domains),
// the same list for the same arguments. Its columns are email, first_name,
// city, plan and unsubscribe_url.
func WriteSendList(w io.Writer, n, domains int) error {
	return demo.WriteListWith(w, n, SendMix(domains), sendListSeed, demo.ListOptions{NoPermfail: true})
}

// sendTemplate returns the spate-send peer's template: a plain-text
// message with merge fields in the To and Subject headers and the body,
// padded with 78-byte CRLF lines (none starts with a dot) to at least size
// body bytes, as the other peers' bodies are.
func sendTemplate(size int) []byte {
	var b bytes.Buffer
	b.WriteString("From: \"Bench\" <sender@bench.test>\r\n" +
		"To: {{first_name}} <{{email}}>\r\n" +
		"Subject: {{first_name}}, your {{city}} bench digest\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: 8bit\r\n" +
		"\r\n")
	body := b.Len()
	b.WriteString("Hello {{first_name}}, here is your {{city}} digest ({{plan}} plan).\r\n")
	line := strings.Repeat("X", 76) + "\r\n"
	for b.Len()-body < size {
		b.WriteString(line)
	}
	return b.Bytes()
}

// sendTuning returns the spate-send peer's tuning file.
func sendTuning(cfg *Config) string {
	tls := "disabled"
	if cfg.StartTLS {
		tls = "required_insecure" // the sink's certificate is self-signed
	}
	var b strings.Builder
	b.WriteString("# spate bench: the spate-send peer's tuning (generated).\n#\n" +
		"# Sessions → connections: `--route '*=<sink>'` gives every domain of the list\n" +
		"# the same MX host set (the sink's address), so with mx_rollup (on by default)\n" +
		"# all of them roll up into one site, and with one source there is one egress\n" +
		"# path. connection_limit is per path, so connection_limit = sessions opens\n" +
		"# exactly the requested number of connections, each carrying recipients of\n" +
		"# every domain as the scheduler hands them out (what a real campaign does for\n" +
		"# domains hosted on one MX). Per-domain limits would instead tie the run's\n" +
		"# length to the largest domain's share and measure the shaping, not spate.\n")
	fmt.Fprintf(&b, "[default]\nconnection_limit = %d\n", cfg.Sessions)
	b.WriteString("max_connection_rate = \"unlimited\"\n" +
		"max_message_rate = \"unlimited\"\n" +
		"# Connections are kept for the whole run, as the other peers keep theirs.\n" +
		"max_deliveries_per_connection = 0\n" +
		"mx_rollup = true\n")
	fmt.Fprintf(&b, "enable_tls = %q\n", tls)
	fmt.Fprintf(&b, "chunking = %t\n", cfg.Chunking)
	b.WriteString("# Deferrals (sink faults) are retried within the run instead of in 20 minutes.\n" +
		"retry_interval = \"1s\"\n" +
		"max_retry_interval = \"2s\"\n")
	return b.String()
}

// sendLinger bounds how long `spate send` waits for deferred recipients'
// retries before it exits 3.
const sendLinger = "5s"

// resolveSend prepares a spate-send run: the files in a fresh folder under
// WorkDir, the command line, a parser that counts what the sink accepted
// (or, against an external sink, the results file's delivered rows) and a
// cleanup that removes the folder.
func resolveSend(cfg *Config, addr string) (pc peerCmd, skip string) {
	if len(cfg.Send) == 0 {
		return pc, "no spate send command configured"
	}
	if _, err := exec.LookPath(cfg.Send[0]); err != nil {
		return pc, "spate binary not found at " + cfg.Send[0]
	}
	if cfg.Rcpts != 1 {
		return pc, "spate send sends one recipient per message"
	}
	if len(cfg.Faults) > 0 && !faultsReach(cfg.Faults, SendMix(cfg.Domains)) {
		return pc, "the sink's faults are not on the generated list's domains"
	}
	dir, err := os.MkdirTemp(cfg.WorkDir, "spate-send-")
	if err != nil {
		return pc, "cannot create its folder: " + err.Error()
	}
	pc.cleanup = func() { os.RemoveAll(dir) }
	list := filepath.Join(dir, "list.csv")
	tmpl := filepath.Join(dir, "bench.eml")
	conf := filepath.Join(dir, "tuning.toml")
	results := filepath.Join(dir, "list.results.csv")
	err = WriteFileWith(list, func(w io.Writer) error { return WriteSendList(w, cfg.N, cfg.Domains) })
	if err == nil {
		err = os.WriteFile(tmpl, sendTemplate(cfg.Size), 0o644)
	}
	if err == nil {
		err = os.WriteFile(conf, []byte(sendTuning(cfg)), 0o644)
	}
	if err != nil {
		pc.cleanup()
		return peerCmd{}, "cannot write its files: " + err.Error()
	}
	pc.path = cfg.Send[0]
	pc.args = append(append([]string{}, cfg.Send[1:]...),
		"--list", list, "--template", tmpl, "--config", conf, "--route", "*="+addr,
		"--journal", filepath.Join(dir, "list.journal"), "--results", results,
		"--campaign-id", "bench", "--progress", "off", "--linger", sendLinger)
	if cfg.Loops > 0 {
		pc.args = append(pc.args, "--loops", strconv.Itoa(cfg.Loops))
	}
	pc.env = cfg.SelfEnv
	n := int64(cfg.N)
	faults := len(cfg.Faults) > 0
	pc.parse = func(_ []byte, r *Result) error {
		if faults {
			// The other peers give up on a deferral; a campaign retries it
			// on its schedule (1-2 s here), so the wall time includes that.
			r.addNote("retries deferred and dropped recipients (retry after 1-2 s): its wall time includes the retry schedule")
		}
		return parseSendResults(results, n, r)
	}
	return pc, ""
}

// faultsReach reports whether a sink fault applies to a domain of ps.
func faultsReach(fs []Fault, ps []demo.Provider) bool {
	for _, f := range fs {
		if f.Domain == "*" {
			return true
		}
		for _, p := range ps {
			for _, d := range p.Domains {
				if strings.EqualFold(d, f.Domain) {
					return true
				}
			}
		}
	}
	return false
}

// parseSendResults counts a finished spate-send run: Sent is what the sink
// accepted when the sink is the harness's, else the results file's
// delivered rows; Failed is the results file's other rows.
func parseSendResults(path string, n int64, r *Result) error {
	delivered, other, err := countResults(path)
	if err != nil {
		if r.SinkMessages >= 0 {
			r.Sent, r.Failed = r.SinkMessages, n-r.SinkMessages
			return nil // the exit code tells whether the run completed
		}
		return fmt.Errorf("bench: spate-send results: %v", err)
	}
	if r.SinkMessages >= 0 {
		r.Sent = r.SinkMessages
		if delivered != r.SinkMessages {
			r.addNote(fmt.Sprintf("spate's results file lists %d delivered", delivered))
		}
	} else {
		r.Sent = delivered
		r.addNote("count from spate's results file (external sink)")
	}
	r.Failed = other
	return nil
}

// countResults counts the rows of a results CSV whose state is delivered,
// and the others.
func countResults(path string) (delivered, other int64, err error) {
	err = campaign.ReadResultsCSV(path, func(r *campaign.Result) {
		if r.State == "delivered" {
			delivered++
		} else {
			other++
		}
	})
	return delivered, other, err
}

// WriteFileWith creates path and fills it with write, closing it either way.
func WriteFileWith(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
