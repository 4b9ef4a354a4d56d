package campaign

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/spate-mta/spate/codec"
	"github.com/spate-mta/spate/engine"
	"github.com/spate-mta/spate/engine/journal"
	"github.com/spate-mta/spate/scheduler"
	"github.com/spate-mta/spate/tuning"
)

// resolveWorkers bounds concurrent DNS lookups while the list streams in.
const resolveWorkers = 32

// recipientInfo is the scheduler Item's Tag: what rendering needs.
type recipientInfo struct {
	values []string
	line   int
	// last is the latest deferral's reply, for the results line of a
	// recipient still deferred at exit. Written by whoever reported the
	// deferral (the item is in flight on one connection at a time, and the
	// scheduler's lock orders the hand-overs).
	last engine.Outcome
}

// Run sends the campaign and returns its summary. Cancelling ctx stops
// gracefully: no new transaction starts, in-flight ones finish, connections
// QUIT, the journal is flushed. Abort stops at once (journal intact). Run's
// error is a runtime failure (exit code 2); recipients still deferred at the
// end are counted in the summary (exit code 3).
func (r *Runner) Run(ctx context.Context) (*Summary, error) {
	r.summary = newSummary(r.o.Now())
	r.meter.update(r.summary.Start, 0, nil) // the first rate shown is since the start
	// A short tick: sessions waiting on a throttle ask again within 5 ms.
	tlsCache := engine.NewTLSCache(0, nil)
	defer tlsCache.Close()
	eng, err := engine.New(engine.Config{Loops: r.o.Loops, Feeder: r, Reporter: r, TLSCache: tlsCache, Tick: 5 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	r.eng = eng
	if err := eng.Start(); err != nil {
		return nil, err
	}
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	go r.readList(readCtx)

	r.dispatch(ctx)

	// Graceful end: let sessions finish what they hold, then QUIT.
	r.stopping.Store(true)
	stopCtx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	_ = eng.Stop(stopCtx)
	cancel()
	return r.finish()
}

// Abort stops at once: connections are closed, in-flight recipients are left
// without a final journal record (they are re-sent on --resume).
func (r *Runner) Abort() {
	r.stopping.Store(true)
	if r.eng != nil {
		r.eng.Close()
	}
	if r.jr != nil {
		_ = r.jr.Sync()
	}
}

// dispatch opens connections as the scheduler asks until the campaign is
// finished or ctx is cancelled.
func (r *Runner) dispatch(ctx context.Context) {
	lastFlush := r.o.Now()
	for {
		now := r.o.Now()
		for {
			req, ok := r.sched.NextConnect(now)
			if !ok {
				break
			}
			r.dial(req)
		}
		if r.finished(now) {
			return
		}
		if now.Sub(lastFlush) >= time.Second {
			// Results reach the file within a second (tail -f); a crash
			// loses at most that much, and --resume restores it from
			// the journal.
			_ = r.results.Flush()
			lastFlush = now
		}
		wait := 50 * time.Millisecond
		if w := r.sched.NextWake(); !w.IsZero() {
			if d := w.Sub(now); d < wait {
				wait = max(d, time.Millisecond)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-r.wake:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		t.Stop()
	}
}

// kick wakes the dispatcher without blocking.
func (r *Runner) kick() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// finished reports whether nothing is left to do now: the list is read,
// nothing is in flight, and the scheduler holds no recipient whose next try
// is within Linger.
func (r *Runner) finished(now time.Time) bool {
	if !r.readEOF.Load() || r.inflight.Load() > 0 {
		return false
	}
	if r.sched.Pending() == 0 {
		return true
	}
	next := r.sched.NextRetry()
	return !next.IsZero() && next.Sub(now) > r.o.Linger && r.sched.Active() == 0
}

// readList streams the list into the scheduler, resolving each domain on a
// small worker pool; the window channel bounds recipients held in memory.
func (r *Runner) readList(ctx context.Context) {
	defer func() { r.readEOF.Store(true); r.kick() }()
	ch := make(chan *codec.Recipient, 1024)
	var wg sync.WaitGroup
	for range resolveWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rc := range ch {
				r.admit(ctx, rc)
			}
		}()
	}
	defer func() { close(ch); wg.Wait() }()
	for {
		rc, err := r.list.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			r.readErr.Store(err)
			return
		}
		if r.prior != nil {
			if rec, ok := r.prior.Get(rc.Row); ok && rec.State.Final() {
				r.summary.mu.Lock()
				r.summary.Resumed++
				r.summary.mu.Unlock()
				// The results file is buffered; a crash can lose lines
				// whose rows the journal already holds final.
				_ = r.results.WriteMissing(recoveredResult(rc, rec))
				continue
			}
		}
		r.total.Add(1)
		select {
		case r.window <- struct{}{}:
		case <-ctx.Done():
			return
		}
		if r.suppress != nil && r.suppress.Has(rc.Email) {
			r.final(rc.Row, rc.Email, rc.Domain, "", journal.StateSuppressed, "suppressed", engine.Outcome{Text: "address is on the suppression list", Local: true}, 0, time.Time{})
			continue
		}
		select {
		case ch <- rc:
		case <-ctx.Done():
			return
		}
	}
}

// admit resolves rc's destination and queues it in the scheduler.
func (r *Runner) admit(ctx context.Context, rc *codec.Recipient) {
	now := r.o.Now()
	it := &scheduler.Item{Row: rc.Row, Domain: rc.Domain, Rcpt: rc.Email, First: now, Tag: &recipientInfo{values: rc.Values, line: rc.Line}}
	if r.prior != nil {
		// A resumed recipient keeps its attempt count, and its age (for
		// max_age) counts from when the campaign began, as a spooled
		// message's counts from its creation.
		if rec, ok := r.prior.Get(rc.Row); ok {
			it.Attempts = int(rec.Attempts)
		}
		if c := r.prior.Created; !c.IsZero() && c.Before(now) {
			it.First = c
		}
	}
	if r.o.Relay != nil {
		host := r.o.Relay.Host
		if host == "" {
			host = r.o.Relay.Addr.String()
		}
		r.rememberHost(host, []netip.AddrPort{r.o.Relay.Addr})
		r.sched.Add(it, []string{host})
		r.kick()
		return
	}
	dest, err := r.o.Resolver.Lookup(ctx, rc.Domain)
	if err != nil {
		var le *engine.LookupError
		permanent := errors.Is(err, engine.ErrNullMX) || (errors.As(err, &le) && le.Permanent)
		o := engine.Outcome{Local: true, Text: err.Error()}
		if permanent {
			o.Code, o.Enhanced = 550, codec.EnhancedCode{Class: 5, Subject: 1, Detail: 2}
			r.final(rc.Row, rc.Email, rc.Domain, "", journal.StateBounced, "bad-domain", o, 1, now)
			if r.suppress != nil {
				_ = r.suppress.Add(rc.Email, "bad-domain")
			}
		} else {
			// Leave it deferred in the journal: --resume tries it again.
			o.Code, o.Enhanced = 451, codec.EnhancedCode{Class: 4, Subject: 4, Detail: 3}
			r.final(rc.Row, rc.Email, rc.Domain, "", journal.StateDeferred, "", o, 1, now)
		}
		return
	}
	hosts := make([]string, 0, len(dest.MXs))
	for _, mx := range dest.MXs {
		r.rememberHost(mx.Host, mx.Addrs)
		hosts = append(hosts, mx.Host)
	}
	r.sched.Add(it, hosts)
	r.kick()
}

// rememberHost records an MX host's addresses (filled by admit, read by dial).
func (r *Runner) rememberHost(host string, addrs []netip.AddrPort) {
	r.mu.Lock()
	if r.hosts == nil {
		r.hosts = make(map[string][]netip.AddrPort)
	}
	if _, ok := r.hosts[host]; !ok {
		r.hosts[host] = addrs
	}
	r.mu.Unlock()
}

// dial opens one connection for the scheduler's request, trying the path's
// MX addresses in preference order across successive failures.
func (r *Runner) dial(req scheduler.ConnectRequest) {
	r.mu.Lock()
	ps := r.paths[req.PathID]
	if ps == nil {
		ps = &pathState{req: req, session: sessionConfig(req, r.o)}
		for _, h := range req.MXHosts {
			for _, a := range r.hosts[h] {
				ps.addrs = append(ps.addrs, mxAddr{host: h, addr: a})
			}
		}
		ps.failed = make([]bool, len(ps.addrs))
		r.paths[req.PathID] = ps
	}
	var target mxAddr
	if n := len(ps.addrs); n > 0 {
		// The first address from next on (preference order) that has
		// not failed: concurrent dials all move on once one fails.
		i := ps.next % n
		for k := 0; k < n; k++ {
			if !ps.failed[(ps.next+k)%n] {
				i = (ps.next + k) % n
				break
			}
		}
		target = ps.addrs[i]
	}
	r.mu.Unlock()
	if !target.addr.IsValid() {
		r.sched.ConnClosed(req.PathID, errors.New("no address for MX hosts "+strings.Join(req.MXHosts, ",")), true)
		return
	}
	r.eng.Dial(engine.Dial{Path: req.PathID, Source: req.Source.Address, Host: target.host, Addr: target.addr, Config: &ps.session})
}

// sessionConfig maps the path's effective settings onto the engine's.
func sessionConfig(req scheduler.ConnectRequest, o Options) engine.SessionConfig {
	s := req.Settings
	sc := engine.SessionConfig{
		EHLOName:    req.Source.EHLOName,
		MaxMessages: s.MaxDeliveriesPerConnection,
		MaxRcpts:    s.MaxRecipientsPerTransaction,
		Timeouts:    engine.DefaultTimeouts(),

		PipelineDepth: s.PipelineDepth,
	}
	if s.Chunking {
		sc.Chunking = engine.ChunkingAuto
	}
	if sc.EHLOName == "" {
		sc.EHLOName = "localhost"
	}
	switch s.EnableTLS {
	case tuning.TLSOpportunistic:
		sc.TLS, sc.VerifyTLS = engine.TLSOpportunistic, true
	case tuning.TLSOpportunisticInsecure:
		sc.TLS = engine.TLSOpportunistic
	case tuning.TLSRequired:
		sc.TLS, sc.VerifyTLS = engine.TLSRequired, true
	case tuning.TLSRequiredInsecure:
		sc.TLS = engine.TLSRequired
	case tuning.TLSDisabled:
		sc.TLS = engine.TLSDisabled
	}
	if o.Relay != nil {
		sc.Auth = o.Relay.Auth
		if o.Relay.Implicit {
			sc.TLS = engine.TLSImplicit
		}
		sc.ServerName = o.Relay.Host
	}
	t := &sc.Timeouts
	st := s.Timeouts
	for _, p := range []struct {
		dst *time.Duration
		src time.Duration
	}{{&t.Connect, st.Connect}, {&t.Greeting, st.Greeting}, {&t.EHLO, st.EHLO}, {&t.StartTLS, st.StartTLS},
		{&t.Auth, st.Auth}, {&t.Mail, st.Mail}, {&t.Rcpt, st.Rcpt}, {&t.Data, st.Data},
		{&t.DataBlock, st.DataBlock}, {&t.Final, st.Final}, {&t.Quit, st.Quit}, {&t.Idle, s.IdleTimeout}} {
		if p.src > 0 {
			*p.dst = p.src
		}
	}
	return sc
}

// recoveredResult is the results line of a row the journal holds final but
// the results file lost (written on --resume).
func recoveredResult(rc *codec.Recipient, rec journal.Record) *Result {
	e := rec.Enhanced
	return &Result{Row: rc.Row, Email: rc.Email, Domain: rc.Domain, State: rec.State.String(), Code: int(rec.Code),
		Enhanced: codec.EnhancedCode{Class: int16(e[0]), Subject: int16(e[1]), Detail: int16(e[2])}.String(),
		Attempts: int(rec.Attempts), Completed: time.UnixMilli(rec.Time).UTC(),
		Text: "recovered from the journal (the results line was lost with the crash)"}
}
