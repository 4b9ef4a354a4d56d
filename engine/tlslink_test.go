package engine

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"
)

// testCert returns a self-signed certificate for mx.test and a pool that
// trusts it.
func testCert(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mx.test"}, DNSNames: []string{"mx.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// linkLoop plays the event loop for a TLSLink over one end of a net.Pipe:
// a reader goroutine queues what arrives (unbounded, like a socket buffer),
// a writer goroutine writes what the loop hands it, and the test goroutine
// (the "loop") feeds ciphertext to the link in 7-byte pieces.
type linkLoop struct {
	raw    net.Conn
	mu     sync.Mutex
	in     []byte
	rerr   error
	notify chan struct{}
	wq     chan []byte
}

func newLinkLoop(raw net.Conn) *linkLoop {
	ll := &linkLoop{raw: raw, notify: make(chan struct{}, 1), wq: make(chan []byte, 1<<16)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := raw.Read(buf)
			ll.mu.Lock()
			ll.in = append(ll.in, buf[:n]...)
			if err != nil {
				ll.rerr = err
			}
			ll.mu.Unlock()
			select {
			case ll.notify <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		for b := range ll.wq {
			if _, err := raw.Write(b); err != nil {
				return
			}
		}
	}()
	return ll
}

// flush hands the link's ciphertext to the writer.
func (ll *linkLoop) flush(l *TLSLink) {
	if b := l.TakeCiphertext(); b != nil {
		ll.wq <- bytes.Clone(b)
	}
}

// take returns what arrived so far.
func (ll *linkLoop) take() ([]byte, error) {
	ll.mu.Lock()
	defer ll.mu.Unlock()
	b := ll.in
	ll.in = nil
	return b, ll.rerr
}

// feed7 feeds b in 7-byte pieces, reading plaintext after each piece when
// the handshake is done.
func (ll *linkLoop) feed7(t testing.TB, l *TLSLink, b []byte, plain []byte, read bool) ([]byte, error) {
	for len(b) > 0 {
		k := min(7, len(b))
		l.FeedCiphertext(b[:k])
		b = b[k:]
		if read {
			var err error
			if plain, err = l.ReadPlain(plain); err != nil {
				return plain, err
			}
			ll.flush(l)
		}
	}
	return plain, nil
}

func handshakeLink(t testing.TB, ll *linkLoop, l *TLSLink) error {
	t.Helper()
	wake := make(chan struct{}, 1)
	done := make(chan error, 1)
	l.Handshake(func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}, func(err error) { done <- err })
	timeout := time.After(10 * time.Second)
	for {
		select {
		case <-wake:
			ll.flush(l)
		case <-ll.notify:
			b, _ := ll.take()
			ll.feed7(t, l, b, nil, false)
		case err := <-done:
			ll.flush(l)
			return err
		case <-timeout:
			t.Fatal("handshake did not finish")
		}
	}
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7+i/251)
	}
	return b
}

func TestTLSLinkTransfer(t *testing.T) {
	cert, pool := testCert(t)
	const size = 200 << 10
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			cEnd, sEnd := net.Pipe()
			defer cEnd.Close()
			srv := tls.Server(sEnd, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: v, MaxVersion: v})
			up, down := pattern(size, 1), pattern(size, 99)
			srvErr := make(chan error, 1)
			go func() {
				defer srv.Close()
				got := make([]byte, size)
				if _, err := io.ReadFull(srv, got); err != nil {
					srvErr <- err
					return
				}
				if !bytes.Equal(got, up) {
					srvErr <- errors.New("server received different bytes")
					return
				}
				_, err := srv.Write(down)
				srvErr <- err
			}()
			ll := newLinkLoop(cEnd)
			defer close(ll.wq)
			l := NewTLSLink(&tls.Config{ServerName: "mx.test", RootCAs: pool, MinVersion: v, MaxVersion: v})
			if _, err := l.ReadPlain(nil); err != ErrTLSLinkBusy {
				t.Fatalf("ReadPlain before the handshake: got %v; want ErrTLSLinkBusy", err)
			}
			if err := handshakeLink(t, ll, l); err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if got := l.ConnectionState().Version; got != v {
				t.Fatalf("version %x; want %x", got, v)
			}
			// Uneven segments, as a body would be.
			var segs [][]byte
			for rest, k := up, 1; len(rest) > 0; k = k*3%20000 + 1 {
				k = min(k, len(rest))
				segs = append(segs, rest[:k])
				rest = rest[k:]
			}
			if err := l.WritePlain(segs); err != nil {
				t.Fatal(err)
			}
			ll.flush(l)
			var plain []byte
			timeout := time.After(20 * time.Second)
			for len(plain) < size {
				select {
				case <-ll.notify:
				case err := <-srvErr:
					if err != nil {
						t.Fatalf("server: %v", err)
					}
					srvErr <- nil
					continue
				case <-timeout:
					t.Fatalf("got %d of %d bytes", len(plain), size)
				}
				b, rerr := ll.take()
				var err error
				if plain, err = ll.feed7(t, l, b, plain, true); err != nil && err != io.EOF {
					t.Fatalf("ReadPlain: %v", err)
				}
				if rerr != nil && len(plain) < size {
					t.Fatalf("connection ended after %d bytes: %v", len(plain), rerr)
				}
			}
			if !bytes.Equal(plain, down) {
				t.Fatalf("client received different bytes")
			}
			if err := <-srvErr; err != nil {
				t.Fatalf("server: %v", err)
			}
		})
	}
}

