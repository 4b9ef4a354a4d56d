package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/mail"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spate-mta/spate/codec"
	"github.com/spate-mta/spate/engine"
	"github.com/spate-mta/spate/engine/campaign"
	"github.com/spate-mta/spate/tuning"
)

func init() {
	register("send", "send a campaign: CSV list + .eml template, shaped by a TOML config", runSend)
}

// sendFlags are the flags shared by send and demo.
type sendFlags struct {
	list, template, config, from string
	relay, relayAuth, relayTLS   string
	resume                       bool
	journal, results, resultsJS  string
	dns, routes                  string
	dkimKey, dkimDomain, dkimSel string
	unsubURL, unsubMailto, verp  string
	campaignID, suppression      string
	metrics, progress            string
	linger                       time.Duration
	loops, window                int
	mxPort                       int
	comma                        string
}

func (f *sendFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.list, "list", "", "recipient list (CSV with an email column)")
	fs.StringVar(&f.template, "template", "", "message template (.eml with {{column}} merge fields)")
	fs.StringVar(&f.config, "config", "", "tuning file (TOML); empty = built-in defaults")
	fs.StringVar(&f.from, "from", "", "envelope sender (default: the template's From address)")
	fs.StringVar(&f.relay, "relay", "", "send everything through this smarthost host:port instead of MX")
	fs.StringVar(&f.relayAuth, "relay-auth", "", "relay credentials user:password (or set SPATE_RELAY_AUTH)")
	fs.StringVar(&f.relayTLS, "relay-tls", "starttls", "relay TLS: starttls, implicit (port 465), none")
	fs.BoolVar(&f.resume, "resume", false, "continue the campaign recorded in the journal")
	fs.StringVar(&f.journal, "journal", "", "journal file (default: <list>.journal)")
	fs.StringVar(&f.results, "results", "", "per-recipient results CSV (default: <list>.results.csv)")
	fs.StringVar(&f.resultsJS, "results-jsonl", "", "per-recipient results as JSON lines")
	fs.StringVar(&f.dns, "dns", "", "DNS server host:port for MX lookups (default: /etc/resolv.conf)")
	fs.StringVar(&f.routes, "route", "", "static routes, e.g. 'example.com=127.0.0.1:2525,*=127.0.0.1:2526'")
	fs.StringVar(&f.dkimKey, "dkim-key", "", "DKIM private key (PEM: RSA or Ed25519)")
	fs.StringVar(&f.dkimDomain, "dkim-domain", "", "DKIM d= domain (default: the sender's domain)")
	fs.StringVar(&f.dkimSel, "dkim-selector", "", "DKIM s= selector")
	fs.StringVar(&f.unsubURL, "unsubscribe-url", "", "List-Unsubscribe https URL, may use {{column}} fields (RFC 8058 one-click)")
	fs.StringVar(&f.unsubMailto, "unsubscribe-mailto", "", "List-Unsubscribe mailto address, may use {{column}} fields")
	fs.StringVar(&f.verp, "verp", "", "VERP return path, e.g. 'bounces+{local}={domain}@example.com'")
	fs.StringVar(&f.campaignID, "campaign-id", "", "campaign id for Message-IDs (default: the list's base name)")
	fs.StringVar(&f.suppression, "suppression", "", "suppression list file (default: the config's)")
	fs.StringVar(&f.metrics, "metrics", "", "serve Prometheus metrics on this address, e.g. :9090")
	fs.StringVar(&f.progress, "progress", "auto", "progress display: auto, tty, plain, off")
	fs.DurationVar(&f.linger, "linger", time.Minute, "wait up to this long for deferred recipients' next retry before exiting (the rest stay deferred for --resume)")
	fs.IntVar(&f.mxPort, "mx-port", 0, "connect to MX hosts on this port instead of 25 (tests, local sinks)")
	fs.IntVar(&f.loops, "loops", 0, "event loops (default: number of CPUs)")
	fs.IntVar(&f.window, "window", 200_000, "recipients held in memory at once (about 1 KB each); a larger window keeps more sites busy when the list is sorted by domain")
	fs.StringVar(&f.comma, "delimiter", ",", "CSV delimiter")
}

// usageError is a mistake of the user's: exit code 1.
type usageError struct{ error }

