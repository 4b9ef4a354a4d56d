package campaign

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spate-mta/spate/codec"
	"github.com/spate-mta/spate/engine"
	"github.com/spate-mta/spate/engine/journal"
	"github.com/spate-mta/spate/scheduler"
	"github.com/spate-mta/spate/tuning"
)

// Relay sends every message to one smarthost instead of the recipients' MX.
type Relay struct {
	Addr     netip.AddrPort
	Host     string // name for TLS and logs ("" = Addr)
	Auth     *engine.Auth
	Implicit bool // TLS from the first byte (port 465)
}

// Options configure one campaign run. The caller (cmd/spate) fills them from
// flags; nothing here reads flags or the environment.
type Options struct {
	List     io.Reader
	ListName string
	Comma    rune
	// Template is the .eml source; TemplateName is used in errors.
	Template     []byte
	TemplateName string
	Config       *tuning.Config
	// From is the envelope sender; "" = the address in the template's From.
	From    string
	Headers HeaderOptions
	DKIM    *codec.DKIMSigner

	Resolver *engine.Resolver // required unless Relay is set
	Relay    *Relay
	TLS      engine.TLSPolicy // default for paths (tuning's enable_tls overrides)
	Loops    int

	// JournalPath is required; Resume continues a campaign from it.
	JournalPath string
	Resume      bool
	// ResultsCSV and ResultsJSONL name the results files ("" = none).
	ResultsCSV, ResultsJSONL string
	// SuppressionPath overrides the config's suppression file.
	SuppressionPath string
	// Linger is how long the run waits for deferred recipients' next retry
	// before it exits, leaving them deferred in the journal for --resume.
	Linger time.Duration
	// Window caps the recipients held in memory at once (default 200,000).
	Window int
	// OnBadRow reports skipped list rows (line numbers included).
	OnBadRow func(error)
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Runner is one campaign in progress. Create it with New, then call Run once.
type Runner struct {
	o        Options
	list     *codec.ListReader
	tmpl     *codec.Template
	hdr      *HeaderBuilder
	from     string
	sched    *scheduler.Scheduler
	eng      *engine.Engine
	jr       *journal.Journal
	prior    *journal.Snapshot
	results  *ResultsWriter
	summary  *Summary
	suppress *scheduler.Suppression

	window  chan struct{} // one token per recipient held in memory
	wake    chan struct{}
	readErr atomic.Value // error from the list reader
	readEOF atomic.Bool

	mu    sync.Mutex
	paths map[uint64]*pathState
	hosts map[string][]netip.AddrPort // MX host → addresses

	envPool sync.Pool
	meter   rateMeter

	inflight  atomic.Int64 // recipients handed to the engine, not yet reported
	delivered atomic.Int64
	bounced   atomic.Int64
	deferred  atomic.Int64
	attempts  atomic.Int64
	total     atomic.Int64 // recipients read from the list and accepted
	stopping  atomic.Bool
}

// pathState is what the runner remembers per egress path: its MX addresses
// (for fallback on connection failure) and session settings.
type pathState struct {
	req   scheduler.ConnectRequest
	addrs []mxAddr
	next  int // index of the address to dial next
	fails int // connections in a row that failed with nothing delivered
	// failed marks addresses that refused or timed out since the path last
	// delivered; dials skip them while another address remains.
	failed  []bool
	session engine.SessionConfig
}

type mxAddr struct {
	host string
	addr netip.AddrPort
}

// delivery is the Tag of every Envelope the runner hands to the engine.
type delivery struct {
	env  engine.Envelope
	rcpt [1]string
	hdr  []byte // per-recipient header lines, reused
	item *scheduler.Item
	path uint64
	site string
}

// New validates everything that can be validated before sending: the list
// header, the template (every merge field must be a column), the journal
// (fingerprint of list name and template), the results files and the config.
// Its errors are the user's to fix (exit code 1).
func New(o Options) (*Runner, error) {
	if o.Config == nil {
		return nil, errors.New("campaign: no tuning config")
	}
	if o.Resolver == nil && o.Relay == nil {
		return nil, errors.New("campaign: need a resolver or a relay")
	}
	if o.JournalPath == "" {
		return nil, errors.New("campaign: no journal path")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Window <= 0 {
		o.Window = 200_000
	}
	r := &Runner{o: o, paths: make(map[uint64]*pathState), wake: make(chan struct{}, 1)}
	r.envPool.New = func() any { return new(delivery) }

	var err error
	r.list, err = codec.NewListReader(o.List, codec.ListOptions{
		Name: o.ListName, Comma: o.Comma,
		OnBadRow: func(e *codec.RowError) {
			if o.OnBadRow != nil {
				o.OnBadRow(e)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	r.tmpl, err = codec.CompileTemplate(o.Template, r.list.Columns())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.TemplateName, err)
	}
	r.from = o.From
	if r.from == "" {
		r.from = AddressOf(r.tmpl.Header("From"))
	}
	if err := codec.ValidateAddress(r.from, false); err != nil && r.from != "" {
		return nil, fmt.Errorf("campaign: envelope sender: %w", err)
	}
	if r.from == "" {
		return nil, errors.New("campaign: no envelope sender: give --from or a From: header in the template")
	}
	ho := o.Headers
	ho.Columns = r.list.Columns()
	if ho.MessageIDDomain == "" {
		_, ho.MessageIDDomain = codec.SplitAddress(r.from)
	}
	if r.hdr, err = NewHeaderBuilder(ho); err != nil {
		return nil, err
	}

	supPath := o.SuppressionPath
	if supPath == "" {
		supPath = o.Config.SuppressionFile()
	}
	if supPath != "" {
		if r.suppress, err = scheduler.LoadSuppression(supPath); err != nil {
			return nil, err
		}
	}
	r.sched, err = scheduler.New(o.Config, clockFunc(o.Now), scheduler.Options{Pool: o.Config.CampaignPool()})
	if err != nil {
		return nil, err
	}

	fp := journal.Fingerprint(o.ListName, o.Template)
	if o.Resume {
		r.prior, err = journal.Replay(o.JournalPath, fp)
		if err != nil {
			return nil, fmt.Errorf("campaign: --resume: %w", err)
		}
	}
	r.jr, err = journal.Open(o.JournalPath, journal.Options{Fingerprint: fp, Truncate: !o.Resume})
	if err != nil {
		return nil, err
	}
	var keep func(int) bool
	if o.Resume {
		keep = func(row int) bool { rec, ok := r.prior.Get(row); return ok && rec.State.Final() }
	}
	if r.results, err = OpenResults(o.ResultsCSV, o.ResultsJSONL, keep); err != nil {
		r.jr.Close()
		return nil, err
	}
	r.window = make(chan struct{}, o.Window)
	return r, nil
}

type clockFunc func() time.Time

func (c clockFunc) Now() time.Time { return c() }

// AddressOf extracts the address from a From header value such as
// `"News" <news@example.com>` or a bare address.
func AddressOf(v string) string {
	if i := strings.LastIndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			return strings.TrimSpace(v[i+1 : i+j])
		}
	}
	return strings.TrimSpace(v)
}
