package sink

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"sync"
	"time"
)

// startNet runs the goroutine-per-connection transport (used when STARTTLS
// is offered, since gnet has no TLS). It drives the same session code.
func (s *Server) startNet() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return err
	}
	s.addr = ln.Addr().String()
	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		wg    sync.WaitGroup
		done  bool
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				return
			}
			mu.Lock()
			if done {
				mu.Unlock()
				c.Close()
				return
			}
			conns[c] = struct{}{}
			wg.Add(1)
			mu.Unlock()
			go func() {
				defer wg.Done()
				s.serveConn(c)
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
	s.stop = func() error {
		err := ln.Close()
		mu.Lock()
		done = true
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
		return err
	}
	return nil
}

func (s *Server) serveConn(raw net.Conn) {
	s.connections.Add(1)
	var c net.Conn = raw
	defer func() { c.Close() }()
	ss := &session{srv: s, src: addrOf(raw.RemoteAddr())}
	write := func(out []byte) bool {
		s.flushReplies(ss)
		if d := s.cfg.Latency + ss.delay; d > 0 {
			time.Sleep(d)
		}
		_, err := c.Write(out)
		return err == nil
	}
	if !write(ss.banner(nil)) {
		return
	}
	buf := make([]byte, 0, 64<<10)
	var out []byte
	for {
		if len(buf) == cap(buf) {
			nb := make([]byte, len(buf), 2*cap(buf))
			copy(nb, buf)
			buf = nb
		}
		m, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if m > 0 {
			ss.delay = 0
			var n int
			var act action
			n, out, act = ss.feed(buf, out[:0])
			buf = buf[:copy(buf, buf[n:])]
			if len(out) > 0 && !write(out) {
				return
			}
			switch act {
			case actClose:
				return
			case actStartTLS:
				buf = buf[:0] // RFC 3207: discard anything pipelined after STARTTLS
				tc := tls.Server(raw, s.tlsConf)
				tc.SetDeadline(time.Now().Add(30 * time.Second))
				if tc.Handshake() != nil {
					return
				}
				tc.SetDeadline(time.Time{})
				c = tc
				ss.tls = true
			}
		}
		if err != nil {
			return
		}
	}
}

// selfSigned returns a TLS config with a fresh ECDSA P-256 certificate for host.
func selfSigned(host string) (*tls.Config, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host, "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, nil
}