func runSend(args []string) int {
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	var f sendFlags
	f.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: spate send --list list.csv --template newsletter.eml [--config tuning.toml] [--from addr] [--relay host:port] [--resume]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if f.list == "" || f.template == "" {
		fs.Usage()
		return exitUsage
	}
	return sendCampaign(&f, os.Stdout)
}

// sendCampaign runs a campaign from flags and returns the exit code.
func sendCampaign(f *sendFlags, out io.Writer) int {
	opts, cleanup, err := buildOptions(f)
	if cleanup != nil {
		defer cleanup()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "spate:", err)
		return exitUsage
	}
	var bad int
	opts.OnBadRow = func(err error) {
		bad++
		if bad <= 20 {
			fmt.Fprintln(os.Stderr, "spate: skipped:", err)
		} else if bad == 21 {
			fmt.Fprintln(os.Stderr, "spate: more rows skipped; see the summary")
		}
	}
	r, err := campaign.New(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "spate:", err)
		return exitUsage
	}
	if opts.Relay != nil {
		// Every message goes to this one address: if it refuses connections,
		// say so now instead of retrying the connection until interrupted.
		if err := probeRelay(opts.Relay.Addr); err != nil {
			fmt.Fprintf(os.Stderr, "spate: relay %s unreachable: %v\n", f.relay, err)
			return exitRuntime
		}
	}
	if f.metrics != "" {
		stop, err := serveMetrics(f.metrics, r)
		if err != nil {
			fmt.Fprintln(os.Stderr, "spate: metrics:", err)
			return exitUsage
		}
		defer stop()
	}

	// First Ctrl-C: graceful stop. Second: at once, journal intact.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "\nspate: stopping: finishing in-flight transactions (Ctrl-C again to stop at once)")
		cancel()
		<-sigs
		fmt.Fprintln(os.Stderr, "spate: stopping now; the journal is intact, use --resume")
		r.Abort()
	}()

	disp := newDisplay(out, f.progress, r)
	disp.start()
	sum, err := r.Run(ctx)
	disp.stop()
	if sum != nil {
		sum.Print(out, 15)
		if f.results != "" {
			fmt.Fprintf(out, "results: %s\n", f.results)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "spate:", err)
		return exitRuntime
	}
	if ctx.Err() != nil {
		// Interrupted: rows may be left unread or unsent even when none is
		// recorded deferred.
		fmt.Fprintln(os.Stderr, "spate: interrupted; run again with --resume to finish the campaign")
		return exitDeferred
	}
	if sum.Total.Deferred > 0 {
		return exitDeferred
	}
	return exitOK
}

