package engine

// The sans-I/O SMTP client: RFC 5321 (transactions, §4.5.3.2 timeouts),
// RFC 2920 (PIPELINING, also across messages), RFC 3207 (STARTTLS),
// RFC 4954 with RFC 4616 (AUTH PLAIN, LOGIN), RFC 1870 (SIZE), RFC 6152
// (8BITMIME), RFC 6531 (SMTPUTF8), RFC 3030 (CHUNKING: BDAT, without
// BINARYMIME; with PIPELINING several whole transactions in flight). No socket, no goroutine, no clock: the
// driver feeds server bytes and the time, and writes what Output returns.

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/spate-mta/spate/codec"
)

// State is the phase of a Session. With pipelining across messages the
// state is the phase of the oldest transaction in flight.
type State uint8

const (
	StateBanner       State = iota // zero: waiting for the server's greeting
	StateEHLO                      // EHLO sent
	StateHELO                      // HELO sent after EHLO was refused with 500/502
	StateStartTLS                  // STARTTLS sent
	StateTLSHandshake              // 220 to STARTTLS received; the driver handshakes
	StateAuth                      // AUTH sent
	StateIdle                      // ready; nothing in flight; waiting for the Feeder
	StateEnvelope                  // MAIL, RCPT, DATA in flight
	StateBody                      // message data written, waiting for the final reply
	StateRset                      // RSET after a failed transaction
	StateQuit                      // QUIT sent
	StateClosed                    // Closed was called
)

// StateReady is another name for StateIdle.
const StateReady = StateIdle

var stateNames = [...]string{
	StateBanner: "banner", StateEHLO: "ehlo", StateHELO: "helo", StateStartTLS: "starttls",
	StateTLSHandshake: "tls-handshake", StateAuth: "auth", StateIdle: "idle", StateEnvelope: "envelope",
	StateBody: "body", StateRset: "rset", StateQuit: "quit", StateClosed: "closed",
}

// String returns the state's name for logs ("envelope").
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// Local faults that end a session. ConnClosed receives them (or a
// *codec.ReplyError when the server's reply ended the session, or a
// *TimeoutError).
var (
	ErrTLSUnavailable  = errors.New("engine: TLS required but STARTTLS not offered")
	ErrAuthNeedsTLS    = errors.New("engine: AUTH configured but the connection is not encrypted")
	ErrAuthUnavailable = errors.New("engine: AUTH configured but neither PLAIN nor LOGIN offered")
	ErrUnexpectedReply = errors.New("engine: reply without a command")
	ErrConnLost        = errors.New("engine: connection closed before QUIT")
	// ErrOutOfStep: with BDAT pipelined, the server answered BDAT with
	// 500-504 (it did not take the command, so it may be reading the chunk
	// as commands), accepted a chunk for a transaction without recipients,
	// or refused a pipelined MAIL with 503 (it kept a failed transaction
	// open). Nothing more is sent; what is in flight is deferred.
	ErrOutOfStep = errors.New("engine: server out of step with the BDAT pipeline")
)

// TimeoutError says which reply did not arrive in time.
type TimeoutError struct {
	Cmd codec.Command // codec.CmdGreeting for the banner
}

func (e *TimeoutError) Error() string {
	return "engine: timeout waiting for the reply to " + e.Cmd.String()
}

// Timeout reports true (net.Error style).
func (e *TimeoutError) Timeout() bool { return true }

// Temporary reports true.
func (e *TimeoutError) Temporary() bool { return true }

// Enhanced codes of local outcomes.
var (
	enhBadConn  = codec.EnhancedCode{Class: 4, Subject: 4, Detail: 2}
	enhTooBig   = codec.EnhancedCode{Class: 5, Subject: 3, Detail: 4}
	enhTooMany  = codec.EnhancedCode{Class: 4, Subject: 5, Detail: 3}
	enhNoUTF8   = codec.EnhancedCode{Class: 5, Subject: 6, Detail: 7}
	textTooBig  = "engine: message larger than the server's SIZE limit"
	textTooMany = "engine: more recipients than MaxRcpts in one transaction"
	textNoUTF8  = "engine: SMTPUTF8 required but not offered"
)

// rcpt states within a transaction.
const (
	rcptPending  uint8 = iota // zero: no outcome yet
	rcptAccepted              // 250/251 to RCPT; waiting for the final reply
	rcptFinal                 // Outcome reported
)

// txn is one transaction in flight.
type txn struct {
	env      *Envelope
	rc       []uint8 // per recipient: rcpt*; rcIn until a larger one is needed
	rcIn     [8]uint8
	n        int // recipients sent (≤ MaxRcpts)
	next     int // without pipelining: next recipient to send
	accepted int
	failed   bool  // MAIL refused, or aborted after a wrong 354
	slot     uint8 // 1 + index in Session.txs (expect.t)
}

// expect is one reply the session waits for. It holds no pointer (8
// bytes, not scanned by the GC): t names the transaction by slot.
type expect struct {
	i   int32 // RCPT: recipient index; AUTH LOGIN: step
	cmd codec.Command
	t   uint8 // 0: none; k: Session.txs[k-1]
}

