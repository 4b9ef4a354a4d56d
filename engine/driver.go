package engine

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/panjf2000/gnet/v2"
)

// Errors reported by the driver through Reporter.ConnClosed.
var (
	// ErrEngineClosed is the error of connections cut by Engine.Close (or
	// by Stop when its context ended) and of dials refused after it.
	ErrEngineClosed = errors.New("engine: engine closed")
	// ErrEngineStopping is the error of dials refused during a graceful Stop.
	ErrEngineStopping = errors.New("engine: engine stopping")
	// ErrNotStarted is returned by Dial's report when Start was not called.
	ErrNotStarted = errors.New("engine: engine not started")
)

// TLSMemory is what the driver needs from a TLS-capability cache: opportunistic
// sessions skip STARTTLS with a host marked broken, a failed handshake marks
// it, a successful one clears it. *TLSCache implements it. Methods must be
// safe for concurrent use; Broken is called on the dial goroutines and must
// not block.
type TLSMemory interface {
	Broken(host string) bool
	MarkBroken(host string, until time.Time)
	MarkOK(host string)
}

var _ TLSMemory = (*TLSCache)(nil)

// Config configures an Engine. Feeder and Reporter are required.
type Config struct {
	// Loops is the number of event loops (0 = runtime.NumCPU()). Each loop
	// is its own gnet.Client with one event loop (see Engine).
	Loops    int
	Feeder   Feeder
	Reporter Reporter
	// TLS is the base client configuration for STARTTLS and implicit TLS
	// (nil = a zero tls.Config). It is cloned per connection; ServerName and
	// InsecureSkipVerify are set from the Dial's SessionConfig.
	TLS *tls.Config
	// TLSCache remembers hosts whose handshake failed (nil = no memory,
	// but an opportunistic failure still redials once without TLS).
	TLSCache TLSMemory
	// TLSGoroutine runs TLS sessions on a goroutine each (the decision 6
	// fallback) instead of in the loop over TLSLink.
	TLSGoroutine bool
	// TLSBrokenFor is how long a failed host is skipped (0 = 1 hour).
	TLSBrokenFor time.Duration
	// DialWorkers is the size of the dial pool (0 = 16).
	DialWorkers int
	// Tick is how often each loop sweeps deadlines and polls idle sessions
	// (0 = 100 ms). Timeouts are accurate to one Tick.
	Tick time.Duration
	// Logf receives gnet's error logs (nil = log.Printf).
	Logf func(format string, args ...any)
}

// Stats is a snapshot of the engine's counters.
type Stats struct {
	Open         int64  // connections enrolled and not yet closed
	Dialing      int64  // dials queued or in progress
	Dials        uint64 // dials attempted
	DialFailures uint64 // dials that failed (reported via ConnClosed)
	Opened       uint64 // connections enrolled in total
	Closed       uint64 // connections closed in total
	TLS          uint64 // successful TLS handshakes (STARTTLS and implicit)
	TLSFailures  uint64 // failed TLS handshakes
	PlainRetries uint64 // opportunistic TLS failures redialled without TLS
	Goroutined   uint64 // connections handed to the goroutine driver
}

type stats struct {
	open, dialing                                                 atomic.Int64
	dials, dialFailures, opened, closed, tls, tlsFail, plain, gor atomic.Uint64
}

// Engine state.
const (
	engNew int32 = iota // zero: New returned, Start not called
	engRunning
	engStopping // Stop called: no new transactions, no new dials
	engClosed
)

