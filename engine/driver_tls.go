package engine

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// TLS runs on a goroutine driver (ARCHITECTURE decision 6, fallback). When a
// session wants STARTTLS, the driver duplicates the socket, lets gnet close
// its descriptor (the duplicate keeps the TCP connection open, no FIN), and
// hands the duplicate and the same Session to a goroutine that runs the
// handshake with crypto/tls and then drives the session with blocking reads
// (read deadline = the session's deadline or the next tick). Implicit TLS
// connections (port 465) go to the goroutine driver straight from the dial
// pool. The session code is the same; only TLS connections pay a goroutine
// (about 8 KB of stack plus crypto/tls buffers).
//
// Sessions on the goroutine driver are polled every Tick (not by Wake), and
// take part in Stop (drain) and Close like the others.

// drvTLS marks a connection being handed to the goroutine driver.
type drvTLS struct {
	handshaking bool
	deadline    int64
}

func (t *drvTLS) close() {}

// startTLS hands the connection to the goroutine driver. Loop goroutine,
// from pump; the caller then returns Close for the gnet side.
func (d *drvConn) startTLS(now int64) {
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
	go g.run(rest, false)
}

// trafficTLS is not reached: a connection leaves gnet when TLS starts.
func (d *drvConn) trafficTLS(c gnet.Conn, now int64) gnet.Action { return gnet.Close }

// writeTLS is not reached either.
func (d *drvConn) writeTLS(out [][]byte) {}

func (d *drvConn) handshakeTimeout(now int64) {}

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
	d.s = newDriverSession(d.cfg, d.info, e, d, time.Now().UnixNano())
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