// Pipeline depth with PIPELINING and CHUNKING (SessionConfig.PipelineDepth,
// PipelineBytes).
const (
	defPipelineDepth = 4
	maxPipelineDepth = 64
	defPipelineBytes = 256 << 10
)

// qInline is the capacity of the expectation ring kept inside the Session
// (a power of two). Pipelining puts at most MaxRcpts+3 replies in flight
// (the previous body, then MAIL, RCPT×n, DATA); with up to 5 recipients
// the ring never leaves the Session, beyond that it grows once (doubling)
// and keeps its size for the session's life.
const qInline = 8

// wbuf is the write buffer of a session: command bytes and the segment
// list Output returns. A session borrows one from wbufPool when it first
// appends output and gives it back at Flushed (the driver has handed the
// bytes to the socket, and gnet copies what the socket did not take), so
// an idle session, or one waiting for replies, holds none.
type wbuf struct {
	cmd  []byte   // command bytes not yet flushed
	mark int      // cmd[:mark] already placed in out
	out  [][]byte // what Output returns
}

// wbufMaxCmd: a write buffer whose command bytes grew beyond this (a
// transaction with very many recipients) is dropped rather than pooled.
const wbufMaxCmd = 64 << 10

var wbufPool = sync.Pool{New: func() any {
	return &wbuf{cmd: make([]byte, 0, 1024), out: make([][]byte, 0, 16)}
}}

// Session is one SMTP client connection as a state machine. It is not safe
// for concurrent use: every method is called on the goroutine that owns the
// connection (its event loop, or its goroutine driver after a TLS hand-off).
//
// Envelopes: the session owns an Envelope from Feeder.Next until
// Reporter.Done. It reports Outcome exactly once per recipient (refusals at
// RCPT time, the rest at the final reply), then Done once. It releases the
// Body right before Done; when the body is still referenced by Output not
// yet Flushed (only if a server answers before reading), it is released at
// Flushed or Closed instead, after Done. A Reporter must not touch env.Body
// after Done.
//
// Local outcomes (Outcome.Local) use 451 4.4.2 for timeouts and lost
// connections, 552 5.3.4 for SIZE, 553 5.6.7 for SMTPUTF8 not offered, and
// 452 4.5.3 for recipients beyond MaxRcpts. Timeouts.DataBlock is not used:
// the body goes out in one Output, timed by Timeouts.Final.
type Session struct {
	cfg  *SessionConfig
	info ConnInfo
	f    Feeder
	r    Reporter

	state State
	caps  codec.Caps
	helo  bool // HELO was used: no extensions
	pipe  bool // pipelining in use
	authd bool
	noTLS bool // STARTTLS refused under TLSOpportunistic: carry on plain

	q      []expect // ring; len is a power of two; qIn until it grows
	qh, qn int
	qIn    [qInline]expect
	txs    []txn // transaction slots: txIn, or PipelineDepth of them with BDAT
	txIn   [2]txn

	w   *wbuf // borrowed from wbufPool while output is pending; else nil
	rel []*codec.Message

	since     int64 // head of q is timed from here (or idle period start)
	taken     int   // transactions sent (MaxMessages)
	maxRcpts  int
	inflight  int  // transactions taken and not finished
	wbody     int  // body octets in the pending write (PipelineBytes)
	chunk     bool // BDAT instead of DATA (CHUNKING offered, ChunkingAuto)
	wantTLS   bool
	wantClose bool
	retry     bool
	draining  bool
	quitSent  bool
	quitOK    bool // 221 received
	err       error
}

// NewSession returns a session waiting for the server's greeting. cfg must
// not change while the session lives; zero Timeouts fields take
// DefaultTimeouts values. now is the caller's clock in Unix nanoseconds.
func NewSession(cfg *SessionConfig, info ConnInfo, f Feeder, r Reporter, now int64) *Session {
	s := &Session{cfg: cfg, info: info, f: f, r: r, since: now}
	s.maxRcpts = cfg.MaxRcpts
	if s.maxRcpts <= 0 {
		s.maxRcpts = 100
	}
	s.q = s.qIn[:]
	s.setSlots(s.txIn[:])
	if cfg.TLS == TLSImplicit {
		s.info.TLS = true
	}
	s.push(codec.CmdGreeting, nil, 0)
	return s
}

// Info returns the connection's description (TLS and Delivered kept up to
// date). The pointer stays valid for the session's life.
func (s *Session) Info() *ConnInfo { return &s.info }

// Caps returns what the server announced in its last EHLO reply.
func (s *Session) Caps() codec.Caps { return s.caps }

// State returns the current phase, for logs and tests.
func (s *Session) State() State { return s.state }

// WantsClose reports that the driver should close the connection once it
// has written Output.
func (s *Session) WantsClose() bool { return s.wantClose }

// WantsTLS reports that the server accepted STARTTLS: the driver must run
// the TLS handshake on this connection and then call TLSDone. Feed consumes
// nothing meanwhile (bytes after the 220 belong to TLS).
func (s *Session) WantsTLS() bool { return s.wantTLS }