// Engine drives SMTP client sessions on gnet event loops.
//
// gnet's Client picks the loop of an enrolled connection itself (least
// connections) and offers no way to choose it, and it runs OnTick on a
// separate goroutine for loop 0 only. To keep every session of one egress
// path on one loop (ARCHITECTURE decision 4) and to give each loop its own
// tick, the Engine runs Loops gnet.Clients of one event loop each and picks
// the client by the xxhash of Dial.Path. A tick is turned into work on the
// loop goroutine with gnet's EventLoop.Execute, so sessions are only ever
// touched by their loop.
//
// STARTTLS and implicit TLS run in the loop over TLSLink, or, with
// Config.TLSGoroutine, on a goroutine driver with the same Session (see
// driver_tls.go).
//
// Dial, Wake and Stats are safe for concurrent use from any goroutine; Stop
// and Close may be called once each from any goroutine but an event loop.
type Engine struct {
	cfg   Config
	loops []*drvLoop
	state atomic.Int32
	ids   atomic.Uint64
	st    stats
	dials dialPool

	goConns goConnSet // sessions on the goroutine driver (TLS)

	// noChunk holds the hosts whose server went out of step with a BDAT
	// pipeline (ErrOutOfStep): later connections to them use DATA.
	noChunk sync.Map // host string → struct{}

	enrollMu  sync.RWMutex // read: a worker enrolling; write: Close stopping the loops
	closeOnce sync.Once
	idle      chan struct{} // signalled (non-blocking) when a connection ends
}

// New returns an engine; Start starts it.
func New(cfg Config) (*Engine, error) {
	if cfg.Feeder == nil || cfg.Reporter == nil {
		return nil, errors.New("engine: Config needs a Feeder and a Reporter")
	}
	if cfg.Loops <= 0 {
		cfg.Loops = runtime.NumCPU()
	}
	if cfg.DialWorkers <= 0 {
		cfg.DialWorkers = 16
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 100 * time.Millisecond
	}
	if cfg.TLSBrokenFor <= 0 {
		cfg.TLSBrokenFor = time.Hour
	}
	if cfg.TLS == nil {
		cfg.TLS = &tls.Config{}
	}
	if cfg.Logf == nil {
		cfg.Logf = log.Printf
	}
	e := &Engine{cfg: cfg, idle: make(chan struct{}, 1)}
	e.dials.init(e)
	for i := 0; i < cfg.Loops; i++ {
		l := newLoop(e, i)
		cli, err := gnet.NewClient(l,
			gnet.WithNumEventLoop(1),
			gnet.WithTicker(true),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithLogger(gnetLogger{cfg.Logf}),
		)
		if err != nil {
			return nil, fmt.Errorf("engine: gnet client: %w", err)
		}
		l.cli = cli
		e.loops = append(e.loops, l)
	}
	return e, nil
}

// Start starts the event loops and the dial pool.
func (e *Engine) Start() error {
	if !e.state.CompareAndSwap(engNew, engRunning) {
		return errors.New("engine: Start called twice or after Close")
	}
	for i, l := range e.loops {
		if err := l.cli.Start(); err != nil {
			for _, l := range e.loops[:i] {
				_ = l.cli.Stop()
			}
			e.state.Store(engClosed)
			return fmt.Errorf("engine: start loop %d: %w", i, err)
		}
	}
	e.dials.start(e.cfg.DialWorkers)
	return nil
}

// Dial asks the engine to open one connection. It returns at once; the dial
// happens on the dial pool, then the socket is enrolled on the loop of
// d.Path. A failed dial is reported with Reporter.ConnClosed (no envelope was
// taken). d.Config must not change afterwards. Safe for concurrent use.
func (e *Engine) Dial(d Dial) {
	e.st.dialing.Add(1)
	switch e.state.Load() {
	case engRunning:
		e.dials.push(dialReq{Dial: d})
		return
	case engNew:
		e.failDialAsync(dialReq{Dial: d}, ErrNotStarted)
	case engStopping:
		e.failDialAsync(dialReq{Dial: d}, ErrEngineStopping)
	default:
		e.failDialAsync(dialReq{Dial: d}, ErrEngineClosed)
	}
}

// failDialAsync reports a dial refused before it started, off the caller's
// goroutine (the caller may hold locks its Reporter takes).
func (e *Engine) failDialAsync(d dialReq, err error) {
	go e.failDial(d, netipZero(d.Dial), err)
}

// Wake makes the idle sessions of path ask the Feeder again soon (on their
// loop, not on the caller's goroutine). Safe for concurrent use; cheap when
// a wake for the loop is already pending.
func (e *Engine) Wake(path uint64) {
	if e.state.Load() != engRunning {
		return
	}
	e.loopFor(path).wake(path)
}

