package engine

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// Writev discipline (ARCHITECTURE decision 3): at most drvMaxIOV iovecs per
// writev (well below IOV_MAX 1024), and runs of segments of at most
// drvTinySeg bytes are copied into one per-loop buffer first, so a pipelined
// group of commands is one iovec, not one per command.
const (
	drvMaxIOV  = 64
	drvTinySeg = 512
)

// drvLoop is one gnet.Client with one event loop. It is the gnet event
// handler of that client. Fields below "loop goroutine only" are touched
// only on the loop goroutine (gnet callbacks and Runnables it Executes).
type drvLoop struct {
	gnet.BuiltinEventEngine
	e   *Engine
	idx int
	cli *gnet.Client
	el  atomic.Pointer[drvEventLoop] // set by the first OnOpen

	tickPending atomic.Bool
	wakePending atomic.Bool
	wakeMu      sync.Mutex
	wakes       map[uint64]struct{} // paths to wake, guarded by wakeMu
	wakeSpare   map[uint64]struct{}

	tickRun, wakeRun, drainRun gnet.Runnable

	// loop goroutine only
	conns  []*drvConn
	byPath map[uint64][]*drvConn
	iov    [][]byte
	small  []byte
}

// draining reports whether the engine is stopping (sessions should QUIT
// once idle instead of asking the Feeder).
func (l *drvLoop) draining() bool { return l.e.state.Load() >= engStopping }

var _ gnet.EventHandler = (*drvLoop)(nil)

// drvEventLoop boxes the gnet.EventLoop of a client for an atomic.Pointer.
type drvEventLoop struct{ gnet.EventLoop }

func newLoop(e *Engine, idx int) *drvLoop {
	l := &drvLoop{
		e: e, idx: idx,
		wakes:     make(map[uint64]struct{}),
		wakeSpare: make(map[uint64]struct{}),
		byPath:    make(map[uint64][]*drvConn),
		iov:       make([][]byte, 0, drvMaxIOV),
		small:     make([]byte, 0, 16<<10),
	}
	l.tickRun = gnet.RunnableFunc(func(context.Context) error { l.sweep(); return nil })
	l.wakeRun = gnet.RunnableFunc(func(context.Context) error { l.runWakes(); return nil })
	l.drainRun = gnet.RunnableFunc(func(context.Context) error { l.runDrain(); return nil })
	return l
}

// execute runs r on the loop goroutine soon; false if the loop has no
// connection yet (then there is nothing to run it for) or is gone.
func (l *drvLoop) execute(r gnet.Runnable) bool {
	ref := l.el.Load()
	if ref == nil {
		return false
	}
	return ref.Execute(context.Background(), r) == nil
}

// OnTick runs on gnet's ticker goroutine, not on the loop: it only asks the
// loop to sweep (once; a sweep still pending is not queued again).
func (l *drvLoop) OnTick() (time.Duration, gnet.Action) {
	if l.tickPending.CompareAndSwap(false, true) && !l.execute(l.tickRun) {
		l.tickPending.Store(false)
	}
	return l.e.cfg.Tick, gnet.None
}

// sweep expires sessions past their deadline and polls idle ones, with one
// clock read. Loop goroutine.
func (l *drvLoop) sweep() {
	l.tickPending.Store(false)
	now := time.Now().UnixNano()
	// Backwards: closing conns[i] moves the last (already visited) entry
	// into slot i.
	for i := len(l.conns) - 1; i >= 0; i-- {
		if i >= len(l.conns) {
			continue
		}
		d := l.conns[i]
		if d.tls != nil && d.tls.handshaking {
			if dl := d.tls.deadline; now >= dl {
				d.handshakeTimeout(now)
			}
			continue
		}
		if dl := d.s.Deadline(); dl != 0 && now >= dl {
			d.s.Expire(now)
		}
		switch {
		case d.closing:
		case l.draining():
			drvDrain(d.s, now) // again each tick: a busy session QUITs once idle
		default:
			d.s.Poll(now)
		}
		d.settle(now)
	}
}