// RetryPlain reports that the TLS handshake failed under TLSOpportunistic:
// the driver should redial without TLS (and remember the host).
func (s *Session) RetryPlain() bool { return s.retry }

// Deadline returns when the awaited reply (or the idle period) expires, in
// Unix nanoseconds; 0 means none (closing, closed, or TLS handshaking,
// which the driver times itself).
func (s *Session) Deadline() int64 {
	if s.wantClose || s.wantTLS || s.state == StateClosed {
		return 0
	}
	if s.qn == 0 {
		if s.state == StateIdle {
			return s.since + int64(orDefault(s.cfg.Timeouts.Idle, defTimeouts.Idle))
		}
		return 0
	}
	return s.since + int64(s.timeout(s.q[s.qh].cmd))
}

// defTimeouts fills the zero fields of SessionConfig.Timeouts.
var defTimeouts = DefaultTimeouts()

func orDefault(v, d time.Duration) time.Duration {
	if v <= 0 {
		return d
	}
	return v
}

// timeout is the configured (else default) time to wait for c's reply.
// It reads cfg, which must not change while the session lives, so that
// the session carries no copy of it.
func (s *Session) timeout(c codec.Command) time.Duration {
	to, d := &s.cfg.Timeouts, &defTimeouts
	switch c {
	case codec.CmdGreeting:
		return orDefault(to.Greeting, d.Greeting)
	case codec.CmdEHLO, codec.CmdHELO:
		return orDefault(to.EHLO, d.EHLO)
	case codec.CmdStartTLS:
		return orDefault(to.StartTLS, d.StartTLS)
	case codec.CmdAuth:
		return orDefault(to.Auth, d.Auth)
	case codec.CmdMail, codec.CmdRset, codec.CmdNoop:
		return orDefault(to.Mail, d.Mail)
	case codec.CmdRcpt:
		return orDefault(to.Rcpt, d.Rcpt)
	case codec.CmdData:
		return orDefault(to.Data, d.Data)
	case codec.CmdBody:
		return orDefault(to.Final, d.Final)
	case codec.CmdQuit:
		return orDefault(to.Quit, d.Quit)
	}
	return orDefault(to.Mail, d.Mail)
}

// Output returns the bytes to write now, nil if none: commands and message
// segments in order. The slice and what it holds are valid until Flushed;
// calling Output again before Flushed returns the same bytes.
func (s *Session) Output() [][]byte {
	w := s.w
	if w == nil {
		return nil
	}
	w.seal()
	if len(w.out) == 0 {
		return nil
	}
	return w.out
}

// Flushed tells the session that the driver handed Output to the socket:
// its buffers are reused, and message bodies finished meanwhile released.
func (s *Session) Flushed() {
	s.giveBack()
	s.releaseAll()
}

// borrow makes sure the session holds a write buffer and returns it.
func (s *Session) borrow() *wbuf {
	if s.w == nil {
		s.w = wbufPool.Get().(*wbuf)
	}
	return s.w
}

// giveBack returns the write buffer (what Output returned is no longer
// referenced by the driver).
func (s *Session) giveBack() {
	w := s.w
	if w == nil {
		return
	}
	s.w = nil
	s.wbody = 0
	clear(w.out)
	w.cmd, w.out, w.mark = w.cmd[:0], w.out[:0], 0
	if cap(w.cmd) <= wbufMaxCmd && cap(w.out) <= 1024 {
		wbufPool.Put(w)
	}
}

func (s *Session) releaseAll() {
	for i, m := range s.rel {
		m.Release()
		s.rel[i] = nil
	}
	s.rel = s.rel[:0]
}

// Feed consumes whole replies from in and returns how many bytes it used;
// the caller keeps in[n:] for the next call (in is not retained). A non-nil
// error is fatal: a *codec.ReplyError (the server ended the session, e.g.
// 421), a local fault (ErrTLSUnavailable...), or a parse error; the driver
// writes Output (last words such as QUIT), closes, and calls Closed.
func (s *Session) Feed(in []byte, now int64) (n int, err error) {
	for !s.wantTLS && !s.wantClose && s.state != StateClosed {
		r, k, perr := codec.ParseReply(in[n:])
		if perr == codec.ErrIncomplete {
			return n, nil
		}
		if perr != nil {
			s.wantClose = true
			return n, perr
		}
		n += k
		if err := s.onReply(r, now); err != nil {
			s.wantClose = true
			if s.err == nil {
				s.err = err
			}
			return n, err
		}
	}
	return n, nil
}

