// Package sink is a fast SMTP sink for benchmarks and tests: it accepts
// mail, counts it, optionally records it, and injects scripted faults.
//
// It implements the server side of RFC 5321 (SMTP), RFC 1869/5321 EHLO,
// RFC 2920 (PIPELINING: every whole command in the input buffer is handled
// and all replies go out in one write), RFC 3030 (CHUNKING: BDAT, when
// Config.Chunking; a refused chunk is still read to its last octet),
// RFC 1870 (SIZE), RFC 6152 (8BITMIME),
// RFC 6531 (SMTPUTF8, advertised only), RFC 3207 (STARTTLS), RFC 4954 (AUTH
// PLAIN and LOGIN) and RFC 3463 enhanced status codes. It does not deliver.
//
// Transports: plaintext sinks run on gnet v2 event loops. gnet has no TLS,
// so when Config.StartTLS is set the whole sink runs on the standard net
// listener with one goroutine per connection (crypto/tls after STARTTLS);
// both transports drive the same sans-I/O session code, so replies and
// faults are identical. The TLS sink is therefore not the throughput
// reference; the plaintext one is.
//
// Faults by recipient local part: "tempfail@" → 450 4.2.0 at RCPT,
// "permfail@" → 550 5.1.1 at RCPT, "421@" → 421 4.7.0 and close,
// "slow-N@" → every later reply of that transaction is delayed N ms,
// "drop-in-data@" → the connection is closed as soon as body bytes arrive
// (after DATA's 354, or in a BDAT chunk).
// Faults by rate per recipient domain (Config.Faults): a defer answers
// 451 4.7.1 at RCPT, a bounce 550 5.7.1, a drop closes the connection during
// DATA or BDAT. Rolls come from a counter-based PRNG seeded by Config.Seed, so the
// number of faults among the first N recipients of a domain is fixed.
//
// Latency (Config.Latency) delays every batch of replies (one per pipelined
// batch, like a remote MX round trip); on gnet it uses time.AfterFunc and
// Conn.AsyncWrite, and the connection's further input waits in gnet's
// inbound buffer until the delayed reply is written, so replies never
// overtake each other.
package sink

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"math/bits"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// AuthConfig enables AUTH PLAIN and LOGIN with one account; MAIL is refused
// (530 5.7.0) until a session authenticates.
type AuthConfig struct {
	User, Pass string
}

// RateFault injects faults for recipients of Domain ("*" matches every
// domain) at the given rates (fractions 0..1, summed at most 1).
type RateFault struct {
	Domain              string
	Defer, Bounce, Drop float64
}

// Config configures a sink. The zero value (plus Addr) is a plain sink
// advertising PIPELINING and ENHANCEDSTATUSCODES.
type Config struct {
	Addr     string // listen address; "" = 127.0.0.1:0
	Hostname string // in the greeting and EHLO; "" = sink.test
	Loops    int    // gnet event loops; 0 = number of CPUs

	// NoPipelining turns off the PIPELINING advertisement (the sink still
	// handles pipelined input). Pipelining is on by default.
	NoPipelining bool
	Size         int64 // advertised SIZE; also enforced at MAIL and DATA (0 = none)
	EightBitMIME bool
	SMTPUTF8     bool
	// Chunking advertises CHUNKING and accepts BDAT (RFC 3030, without
	// BINARYMIME), as Gmail and Outlook do. Off in the zero Config (DATA
	// only); `spate sink` turns it on by default.
	Chunking bool
	StartTLS bool        // offer STARTTLS (runs the goroutine transport)
	TLS      *tls.Config // certificate for STARTTLS; nil = a generated self-signed one
	Auth     *AuthConfig

	Latency time.Duration // delay every batch of replies
	Faults  []RateFault
	Seed    uint64

	// Record keeps every accepted message for Received.
	Record bool
	// OnMessage, if set, is called for every accepted message, on the
	// goroutine that served it (a gnet loop: do not block).
	OnMessage func(Received)
	// MaxMessageSize rejects larger bodies with 552 5.3.4 (0 = Size).
	MaxMessageSize int64
}

// Received is one accepted message.
type Received struct {
	From   string
	Rcpts  []string
	Data   []byte // body as sent, un-stuffed, without the terminating dot (BDAT: the chunks' octets)
	Source netip.Addr
}

// Stats are the sink's counters.
type Stats struct {
	Messages    int64 // accepted final dots
	Recipients  int64 // accepted recipients of accepted messages
	Connections int64 // connections accepted
	Bytes       int64 // body bytes of accepted messages as sent (DATA: stuffed, with terminator; BDAT: the chunks' octets)
	// Domains counts accepted recipients per recipient domain (lower case).
	Domains map[string]int64
	// Sources counts accepted messages per client IP.
	Sources map[netip.Addr]int64
	// Replies counts replies sent by class: Replies[2] are 2xx, and so on.
	Replies [6]int64
	// TxnP50 and TxnP99 are quantiles of the time from MAIL FROM to the
	// reply to the final dot (including injected delays), per accepted
	// message; histogram bucket upper bounds, so within 12 %.
	TxnP50, TxnP99 time.Duration
}

