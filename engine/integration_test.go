package engine

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
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/spate-mta/spate/codec"
)

// ---- test Feeder and Reporter ----

// itFeeder hands out queued envelopes; Next never blocks.
type itFeeder struct {
	mu    sync.Mutex
	q     []*Envelope
	calls atomic.Int64
}

func (f *itFeeder) Next(c ConnInfo, now time.Time) *Envelope {
	f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.q) == 0 {
		return nil
	}
	env := f.q[0]
	f.q = f.q[1:]
	return env
}

func (f *itFeeder) queued() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.q)
}

func (f *itFeeder) add(envs ...*Envelope) {
	f.mu.Lock()
	f.q = append(f.q, envs...)
	f.mu.Unlock()
}

// itReporter records every outcome and connection end.
type itReporter struct {
	mu       sync.Mutex
	outcomes map[uint64][]Outcome // by Envelope.ID, index = recipient
	done     map[uint64]int
	closed   []itClosed
	ndone    atomic.Int64
	nclosed  atomic.Int64
	doneCh   chan struct{} // gets a token per Done
	closedCh chan struct{} // gets a token per ConnClosed
}

type itClosed struct {
	info ConnInfo
	err  error
}

func newITReporter() *itReporter {
	return &itReporter{
		outcomes: make(map[uint64][]Outcome), done: make(map[uint64]int),
		doneCh: make(chan struct{}, 1<<16), closedCh: make(chan struct{}, 1<<12),
	}
}

func (r *itReporter) Outcome(env *Envelope, i int, o Outcome) {
	r.mu.Lock()
	os := r.outcomes[env.ID]
	if os == nil {
		os = make([]Outcome, len(env.Rcpts))
	}
	if os[i].Result != ResultNone {
		panic(fmt.Sprintf("recipient %d of envelope %d reported twice", i, env.ID))
	}
	os[i] = o
	r.outcomes[env.ID] = os
	r.mu.Unlock()
}

func (r *itReporter) Done(env *Envelope) {
	r.mu.Lock()
	r.done[env.ID]++
	r.mu.Unlock()
	r.ndone.Add(1)
	r.doneCh <- struct{}{}
}

func (r *itReporter) ConnClosed(c ConnInfo, err error) {
	r.mu.Lock()
	r.closed = append(r.closed, itClosed{c, err})
	r.mu.Unlock()
	r.nclosed.Add(1)
	r.closedCh <- struct{}{}
}

// waitN waits for n tokens on ch or fails the test after d.
func itWait(t *testing.T, ch chan struct{}, n int, d time.Duration, what string) {
	t.Helper()
	deadline := time.After(d)
	for i := 0; i < n; i++ {
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("%s: got %d of %d before %v", what, i, n, d)
		}
	}
}

// counts returns how many recipients got each Result.
func (r *itReporter) counts() map[Result]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := make(map[Result]int)
	for _, os := range r.outcomes {
		for _, o := range os {
			m[o.Result]++
		}
	}
	return m
}

// ---- messages ----

// itBody returns the wire form (dot-stuffed, CRLF, no final dot) and the
// plain form of message i. Some lines start with a dot to exercise
// stuffing.
func itBody(i, size int) (wire, plain []byte) {
	var p bytes.Buffer
	fmt.Fprintf(&p, "From: <sender@example.test>\r\nTo: <rcpt%d@example.test>\r\nSubject: test %d\r\nMessage-ID: <%d@spate.test>\r\n\r\n", i, i, i)
	fmt.Fprintf(&p, ".leading dot line %d\r\n", i)
	for p.Len() < size {
		fmt.Fprintf(&p, "line %d of message %d %s\r\n", p.Len(), i, strings.Repeat("x", 40))
		if p.Len()%7 == 0 {
			p.WriteString(".\r\n..two\r\n")
		}
	}
	plain = p.Bytes()
	var w bytes.Buffer
	for _, line := range bytes.SplitAfter(plain, []byte("\r\n")) {
		if len(line) > 0 && line[0] == '.' {
			w.WriteByte('.')
		}
		w.Write(line)
	}
	return w.Bytes(), plain
}

var itDot = []byte(".\r\n")

