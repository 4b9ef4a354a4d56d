package engine

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/spate-mta/spate/codec"
)

// This file is the contract between the engine and its callers (the campaign
// runner in engine/campaign, the bench harness). Its owner may add to it;
// changing a signature means updating every caller in the same commit.

// Result is the fate of one recipient in one attempt.
type Result uint8

const (
	ResultNone      Result = iota // zero: not yet known
	ResultDelivered               // 250/251 to RCPT and 250 to the final dot
	ResultDeferred                // 4xx, timeout, connection lost before the final 250
	ResultBounced                 // 5xx (or local permanent failure such as SIZE, null MX)
)

// Outcome is the fate of one recipient of an Envelope in one attempt.
// Text is a copy (it outlives the inbound buffer); it is empty on success.
type Outcome struct {
	Result   Result
	Code     int
	Enhanced codec.EnhancedCode
	Text     string
	// Host is the MX host (or relay) that gave the reply; Source the local address.
	Host   string
	Source netip.Addr
	// Local is true when spate decided the outcome itself (timeout, dropped
	// connection, SIZE too large, TLS required but unavailable, DNS failure):
	// the scheduler must not treat it as the remote site's feedback.
	Local bool
}

// Envelope is one SMTP transaction: one MAIL FROM, its recipients, one body.
// The caller fills it; the engine owns it from Feed until Reporter.Done, and
// releases Body (Message.Release) itself after the final reply.
type Envelope struct {
	From  string   // validated by codec at the edge; encoders trust it
	Rcpts []string // validated likewise
	Body  *codec.Message
	// Size is the body size in bytes for SIZE= (0 = unknown).
	Size int
	// EightBit / UTF8 request BODY=8BITMIME and SMTPUTF8 on MAIL FROM.
	EightBit, UTF8 bool
	// ID and Tag are the caller's; the engine echoes them back untouched.
	ID  uint64
	Tag any
}

// Feeder supplies transactions to connections. Next is called on the
// connection's event-loop goroutine whenever the session can take another
// transaction (including while the previous message's final dot is still
// being answered, so the next MAIL can be pipelined behind it). It returns
// nil when nothing is ready now; the engine will call Next again when the
// caller says so with Engine.Wake or on the next tick. Implementations must
// be safe for concurrent use from several loops and must not block.
type Feeder interface {
	Next(c ConnInfo, now time.Time) *Envelope
}

// Reporter receives outcomes. Methods are called on event-loop goroutines and
// must be safe for concurrent use and must not block for long.
type Reporter interface {
	// Outcome reports recipient i of env. Called exactly once per recipient
	// per attempt, before Done(env).
	Outcome(env *Envelope, i int, o Outcome)
	// Done reports that the engine is finished with env (and its Body).
	Done(env *Envelope)
	// ConnClosed reports that a connection ended; err is nil after a clean QUIT.
	ConnClosed(c ConnInfo, err error)
}

// ConnInfo describes one connection to the Feeder and Reporter.
type ConnInfo struct {
	ID     uint64
	Path   uint64 // the egress path key (scheduler's), used to pick the loop
	Source netip.Addr
	Host   string // MX host name or relay host
	Addr   netip.AddrPort
	TLS    bool
	// Delivered counts messages accepted on this connection so far.
	Delivered int
}

// TLSPolicy says whether a session uses STARTTLS.
type TLSPolicy uint8

const (
	TLSOpportunistic TLSPolicy = iota // zero: use it when offered, fall back on failure
	TLSRequired                       // defer if not offered or the handshake fails
	TLSDisabled                       // never
	TLSImplicit                       // TLS from the first byte (port 465 relays)
)

// ChunkingPolicy says whether a session sends message bodies with BDAT
// (RFC 3030 CHUNKING) instead of DATA.
type ChunkingPolicy uint8