// onReply pairs r with the command at the head of the expectation queue.
// The switch is on that command, not on State: with pipelining, replies
// to two transactions are in flight and the command says which one r ends.
func (s *Session) onReply(r codec.Reply, now int64) error {
	if s.qn == 0 {
		// Typically "421 idle timeout" from a server closing an idle session.
		return fmt.Errorf("%w: %d %s", ErrUnexpectedReply, r.Code, r.Text())
	}
	e := s.pop()
	s.since = now
	if r.Code == 421 && e.cmd != codec.CmdQuit {
		return s.onClosing(e, r)
	}
	switch e.cmd {
	case codec.CmdGreeting:
		return s.onBanner(r, now)
	case codec.CmdEHLO:
		return s.onEHLO(r, now)
	case codec.CmdHELO:
		return s.onHELO(r, now)
	case codec.CmdStartTLS:
		return s.onStartTLS(r, now)
	case codec.CmdAuth:
		return s.onAuth(e, r, now)
	case codec.CmdMail:
		return s.onMail(s.txnOf(e), r, now)
	case codec.CmdRcpt:
		return s.onRcpt(s.txnOf(e), int(e.i), r, now)
	case codec.CmdData:
		return s.onData(s.txnOf(e), r, now)
	case codec.CmdBody:
		if s.chunk { // fixed once EHLO is answered, before any transaction
			return s.onBDAT(s.txnOf(e), r, now)
		}
		return s.onBody(s.txnOf(e), r, now)
	case codec.CmdRset, codec.CmdNoop:
		return s.onRset(r, now)
	case codec.CmdQuit:
		return s.onQuit(r)
	}
	panic("engine: BUG: expectation for command " + e.cmd.String())
}

func (s *Session) onBanner(r codec.Reply, now int64) error {
	if r.Code != 220 {
		if r.Permanent() {
			s.quit(now) // RFC 5321 §3.1: QUIT after a 554 greeting
		}
		return codec.NewReplyError(codec.CmdGreeting, r)
	}
	s.sendEHLO(now)
	return nil
}

func (s *Session) sendEHLO(now int64) {
	w := s.borrow()
	w.cmd = codec.AppendEHLO(w.cmd, s.cfg.EHLOName)
	s.push(codec.CmdEHLO, nil, 0)
	s.state = StateEHLO
}

func (s *Session) onEHLO(r codec.Reply, now int64) error {
	switch {
	case r.Class() == 2:
		s.caps = codec.ParseEHLO(r)
		return s.ready(now)
	case r.Code == 500 || r.Code == 502:
		w := s.borrow()
		w.cmd = codec.AppendHELO(w.cmd, s.cfg.EHLOName)
		s.push(codec.CmdHELO, nil, 0)
		s.state = StateHELO
		return nil
	}
	s.quit(now)
	return codec.NewReplyError(codec.CmdEHLO, r)
}

func (s *Session) onHELO(r codec.Reply, now int64) error {
	if r.Class() != 2 {
		s.quit(now)
		return codec.NewReplyError(codec.CmdHELO, r)
	}
	s.helo = true
	s.caps = codec.Caps{}
	return s.ready(now)
}

// ready runs after each successful EHLO/HELO and AUTH: STARTTLS, AUTH, or
// the first transaction.
func (s *Session) ready(now int64) error {
	tlsWanted := s.cfg.TLS == TLSOpportunistic || s.cfg.TLS == TLSRequired
	if !s.info.TLS && tlsWanted && s.caps.StartTLS && !s.noTLS {
		w := s.borrow()
		w.cmd = codec.AppendStartTLS(w.cmd)
		s.push(codec.CmdStartTLS, nil, 0)
		s.state = StateStartTLS
		return nil
	}
	if !s.info.TLS && s.cfg.TLS == TLSRequired {
		s.quit(now)
		return ErrTLSUnavailable
	}
	if a := s.cfg.Auth; a != nil && !s.authd {
		if !s.info.TLS && !a.AllowPlaintext {
			s.quit(now)
			return ErrAuthNeedsTLS
		}
		switch {
		case s.caps.Auth.Has(codec.AuthPlain):
			w := s.borrow()
			w.cmd = codec.AppendAuthPlain(w.cmd, "", a.Username, a.Password)
		case s.caps.Auth.Has(codec.AuthLogin):
			w := s.borrow()
			w.cmd = codec.AppendAuthLogin(w.cmd)
		default:
			s.quit(now)
			return ErrAuthUnavailable
		}
		s.push(codec.CmdAuth, nil, 0)
		s.state = StateAuth
		return nil
	}
	s.pipe = s.caps.Pipelining && !s.cfg.NoPipelining
	s.chunk = s.caps.Chunking && s.cfg.Chunking == ChunkingAuto
	if d := s.depth(); d > len(s.txs) && s.inflight == 0 {
		s.setSlots(make([]txn, d))
	}
	s.idle(now)
	return nil
}

// setSlots makes ts the transaction slots (none may be in use).
func (s *Session) setSlots(ts []txn) {
	if len(ts) > maxPipelineDepth {
		panic("engine: BUG: too many transaction slots")
	}
	for i := range ts {
		ts[i].slot = uint8(i + 1)
		ts[i].rc = ts[i].rcIn[:0]
	}
	s.txs = ts
}

// chunkPipe reports that whole transactions are pipelined (BDAT with
// PIPELINING): replies to several of them may be in flight.
func (s *Session) chunkPipe() bool { return s.chunk && s.pipe }