// wake queues path for runWakes. Any goroutine.
func (l *drvLoop) wake(path uint64) {
	l.wakeMu.Lock()
	l.wakes[path] = struct{}{}
	l.wakeMu.Unlock()
	if l.wakePending.CompareAndSwap(false, true) && !l.execute(l.wakeRun) {
		l.wakePending.Store(false)
	}
}

// runWakes polls the sessions of the woken paths. Loop goroutine.
func (l *drvLoop) runWakes() {
	l.wakePending.Store(false) // a Wake from now on queues another run
	l.wakeMu.Lock()
	paths := l.wakes
	l.wakes, l.wakeSpare = l.wakeSpare, paths
	l.wakeMu.Unlock()
	if l.draining() {
		clear(paths)
		return
	}
	now := time.Now().UnixNano()
	for p := range paths {
		cs := l.byPath[p]
		for i := len(cs) - 1; i >= 0; i-- {
			cs = l.byPath[p]
			if i >= len(cs) {
				continue
			}
			d := cs[i]
			if d.closing || (d.tls != nil && d.tls.handshaking) {
				continue
			}
			d.s.Poll(now)
			d.settle(now)
		}
	}
	clear(paths)
}

// drain starts a graceful stop on the loop. Any goroutine.
func (l *drvLoop) drain() { l.execute(l.drainRun) }

// runDrain asks every session to finish and QUIT. Loop goroutine.
func (l *drvLoop) runDrain() {
	now := time.Now().UnixNano()
	for i := len(l.conns) - 1; i >= 0; i-- {
		if i >= len(l.conns) {
			continue
		}
		d := l.conns[i]
		d.drain(now)
	}
}

func (l *drvLoop) add(d *drvConn) {
	d.idx = len(l.conns)
	l.conns = append(l.conns, d)
	l.byPath[d.dial.Path] = append(l.byPath[d.dial.Path], d)
}

func (l *drvLoop) remove(d *drvConn) {
	last := len(l.conns) - 1
	if d.idx < 0 || d.idx > last || l.conns[d.idx] != d {
		panic("engine: BUG: driver connection not in its loop's list")
	}
	l.conns[d.idx] = l.conns[last]
	l.conns[d.idx].idx = d.idx
	l.conns[last] = nil
	l.conns = l.conns[:last]
	d.idx = -1
	cs := l.byPath[d.dial.Path]
	for i, x := range cs {
		if x == d {
			cs[i] = cs[len(cs)-1]
			cs[len(cs)-1] = nil
			cs = cs[:len(cs)-1]
			break
		}
	}
	if len(cs) == 0 {
		delete(l.byPath, d.dial.Path)
	} else {
		l.byPath[d.dial.Path] = cs
	}
}

// OnOpen creates the session of an enrolled connection. Loop goroutine.
func (l *drvLoop) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	d, _ := c.Context().(*drvConn)
	if d == nil {
		return nil, gnet.Close
	}
	if l.el.Load() == nil {
		l.el.Store(&drvEventLoop{c.EventLoop()})
	}
	e := l.e
	d.c, d.l = c, l
	d.opened.Store(true)
	e.st.dialing.Add(-1)
	e.st.open.Add(1)
	e.st.opened.Add(1)
	now := time.Now().UnixNano()
	d.s = newDriverSession(d.cfg, d.connInfo(), e, d, now)
	l.add(d)
	if d.cfg.TLS == TLSImplicit {
		d.startTLS(now) // in the loop (the goroutine driver took it at dial time)
	}
	if l.draining() {
		d.drain(now)
	}
	return nil, d.pump(now)
}

