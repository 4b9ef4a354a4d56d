package engine

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/spate-mta/spate/codec"
)

// TLS (ARCHITECTURE decision 6). By default it runs in the loop over
// engine/tlslink.go: the handshake on the link's short-lived goroutine, fed
// from OnTraffic, then the record layer on the loop goroutine. With
// Config.TLSGoroutine, the fallback: the driver duplicates the socket, lets
// gnet close its descriptor (the duplicate keeps the TCP connection open,
// no FIN), and hands the duplicate and the same Session to a goroutine that
// runs crypto/tls and drives the session with blocking reads (read deadline
// = the session's deadline or the next tick); implicit TLS connections then
// go to it straight from the dial pool. Sessions on the goroutine driver
// are polled every Tick (not by Wake), and take part in Stop and Close.

// drvTLS is the in-loop TLS state of one connection (engine/tlslink.go):
// the handshake runs on the link's goroutine, ciphertext goes through
// OnTraffic, and after the handshake the record layer runs on the loop.
type drvTLS struct {
	link        *TLSLink
	handshaking bool  // loop's view: TLSDone not yet called
	deadline    int64 // handshake deadline (StartTLS timeout)
	implicit    bool
	plain       []byte // decrypted bytes not yet consumed by Feed

	mu      sync.Mutex
	done    bool // the handshake goroutine finished
	err     error
	kicking atomic.Bool // a kick is queued on the loop
}

func (t *drvTLS) close() { t.link.Close() }

// startTLS starts TLS on the connection: in the loop (default), or by
// handing the session to the goroutine driver (Config.TLSGoroutine). Loop
// goroutine, from pump or OnOpen (implicit TLS).
func (d *drvConn) startTLS(now int64) {
	if d.e.cfg.TLSGoroutine {
		d.handOff(now)
		return
	}
	to := d.cfg.Timeouts.StartTLS
	if to <= 0 {
		to = DefaultTimeouts().StartTLS
	}
	t := &drvTLS{link: NewTLSLink(d.e.tlsConfig(d)), handshaking: true, deadline: now + int64(to),
		implicit: d.cfg.TLS == TLSImplicit}
	d.tls = t
	if buf, _ := d.c.Peek(-1); len(buf) > 0 { // bytes after the 220 belong to TLS
		t.link.FeedCiphertext(buf)
		_, _ = d.c.Discard(len(buf))
	}
	t.link.Handshake(func() { d.kick() }, func(err error) {
		t.mu.Lock()
		t.done, t.err = true, err
		t.mu.Unlock()
		d.kick()
	})
}

// kick runs tlsKick on the loop. Any goroutine (the handshake's).
func (d *drvConn) kick() {
	t := d.tls
	if !t.kicking.CompareAndSwap(false, true) {
		return
	}
	ok := d.l.execute(gnet.RunnableFunc(func(context.Context) error {
		t.kicking.Store(false)
		if !d.closed && d.tls == t {
			d.tlsKick(time.Now().UnixNano())
		}
		return nil
	}))
	if !ok {
		t.kicking.Store(false)
	}
}

// tlsKick writes handshake ciphertext and, once the handshake ended, tells
// the session. Loop goroutine.
func (d *drvConn) tlsKick(now int64) {
	t := d.tls
	d.writeCipher()
	if d.closed || !t.handshaking {
		return
	}
	t.mu.Lock()
	done, err := t.done, t.err
	t.mu.Unlock()
	if !done {
		return
	}
	d.tlsDone(err, now)
	if err == nil {
		// Ciphertext that arrived while the loop still thought the
		// handshake ran (an implicit-TLS banner) is waiting in the link.
		if d.readPlain(now) == gnet.Close && !d.closed {
			if ref := d.l.el.Load(); ref != nil {
				_ = ref.Close(d.c)
			}
		}
		return
	}
	d.settle(now)
}

// tlsDone ends the handshake for the session. Loop goroutine.
func (d *drvConn) tlsDone(err error, now int64) {
	t, e := d.tls, d.e
	t.handshaking = false
	if err != nil {
		e.st.tlsFail.Add(1)
		if d.closeErr == nil {
			d.closeErr = err
		}
		d.closing = true
	} else {
		e.st.tls.Add(1)
		if c := e.cfg.TLSCache; c != nil {
			go c.MarkOK(d.dial.Host)
		}
	}
	if d.s.WantsTLS() {
		d.s.TLSDone(err, now)
	}
}

