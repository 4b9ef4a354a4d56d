package engine

import (
	"net/netip"
	"sync/atomic"
	"time"
)

// Relay describes a fixed pool of connections to one smarthost (relay
// mode): usually with Config.Auth and TLSRequired (STARTTLS) or TLSImplicit
// (port 465).
type Relay struct {
	Path   uint64
	Source netip.Addr
	Host   string
	Addr   netip.AddrPort
	Config *SessionConfig
	// Size is the number of connections kept open (0 = 1).
	Size int
	// Backoff is the wait before replacing a connection that ended with an
	// error or failed to dial (0 = 1 s); one that ended with QUIT (for
	// example after Config.MaxMessages) is replaced at once.
	Backoff time.Duration
}

// RelayPool keeps Relay.Size connections to a smarthost, replacing each one
// that ends, until Stop or until the engine stops. Every connection is an
// ordinary engine connection: it takes envelopes from the Feeder and
// reports through the Reporter (ConnClosed included).
type RelayPool struct {
	e       *Engine
	r       Relay
	stopped atomic.Bool
	redials atomic.Int64
}

// StartRelay dials r.Size connections and returns the pool that keeps them.
// Safe for concurrent use.
func (e *Engine) StartRelay(r Relay) *RelayPool {
	if r.Size <= 0 {
		r.Size = 1
	}
	if r.Backoff <= 0 {
		r.Backoff = time.Second
	}
	p := &RelayPool{e: e, r: r}
	for i := 0; i < r.Size; i++ {
		p.dial()
	}
	return p
}

// Stop stops replacing connections; open ones finish normally.
func (p *RelayPool) Stop() { p.stopped.Store(true) }

// Redials returns how many connections were replaced so far.
func (p *RelayPool) Redials() int64 { return p.redials.Load() }

func (p *RelayPool) dial() {
	d := Dial{Path: p.r.Path, Source: p.r.Source, Host: p.r.Host, Addr: p.r.Addr, Config: p.r.Config}
	e := p.e
	e.st.dialing.Add(1)
	if e.state.Load() != engRunning {
		e.failDialAsync(dialReq{Dial: d}, ErrEngineStopping)
		return
	}
	e.dials.push(dialReq{Dial: d, relay: p})
}

// ended is called after a pool connection's ConnClosed.
func (p *RelayPool) ended(err error) {
	if p.stopped.Load() || p.e.state.Load() != engRunning {
		return
	}
	p.redials.Add(1)
	if err == nil {
		p.dial()
		return
	}
	time.AfterFunc(p.r.Backoff, func() {
		if !p.stopped.Load() && p.e.state.Load() == engRunning {
			p.dial()
		}
	})
}