// depth is how many transactions may be in flight at once.
func (s *Session) depth() int {
	if !s.chunkPipe() {
		return 2 // the next envelope rides with the final dot
	}
	d := s.cfg.PipelineDepth
	if d <= 0 {
		d = defPipelineDepth
	}
	return min(d, maxPipelineDepth)
}

// more reports that another transaction may join the pipeline now: a slot
// is free and the pending write holds less than PipelineBytes of bodies.
func (s *Session) more() bool {
	budget := s.cfg.PipelineBytes
	if budget <= 0 {
		budget = defPipelineBytes
	}
	return s.inflight < s.depth() && s.wbody < budget
}

func (s *Session) onStartTLS(r codec.Reply, now int64) error {
	if r.Code == 220 {
		s.state = StateTLSHandshake
		s.wantTLS = true
		return nil
	}
	if s.cfg.TLS == TLSRequired {
		s.quit(now)
		return codec.NewReplyError(codec.CmdStartTLS, r)
	}
	s.noTLS = true // RFC 3207 §4: carry on as after EHLO
	return s.ready(now)
}

// TLSDone ends the handshake the session asked for with WantsTLS. nil: the
// session sends EHLO again. An error ends the session; under
// TLSOpportunistic RetryPlain then reports true.
func (s *Session) TLSDone(err error, now int64) {
	if !s.wantTLS {
		return
	}
	s.wantTLS = false
	s.since = now
	if err != nil {
		s.retry = s.cfg.TLS == TLSOpportunistic
		s.wantClose = true
		if s.err == nil {
			s.err = err
		}
		return
	}
	s.info.TLS = true
	s.caps = codec.Caps{}
	s.sendEHLO(now)
}

func (s *Session) onAuth(e expect, r codec.Reply, now int64) error {
	a := s.cfg.Auth
	if r.Code == 334 && s.caps.Auth&codec.AuthPlain == 0 && e.i < 2 {
		if e.i == 0 {
			w := s.borrow()
			w.cmd = codec.AppendBase64Line(w.cmd, a.Username)
		} else {
			w := s.borrow()
			w.cmd = codec.AppendBase64Line(w.cmd, a.Password)
		}
		s.push(codec.CmdAuth, nil, e.i+1)
		return nil
	}
	if r.Class() != 2 {
		if r.Code == 334 {
			w := s.borrow()
			w.cmd = append(w.cmd, "*\r\n"...) // RFC 4954 §4: cancel the exchange
			s.wantClose = true
		} else {
			s.quit(now)
		}
		return codec.NewReplyError(codec.CmdAuth, r)
	}
	s.authd = true
	return s.ready(now)
}

// idle enters StateIdle (or QUITs) and asks the Feeder for work.
func (s *Session) idle(now int64) {
	s.state = StateIdle
	s.since = now
	if s.draining || s.full() {
		s.quit(now)
		return
	}
	s.take(now)
}

// full reports that MaxMessages transactions were sent.
func (s *Session) full() bool { return s.cfg.MaxMessages > 0 && s.taken >= s.cfg.MaxMessages }

// Poll asks the Feeder again if the session is idle; otherwise it does
// nothing. The driver calls it on Engine.Wake and every tick.
func (s *Session) Poll(now int64) {
	if s.state == StateIdle && !s.wantClose && s.qn == 0 {
		s.take(now)
	}
}

// Drain makes the session QUIT as soon as it is idle and take no more
// transactions (graceful stop). It may be called any number of times.
func (s *Session) Drain(now int64) {
	s.draining = true
	if s.state == StateIdle && !s.wantClose && s.qn == 0 {
		s.quit(now)
	}
}