// handshakeTimeout ends a handshake past its deadline. Loop goroutine.
func (d *drvConn) handshakeTimeout(now int64) {
	d.tls.link.Close() // the handshake goroutine fails and exits
	d.tlsDone(&TimeoutError{Cmd: codec.CmdStartTLS}, now)
	d.settle(now)
}

// trafficTLS feeds ciphertext to the link and plaintext to the session.
// Loop goroutine, from OnTraffic.
func (d *drvConn) trafficTLS(c gnet.Conn, now int64) gnet.Action {
	t := d.tls
	if buf, _ := c.Peek(-1); len(buf) > 0 {
		t.link.FeedCiphertext(buf)
		_, _ = c.Discard(len(buf))
	}
	if t.handshaking {
		d.writeCipher()
		return gnet.None
	}
	return d.readPlain(now)
}

// readPlain decrypts what the link holds, feeds the session, and writes
// its output. Loop goroutine, inside a callback (the caller returns the
// Action).
func (d *drvConn) readPlain(now int64) gnet.Action {
	t := d.tls
	var rerr error
	t.plain, rerr = t.link.ReadPlain(t.plain)
	d.writeCipher() // a TLS 1.3 KeyUpdate answer
	if d.closed {
		return gnet.Close
	}
	if len(t.plain) > 0 {
		n, err := d.s.Feed(t.plain, now)
		t.plain = t.plain[:copy(t.plain, t.plain[n:])]
		if err != nil {
			d.fail(err, now)
			return gnet.Close
		}
	}
	if rerr != nil {
		// close_notify (io.EOF): the session knows whether that was
		// expected (after 221) and reports ErrConnLost otherwise.
		if d.closeErr == nil && rerr != io.EOF {
			d.closeErr = rerr
		}
		d.pump(now)
		return gnet.Close
	}
	return d.pump(now)
}

// writeTLS encrypts the session's output and writes the ciphertext.
func (d *drvConn) writeTLS(out [][]byte) {
	if err := d.tls.link.WritePlain(out); err != nil {
		if d.closeErr == nil {
			d.closeErr = err
		}
		d.closing = true
	}
	d.writeCipher()
}

// writeCipher writes the link's pending ciphertext; gnet copies what the
// socket does not take at once.
func (d *drvConn) writeCipher() {
	if d.closed {
		return
	}
	if ct := d.tls.link.TakeCiphertext(); ct != nil {
		_, _ = d.c.Write(ct)
	}
}

// handOff moves the session to the goroutine driver with a duplicate of its
// socket; gnet then closes its own descriptor (no FIN: the duplicate keeps
// the connection open). Loop goroutine; the caller returns Close.
func (d *drvConn) handOff(now int64) {
	fd, err := d.c.Dup()
	if err != nil {
		d.fail(err, now)
		return
	}
	var rest []byte
	if buf, _ := d.c.Peek(-1); len(buf) > 0 { // bytes after the 220 belong to TLS
		rest = append([]byte(nil), buf...)
		_, _ = d.c.Discard(len(buf))
	}
	f := os.NewFile(uintptr(fd), "spate-tls")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		d.fail(err, now)
		return
	}
	d.handedOff = true
	d.closing = true
	d.e.st.gor.Add(1)
	g := d.e.goConns.add(d, nc)
	go g.run(rest, d.cfg.TLS == TLSImplicit)
}

// goConnSet tracks goroutine-driven connections for Stop and Close.
type goConnSet struct {
	mu     sync.Mutex
	m      map[*goConn]struct{}
	closed bool // closeAll ran: later arrivals are cut at once
}

func (s *goConnSet) add(d *drvConn, nc net.Conn) *goConn {
	g := &goConn{d: d, raw: nc}
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[*goConn]struct{})
	}
	s.m[g] = struct{}{}
	if s.closed {
		nc.Close() // the goroutine sees the error and reports the session closed
	}
	s.mu.Unlock()
	return g
}

func (s *goConnSet) remove(g *goConn) {
	s.mu.Lock()
	delete(s.m, g)
	s.mu.Unlock()
}

// closeAll cuts every goroutine connection (Engine.Close).
func (s *goConnSet) closeAll() {
	s.mu.Lock()
	s.closed = true
	for g := range s.m {
		g.raw.Close()
	}
	s.mu.Unlock()
}

