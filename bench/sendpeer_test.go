package bench

import (
	"bytes"
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spate-mta/spate/codec"
	"github.com/spate-mta/spate/tuning"
)

// fakeSend is a stand-in `spate send`: it copies the files it is given into
// keep, prints a line on stderr and exits with code.
func fakeSend(t *testing.T, keep string, code int) []string {
	t.Helper()
	script := filepath.Join(t.TempDir(), "fake-spate")
	body := "#!/bin/sh\n" +
		"echo \"$@\" > " + keep + "/args\n" +
		"while [ $# -gt 0 ]; do\n" +
		"  case \"$1\" in --list|--template|--config) cp \"$2\" " + keep + "/; shift;; esac\n" +
		"  shift\n" +
		"done\n" +
		"echo 'spate: 3 recipients still deferred' >&2\n" +
		"exit " + string(rune('0'+code)) + "\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return []string{script, "send"}
}

// TestSpateSendFilesAndExitCode: the spate-send peer hands `spate send` a
// list of N recipients over the mix, a template of at least Size body bytes
// with merge fields, and a tuning file with Sessions connections, no rate
// limits, TLS off and chunking as configured; a non-zero exit is a failure
// with spate's last stderr line, and the files are removed afterwards.
func TestSpateSendFilesAndExitCode(t *testing.T) {
	keep := t.TempDir()
	cfg := testConfig(t)
	cfg.Send = fakeSend(t, keep, 3)
	cfg.Peers = []string{PeerSpateSend}
	cfg.Chunking = true
	cfg.Domains = 20
	rs, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := rs[0]
	if r.Ran() || !strings.Contains(r.Err, "exit status 3") || !strings.Contains(r.Err, "still deferred") {
		t.Fatalf("exit 3: %+v; want failed with the exit status and stderr", r)
	}
	if cell := Rows(rs)[0][1]; !strings.HasPrefix(cell, "failed (") {
		t.Errorf("msgs/s cell %q; want failed (…)", cell)
	}
	args, _ := os.ReadFile(filepath.Join(keep, "args"))
	for _, want := range []string{"send --list ", "--route *=127.0.0.1:", "--progress off", "--journal ", "--results ", "--loops 1"} {
		if !bytes.Contains(args, []byte(want)) {
			t.Errorf("arguments %q lack %q", args, want)
		}
	}
	if ents, _ := filepath.Glob(filepath.Join(cfg.WorkDir, "spate-send-*")); len(ents) != 0 {
		t.Errorf("the run's folder was left behind: %v", ents)
	}

	// The list: N deliverable rows over the mix's domains.
	lf, err := os.Open(filepath.Join(keep, "list.csv"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(lf).ReadAll()
	lf.Close()
	if err != nil {
		t.Fatal(err)
	}
	mixed := map[string]bool{}
	for _, p := range SendMix(20) {
		for _, d := range p.Domains {
			mixed[d] = true
		}
	}
	seen := map[string]int{}
	for _, row := range rows[1:] {
		local, dom, _ := strings.Cut(row[0], "@")
		if !strings.HasPrefix(local, "user") || !mixed[dom] {
			t.Fatalf("row %q: want userNNNNNN@ a domain of the mix", row)
		}
		seen[dom]++
	}
	if len(rows)-1 != cfg.N || len(seen) < 10 {
		t.Fatalf("%d rows over %d domains; want %d over at least 10", len(rows)-1, len(seen), cfg.N)
	}
	if seen["gmail.test"] <= 3*seen["shop1.test"] {
		t.Errorf("gmail.test %d ≤ 3 × shop1.test %d: the mix is not weighted (shares 16 %% and 1 %%)", seen["gmail.test"], seen["shop1.test"])
	}

	// The template compiles against the list's columns, with merge fields.
	tmpl, err := os.ReadFile(filepath.Join(keep, "bench.eml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := codec.CompileTemplate(tmpl, rows[0]); err != nil {
		t.Fatalf("template: %v", err)
	}
	_, body, _ := bytes.Cut(tmpl, []byte("\r\n\r\n"))
	if len(body) < cfg.Size || len(body) > cfg.Size+78 || !bytes.Contains(body, []byte("{{first_name}}")) {
		t.Errorf("template body %d B; want %d..%d with merge fields", len(body), cfg.Size, cfg.Size+78)
	}

	// The tuning file.
	data, err := os.ReadFile(filepath.Join(keep, "tuning.toml"))
	if err != nil {
		t.Fatal(err)
	}
	tc, err := tuning.Parse("tuning.toml", data)
	if err != nil {
		t.Fatal(err)
	}
	st := tc.Resolve(tuning.Query{Domain: "gmail.test", MXHosts: []string{"127.0.0.1:25"}})
	if st.ConnectionLimit != cfg.Sessions || st.MaxDeliveriesPerConnection != 0 || st.EnableTLS != tuning.TLSDisabled ||
		!st.Chunking || !st.MXRollup {
		t.Errorf("tuning: %+v; want %d connections, unlimited deliveries, TLS disabled, chunking, mx_rollup", st, cfg.Sessions)
	}
}

func TestSendTuningTLS(t *testing.T) {
	tc, err := tuning.Parse("t.toml", []byte(sendTuning(&Config{Sessions: 7, StartTLS: true})))
	if err != nil {
		t.Fatal(err)
	}
	st := tc.Resolve(tuning.Query{Domain: "x.test"})
	if st.EnableTLS != tuning.TLSRequiredInsecure || st.Chunking || st.ConnectionLimit != 7 {
		t.Fatalf("got %+v; want required_insecure, no chunking, 7 connections", st)
	}
}

// TestSpateSendSkips: more than one recipient per message, or sink faults
// that no generated domain receives, skip the peer with a reason.
func TestSpateSendSkips(t *testing.T) {
	keep := t.TempDir()
	for _, c := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.Rcpts = 2 }, "one recipient per message"},
		{func(c *Config) { c.Faults = []Fault{{Domain: "bench.test", Defer: 0.1}} }, "faults are not on the generated list"},
	} {
		cfg := testConfig(t)
		cfg.Send = fakeSend(t, keep, 0)
		cfg.Peers = []string{PeerSpateSend}
		c.mod(&cfg)
		rs, err := Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(rs[0].Skipped, c.want) {
			t.Errorf("skipped %q; want %q", rs[0].Skipped, c.want)
		}
	}
	if !faultsReach([]Fault{{Domain: "*"}}, SendMix(50)) || !faultsReach([]Fault{{Domain: "Gmail.test"}}, SendMix(50)) {
		t.Error("faults on * or a mix domain do not reach the list")
	}
}