// Server is a running sink. Its methods are safe for concurrent use.
type Server struct {
	cfg       Config
	addr      string
	maxSize   int64
	recording bool
	greeting  string
	ehlo      string
	ehloTLS   string
	helo      string
	tlsConf   *tls.Config
	faults    map[string]*faultState
	anyFault  *faultState

	messages, recipients, connections, bytes atomic.Int64
	replies                                  [6]atomic.Int64

	mu       sync.Mutex
	domains  map[string]*int64
	sources  map[netip.Addr]*int64
	hist     [histSize]int64
	received []Received

	closeOnce sync.Once
	closeErr  error
	stop      func() error
}

// newServer checks cfg and prepares the replies; Start adds a transport.
func newServer(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "sink.test"
	}
	s := &Server{
		cfg:       cfg,
		recording: cfg.Record || cfg.OnMessage != nil,
		maxSize:   cfg.MaxMessageSize,
		domains:   map[string]*int64{},
		sources:   map[netip.Addr]*int64{},
		faults:    map[string]*faultState{},
	}
	if s.maxSize == 0 {
		s.maxSize = cfg.Size
	}
	for _, f := range cfg.Faults {
		if f.Defer < 0 || f.Bounce < 0 || f.Drop < 0 || f.Defer+f.Bounce+f.Drop > 1 {
			return nil, fmt.Errorf("sink: fault rates for %q must be ≥ 0 and sum to at most 1", f.Domain)
		}
		fs := &faultState{RateFault: f, seed: cfg.Seed ^ uint64(len(s.faults)+1)*0x9e3779b97f4a7c15}
		if f.Domain == "*" {
			s.anyFault = fs
		} else {
			s.faults[strings.ToLower(f.Domain)] = fs
		}
	}
	s.greeting = "220 " + cfg.Hostname + " ESMTP spate sink\r\n"
	s.helo = "250 " + cfg.Hostname + "\r\n"
	ext := []string{cfg.Hostname}
	if !cfg.NoPipelining {
		ext = append(ext, "PIPELINING")
	}
	if cfg.Size > 0 {
		ext = append(ext, fmt.Sprintf("SIZE %d", cfg.Size))
	}
	if cfg.EightBitMIME {
		ext = append(ext, "8BITMIME")
	}
	if cfg.SMTPUTF8 {
		ext = append(ext, "SMTPUTF8")
	}
	if cfg.Chunking {
		ext = append(ext, "CHUNKING")
	}
	if cfg.Auth != nil {
		ext = append(ext, "AUTH PLAIN LOGIN")
	}
	ext = append(ext, "ENHANCEDSTATUSCODES")
	s.ehloTLS = ehloReply(ext)
	if cfg.StartTLS {
		ext = append(ext[:len(ext)-1], "STARTTLS", "ENHANCEDSTATUSCODES")
	}
	s.ehlo = ehloReply(ext)
	return s, nil
}

// Start starts a sink and returns once it accepts connections.
func Start(cfg Config) (*Server, error) {
	s, err := newServer(cfg)
	if err != nil {
		return nil, err
	}
	if s.cfg.StartTLS {
		s.tlsConf = s.cfg.TLS
		if s.tlsConf == nil {
			if s.tlsConf, err = selfSigned(s.cfg.Hostname); err != nil {
				return nil, err
			}
		}
		err = s.startNet()
	} else {
		err = s.startGnet()
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

func ehloReply(ext []string) string {
	var b strings.Builder
	for i, e := range ext {
		if i == len(ext)-1 {
			b.WriteString("250 ")
		} else {
			b.WriteString("250-")
		}
		b.WriteString(e)
		b.WriteString("\r\n")
	}
	return b.String()
}

// Addr returns the address the sink listens on (host:port).
func (s *Server) Addr() string { return s.addr }

// Messages returns the number of accepted messages (cheaper than Stats).
func (s *Server) Messages() int64 { return s.messages.Load() }

// Close stops the sink and closes every connection.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.stop() })
	return s.closeErr
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := Stats{
		Messages:    s.messages.Load(),
		Recipients:  s.recipients.Load(),
		Connections: s.connections.Load(),
		Bytes:       s.bytes.Load(),
		Domains:     map[string]int64{},
		Sources:     map[netip.Addr]int64{},
	}
	for i := range st.Replies {
		st.Replies[i] = s.replies[i].Load()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for d, n := range s.domains {
		st.Domains[d] = *n
	}
	for a, n := range s.sources {
		st.Sources[a] = *n
	}
	st.TxnP50, st.TxnP99 = s.quantile(0.5), s.quantile(0.99)
	return st
}

// Received returns the accepted messages in arrival order (Config.Record).
func (s *Server) Received() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.received...)
}