func TestTLSLinkHandshakeFails(t *testing.T) {
	cert, _ := testCert(t)
	cEnd, sEnd := net.Pipe()
	defer cEnd.Close()
	srv := tls.Server(sEnd, &tls.Config{Certificates: []tls.Certificate{cert}})
	go func() { _ = srv.Handshake(); srv.Close() }()
	ll := newLinkLoop(cEnd)
	defer close(ll.wq)
	// No RootCAs: the self-signed certificate is not trusted.
	l := NewTLSLink(&tls.Config{ServerName: "mx.test", RootCAs: x509.NewCertPool()})
	err := handshakeLink(t, ll, l)
	var uerr *tls.CertificateVerificationError
	if !errors.As(err, &uerr) {
		t.Fatalf("handshake error %v (%T); want *tls.CertificateVerificationError", err, err)
	}
	if _, err := l.ReadPlain(nil); err != ErrTLSLinkBusy {
		t.Fatalf("ReadPlain after a failed handshake: %v; want ErrTLSLinkBusy", err)
	}
}

// TestTLSLinkHandshakeAborted: Close ends a handshake waiting for bytes.
func TestTLSLinkHandshakeAborted(t *testing.T) {
	l := NewTLSLink(&tls.Config{ServerName: "mx.test"})
	done := make(chan error, 1)
	l.Handshake(nil, func(err error) { done <- err })
	if b := waitCiphertext(l); len(b) == 0 || b[0] != 22 {
		t.Fatalf("no ClientHello record: %x", b)
	}
	l.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("got %v; want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the handshake")
	}
}

func waitCiphertext(l *TLSLink) []byte {
	for range 1000 {
		if b := l.TakeCiphertext(); b != nil {
			return b
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// BenchmarkTLSLinkWrite: encrypting a 1 KB message in the loop (WritePlain
// plus TakeCiphertext), TLS 1.3, AES-GCM; crypto/tls over a net.Pipe is the
// baseline.
func BenchmarkTLSLinkWrite(b *testing.B) {
	cert, pool := testCert(b)
	cEnd, sEnd := net.Pipe()
	defer cEnd.Close()
	srv := tls.Server(sEnd, &tls.Config{Certificates: []tls.Certificate{cert}})
	go func() { _ = srv.Handshake(); _, _ = io.Copy(io.Discard, srv) }()
	ll := newLinkLoop(cEnd)
	defer close(ll.wq)
	l := NewTLSLink(&tls.Config{ServerName: "mx.test", RootCAs: pool})
	if err := handshakeLink(b, ll, l); err != nil {
		b.Fatal(err)
	}
	segs := [][]byte{pattern(300, 1), pattern(700, 2), []byte(".\r\n")}
	b.ReportAllocs()
	b.SetBytes(1003)
	for b.Loop() {
		if err := l.WritePlain(segs); err != nil {
			b.Fatal(err)
		}
		if l.TakeCiphertext() == nil {
			b.Fatal("no ciphertext")
		}
	}
}

// discardAfter passes writes to its Conn until discard is set, then drops
// them: crypto/tls completes its handshake over a net.Pipe, and the timed
// writes then cost the encryption alone, as TakeCiphertext does.
type discardAfter struct {
	net.Conn
	discard bool
}

func (c *discardAfter) Write(p []byte) (int, error) {
	if c.discard {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// BenchmarkTLSLinkWriteStdlib is BenchmarkTLSLinkWrite's baseline: the
// same 1 KB message through a bufio.Writer into a crypto/tls client Conn
// (one record per message, as WritePlain makes), the ciphertext dropped.
func BenchmarkTLSLinkWriteStdlib(b *testing.B) {
	cert, pool := testCert(b)
	cEnd, sEnd := net.Pipe()
	defer cEnd.Close()
	srv := tls.Server(sEnd, &tls.Config{Certificates: []tls.Certificate{cert}})
	go func() { _ = srv.Handshake(); _, _ = io.Copy(io.Discard, srv) }()
	raw := &discardAfter{Conn: cEnd}
	tc := tls.Client(raw, &tls.Config{ServerName: "mx.test", RootCAs: pool})
	if err := tc.Handshake(); err != nil {
		b.Fatal(err)
	}
	raw.discard = true
	w := bufio.NewWriterSize(tc, 4096)
	segs := [][]byte{pattern(300, 1), pattern(700, 2), []byte(".\r\n")}
	b.ReportAllocs()
	b.SetBytes(1003)
	for b.Loop() {
		for _, s := range segs {
			w.Write(s)
		}
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
	}
}
