package engine

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
)

// dialPool dials outside the event loops (ARCHITECTURE decision 4): gnet's
// own dial has neither a source address nor a timeout. A fixed number of
// workers take Dial requests from an unbounded FIFO, dial with
// net.Dialer{LocalAddr, Timeout}, and enroll the socket on the loop of the
// request's path. Enrolling blocks the worker until OnOpen has run.
type dialPool struct {
	e      *Engine
	mu     sync.Mutex
	cond   *sync.Cond
	q      []dialReq
	head   int
	err    error // set by stop: queued and new requests fail with it
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (p *dialPool) init(e *Engine) {
	p.e = e
	p.cond = sync.NewCond(&p.mu)
	p.ctx, p.cancel = context.WithCancel(context.Background())
}

func (p *dialPool) start(n int) {
	for i := 0; i < n; i++ {
		p.wg.Add(1)
		go p.work()
	}
}

// dialReq is a Dial and, for relay connections, the pool that redials.
type dialReq struct {
	Dial
	relay *RelayPool
}

// push queues d; after stop it fails d asynchronously.
func (p *dialPool) push(d dialReq) {
	p.mu.Lock()
	if err := p.err; err != nil {
		p.mu.Unlock()
		p.e.failDialAsync(d, err)
		return
	}
	p.q = append(p.q, d)
	p.mu.Unlock()
	p.cond.Signal()
}

// pop blocks for the next request; ok is false once the pool is stopped.
func (p *dialPool) pop() (d dialReq, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.head == len(p.q) && p.err == nil {
		p.cond.Wait()
	}
	if p.err != nil {
		return dialReq{}, false
	}
	d = p.q[p.head]
	p.q[p.head] = dialReq{}
	p.head++
	if p.head == len(p.q) {
		p.q, p.head = p.q[:0], 0
		if cap(p.q) > 256 {
			p.q = nil // a burst of dials (10,000 at start) need not stay resident
		}
	}
	return d, true
}

// stop makes the pool refuse work with err, fails what is queued, and
// cancels dials in progress (ErrEngineClosed only: a graceful stop lets
// dials in progress finish and their sessions drain).
func (p *dialPool) stop(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	q := p.q[p.head:]
	p.q, p.head = nil, 0
	p.mu.Unlock()
	p.cond.Broadcast()
	if err == ErrEngineClosed {
		p.cancel()
	}
	for _, d := range q {
		p.e.failDial(d, netipZero(d.Dial), err)
	}
}

func (p *dialPool) wait() { p.wg.Wait() }

func (p *dialPool) work() {
	defer p.wg.Done()
	for {
		d, ok := p.pop()
		if !ok {
			return
		}
		p.e.dialOne(p.ctx, d)
	}
}

// netipZero is the ConnInfo of a request that never got a socket.
func netipZero(d Dial) ConnInfo {
	return ConnInfo{Path: d.Path, Source: d.Source, Host: d.Host, Addr: d.Addr}
}

// failDial reports a dial that produced no session.
func (e *Engine) failDial(d dialReq, info ConnInfo, err error) {
	e.st.dialFailures.Add(1)
	e.st.dialing.Add(-1)
	if info.ID == 0 {
		info.ID = e.ids.Add(1)
	}
	e.cfg.Reporter.ConnClosed(info, err)
	if d.relay != nil {
		d.relay.ended(err)
	}
	e.connEnded()
}

// dialOne dials d and enrolls the socket; on any failure it reports
// ConnClosed itself.
func (e *Engine) dialOne(ctx context.Context, d dialReq) {
	e.st.dials.Add(1)
	info := ConnInfo{ID: e.ids.Add(1), Path: d.Path, Source: d.Source, Host: d.Host, Addr: d.Addr}
	timeout := d.Config.Timeouts.Connect
	if timeout <= 0 {
		timeout = DefaultTimeouts().Connect
	}
	nd := net.Dialer{Timeout: timeout}
	if d.Source.IsValid() {
		nd.LocalAddr = &net.TCPAddr{IP: d.Source.AsSlice(), Zone: d.Source.Zone()}
	}
	nc, err := nd.DialContext(ctx, "tcp", d.Addr.String())
	if err != nil {
		if ctx.Err() != nil {
			err = ErrEngineClosed
		}
		e.failDial(d, info, err)
		return
	}
	if la, ok := nc.LocalAddr().(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(la.IP); ok {
			info.Source = a.Unmap()
		}
	}
	dc := newConn(e, d, info)
	if dc.cfg.TLS == TLSImplicit && e.cfg.TLSGoroutine {
		if e.state.Load() == engClosed {
			nc.Close()
			e.failDial(d, info, ErrEngineClosed)
			return
		}
		e.startImplicit(dc, nc)
		return
	}
	l := e.loopFor(d.Path)
	// Close takes the write lock before stopping the loops, so a loop is
	// running while a worker waits in EnrollContext for OnOpen.
	e.enrollMu.RLock()
	if e.state.Load() == engClosed {
		e.enrollMu.RUnlock()
		nc.Close()
		e.failDial(d, info, ErrEngineClosed)
		return
	}
	// EnrollContext dups the descriptor, closes nc, and returns after
	// OnOpen ran on the loop; from then on the session reports ConnClosed.
	_, err = l.cli.EnrollContext(nc, dc)
	e.enrollMu.RUnlock()
	if err != nil || !dc.opened.Load() {
		if err == nil {
			err = errors.New("engine: gnet did not open the connection")
		}
		e.failDial(d, info, err)
	}
}