// String formats the stats on one line, domains by count.
func (st Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "messages=%d recipients=%d connections=%d bytes=%d replies 2xx=%d 4xx=%d 5xx=%d txn p50=%v p99=%v",
		st.Messages, st.Recipients, st.Connections, st.Bytes, st.Replies[2], st.Replies[4], st.Replies[5], st.TxnP50, st.TxnP99)
	type kv struct {
		k string
		v int64
	}
	var ds []kv
	for k, v := range st.Domains {
		ds = append(ds, kv{k, v})
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i].v > ds[j].v || ds[i].v == ds[j].v && ds[i].k < ds[j].k })
	for i, d := range ds {
		if i == 8 {
			fmt.Fprintf(&b, " …+%d domains", len(ds)-8)
			break
		}
		fmt.Fprintf(&b, " %s=%d", d.k, d.v)
	}
	return b.String()
}

// flushReplies adds a batch's reply counts to the totals.
func (s *Server) flushReplies(ss *session) {
	for i, n := range ss.replies {
		if n != 0 {
			s.replies[i].Add(n)
			ss.replies[i] = 0
		}
	}
}

// delivered accounts for an accepted message. stuffed: the body came with DATA
// (recorded un-stuffed); else with BDAT (recorded as sent).
func (s *Server) delivered(ss *session, stuffed bool) {
	s.messages.Add(1)
	s.recipients.Add(int64(ss.nrcpt))
	s.bytes.Add(ss.dataLen)
	d := time.Since(ss.txnStart) + s.cfg.Latency + ss.slow
	var rec *Received
	if s.recording {
		r := Received{From: string(ss.from), Source: ss.src}
		if stuffed {
			r.Data = unstuff(ss.data)
		} else {
			r.Data = bytes.Clone(ss.data) // BDAT chunks: as sent
		}
		for _, a := range bytes.Split(ss.rcpts[:len(ss.rcpts)-1], []byte{'\n'}) {
			r.Rcpts = append(r.Rcpts, string(a))
		}
		rec = &r
	}
	s.mu.Lock()
	rc := ss.rcpts
	for len(rc) > 0 {
		j := bytes.IndexByte(rc, '\n')
		a := rc[:j]
		rc = rc[j+1:]
		dom := a[bytes.LastIndexByte(a, '@')+1:]
		lowerASCII(dom)
		if p := s.domains[string(dom)]; p != nil {
			*p++
		} else {
			n := int64(1)
			s.domains[string(dom)] = &n
		}
	}
	if p := s.sources[ss.src]; p != nil {
		*p++
	} else {
		n := int64(1)
		s.sources[ss.src] = &n
	}
	s.hist[histIndex(d)]++
	if rec != nil && s.cfg.Record {
		s.received = append(s.received, *rec)
	}
	s.mu.Unlock()
	if rec != nil && s.cfg.OnMessage != nil {
		s.cfg.OnMessage(*rec)
	}
}

func lowerASCII(b []byte) {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
}

// ---- latency histogram: 8 sub-buckets per power of two of microseconds.

const histSize = 64 * 8

func histIndex(d time.Duration) int {
	us := uint64(d / time.Microsecond)
	if us < 8 {
		return int(us)
	}
	e := bits.Len64(us) - 4 // us >> e is in [8, 16)
	return e*8 + int(us>>e)
}

func histUpper(i int) time.Duration {
	if i < 8 {
		return time.Duration(i+1) * time.Microsecond
	}
	e := i/8 - 1
	m := uint64(i%8 + 8)
	return time.Duration((m+1)<<e) * time.Microsecond
}

// quantile needs s.mu held.
func (s *Server) quantile(q float64) time.Duration {
	var total int64
	for _, n := range s.hist {
		total += n
	}
	if total == 0 {
		return 0
	}
	want := int64(q*float64(total) + 0.5)
	if want < 1 {
		want = 1
	}
	var acc int64
	for i, n := range s.hist {
		acc += n
		if acc >= want {
			return histUpper(i)
		}
	}
	return histUpper(histSize - 1)
}

// ---- rate faults

type faultKind uint8

const (
	faultNone faultKind = iota
	faultDefer
	faultBounce
	faultDrop
)

type faultState struct {
	RateFault
	seed uint64
	n    atomic.Uint64
}

func (s *Server) fault(domain []byte) *faultState {
	if len(s.faults) > 0 {
		var buf [256]byte
		if len(domain) <= len(buf) {
			d := buf[:len(domain)]
			copy(d, domain)
			lowerASCII(d)
			if f := s.faults[string(d)]; f != nil {
				return f
			}
		}
	}
	return s.anyFault
}

// roll draws the next fault for this domain (splitmix64 over a counter).
func (f *faultState) roll() faultKind {
	z := f.seed + f.n.Add(1)*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	r := float64(z>>11) / (1 << 53)
	switch {
	case r < f.Defer:
		return faultDefer
	case r < f.Defer+f.Bounce:
		return faultBounce
	case r < f.Defer+f.Bounce+f.Drop:
		return faultDrop
	}
	return faultNone
}

func addrOf(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(t.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}