// take asks the Feeder for a transaction and sends it. Envelopes that fail
// locally (SIZE, SMTPUTF8) are finished at once and the next one taken.
// With BDAT and PIPELINING it goes on while more allows, and pipelines QUIT
// behind the last transaction MaxMessages allows.
func (s *Session) take(now int64) bool {
	sent := false
	for !s.draining && !s.full() {
		if s.chunkPipe() && !s.more() {
			break
		}
		t := s.freeTxn()
		if t == nil {
			panic("engine: BUG: no free transaction slot")
		}
		env := s.f.Next(s.info, time.Unix(0, now))
		if env == nil {
			break
		}
		t.env = env
		s.inflight++
		if cap(t.rc) < len(env.Rcpts) {
			t.rc = make([]uint8, len(env.Rcpts))
		}
		t.rc = t.rc[:len(env.Rcpts)]
		clear(t.rc)
		t.n, t.next, t.accepted, t.failed = min(len(env.Rcpts), s.maxRcpts), 0, 0, false
		size := env.Size
		if size == 0 && env.Body != nil {
			size = env.Body.Len()
		}
		switch {
		case len(env.Rcpts) == 0:
			s.finish(t, ResultNone, 0, codec.EnhancedCode{}, "", true)
			continue
		case s.caps.Size > 0 && int64(size) > s.caps.Size:
			s.finish(t, ResultBounced, 552, enhTooBig, textTooBig, true)
			continue
		case env.UTF8 && !s.caps.SMTPUTF8:
			s.finish(t, ResultBounced, 553, enhNoUTF8, textNoUTF8, true)
			continue
		}
		for i := t.n; i < len(env.Rcpts); i++ {
			s.outcome(t, i, ResultDeferred, 452, enhTooMany, textTooMany, true)
		}
		s.taken++
		p := codec.MailParams{EightBit: env.EightBit && s.caps.EightBitMIME, UTF8: env.UTF8}
		if s.caps.Size > 0 {
			p.Size = size
		}
		if s.qn == 0 {
			s.since = now
		}
		w := s.borrow()
		w.cmd = codec.AppendMailFrom(w.cmd, env.From, p)
		s.push(codec.CmdMail, t, 0)
		if s.pipe {
			for i := range t.n {
				w.cmd = codec.AppendRcptTo(w.cmd, env.Rcpts[i])
				s.push(codec.CmdRcpt, t, int32(i))
			}
			t.next = t.n
			if s.chunk {
				s.sendBDAT(t)
			} else {
				w.cmd = codec.AppendData(w.cmd)
				s.push(codec.CmdData, t, 0)
			}
		}
		if s.state == StateIdle {
			s.state = StateEnvelope
		}
		sent = true
		if !s.chunkPipe() {
			return true
		}
	}
	if sent && s.full() {
		s.quit(now) // RFC 2920: QUIT may end the last group
	}
	return sent
}

// sendBDAT appends "BDAT n LAST" and the body, un-stuffed: the slices of
// the Message's segments without the doubled dots and the end-of-data line
// (codec.Message.AppendUnstuffed copies nothing and scans only the
// per-recipient bytes). The command line goes in front of the body once n
// is known.
func (s *Session) sendBDAT(t *txn) {
	w := s.borrow()
	w.seal()
	at := len(w.out)
	w.out = append(w.out, nil) // the BDAT line, below
	var n int
	w.out, n = t.env.Body.AppendUnstuffed(w.out)
	start := len(w.cmd)
	w.cmd = codec.AppendBDAT(w.cmd, n, true)
	w.out[at] = w.cmd[start:len(w.cmd):len(w.cmd)]
	w.mark = len(w.cmd)
	s.wbody += n
	s.push(codec.CmdBody, t, 0)
}

func (s *Session) freeTxn() *txn {
	for i := range s.txs {
		if s.txs[i].env == nil {
			return &s.txs[i]
		}
	}
	return nil
}

func (s *Session) onMail(t *txn, r codec.Reply, now int64) error {
	if r.Class() == 2 {
		if !s.pipe {
			s.sendRcpt(t)
		}
		return nil
	}
	if r.Code == 503 && s.chunkPipe() {
		// Typically "nested MAIL": the server kept the previous, failed
		// transaction open, and the RCPTs and body behind this MAIL would
		// join it. Send nothing more; defer what is in flight.
		return s.outOfStep(t, codec.CmdMail, r)
	}
	res, text := resultOf(r), r.Text()
	for i := range t.n {
		s.outcome(t, i, res, r.Code, r.Enhanced, text, false)
	}
	t.failed = true
	if !s.pipe {
		s.finish(t, ResultNone, 0, codec.EnhancedCode{}, "", false)
		s.rset(now)
	}
	return nil
}

func (s *Session) sendRcpt(t *txn) {
	w := s.borrow()
	w.cmd = codec.AppendRcptTo(w.cmd, t.env.Rcpts[t.next])
	s.push(codec.CmdRcpt, t, int32(t.next))
	t.next++
}

func (s *Session) onRcpt(t *txn, i int, r codec.Reply, now int64) error {
	switch {
	case t.rc[i] != rcptPending: // MAIL already refused: keep its outcome
	case r.Class() == 2:
		t.rc[i] = rcptAccepted
		t.accepted++
	default:
		s.outcome(t, i, resultOf(r), r.Code, r.Enhanced, r.Text(), false)
	}
	if s.pipe {
		return nil
	}
	switch {
	case t.next < t.n:
		s.sendRcpt(t)
	case t.accepted > 0 && s.chunk:
		s.sendBDAT(t)
		s.state = StateBody
	case t.accepted > 0:
		w := s.borrow()
		w.cmd = codec.AppendData(w.cmd)
		s.push(codec.CmdData, t, 0)
	default:
		s.finish(t, ResultNone, 0, codec.EnhancedCode{}, "", false)
		s.rset(now)
	}
	return nil
}

func (s *Session) onData(t *txn, r codec.Reply, now int64) error {
	if r.Code != 354 {
		// 503/554 after no accepted recipient is expected (RFC 2920 §3.1).
		text := ""
		if t.accepted > 0 && !t.failed {
			text = r.Text()
		}
		s.finish(t, resultOf(r), r.Code, r.Enhanced, text, false)
		s.rset(now)
		return nil
	}
	w := s.borrow()
	w.seal()
	if t.accepted == 0 || t.failed {
		// The server wrongly accepted DATA: send an empty message, fail it.
		t.failed = true
		w.cmd = append(w.cmd, ".\r\n"...)
		s.push(codec.CmdBody, t, 0)
		return nil
	}
	w.out = append(w.out, t.env.Body.Segs...)
	s.push(codec.CmdBody, t, 0)
	s.state = StateBody
	// RFC 2920: the next transaction goes out with the final dot.
	switch {
	case !s.pipe:
	case s.draining || s.full():
		s.quit(now)
	default:
		s.take(now)
	}
	return nil
}

