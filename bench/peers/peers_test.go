package peers

import (
	"bytes"
	"context"
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
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// ---- a go-smtp server that counts, and rejects scripted recipients ----

type tsBackend struct {
	mu     sync.Mutex
	msgs   int
	rcpts  int
	bad    []string // bodies that fail the check
	tls    int      // messages received over TLS
	reject string   // recipients containing this get 450
}

type tsSession struct {
	be    *tsBackend
	c     *smtp.Conn
	rcpts []string
}

func (b *tsBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &tsSession{be: b, c: c}, nil
}
func (s *tsSession) Mail(string, *smtp.MailOptions) error { s.rcpts = nil; return nil }
func (s *tsSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.be.reject != "" && strings.Contains(to, s.be.reject) {
		return &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "try later"}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}
func (s *tsSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, isTLS := s.c.TLSConnectionState()
	s.be.mu.Lock()
	defer s.be.mu.Unlock()
	s.be.msgs++
	s.be.rcpts += len(s.rcpts)
	if isTLS {
		s.be.tls++
	}
	if !bytes.Contains(b, []byte("Subject: bench\r\n")) || !bytes.Contains(b, []byte("To: <"+s.rcpts[0]+">")) {
		s.be.bad = append(s.be.bad, string(b[:min(len(b), 120)]))
	}
	return nil
}
func (s *tsSession) Reset()        { s.rcpts = nil }
func (s *tsSession) Logout() error { return nil }

type quietLog struct{}

func (quietLog) Printf(string, ...any) {}
func (quietLog) Println(...any)        {}

func tsServe(t *testing.T, be *tsBackend, tc *tls.Config) string {
	t.Helper()
	s := smtp.NewServer(be)
	s.Domain = "sink.bench.test"
	s.TLSConfig = tc
	s.MaxRecipients = 1000
	s.MaxMessageBytes = 10 << 20
	s.ReadTimeout, s.WriteTimeout = 20*time.Second, 20*time.Second
	s.ErrorLog = quietLog{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}

func tsCert(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sink.bench.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// ---- the peers against it ----

func TestPeersDeliverExactCounts(t *testing.T) {
	for _, kind := range Kinds {
		for _, tlsOn := range []bool{false, true} {
			name := kind
			if tlsOn {
				name += "/starttls"
			}
			t.Run(name, func(t *testing.T) {
				be := &tsBackend{}
				var tc *tls.Config
				if tlsOn {
					tc = tsCert(t)
				}
				addr := tsServe(t, be, tc)
				o := Options{Addr: addr, Sessions: 4, N: 60, Size: 300, Rcpts: 2, StartTLS: tlsOn, Loops: 1, Timeout: 20 * time.Second}
				res, err := Run(context.Background(), kind, o)
				if err != nil {
					t.Fatalf("Run: %v (result %+v)", err, res)
				}
				be.mu.Lock()
				defer be.mu.Unlock()
				if be.msgs != 60 || be.rcpts != 120 {
					t.Fatalf("server got %d messages, %d recipients; want 60, 120", be.msgs, be.rcpts)
				}
				if res.Sent != 60 || res.Failed != 0 || res.Rcpts != 120 {
					t.Fatalf("peer reports sent %d failed %d rcpts %d; want 60 0 120", res.Sent, res.Failed, res.Rcpts)
				}
				if len(be.bad) > 0 {
					t.Fatalf("%d malformed bodies, first %q", len(be.bad), be.bad[0])
				}
				if tlsOn && be.tls != 60 {
					t.Fatalf("%d messages over TLS; want 60", be.tls)
				}
				if res.P50NS <= 0 || res.P99NS < res.P50NS {
					t.Fatalf("latency p50 %d p99 %d ns; want 0 < p50 ≤ p99", res.P50NS, res.P99NS)
				}
			})
		}
	}
}

// TestPeersCountRejections: recipients user1x@ (user10..user19, …) get 450;
// with one recipient per message, exactly those messages fail and the peer
// finishes the run anyway.
func TestPeersCountRejections(t *testing.T) {
	for _, kind := range Kinds {
		t.Run(kind, func(t *testing.T) {
			be := &tsBackend{reject: "user1"}
			addr := tsServe(t, be, nil)
			// Recipients user0..user39: rejected are user1 and user10..user19.
			res, err := Run(context.Background(), kind, Options{Addr: addr, Sessions: 3, N: 40, Size: 100, Rcpts: 1, Loops: 1, Timeout: 20 * time.Second})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.Sent != 29 || res.Failed != 11 {
				t.Fatalf("sent %d failed %d; want 29 11", res.Sent, res.Failed)
			}
			be.mu.Lock()
			defer be.mu.Unlock()
			if be.msgs != 29 {
				t.Fatalf("server got %d messages; want 29", be.msgs)
			}
		})
	}
}

func TestParseArgs(t *testing.T) {
	o := Options{Addr: "127.0.0.1:2525", Sessions: 7, N: 99, Size: 512, Rcpts: 3, StartTLS: true, Chunking: true, Loops: 2, Timeout: 5 * time.Second}
	kind, got, err := ParseArgs(append([]string{"netsmtp"}, o.Args()...), io.Discard)
	if err != nil || kind != "netsmtp" || !reflect.DeepEqual(got, o) {
		t.Fatalf("round trip: got %q %+v %v; want netsmtp %+v", kind, got, err, o)
	}
	bad := [][]string{
		nil,
		{"postfix", "--addr", "127.0.0.1:25"},
		{"spate", "--addr", "192.0.2.1:25"},
		{"spate", "--addr", "example.com:25"},
		{"spate", "--addr", "127.0.0.1:25", "--sessions", "0"},
		{"spate", "--addr", "127.0.0.1:25", "--bogus"},
		{"spate", "--addr", "127.0.0.1:25", "extra"},
	}
	for i, args := range bad {
		if _, _, err := ParseArgs(args, io.Discard); err == nil {
			t.Errorf("#%d: ParseArgs(%q) succeeded; want an error", i, args)
		}
	}
	if _, _, err := ParseArgs([]string{"spate", "--addr", "10.0.0.1:25"}, io.Discard); !errors.Is(err, ErrLoopback) {
		t.Errorf("non-loopback: got %v; want ErrLoopback", err)
	}
}

// TestMainReportsJSON: Main writes one JSON line with the counts.
func TestMainReportsJSON(t *testing.T) {
	be := &tsBackend{}
	addr := tsServe(t, be, nil)
	var out, errb bytes.Buffer
	code := Main([]string{"netsmtp", "--addr", addr, "--sessions", "2", "--n", "10", "--size", "10"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d; stderr %s", code, errb.String())
	}
	line := strings.TrimSpace(out.String())
	if strings.Count(line, "\n") != 0 || !strings.Contains(line, `"peer":"netsmtp"`) || !strings.Contains(line, `"sent":10`) {
		t.Fatalf("stdout %q; want one JSON line with peer netsmtp, sent 10", out.String())
	}
	if code := Main([]string{"netsmtp", "--addr", "8.8.8.8:25"}, &out, &errb); code != 1 {
		t.Fatalf("non-loopback: exit %d; want 1", code)
	}
}

func TestHistQuantiles(t *testing.T) {
	var h hist
	if h.Quantile(0.5) != 0 {
		t.Fatalf("empty histogram: p50 %v; want 0", h.Quantile(0.5))
	}
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {0.001, time.Millisecond}} {
		got := h.Quantile(c.q)
		if got > c.want || got < c.want*96/100 {
			t.Errorf("q %v: got %v; want within 4%% below %v", c.q, got, c.want)
		}
	}
	for us := uint64(0); us < 1<<20; us = us*5/4 + 1 {
		if v := histValue(histIndex(us)); v > us || (us >= histSub && float64(us-v) > float64(us)/histSub) {
			t.Fatalf("bucket of %dµs starts at %d", us, v)
		}
	}
}

// TestPeersReportRefusedSink: with nothing listening, both peers end with
// an error (not a silent zero) well before their timeout.
func TestPeersReportRefusedSink(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, kind := range Kinds {
		t0 := time.Now()
		res, err := Run(context.Background(), kind, Options{Addr: addr, Sessions: 2, N: 20, Size: 10, Rcpts: 1, Loops: 1, Timeout: 15 * time.Second})
		if err == nil || res.Sent != 0 {
			t.Errorf("%s: sent %d err %v; want 0 and an error", kind, res.Sent, err)
		}
		if el := time.Since(t0); el > 10*time.Second {
			t.Errorf("%s: took %v to give up", kind, el)
		}
	}
}
