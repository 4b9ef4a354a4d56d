package engine

// A stand-in for the real stubSession (session.go), used by the driver tests
// only while newDriverSession is nil. Happy path only: no AUTH, fails the
// connection on any 4xx/5xx, always pipelines.

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/spate-mta/spate/codec"
)

type stubKind uint8

const (
	stubBanner stubKind = iota
	stubEHLO
	stubMail
	stubRcpt
	stubData
	stubFinal
	stubQuit
	stubStartTLS
)

type stubSession struct {
	cfg       *SessionConfig
	info      ConnInfo
	f         Feeder
	r         Reporter
	exp       []stubKind
	cmd       []byte
	out       [][]byte
	ready     bool
	cur       []*Envelope // envelopes in flight, oldest first
	quit      bool
	wantClose bool
	deadline  int64
	sent      int
	wantsTLS  bool
}

func newStubSession(cfg *SessionConfig, info ConnInfo, f Feeder, r Reporter, now int64) *stubSession {
	s := &stubSession{cfg: cfg, info: info, f: f, r: r, exp: []stubKind{stubBanner}}
	s.deadline = now + int64(cfg.Timeouts.Greeting)
	return s
}

func (s *stubSession) Info() *ConnInfo { return &s.info }
func (s *stubSession) WantsTLS() bool  { return s.wantsTLS }
func (s *stubSession) TLSDone(err error, n int64) {
	s.wantsTLS = false
	if err != nil {
		s.wantClose = true
		return
	}
	s.info.TLS = true
	s.cmd = codec.AppendEHLO(s.cmd, s.cfg.EHLOName)
	s.exp = append(s.exp, stubEHLO)
}
func (s *stubSession) RetryPlain() bool { return false }
func (s *stubSession) WantsClose() bool { return s.wantClose }
func (s *stubSession) Deadline() int64  { return s.deadline }
func (s *stubSession) Expire(now int64) { s.wantClose = true; s.fail(errors.New("timeout")) }
func (s *stubSession) Flushed()         { s.out = s.out[:0]; s.cmd = s.cmd[:0] }
func (s *stubSession) Output() [][]byte {
	if len(s.cmd) > 0 {
		s.out = append(s.out, s.cmd)
	}
	if len(s.out) == 0 {
		return nil
	}
	return s.out
}

func (s *stubSession) fail(err error) {
	for _, env := range s.cur {
		for i := range env.Rcpts {
			s.r.Outcome(env, i, Outcome{Result: ResultDeferred, Local: true, Text: err.Error()})
		}
		s.r.Done(env)
	}
	s.cur = nil
}

func (s *stubSession) Closed(err error, now int64) {
	if err == nil && !s.quit {
		err = errors.New("closed")
	}
	if len(s.cur) > 0 {
		s.fail(err)
	}
	s.r.ConnClosed(s.info, err)
}

func (s *stubSession) Poll(now int64) {
	if s.ready && len(s.cur) == 0 && !s.quit {
		s.take(now)
	}
}

// Drain QUITs when idle.
func (s *stubSession) Drain(now int64) {
	if s.ready && len(s.cur) == 0 && !s.quit {
		s.sendQuit()
	}
}

func (s *stubSession) sendQuit() {
	s.flushCmd()
	s.cmd = codec.AppendQuit(s.cmd)
	s.exp = append(s.exp, stubQuit)
	s.quit = true
}

func (s *stubSession) flushCmd() {}

func (s *stubSession) take(now int64) bool {
	env := s.f.Next(s.info, time.Unix(0, now))
	if env == nil {
		return false
	}
	s.cur = append(s.cur, env)
	s.cmd = codec.AppendMailFrom(s.cmd, env.From, codec.MailParams{Size: env.Size})
	s.exp = append(s.exp, stubMail)
	for _, r := range env.Rcpts {
		s.cmd = codec.AppendRcptTo(s.cmd, r)
		s.exp = append(s.exp, stubRcpt)
	}
	s.cmd = codec.AppendData(s.cmd)
	s.exp = append(s.exp, stubData)
	s.deadline = now + int64(s.cfg.Timeouts.Mail)
	return true
}

func (s *stubSession) Feed(in []byte, now int64) (int, error) {
	used := 0
	for {
		rep, n, err := codec.ParseReply(in[used:])
		if err == codec.ErrIncomplete {
			return used, nil
		}
		if err != nil {
			return used, err
		}
		used += n
		if len(s.exp) == 0 {
			return used, errors.New("stub: unexpected reply")
		}
		k := s.exp[0]
		s.exp = s.exp[1:]
		if rep.Code >= 400 && k != stubQuit {
			return used, errors.New("stub: rejected " + string(rep.Raw))
		}
		switch k {
		case stubBanner:
			s.cmd = codec.AppendEHLO(s.cmd, s.cfg.EHLOName)
			s.exp = append(s.exp, stubEHLO)
		case stubStartTLS:
			s.wantsTLS = true
			return used, nil
		case stubEHLO:
			if s.cfg.TLS == TLSImplicit {
				s.info.TLS = true
			}
			if !s.info.TLS && (s.cfg.TLS == TLSRequired || s.cfg.TLS == TLSOpportunistic) && bytes.Contains(rep.Raw, []byte("STARTTLS")) {
				s.cmd = codec.AppendStartTLS(s.cmd)
				s.exp = append(s.exp, stubStartTLS)
				continue
			}
			s.ready = true
			s.take(now)
		case stubData:
			env := s.cur[len(s.cur)-1]
			if len(s.cmd) > 0 {
				s.out = append(s.out, s.cmd)
				s.cmd = s.cmd[len(s.cmd):]
			}
			s.out = append(s.out, env.Body.Segs...)
			s.exp = append(s.exp, stubFinal)
			s.sent++
			if s.cfg.MaxMessages == 0 || s.sent < s.cfg.MaxMessages {
				s.take(now)
			}
		case stubFinal:
			env := s.cur[0]
			s.cur = s.cur[1:]
			for i := range env.Rcpts {
				s.r.Outcome(env, i, Outcome{Result: ResultDelivered, Code: rep.Code})
			}
			env.Body.Release()
			s.r.Done(env)
			s.info.Delivered++
			if len(s.cur) == 0 && s.cfg.MaxMessages > 0 && s.sent >= s.cfg.MaxMessages {
				s.sendQuit()
			}
		case stubQuit:
			s.wantClose = true
		}
		s.deadline = now + int64(time.Minute)
	}
}

// drvStub is true when the tests run the driver on the stand-in.
var drvStub = newDriverSession == nil

func init() {
	if newDriverSession == nil {
		newDriverSession = func(cfg *SessionConfig, info ConnInfo, f Feeder, r Reporter, now int64) driverSession {
			return newStubSession(cfg, info, f, r, now)
		}
	}
}

// drvNeedsSession skips a test that needs the real Session.
func drvNeedsSession(t testing.TB) {
	if drvStub {
		t.Skip("needs session.go's Session (running on the driver's stand-in)")
	}
}
