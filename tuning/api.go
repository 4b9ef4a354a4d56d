package tuning

import (
	"net/netip"
	"time"
)

// This file is the contract between tuning and its consumers (scheduler,
// engine/campaign, cmd). Its owner may add to it; changing a name means
// updating every caller in the same commit.

// ThrottleSpec is a rate such as "100/s", "1,000/h" or "500/d,max_burst=10".
// The zero value means unlimited. It implements encoding.TextMarshaler and
// TextUnmarshaler; String gives the canonical form that parses back equal.
type ThrottleSpec struct {
	Limit    uint64        // events per Period; 0 = unlimited
	Period   time.Duration // time.Second, time.Minute, time.Hour or 24h
	MaxBurst uint64        // 0 = Limit (the whole period's allowance)
}

// TLSMode is enable_tls: opportunistic (default), opportunistic-insecure
// (no certificate check), required, required-insecure, disabled.
type TLSMode uint8

const (
	TLSOpportunistic TLSMode = iota
	TLSOpportunisticInsecure
	TLSRequired
	TLSRequiredInsecure
	TLSDisabled
)

// Timeouts per SMTP command (zero fields mean the RFC 5321 default).
type Timeouts struct {
	Connect, Greeting, EHLO, StartTLS, Auth, Mail, Rcpt, Data, DataBlock, Final, Quit time.Duration
}

// Settings are the effective shaping settings for one egress path, after the
// layers are merged (see Config.Resolve).
type Settings struct {
	ConnectionLimit             int          // connection_limit (max simultaneous connections)
	MaxConnectionRate           ThrottleSpec // max_connection_rate (new connections)
	MaxMessageRate              ThrottleSpec // max_message_rate
	MaxDeliveriesPerConnection  int          // max_deliveries_per_connection (0 = unlimited)
	MaxRecipientsPerTransaction int          // max_recipients_per_transaction
	IdleTimeout                 time.Duration
	EnableTLS                   TLSMode
	Timeouts                    Timeouts
	RetryInterval               time.Duration // first retry; doubles with jitter
	MaxRetryInterval            time.Duration
	MaxAge                      time.Duration // bounce a deferred recipient after this
	MXRollup                    bool          // site = rolled-up MX host set (default true)
	// Chunking (chunking) sends bodies with BDAT (RFC 3030) when the server
	// offers CHUNKING, several whole transactions per write with PIPELINING
	// (up to PipelineDepth, pipeline_depth). Off by default: some servers
	// mishandle a refused BDAT chunk (go-smtp 0.24 answers 502 before reading
	// it); the engine then closes the connection and uses DATA for that host.
	Chunking      bool
	PipelineDepth int
}

// Source is one egress address.
type Source struct {
	Name     string
	Address  netip.Addr // source_address
	EHLOName string     // ehlo_name
	Warmup   *Warmup    // nil: fully warmed; else the schedule for all destinations (or the first per-provider one)
	Warmups  []Warmup   // every schedule of this source, at most one per Provider (see WarmupFor)
}

// Warmup is a day-indexed schedule of daily caps starting at Start: on day d
// (0-based, in the Start's location) the source may send Caps[d] messages (per
// provider when Provider is set); past the end of Caps the source is warm.
type Warmup struct {
	Start    time.Time
	Caps     []uint64
	Provider string // "" = all destinations
}

// PoolMember is a source in a pool with its relative weight.
type PoolMember struct {
	Source string
	Weight int
}

// Pool is a weighted set of sources a campaign sends from.
type Pool struct {
	Name    string
	Members []PoolMember
}

// RuleAction is what a matched reply rule does to the egress path.
type RuleAction uint8

const (
	ActionSuspend  RuleAction = iota + 1 // stop the path for Duration
	ActionThrottle                       // set max_message_rate to Rate for Duration
	ActionBounce                         // bounce the recipient at once (no retry)
)

// Rule is a KumoMTA-TSA-style reply rule: when replies matching Pattern
// (regex on the reply text, optional) and Codes (3-digit codes or enhanced
// codes such as "421" or "4.7.0"; empty = any) occur Trigger times per period
// ("3/h"; zero = every time) on one path, apply Action for Duration.
type Rule struct {
	Name     string
	Pattern  string
	Codes    []string
	Trigger  ThrottleSpec
	Action   RuleAction
	Duration time.Duration
	Rate     ThrottleSpec // for ActionThrottle
	Provider string       // "" = any site; else only paths of that provider
}

// BounceRule classifies a permanent failure: the first rule whose Enhanced
// prefix ("5.1.1", "5.7") and Pattern (regex on text) both match names the class.
type BounceRule struct {
	Class    string // invalid-recipient, bad-domain, mailbox-full, policy, rate-limited, other
	Enhanced string
	Code     int
	Pattern  string
}

// Provider groups sites by MX host suffix (".google.com") for settings,
// rules and warm-up caps.
type Provider struct {
	Name     string
	MXSuffix []string
}

// Query names one egress path for Config.Resolve.
type Query struct {
	Domain  string
	MXHosts []string // as resolved, preference order
	Source  string   // source name ("" = no source layer)
}

// Field is one effective setting with the layer that set it, for explain.
type Field struct {
	Key   string // TOML key, e.g. "connection_limit"
	Value string // canonical text
	Layer string // "default", "provider:google", "site:mx.example", "domain:example.com", "source:ip1", or "builtin"
	Where string // file:line that set it ("" for builtin)
}