// Stats returns a snapshot of the counters. Safe for concurrent use.
func (e *Engine) Stats() Stats {
	return Stats{
		Open: e.st.open.Load(), Dialing: e.st.dialing.Load(),
		Dials: e.st.dials.Load(), DialFailures: e.st.dialFailures.Load(),
		Opened: e.st.opened.Load(), Closed: e.st.closed.Load(),
		TLS: e.st.tls.Load(), TLSFailures: e.st.tlsFail.Load(),
		PlainRetries: e.st.plain.Load(), Goroutined: e.st.gor.Load(),
	}
}

// Stop ends the engine gracefully: no new dials are started (queued ones
// are reported as failed with ErrEngineStopping), the Feeder is no longer
// asked, sessions finish the transactions in flight and QUIT. When the last
// connection has ended, or when ctx ends first, Stop closes the engine as
// Close does and returns ctx's error in the second case.
func (e *Engine) Stop(ctx context.Context) error {
	if !e.state.CompareAndSwap(engRunning, engStopping) {
		if e.state.Load() == engNew {
			e.Close()
		}
		return nil
	}
	e.dials.stop(ErrEngineStopping)
	for _, l := range e.loops {
		l.drain()
	}
	var err error
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for e.st.open.Load() > 0 || e.st.dialing.Load() > 0 {
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-e.idle:
		case <-t.C:
		}
		if err != nil {
			break
		}
	}
	e.Close()
	return err
}

// Close ends the engine now: every connection is cut (recipients in flight
// are reported deferred, ConnClosed gets ErrEngineClosed), queued dials are
// reported as failed, and the event loops exit. Safe to call more than once.
func (e *Engine) Close() {
	e.closeOnce.Do(func() {
		prev := e.state.Swap(engClosed)
		e.dials.stop(ErrEngineClosed)
		if prev == engNew {
			return
		}
		e.goConns.closeAll()
		e.enrollMu.Lock()
		for _, l := range e.loops {
			// Stop runs OnClose for every connection on the loop goroutine
			// before the loop exits; handler sees engClosed.
			_ = l.cli.Stop()
		}
		e.enrollMu.Unlock()
		e.dials.wait()
	})
}

// loopFor returns the loop of an egress path.
func (e *Engine) loopFor(path uint64) *drvLoop {
	if len(e.loops) == 1 {
		return e.loops[0]
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], path)
	return e.loops[xxhash.Sum64(b[:])%uint64(len(e.loops))]
}

// connEnded wakes a waiting Stop.
func (e *Engine) connEnded() {
	select {
	case e.idle <- struct{}{}:
	default:
	}
}

// Next implements Feeder for sessions: it stops asking the caller's Feeder
// once the engine is stopping.
func (e *Engine) Next(c ConnInfo, now time.Time) *Envelope {
	if e.state.Load() != engRunning {
		return nil
	}
	return e.cfg.Feeder.Next(c, now)
}

// gnetLogger forwards gnet's errors and drops the rest.
type gnetLogger struct{ logf func(string, ...any) }

func (gnetLogger) Debugf(string, ...any)       {}
func (gnetLogger) Infof(string, ...any)        {}
func (gnetLogger) Warnf(string, ...any)        {}
func (g gnetLogger) Errorf(f string, a ...any) { g.logf("gnet: "+f, a...) }
func (g gnetLogger) Fatalf(f string, a ...any) { g.logf("gnet: fatal: "+f, a...) }

// retryPlain redials a connection whose opportunistic TLS failed, without
// TLS, and remembers the host as broken. Loop goroutine (from OnClose).
func (e *Engine) retryPlain(d *drvConn) {
	e.st.plain.Add(1)
	if tc := e.cfg.TLSCache; tc != nil {
		host, until := d.dial.Host, time.Now().Add(e.cfg.TLSBrokenFor)
		go tc.MarkBroken(host, until) // ristretto's Wait must not stall the loop
	}
	cfg := *d.cfg
	cfg.TLS = TLSDisabled
	nd := d.dial
	nd.Config = &cfg
	e.st.dialing.Add(1)
	e.dials.push(nd)
}
