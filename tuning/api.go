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
}

// Source is one egress address.
type Source struct {
	Name     string
	Address  netip.Addr // source_address
	EHLOName string     // ehlo_name
	Warmup   *Warmup    // nil: fully warmed
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