func (s *Session) onBody(t *txn, r codec.Reply, now int64) error {
	if t.failed {
		s.finish(t, ResultNone, 0, codec.EnhancedCode{}, "", false)
		s.rset(now)
		return nil
	}
	s.final(t, r)
	if s.qn == 0 {
		s.idle(now)
	} else if s.state == StateBody {
		s.state = StateEnvelope
		if s.q[s.qh].cmd == codec.CmdQuit {
			s.state = StateQuit
		}
	}
	return nil
}

// final finishes t with the reply to its body (final dot or BDAT LAST).
func (s *Session) final(t *txn, r codec.Reply) {
	if r.Class() == 2 {
		s.info.Delivered++
		s.finish(t, ResultDelivered, r.Code, r.Enhanced, "", false)
		return
	}
	s.finish(t, resultOf(r), r.Code, r.Enhanced, r.Text(), false)
}

// onBDAT handles the reply to BDAT LAST: the transaction's final reply.
// With no recipient accepted (or MAIL refused) a refusal is expected and
// the outcomes are those of the RCPT (or MAIL) replies. Then: refill the
// pipeline, or RSET after a transaction that had no recipient (the server
// may keep its MAIL), or idle.
func (s *Session) onBDAT(t *txn, r codec.Reply, now int64) error {
	live := t.accepted > 0 && !t.failed
	switch {
	case r.Code >= 500 && r.Code <= 504, r.Class() == 2 && !live:
		return s.outOfStep(t, codec.CmdBody, r)
	case !live:
		s.finish(t, ResultNone, 0, codec.EnhancedCode{}, "", false)
	default:
		s.final(t, r)
	}
	switch {
	case s.qn == 0 && !live:
		s.rset(now)
	case s.qn == 0:
		s.idle(now)
	case s.q[s.qh].cmd == codec.CmdQuit:
		s.state = StateQuit
	default:
		s.state = StateEnvelope
		if s.chunkPipe() {
			s.take(now) // refill: goes out with this read's other replies' work
		}
	}
	return nil
}

// outOfStep ends a session whose server no longer pairs replies with the
// pipeline (see ErrOutOfStep). Output not yet written is dropped, so no
// further transaction reaches a server that may be reading body bytes as
// commands; t's accepted recipients, and every transaction behind it (at
// Closed), are deferred.
func (s *Session) outOfStep(t *txn, c codec.Command, r codec.Reply) error {
	err := fmt.Errorf("%w: %w", ErrOutOfStep, codec.NewReplyError(c, r))
	s.giveBack()
	s.finish(t, ResultDeferred, 451, enhBadConn, err.Error(), true)
	return err
}

// rset resets after a failed transaction, unless the next one is already
// in flight (a MAIL after a finished transaction needs no RSET).
func (s *Session) rset(now int64) {
	if s.qn > 0 {
		return
	}
	s.since = now
	w := s.borrow()
	w.cmd = codec.AppendRset(w.cmd)
	s.push(codec.CmdRset, nil, 0)
	s.state = StateRset
}

func (s *Session) onRset(r codec.Reply, now int64) error {
	if r.Class() != 2 {
		s.quit(now)
		return codec.NewReplyError(codec.CmdRset, r)
	}
	if s.qn == 0 {
		s.idle(now)
	}
	return nil
}

// quit sends QUIT (once).
func (s *Session) quit(now int64) {
	if s.quitSent || s.wantClose {
		return
	}
	s.quitSent = true
	if s.qn == 0 {
		s.since = now
	}
	w := s.borrow()
	w.cmd = codec.AppendQuit(w.cmd)
	s.push(codec.CmdQuit, nil, 0)
	if s.qn == 1 {
		s.state = StateQuit
	}
}

func (s *Session) onQuit(r codec.Reply) error {
	s.quitOK = true
	s.wantClose = true
	s.state = StateQuit
	return nil
}

// onClosing handles 421 (RFC 5321 §3.8): everything in flight is deferred
// with the server's text; the session ends.
func (s *Session) onClosing(e expect, r codec.Reply) error {
	text := r.Text()
	if t := s.txnOf(e); t != nil && t.env != nil {
		s.finish(t, ResultDeferred, r.Code, r.Enhanced, text, false)
	}
	s.failAll(ResultDeferred, r.Code, r.Enhanced, text, false)
	return codec.NewReplyError(e.cmd, r)
}

