package sink

import (
	"context"
	"fmt"
	"log"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/logging"
)

// handler serves plaintext sessions on gnet loops.
type handler struct {
	gnet.BuiltinEventEngine
	srv   *Server
	eng   gnet.Engine
	ready chan error
}

var _ gnet.EventHandler = (*handler)(nil)

// gconn is the per-connection context: the session, its reusable output
// buffer and whether a delayed reply is still pending (input then waits in
// gnet's inbound buffer).
type gconn struct {
	session
	out     []byte
	waiting atomic.Bool
}

// quietLogger drops gnet's debug and info lines ("Launching gnet with N
// event-loops" on every start) and keeps warnings and errors on stderr.
// gnet's WithLogLevel applies only to a log file (WithLogPath).
type quietLogger struct{}

var _ logging.Logger = quietLogger{}

func (quietLogger) Debugf(string, ...any)     {}
func (quietLogger) Infof(string, ...any)      {}
func (quietLogger) Warnf(f string, a ...any)  { log.Printf("gnet: warning: "+f, a...) }
func (quietLogger) Errorf(f string, a ...any) { log.Printf("gnet: error: "+f, a...) }
func (quietLogger) Fatalf(f string, a ...any) { log.Fatalf("gnet: fatal: "+f, a...) }

func (s *Server) startGnet() error {
	h := &handler{srv: s, ready: make(chan error, 1)}
	opts := []gnet.Option{gnet.WithTCPNoDelay(gnet.TCPNoDelay), gnet.WithReuseAddr(true), gnet.WithLogger(quietLogger{})}
	if s.cfg.Loops > 0 {
		opts = append(opts, gnet.WithNumEventLoop(s.cfg.Loops))
	} else {
		opts = append(opts, gnet.WithMulticore(true))
	}
	done := make(chan error, 1)
	go func() {
		err := gnet.Run(h, "tcp://"+s.cfg.Addr, opts...)
		done <- err
		select {
		case h.ready <- fmt.Errorf("sink: gnet stopped: %v", err):
		default:
		}
	}()
	if err := <-h.ready; err != nil {
		return err
	}
	s.stop = func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := h.eng.Stop(ctx)
		if e := <-done; err == nil {
			err = e
		}
		return err
	}
	return nil
}

func (h *handler) OnBoot(eng gnet.Engine) gnet.Action {
	h.eng = eng
	fd, err := eng.Dup()
	if err != nil {
		h.ready <- fmt.Errorf("sink: %w", err)
		return gnet.Shutdown
	}
	sa, err := syscall.Getsockname(fd)
	syscall.Close(fd)
	if err != nil {
		h.ready <- fmt.Errorf("sink: getsockname: %w", err)
		return gnet.Shutdown
	}
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		h.srv.addr = (&net.TCPAddr{IP: a.Addr[:], Port: a.Port}).String()
	case *syscall.SockaddrInet6:
		h.srv.addr = (&net.TCPAddr{IP: a.Addr[:], Port: a.Port}).String()
	}
	h.ready <- nil
	return gnet.None
}

func (h *handler) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	h.srv.connections.Add(1)
	g := &gconn{session: session{srv: h.srv, src: addrOf(c.RemoteAddr())}}
	c.SetContext(g)
	g.out = g.banner(g.out[:0])
	h.srv.flushReplies(&g.session)
	if h.srv.cfg.Latency > 0 {
		h.later(c, g, h.srv.cfg.Latency, actNone)
		return nil, gnet.None
	}
	return g.out, gnet.None
}

func (h *handler) OnTraffic(c gnet.Conn) gnet.Action {
	g, _ := c.Context().(*gconn)
	if g == nil || g.waiting.Load() {
		return gnet.None
	}
	in, _ := c.Peek(-1)
	if len(in) == 0 {
		return gnet.None
	}
	g.delay = 0
	n, out, act := g.feed(in, g.out[:0])
	g.out = out
	if n > 0 {
		c.Discard(n)
	}
	h.srv.flushReplies(&g.session)
	if act == actStartTLS { // never offered on gnet; feed refuses it
		act = actClose
	}
	if d := h.srv.cfg.Latency + g.delay; d > 0 && len(out) > 0 {
		h.later(c, g, d, act)
		return gnet.None
	}
	if len(out) > 0 {
		c.Write(out)
	}
	if act == actClose {
		return gnet.Close
	}
	return gnet.None
}

// later writes g.out after d, then resumes reading (or closes). Until then
// OnTraffic leaves input in gnet's buffer, so replies stay in order.
func (h *handler) later(c gnet.Conn, g *gconn, d time.Duration, act action) {
	g.waiting.Store(true)
	out := g.out
	time.AfterFunc(d, func() {
		_ = c.AsyncWrite(out, func(c gnet.Conn, err error) error {
			if act == actClose || err != nil {
				return c.Close()
			}
			g.waiting.Store(false)
			return c.Wake(nil)
		})
	})
}