const (
	// ChunkingOff (zero) always sends DATA. It is the default because a
	// server that answers BDAT before reading its chunk (go-smtp v0.24
	// replies 502 to BDAT when no recipient was accepted) then parses the
	// body as commands: the session detects it (ErrOutOfStep), closes and
	// defers what was in flight, and the engine uses DATA for that host
	// from then on, but the transactions already written may be accepted
	// out of step. Turn BDAT on for sites known to read refused chunks
	// (RFC 3030 requires it).
	ChunkingOff ChunkingPolicy = iota
	// ChunkingAuto uses BDAT when the server offers CHUNKING: no 354 round
	// trip, the body goes out un-stuffed with its exact size, and with
	// PIPELINING several whole transactions go out in one write.
	ChunkingAuto
)

// String returns "off" or "auto".
func (p ChunkingPolicy) String() string {
	if p == ChunkingAuto {
		return "auto"
	}
	return "off"
}

// MarshalText returns String's value.
func (p ChunkingPolicy) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText accepts "auto" and "off".
func (p *ChunkingPolicy) UnmarshalText(b []byte) error {
	switch string(b) {
	case "auto":
		*p = ChunkingAuto
	case "off":
		*p = ChunkingOff
	default:
		return fmt.Errorf("engine: chunking policy %q: want auto or off", b)
	}
	return nil
}

// Timeouts per command, RFC 5321 §4.5.3.2 defaults (see DefaultTimeouts).
type Timeouts struct {
	Connect, Greeting, EHLO, StartTLS, Auth, Mail, Rcpt, Data, DataBlock, Final, Quit, Idle time.Duration
}

// DefaultTimeouts returns the RFC 5321 §4.5.3.2 values (connect 60s, EHLO,
// STARTTLS, AUTH and QUIT 5 min where the RFC is silent, idle 60s).
func DefaultTimeouts() Timeouts {
	return Timeouts{
		Connect: 60 * time.Second, Greeting: 5 * time.Minute, EHLO: 5 * time.Minute,
		StartTLS: 5 * time.Minute, Auth: 5 * time.Minute, Mail: 5 * time.Minute,
		Rcpt: 5 * time.Minute, Data: 2 * time.Minute, DataBlock: 3 * time.Minute,
		Final: 10 * time.Minute, Quit: 5 * time.Minute, Idle: 60 * time.Second,
	}
}

// Auth holds relay credentials (PLAIN or LOGIN, chosen from the server's list).
type Auth struct {
	Username, Password string
	// AllowPlaintext permits AUTH without TLS (tests only).
	AllowPlaintext bool
}

// SessionConfig is what one connection needs.
type SessionConfig struct {
	EHLOName string
	TLS      TLSPolicy
	// VerifyTLS checks the server certificate (required for TLSRequired unless
	// explicitly off); ServerName overrides the name checked.
	VerifyTLS  bool
	ServerName string
	Auth       *Auth
	// MaxMessages per connection (0 = unlimited); the session QUITs after it.
	MaxMessages int
	// MaxRcpts per transaction (0 = 100, RFC 5321 §4.5.3.1.8 minimum).
	MaxRcpts int
	// NoPipelining forces one command at a time even if offered.
	NoPipelining bool
	// Chunking selects DATA always (default) or BDAT when offered.
	Chunking ChunkingPolicy
	// PipelineDepth is how many transactions (MAIL, RCPT×n, BDAT LAST and
	// the body) may be in flight at once when the server offers PIPELINING
	// and CHUNKING (0 = 4; 1 = one at a time). PipelineBytes stops adding
	// transactions to one write once their bodies reach it (0 = 256 KiB; a
	// larger message still goes out alone). Without CHUNKING at most two
	// transactions overlap (the next envelope rides with the final dot).
	PipelineDepth int
	PipelineBytes int
	Timeouts      Timeouts
}

// Dial asks the engine to open one connection.
type Dial struct {
	Path   uint64
	Source netip.Addr // zero: let the kernel choose
	Host   string     // for ConnInfo, TLS SNI and the TLS-capability cache
	Addr   netip.AddrPort
	Config *SessionConfig
}