// TestParseSendResults: Sent is the sink's count (a differing results file
// is noted), or the results file's delivered rows against an external sink.
func TestParseSendResults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.csv")
	data := "row,email,domain,state,class\n2,a@x.test,x.test,delivered,\n3,b@x.test,x.test,bounced,invalid-recipient\n4,c@y.test,y.test,delivered,\n"
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	r := Result{SinkMessages: 2}
	if err := parseSendResults(path, 3, &r); err != nil || r.Sent != 2 || r.Failed != 1 || r.Note != "" {
		t.Fatalf("own sink: %+v %v; want sent 2 failed 1, no note", r, err)
	}
	r = Result{SinkMessages: 3}
	if err := parseSendResults(path, 3, &r); err != nil || r.Sent != 3 || !strings.Contains(r.Note, "lists 2 delivered") {
		t.Fatalf("sink count differs: %+v %v", r, err)
	}
	r = Result{SinkMessages: -1}
	if err := parseSendResults(path, 3, &r); err != nil || r.Sent != 2 || !strings.Contains(r.Note, "external sink") {
		t.Fatalf("external sink: %+v %v", r, err)
	}
	r = Result{SinkMessages: -1}
	if err := parseSendResults(path+".none", 3, &r); err == nil {
		t.Fatal("no results file and no sink count: no error")
	}
}