// itEnvelope builds envelope id with rcpts recipients; the body is split
// into a few segments like a rendered template's.
func itEnvelope(id uint64, rcpts, size int) (*Envelope, []byte) {
	wire, plain := itBody(int(id), size)
	k := len(wire) / 3
	for k < len(wire) && wire[k-1] != '\n' {
		k++
	}
	m := &codec.Message{Segs: [][]byte{wire[:k], wire[k:], itDot}}
	env := &Envelope{From: "sender@example.test", Body: m, Size: len(wire) + len(itDot), ID: id}
	for r := 0; r < rcpts; r++ {
		env.Rcpts = append(env.Rcpts, fmt.Sprintf("rcpt%d.%d@example.test", id, r))
	}
	return env, plain
}

// ---- go-smtp server ----

type itMsg struct {
	from   string
	rcpts  []string
	data   []byte
	remote string
	tls    bool
	authed string
}

type itBackend struct {
	mu      sync.Mutex
	msgs    []itMsg
	remotes []string // one per SMTP session (EHLO)
	// user/pass: if set, AUTH PLAIN is offered and required.
	user, pass string
	// dropAfter: if > 0, Data closes the connection after reading that
	// many bytes.
	dropAfter int
	// refuse, if set, may refuse a recipient (an *smtp.SMTPError).
	refuse func(to string) error
}

type itSession struct {
	be     *itBackend
	c      *smtp.Conn
	cur    itMsg
	authed string
}

func (b *itBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	b.mu.Lock()
	b.remotes = append(b.remotes, c.Conn().RemoteAddr().String())
	b.mu.Unlock()
	return &itSession{be: b, c: c}, nil
}

func (s *itSession) AuthMechanisms() []string {
	if s.be.user == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *itSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if user != s.be.user || pass != s.be.pass {
			return smtp.ErrAuthFailed
		}
		s.authed = user
		return nil
	}), nil
}

func (s *itSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.be.user != "" && s.authed == "" {
		return smtp.ErrAuthRequired
	}
	s.cur = itMsg{from: from}
	return nil
}

func (s *itSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.be.refuse != nil {
		if err := s.be.refuse(to); err != nil {
			return err
		}
	}
	s.cur.rcpts = append(s.cur.rcpts, to)
	return nil
}