// OnTraffic feeds the session what arrived (Peek, Feed, Discard exactly
// what was consumed) and writes what it wants to send. Loop goroutine.
func (l *drvLoop) OnTraffic(c gnet.Conn) gnet.Action {
	d, _ := c.Context().(*drvConn)
	if d == nil || d.closed {
		return gnet.Close
	}
	now := time.Now().UnixNano()
	if d.tls != nil {
		return d.trafficTLS(c, now)
	}
	buf, _ := c.Peek(-1)
	if len(buf) == 0 {
		return d.pump(now)
	}
	n, err := d.s.Feed(buf, now)
	if n > 0 {
		_, _ = c.Discard(n)
	}
	if err != nil {
		d.fail(err, now)
		return gnet.Close
	}
	return d.pump(now)
}

// OnClose ends the session: recipients in flight are deferred by
// Session.Closed, which reports ConnClosed. Loop goroutine.
func (l *drvLoop) OnClose(c gnet.Conn, err error) gnet.Action {
	d, _ := c.Context().(*drvConn)
	if d == nil || d.closed {
		return gnet.None
	}
	d.closed = true
	e := l.e
	l.remove(d)
	if d.handedOff {
		return gnet.None // the goroutine driver owns the session now
	}
	now := time.Now().UnixNano()
	if d.closeErr != nil {
		err = d.closeErr
	}
	if err == nil && e.state.Load() == engClosed && !d.s.WantsClose() {
		err = ErrEngineClosed
	}
	if d.tls != nil {
		d.tls.close()
	}
	d.retry = d.s.RetryPlain() && e.state.Load() == engRunning
	e.st.open.Add(-1)
	e.st.closed.Add(1)
	d.s.Closed(err, now)
	if d.retry {
		e.retryPlain(d)
	}
	e.connEnded()
	return gnet.None
}

// drvConn is the driver's state of one connection. It is the Reporter its
// session reports to (forwarding to the engine's), so that the ConnClosed
// of a connection replaced by a plaintext redial is not reported twice.
type drvConn struct {
	e    *Engine
	l    *drvLoop
	c    gnet.Conn
	s    driverSession
	cfg  *SessionConfig
	dial dialReq
	id   uint64     // ConnInfo.ID
	src  netip.Addr // ConnInfo.Source: the socket's local address
	idx  int        // in l.conns

	opened  atomic.Bool // OnOpen ran (read by the dial worker)
	closing bool        // close requested
	closed  bool        // OnClose ran
	retry   bool        // replaced by a plaintext redial
	// handedOff: the session moved to the goroutine driver (TLS); the
	// gnet side only closes its descriptor.
	handedOff bool
	closeErr  error
	tls       *drvTLS // nil: plaintext
}

func newConn(e *Engine, d dialReq, info ConnInfo) *drvConn {
	cfg := d.Config
	if cfg.TLS == TLSOpportunistic && e.cfg.TLSCache != nil && e.cfg.TLSCache.Broken(d.Host) {
		c := *cfg
		c.TLS = TLSDisabled
		cfg = &c
	}
	if cfg.Chunking == ChunkingAuto {
		if _, bad := e.noChunk.Load(d.Host); bad {
			c := *cfg
			c.Chunking = ChunkingOff
			cfg = &c
		}
	}
	return &drvConn{e: e, cfg: cfg, dial: d, id: info.ID, src: info.Source, idx: -1}
}

// connInfo is the ConnInfo the session starts with (the session keeps its
// own copy up to date; the driver keeps only what it cannot derive).
func (d *drvConn) connInfo() ConnInfo {
	return ConnInfo{ID: d.id, Path: d.dial.Path, Source: d.src, Host: d.dial.Host, Addr: d.dial.Addr}
}

// Outcome forwards to the engine's Reporter.
func (d *drvConn) Outcome(env *Envelope, i int, o Outcome) { d.e.cfg.Reporter.Outcome(env, i, o) }

// Done forwards to the engine's Reporter.
func (d *drvConn) Done(env *Envelope) { d.e.cfg.Reporter.Done(env) }