// Expire is called once Deadline has passed. Idle: the session QUITs. In
// a transaction: recipients in flight are deferred (Local) and the session
// wants to close. Waiting for QUIT's reply: it wants to close.
func (s *Session) Expire(now int64) {
	if s.state == StateClosed || s.wantClose || s.wantTLS {
		return
	}
	if s.qn == 0 && s.state == StateIdle {
		s.quit(now)
		return
	}
	cmd := codec.CmdGreeting
	if s.qn > 0 {
		cmd = s.q[s.qh].cmd
	}
	s.wantClose = true
	err := &TimeoutError{Cmd: cmd}
	if s.err == nil {
		s.err = err
	}
	s.failAll(ResultDeferred, 451, enhBadConn, err.Error(), true)
}

// Closed ends the session: the connection is gone. Every recipient without
// an outcome is deferred (Local) with err's text, Done is reported for each
// envelope, then ConnClosed once (err, else the error that ended the
// session, else nil after a clean QUIT). Later calls do nothing.
func (s *Session) Closed(err error, now int64) {
	if s.state == StateClosed {
		return
	}
	if err == nil {
		err = s.err
	}
	if err == nil && !s.quitOK {
		err = ErrConnLost
	}
	text := "engine: connection closed"
	if err != nil {
		text = err.Error()
	}
	s.failAll(ResultDeferred, 451, enhBadConn, text, true)
	s.state = StateClosed
	s.wantClose = true
	s.wantTLS = false
	s.giveBack()
	s.releaseAll()
	s.r.ConnClosed(s.info, err)
}

// failAll finishes every transaction in flight, in the order they were
// sent, and empties the queue.
func (s *Session) failAll(res Result, code int, enh codec.EnhancedCode, text string, local bool) {
	for s.qn > 0 {
		if t := s.txnOf(s.pop()); t != nil && t.env != nil {
			s.finish(t, res, code, enh, text, local)
		}
	}
	for i := range s.txs {
		if t := &s.txs[i]; t.env != nil {
			s.finish(t, res, code, enh, text, local)
		}
	}
}

// outcome reports recipient i once.
func (s *Session) outcome(t *txn, i int, res Result, code int, enh codec.EnhancedCode, text string, local bool) {
	if t.rc[i] == rcptFinal {
		return
	}
	if t.rc[i] == rcptAccepted {
		t.accepted--
	}
	t.rc[i] = rcptFinal
	s.r.Outcome(t.env, i, Outcome{Result: res, Code: code, Enhanced: enh, Text: text,
		Host: s.info.Host, Source: s.info.Source, Local: local})
}

// finish gives every recipient still without an outcome res (ResultNone:
// only those already final are expected), releases the body and reports
// Done. A body still referenced by unflushed Output is released at Flushed.
func (s *Session) finish(t *txn, res Result, code int, enh codec.EnhancedCode, text string, local bool) {
	env := t.env
	if res != ResultNone {
		for i := range t.rc {
			s.outcome(t, i, res, code, enh, text, local)
		}
	} else {
		for i := range t.rc {
			if t.rc[i] != rcptFinal {
				panic("engine: BUG: transaction finished with recipient " + strconv.Itoa(i) + " open")
			}
		}
	}
	t.env = nil
	s.inflight--
	if b := env.Body; b != nil {
		if w := s.w; w != nil && (len(w.out) > 0 || len(w.cmd) > w.mark) {
			s.rel = append(s.rel, b)
		} else {
			b.Release()
		}
	}
	s.r.Done(env)
}

func resultOf(r codec.Reply) Result {
	if r.Permanent() {
		return ResultBounced
	}
	return ResultDeferred
}

// seal appends the command bytes not yet in out to out (before a body is
// appended, and by Output).
func (w *wbuf) seal() {
	if len(w.cmd) > w.mark {
		w.out = append(w.out, w.cmd[w.mark:len(w.cmd):len(w.cmd)])
		w.mark = len(w.cmd)
	}
}

func (s *Session) push(c codec.Command, t *txn, i int32) {
	if s.qn == len(s.q) {
		s.growQ()
	}
	var k uint8
	if t != nil {
		k = t.slot
		if k == 0 || int(k) > len(s.txs) || &s.txs[k-1] != t {
			panic("engine: BUG: transaction not of this session")
		}
	}
	s.q[(s.qh+s.qn)&(len(s.q)-1)] = expect{cmd: c, t: k, i: i}
	s.qn++
}

// growQ doubles the expectation ring (in order, from index 0).
func (s *Session) growQ() {
	if len(s.q) >= 1<<20 {
		panic("engine: BUG: expectation queue full")
	}
	q := make([]expect, 2*len(s.q))
	for k := 0; k < s.qn; k++ {
		q[k] = s.q[(s.qh+k)&(len(s.q)-1)]
	}
	s.q, s.qh = q, 0
}

// txnOf returns the transaction of e (nil for none).
func (s *Session) txnOf(e expect) *txn {
	if e.t == 0 {
		return nil
	}
	return &s.txs[e.t-1]
}

func (s *Session) pop() expect {
	e := s.q[s.qh]
	s.q[s.qh] = expect{}
	s.qh = (s.qh + 1) & (len(s.q) - 1)
	s.qn--
	return e
}