// buildOptions turns flags into campaign options. The cleanup closes files.
func buildOptions(f *sendFlags) (campaign.Options, func(), error) {
	var o campaign.Options
	list, err := os.Open(f.list)
	if err != nil {
		return o, nil, err
	}
	cleanup := func() { list.Close() }
	o.List, o.ListName = list, f.list
	if o.Template, err = os.ReadFile(f.template); err != nil {
		return o, cleanup, err
	}
	o.TemplateName = f.template
	if f.config != "" {
		o.Config, err = tuning.Load(f.config)
	} else {
		o.Config, err = tuning.Parse("(built-in defaults)", nil)
	}
	if err != nil {
		return o, cleanup, err
	}
	if c := []rune(f.comma); len(c) == 1 {
		o.Comma = c[0]
	} else {
		return o, cleanup, fmt.Errorf("--delimiter must be one character, got %q", f.comma)
	}
	o.From = f.from
	if o.From != "" {
		if err := codec.ValidateAddress(o.From, false); err != nil {
			return o, cleanup, fmt.Errorf("--from: %w", err)
		}
	}
	base := strings.TrimSuffix(f.list, filepath.Ext(f.list))
	o.JournalPath = f.journal
	if o.JournalPath == "" {
		o.JournalPath = base + ".journal"
	}
	if f.results == "" && f.resultsJS == "" {
		f.results = base + ".results.csv"
	}
	o.ResultsCSV, o.ResultsJSONL = f.results, f.resultsJS
	o.Resume = f.resume
	o.Linger = f.linger
	o.Loops = f.loops
	o.Window = f.window
	o.SuppressionPath = f.suppression
	id := f.campaignID
	if id == "" {
		id = filepath.Base(base)
	}
	o.Headers = campaign.HeaderOptions{CampaignID: id, UnsubscribeURL: f.unsubURL, UnsubscribeMailto: f.unsubMailto, VERP: f.verp}

	if f.dkimKey != "" {
		pem, err := os.ReadFile(f.dkimKey)
		if err != nil {
			return o, cleanup, fmt.Errorf("--dkim-key: %w", err)
		}
		key, err := codec.ParseDKIMKey(pem)
		if err != nil {
			return o, cleanup, fmt.Errorf("--dkim-key %s: %w", f.dkimKey, err)
		}
		if f.dkimSel == "" {
			return o, cleanup, errors.New("--dkim-key needs --dkim-selector")
		}
		dom := f.dkimDomain
		if dom == "" && o.From != "" {
			_, dom = codec.SplitAddress(o.From)
		}
		if dom == "" {
			// The sender is the template's From address (as the campaign uses it).
			dom = templateFromDomain(o.Template)
		}
		if dom == "" {
			return o, cleanup, errors.New("--dkim-key needs --dkim-domain (or --from, or a From: address in the template)")
		}
		if o.DKIM, err = codec.NewDKIMSigner(codec.DKIMOptions{Domain: dom, Selector: f.dkimSel, Key: key}); err != nil {
			return o, cleanup, err
		}
	}

	if f.relay != "" {
		ap, host, err := parseHostPort(f.relay)
		if err != nil {
			return o, cleanup, fmt.Errorf("--relay: %w", err)
		}
		o.Relay = &campaign.Relay{Addr: ap, Host: host}
		auth := f.relayAuth
		if auth == "" {
			auth = os.Getenv("SPATE_RELAY_AUTH")
		}
		if auth != "" {
			u, p, ok := strings.Cut(auth, ":")
			if !ok {
				return o, cleanup, errors.New("--relay-auth must be user:password")
			}
			o.Relay.Auth = &engine.Auth{Username: u, Password: p}
		}
		switch f.relayTLS {
		case "starttls", "":
		case "implicit":
			o.Relay.Implicit = true
		case "none":
			if o.Relay.Auth != nil {
				o.Relay.Auth.AllowPlaintext = true
			}
		default:
			return o, cleanup, fmt.Errorf("--relay-tls: want starttls, implicit or none, got %q", f.relayTLS)
		}
		return o, cleanup, nil
	}
	if f.mxPort < 0 || f.mxPort > 65535 {
		return o, cleanup, fmt.Errorf("--mx-port %d out of range", f.mxPort)
	}
	rc := engine.ResolverConfig{Server: f.dns, Timeout: 5 * time.Second, Port: uint16(f.mxPort)}
	if f.routes != "" {
		if rc.Routes, err = engine.ParseRoutes(f.routes); err != nil {
			return o, cleanup, fmt.Errorf("--route: %w", err)
		}
	}
	if o.Resolver, err = engine.NewResolver(rc); err != nil {
		return o, cleanup, err
	}
	return o, cleanup, nil
}

// templateFromDomain returns the domain of the template's From address, or
// "" when there is none or it holds merge fields.
func templateFromDomain(tmpl []byte) string {
	m, err := mail.ReadMessage(bytes.NewReader(tmpl))
	if err != nil {
		return ""
	}
	// The same address the campaign takes as its envelope sender.
	a := campaign.AddressOf(m.Header.Get("From"))
	if strings.Contains(a, "{{") {
		return ""
	}
	_, dom := codec.SplitAddress(a)
	return dom
}

// probeRelay opens and closes one TCP connection to the relay.
func probeRelay(addr netip.AddrPort) error {
	c, err := net.DialTimeout("tcp", addr.String(), 10*time.Second)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Err != nil {
			return op.Err // "connect: connection refused", without the repeated address
		}
		return err
	}
	return c.Close()
}

// parseHostPort accepts an IP:port or a loopback name:port (resolved locally).
func parseHostPort(s string) (netip.AddrPort, string, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, ap.Addr().String(), nil
	}
	host, port, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, "", fmt.Errorf("%q: want host:port", s)
	}
	if host == "localhost" {
		ap, err := netip.ParseAddrPort("127.0.0.1:" + port)
		return ap, host, err
	}
	return netip.AddrPort{}, "", fmt.Errorf("%q: give an IP address and port", s)
}