func (s *itSession) Data(r io.Reader) error {
	if s.be.dropAfter > 0 {
		io.CopyN(io.Discard, r, int64(s.be.dropAfter))
		s.c.Conn().Close()
		return errors.New("dropped")
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := s.cur
	m.data = b
	m.remote = s.c.Conn().RemoteAddr().String()
	_, m.tls = s.c.TLSConnectionState()
	m.authed = s.authed
	s.be.mu.Lock()
	s.be.msgs = append(s.be.msgs, m)
	s.be.mu.Unlock()
	return nil
}

func (s *itSession) Reset()        { s.cur = itMsg{} }
func (s *itSession) Logout() error { return nil }

// itServe starts a go-smtp server on 127.0.0.1 (TLS from the first byte if
// implicit) and returns its address.
func itServe(t *testing.T, be *itBackend, tc *tls.Config, implicit bool) netip.AddrPort {
	t.Helper()
	s := smtp.NewServer(be)
	s.Domain = "mx.example.test"
	s.TLSConfig = tc
	s.AllowInsecureAuth = true
	s.MaxRecipients = 1000
	s.MaxMessageBytes = 10 << 20
	s.ReadTimeout, s.WriteTimeout = 30*time.Second, 30*time.Second
	s.ErrorLog = itQuietLog{}
	var ln net.Listener
	var err error
	if implicit {
		ln, err = tls.Listen("tcp", "127.0.0.1:0", tc)
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	if itWrapListener != nil {
		ln = itWrapListener(ln)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return netip.MustParseAddrPort(ln.Addr().String())
}

// itWrapListener, if set, wraps the next itServe listeners (tests that
// inspect the byte stream; not for parallel tests).
var itWrapListener func(net.Listener) net.Listener

type itQuietLog struct{}

func (itQuietLog) Printf(string, ...any) {}
func (itQuietLog) Println(...any)        {}

// itCert returns a self-signed certificate for localhost and a pool that
// trusts it.
func itCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
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

// ---- engine harness ----

func itEngine(t *testing.T, cfg Config) (*Engine, *itFeeder, *itReporter) {
	t.Helper()
	f, r := &itFeeder{}, newITReporter()
	cfg.Feeder, cfg.Reporter = f, r
	if cfg.Loops == 0 {
		cfg.Loops = 2
	}
	if cfg.Tick == 0 {
		cfg.Tick = 20 * time.Millisecond
	}
	cfg.Logf = t.Logf
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e, f, r
}

func itSessionConfig() *SessionConfig {
	return &SessionConfig{EHLOName: "client.example.test", TLS: TLSDisabled, Timeouts: DefaultTimeouts()}
}

// itCheckReceived checks that every message arrived once, intact.
func itCheckReceived(t *testing.T, be *itBackend, plains map[uint64][]byte, rcpts int) {
	t.Helper()
	be.mu.Lock()
	defer be.mu.Unlock()
	if len(be.msgs) != len(plains) {
		t.Fatalf("server got %d messages; want %d", len(be.msgs), len(plains))
	}
	seen := make(map[uint64]bool)
	for _, m := range be.msgs {
		var id uint64
		if _, err := fmt.Sscanf(m.rcpts[0], "rcpt%d.", &id); err != nil {
			t.Fatalf("odd recipient %q", m.rcpts[0])
		}
		if seen[id] {
			t.Fatalf("message %d received twice", id)
		}
		seen[id] = true
		if len(m.rcpts) != rcpts {
			t.Fatalf("message %d: %d recipients; want %d", id, len(m.rcpts), rcpts)
		}
		if !bytes.Equal(m.data, plains[id]) {
			t.Fatalf("message %d: body differs:\ngot  %q\nwant %q", id, m.data, plains[id])
		}
	}
}

// itRun sends n messages over conns connections to addr and stops the
// engine gracefully, checking every outcome was delivered.
func itRun(t *testing.T, be *itBackend, addr netip.AddrPort, cfg Config, sc *SessionConfig, conns, n, rcpts int) (*Engine, *itReporter) {
	t.Helper()
	e, f, r := itEngine(t, cfg)
	plains := make(map[uint64][]byte, n)
	for i := 1; i <= n; i++ {
		env, plain := itEnvelope(uint64(i), rcpts, 300+i%700)
		plains[uint64(i)] = plain
		f.add(env)
	}
	for c := 0; c < conns; c++ {
		e.Dial(Dial{Path: uint64(c % 7), Host: "localhost", Addr: addr, Config: sc})
	}
	itWait(t, r.doneCh, n, 60*time.Second, "Done")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if got := r.counts()[ResultDelivered]; got != n*rcpts {
		t.Fatalf("delivered %d; want %d (%v)", got, n*rcpts, r.counts())
	}
	if got := r.nclosed.Load(); got != int64(conns) {
		t.Fatalf("ConnClosed %d times; want %d", got, conns)
	}
	r.mu.Lock()
	for _, c := range r.closed {
		if c.err != nil {
			t.Errorf("connection %d ended with %v; want a clean QUIT", c.info.ID, c.err)
		}
	}
	r.mu.Unlock()
	itCheckReceived(t, be, plains, rcpts)
	if st := e.Stats(); st.Open != 0 || st.Opened != uint64(conns) {
		t.Fatalf("stats %+v; want Open 0, Opened %d", st, conns)
	}
	return e, r
}

// ---- tests ----

func TestDriverGoSMTP(t *testing.T) {
	for _, tc := range []struct {
		name          string
		noPipe        bool
		conns, n, rcp int
	}{
		{"pipelining", false, 50, 5000, 1},
		{"no-pipelining", true, 50, 5000, 1},
		{"pipelining-3rcpt", false, 10, 500, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := &itBackend{}
			addr := itServe(t, be, nil, false)
			sc := itSessionConfig()
			sc.NoPipelining = tc.noPipe
			itRun(t, be, addr, Config{}, sc, tc.conns, tc.n, tc.rcp)
		})
	}
}

func TestDriverSTARTTLS(t *testing.T) {
	for _, mode := range []struct {
		name      string
		goroutine bool
	}{{"in-loop", false}, {"goroutine", true}} {
		t.Run(mode.name, func(t *testing.T) {
			cert, pool := itCert(t)
			be := &itBackend{}
			addr := itServe(t, be, &tls.Config{Certificates: []tls.Certificate{cert}}, false)
			sc := itSessionConfig()
			sc.TLS, sc.VerifyTLS = TLSRequired, true
			cache := NewTLSCache(0, nil)
			defer cache.Close()
			cfg := Config{TLS: &tls.Config{RootCAs: pool}, TLSCache: cache, TLSGoroutine: mode.goroutine}
			e, r := itRun(t, be, addr, cfg, sc, 5, 200, 1)
			for _, m := range be.msgs {
				if !m.tls {
					t.Fatalf("message from %s not over TLS", m.remote)
				}
			}
			for _, c := range r.closed {
				if !c.info.TLS {
					t.Fatalf("ConnInfo.TLS false for connection %d", c.info.ID)
				}
			}
			if st := e.Stats(); st.TLS != 5 || st.TLSFailures != 0 || (st.Goroutined != 0) != mode.goroutine {
				t.Fatalf("stats %+v; want 5 handshakes, no failure, goroutine=%v", st, mode.goroutine)
			}
		})
	}
}

func TestDriverImplicitTLSAuth(t *testing.T) {
	for _, mode := range []struct {
		name      string
		goroutine bool
	}{{"in-loop", false}, {"goroutine", true}} {
		t.Run(mode.name, func(t *testing.T) {
			cert, pool := itCert(t)
			be := &itBackend{user: "relay", pass: "s3cret"}
			addr := itServe(t, be, &tls.Config{Certificates: []tls.Certificate{cert}}, true)
			sc := itSessionConfig()
			sc.TLS, sc.VerifyTLS = TLSImplicit, true
			sc.Auth = &Auth{Username: "relay", Password: "s3cret"}
			itRun(t, be, addr, Config{TLS: &tls.Config{RootCAs: pool}, TLSGoroutine: mode.goroutine}, sc, 3, 100, 2)
			for _, m := range be.msgs {
				if !m.tls || m.authed != "relay" {
					t.Fatalf("message over tls=%v authed=%q; want TLS and relay", m.tls, m.authed)
				}
			}
		})
	}
}

func TestDriverAuthPlain(t *testing.T) {
	be := &itBackend{user: "u", pass: "p"}
	addr := itServe(t, be, nil, false)
	sc := itSessionConfig()
	sc.Auth = &Auth{Username: "u", Password: "p", AllowPlaintext: true}
	itRun(t, be, addr, Config{}, sc, 4, 100, 1)
	for _, m := range be.msgs {
		if m.authed != "u" {
			t.Fatalf("message not authenticated (%q)", m.authed)
		}
	}
}

func TestDriverSourceBinding(t *testing.T) {
	be := &itBackend{}
	addr := itServe(t, be, nil, false)
	e, _, r := itEngine(t, Config{})
	sources := []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")}
	for i, src := range sources {
		for k := 0; k < 3; k++ {
			e.Dial(Dial{Path: uint64(i), Source: src, Host: "localhost", Addr: addr, Config: itSessionConfig()})
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		be.mu.Lock()
		n := len(be.remotes)
		be.mu.Unlock()
		if n == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server saw %d sessions; want 6", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e.Stop(ctx)
	seen := map[string]int{}
	be.mu.Lock()
	for _, remote := range be.remotes {
		host, _, _ := net.SplitHostPort(remote)
		seen[host]++
	}
	be.mu.Unlock()
	if seen["127.0.0.2"] != 3 || seen["127.0.0.3"] != 3 {
		t.Fatalf("server saw sources %v; want 3 from 127.0.0.2 and 3 from 127.0.0.3", seen)
	}
	itWait(t, r.closedCh, 6, 10*time.Second, "ConnClosed")
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.closed {
		if c.info.Source != sources[c.info.Path] {
			t.Fatalf("ConnInfo.Source %v on path %d; want %v", c.info.Source, c.info.Path, sources[c.info.Path])
		}
	}
}

func TestDriverDropMidData(t *testing.T) {
	be := &itBackend{dropAfter: 100}
	addr := itServe(t, be, nil, false)
	e, f, r := itEngine(t, Config{})
	env, _ := itEnvelope(1, 3, 2000)
	f.add(env)
	e.Dial(Dial{Path: 1, Host: "localhost", Addr: addr, Config: itSessionConfig()})
	itWait(t, r.doneCh, 1, 20*time.Second, "Done")
	itWait(t, r.closedCh, 1, 20*time.Second, "ConnClosed")
	c := r.counts()
	if c[ResultDeferred] != 3 || c[ResultDelivered] != 0 {
		t.Fatalf("outcomes %v; want 3 deferred, none delivered", c)
	}
	if r.closed[0].err == nil {
		t.Fatalf("ConnClosed err nil; want the connection error")
	}
}

func TestDriverDialFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close() // nothing listens there now
	e, f, r := itEngine(t, Config{})
	env, _ := itEnvelope(1, 1, 100)
	f.add(env)
	e.Dial(Dial{Path: 1, Host: "localhost", Addr: addr, Config: itSessionConfig()})
	itWait(t, r.closedCh, 1, 10*time.Second, "ConnClosed")
	if r.closed[0].err == nil {
		t.Fatal("dial failure reported with nil error")
	}
	if f.calls.Load() != 0 {
		t.Fatalf("Feeder asked %d times for a connection that never opened", f.calls.Load())
	}
	if st := e.Stats(); st.DialFailures != 1 || st.Dialing != 0 || st.Open != 0 {
		t.Fatalf("stats %+v; want 1 dial failure, nothing open", st)
	}
}

// TestDriverWake checks that Wake, not the tick, makes idle sessions take
// new work (the tick is an hour).
func TestDriverWake(t *testing.T) {
	be := &itBackend{}
	addr := itServe(t, be, nil, false)
	e, f, r := itEngine(t, Config{Tick: time.Hour, Loops: 2})
	for i := 0; i < 4; i++ {
		e.Dial(Dial{Path: uint64(i), Host: "localhost", Addr: addr, Config: itSessionConfig()})
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.Stats().Open < 4 || f.calls.Load() < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("sessions not idle: %+v, feeder calls %d", e.Stats(), f.calls.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i := 1; i <= 20; i++ {
		env, _ := itEnvelope(uint64(i), 1, 100)
		f.add(env)
	}
	e.Wake(2)
	itWait(t, r.doneCh, 20, 10*time.Second, "Done after Wake")
	if got := r.counts()[ResultDelivered]; got != 20 {
		t.Fatalf("delivered %d; want 20", got)
	}
}

// TestDriverGreetingTimeout: a server that accepts and says nothing.
func TestDriverGreetingTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	e, _, r := itEngine(t, Config{Tick: 10 * time.Millisecond})
	sc := itSessionConfig()
	sc.Timeouts.Greeting = 150 * time.Millisecond
	start := time.Now()
	e.Dial(Dial{Path: 1, Host: "localhost", Addr: netip.MustParseAddrPort(ln.Addr().String()), Config: sc})
	itWait(t, r.closedCh, 1, 10*time.Second, "ConnClosed")
	if el := time.Since(start); el < 150*time.Millisecond || el > 3*time.Second {
		t.Fatalf("closed after %v; want about the 150ms greeting timeout", el)
	}
	if r.closed[0].err == nil {
		t.Fatal("timeout reported with nil error")
	}
}

// TestDriverOpportunisticFallback: the handshake fails (certificate not
// trusted, verification on), so the connection is redialled without TLS,
// the host is remembered as broken, and the message goes in plaintext. The
// scheduler sees one ConnClosed for its one Dial.
func TestDriverOpportunisticFallback(t *testing.T) {
	cert, _ := itCert(t)
	be := &itBackend{}
	addr := itServe(t, be, &tls.Config{Certificates: []tls.Certificate{cert}}, false)
	cache := NewTLSCache(0, nil)
	defer cache.Close()
	e, f, r := itEngine(t, Config{TLSCache: cache})
	env, plain := itEnvelope(1, 1, 500)
	f.add(env)
	sc := itSessionConfig()
	sc.TLS, sc.VerifyTLS = TLSOpportunistic, true
	e.Dial(Dial{Path: 1, Host: "localhost", Addr: addr, Config: sc})
	itWait(t, r.doneCh, 1, 20*time.Second, "Done")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if c := r.counts(); c[ResultDelivered] != 1 {
		t.Fatalf("outcomes %v; want 1 delivered", c)
	}
	itCheckReceived(t, be, map[uint64][]byte{1: plain}, 1)
	if be.msgs[0].tls {
		t.Fatal("message went over TLS; want plaintext after the fallback")
	}
	if st := e.Stats(); st.PlainRetries != 1 || st.TLSFailures != 1 {
		t.Fatalf("stats %+v; want 1 plain retry after 1 TLS failure", st)
	}
	if n := r.nclosed.Load(); n != 1 {
		t.Fatalf("ConnClosed %d times; want 1", n)
	}
	for deadline := time.Now().Add(2 * time.Second); !cache.Broken("localhost"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("host not marked broken in the TLS cache")
		}
	}
}