// goConn is one session on the goroutine driver.
type goConn struct {
	d   *drvConn
	raw net.Conn
}

// tlsConfig returns the per-connection client configuration.
func (e *Engine) tlsConfig(d *drvConn) *tls.Config {
	tc := e.cfg.TLS.Clone()
	tc.ServerName = d.cfg.ServerName
	if tc.ServerName == "" {
		tc.ServerName = d.dial.Host
	}
	tc.InsecureSkipVerify = !d.cfg.VerifyTLS
	return tc
}

// startImplicit runs an implicit-TLS connection (from the dial pool) on the
// goroutine driver.
func (e *Engine) startImplicit(d *drvConn, nc net.Conn) {
	e.st.dialing.Add(-1)
	e.st.open.Add(1)
	e.st.opened.Add(1)
	e.st.gor.Add(1)
	d.opened.Store(true)
	d.s = newDriverSession(d.cfg, d.connInfo(), e, d, time.Now().UnixNano())
	g := e.goConns.add(d, nc)
	go g.run(nil, true)
}

// prefixConn reads rest before the socket.
type prefixConn struct {
	net.Conn
	rest []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.rest) > 0 {
		n := copy(b, p.rest)
		p.rest = p.rest[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// run handshakes and then drives the session until the connection ends.
func (g *goConn) run(rest []byte, implicit bool) {
	d, e, s := g.d, g.d.e, g.d.s
	var closeErr error
	defer func() {
		g.raw.Close()
		e.goConns.remove(g)
		now := time.Now().UnixNano()
		if closeErr == nil && e.state.Load() == engClosed && !s.WantsClose() {
			closeErr = ErrEngineClosed
		}
		d.retry = s.RetryPlain() && e.state.Load() == engRunning
		e.st.open.Add(-1)
		e.st.closed.Add(1)
		s.Closed(closeErr, now)
		if d.retry {
			e.retryPlain(d)
		}
		e.connEnded()
	}()

	tc := tls.Client(&prefixConn{Conn: g.raw, rest: rest}, e.tlsConfig(d))
	hsTimeout := d.cfg.Timeouts.StartTLS
	if hsTimeout <= 0 {
		hsTimeout = DefaultTimeouts().StartTLS
	}
	ctx, cancel := context.WithTimeout(context.Background(), hsTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	now := time.Now().UnixNano()
	if err != nil {
		e.st.tlsFail.Add(1)
	} else {
		e.st.tls.Add(1)
		if c := e.cfg.TLSCache; c != nil {
			go c.MarkOK(d.dial.Host)
		}
	}
	if s.WantsTLS() || !implicit {
		s.TLSDone(err, now)
	}
	if err != nil {
		closeErr = err
		return
	}

	bw := bufio.NewWriterSize(tc, 16<<10)
	buf := make([]byte, 16<<10)
	have := 0
	tick := e.cfg.Tick
	for {
		if e.state.Load() != engRunning {
			drvDrain(s, now)
		}
		if out := s.Output(); out != nil {
			for _, seg := range out {
				if _, err := bw.Write(seg); err != nil {
					closeErr = err
					return
				}
			}
			if err := bw.Flush(); err != nil {
				closeErr = err
				return
			}
			s.Flushed()
		}
		if s.WantsClose() {
			return
		}
		wait := time.Unix(0, now).Add(tick)
		if dl := s.Deadline(); dl != 0 && dl < wait.UnixNano() {
			wait = time.Unix(0, dl)
		}
		g.raw.SetReadDeadline(wait)
		if have == len(buf) {
			buf = append(buf, make([]byte, len(buf))...)
		}
		n, rerr := tc.Read(buf[have:])
		now = time.Now().UnixNano()
		have += n
		if have > 0 {
			used, ferr := s.Feed(buf[:have], now)
			copy(buf, buf[used:have])
			have -= used
			if ferr != nil {
				closeErr = ferr
				if out := s.Output(); out != nil { // last words (QUIT)
					for _, seg := range out {
						bw.Write(seg)
					}
					bw.Flush()
					s.Flushed()
				}
				return
			}
		}
		if rerr != nil {
			var ne net.Error
			if errors.As(rerr, &ne) && ne.Timeout() {
				if dl := s.Deadline(); dl != 0 && now >= dl {
					s.Expire(now)
				}
				s.Poll(now)
				continue
			}
			closeErr = rerr
			return
		}
	}
}