// ConnClosed forwards to the engine's Reporter unless the connection is
// being replaced by a plaintext redial. A session that ended out of step
// with a BDAT pipeline makes later connections to its host use DATA
// (newConn).
func (d *drvConn) ConnClosed(c ConnInfo, err error) {
	if errors.Is(err, ErrOutOfStep) {
		d.e.noChunk.Store(d.dial.Host, struct{}{})
	}
	if d.retry {
		return
	}
	d.e.cfg.Reporter.ConnClosed(c, err)
	if d.dial.relay != nil {
		d.dial.relay.ended(err)
	}
}

// fail records a fatal error; the caller closes the connection.
func (d *drvConn) fail(err error, now int64) {
	if d.closeErr == nil {
		d.closeErr = err
	}
	d.closing = true
	// Let the session's last words (QUIT) go out before the close.
	if d.closed || (d.tls != nil && d.tls.handshaking) {
		return
	}
	if out := d.s.Output(); out != nil {
		if d.tls != nil {
			d.writeTLS(out)
		} else {
			d.l.writev(d.c, out)
		}
		if !d.closed {
			d.s.Flushed()
		}
	}
}

// pump writes the session's output and says whether to close. Loop
// goroutine, inside a gnet callback (the caller returns the Action).
func (d *drvConn) pump(now int64) gnet.Action {
	if d.closed {
		return gnet.Close
	}
	if d.tls == nil && d.s.WantsTLS() {
		d.startTLS(now) // hands the session to the goroutine driver
		if d.handedOff {
			return gnet.Close
		}
	}
	if d.tls != nil && d.tls.handshaking {
		return gnet.None
	}
	if out := d.s.Output(); out != nil {
		if d.tls != nil {
			d.writeTLS(out)
		} else {
			d.l.writev(d.c, out)
		}
		if d.closed {
			return gnet.Close
		}
		d.s.Flushed()
	}
	if d.closing || d.s.WantsClose() {
		d.closing = true
		return gnet.Close
	}
	return gnet.None
}

// settle is pump outside a gnet callback: it closes the connection itself.
func (d *drvConn) settle(now int64) {
	if d.pump(now) == gnet.Close && !d.closed {
		if ref := d.l.el.Load(); ref != nil {
			_ = ref.Close(d.c) // runs OnClose now, on this goroutine
		}
	}
}

// writev writes segs with Writev: iovecs capped at drvMaxIOV, runs of tiny
// segments merged into l.small. gnet writes what the socket takes and
// copies the rest into the connection's outbound buffer, so segs is
// consumed when writev returns. Loop goroutine.
func (l *drvLoop) writev(c gnet.Conn, segs [][]byte) {
	iov := l.iov[:0]
	sb := l.small[:0]
	run := -1 // start of the current run of tiny segments in sb
	for _, s := range segs {
		if len(s) == 0 {
			continue
		}
		if len(s) <= drvTinySeg {
			if run < 0 {
				run = len(sb)
			}
			sb = append(sb, s...) // growth leaves earlier iovecs on the old, intact array
			continue
		}
		if run >= 0 {
			iov = append(iov, sb[run:len(sb):len(sb)])
			run = -1
		}
		iov = append(iov, s)
		if len(iov) >= drvMaxIOV-1 {
			if !l.flushIOV(c, iov) {
				return
			}
			iov, sb = iov[:0], sb[:0]
		}
	}
	if run >= 0 {
		iov = append(iov, sb[run:len(sb):len(sb)])
	}
	if len(iov) > 0 {
		l.flushIOV(c, iov)
	}
	clear(iov)
	l.iov, l.small = iov[:0], sb[:0]
}

// flushIOV hands iov to gnet; false if the connection failed (gnet has
// then already run OnClose).
func (l *drvLoop) flushIOV(c gnet.Conn, iov [][]byte) bool {
	var err error
	if len(iov) == 1 {
		_, err = c.Write(iov[0])
	} else {
		_, err = c.Writev(iov)
	}
	return err == nil
}

// drain asks the session to finish what is in flight and QUIT.
func (d *drvConn) drain(now int64) {
	if d.closing || d.closed {
		return
	}
	drvDrain(d.s, now)
	d.settle(now)
}
