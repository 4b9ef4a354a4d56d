package campaign

import (
	"time"

	"github.com/spate-mta/spate/codec"
	"github.com/spate-mta/spate/engine"
	"github.com/spate-mta/spate/engine/journal"
	"github.com/spate-mta/spate/scheduler"
)

// The Runner is the engine's Feeder and Reporter. Both are called on event
// loop goroutines, concurrently: everything they touch is the scheduler
// (safe for concurrent use), atomics, pooled deliveries, the journal and the
// results writer (both safe for concurrent use).
var (
	_ engine.Feeder   = (*Runner)(nil)
	_ engine.Reporter = (*Runner)(nil)
)

// Next hands the connection its next message: one recipient per transaction,
// because every message is personalised.
func (r *Runner) Next(c engine.ConnInfo, now time.Time) *engine.Envelope {
	if r.stopping.Load() {
		return nil
	}
	it, _ := r.sched.Take(c.Path, now)
	if it == nil {
		return nil
	}
	info := it.Tag.(*recipientInfo)
	d := r.envPool.Get().(*delivery)
	d.item, d.path = it, c.Path
	d.site = r.siteOf(c.Path)
	d.hdr = r.hdr.Append(d.hdr[:0], it.Row, info.values, now)
	m := codec.AcquireMessage()
	err := r.tmpl.Render(m, info.values, d.hdr)
	if err == nil && r.o.DKIM != nil {
		err = r.o.DKIM.Sign(m)
	}
	r.inflight.Add(1)
	r.attempts.Add(1)
	if err != nil {
		// Not the remote site's doing: bounce locally, never reaches the wire.
		m.Release()
		r.report(d, engine.Outcome{Result: engine.ResultBounced, Code: 554, Enhanced: codec.EnhancedCode{Class: 5, Subject: 6, Detail: 0}, Text: "render: " + err.Error(), Local: true, Source: c.Source, Host: c.Host})
		r.recycle(d)
		return r.Next(c, now)
	}
	d.rcpt[0] = it.Rcpt
	d.env = engine.Envelope{
		From:  r.hdr.ReturnPath(r.from, it.Rcpt),
		Rcpts: d.rcpt[:],
		Body:  m,
		Size:  m.Len(),
		ID:    uint64(it.Row),
		Tag:   d,
	}
	return &d.env
}

func (r *Runner) siteOf(path uint64) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ps := r.paths[path]; ps != nil {
		return ps.req.Site
	}
	return ""
}

// Outcome feeds one recipient's result to the scheduler and records it.
func (r *Runner) Outcome(env *engine.Envelope, i int, o engine.Outcome) {
	r.report(env.Tag.(*delivery), o)
}

func (r *Runner) report(d *delivery, o engine.Outcome) {
	idle := r.inflight.Add(-1) == 0
	dec := r.sched.Outcome(d.path, d.item, schedOutcome(o))
	r.decided(d.item, d.site, dec, o)
	// The dispatcher cares about new retry times and about the last
	// recipient in flight (the campaign may be finished); a plain delivery
	// changes neither, and waking it per message cost 5 % of the CPU.
	if !dec.Final || idle {
		r.kick()
	}
}

// decided records the scheduler's decision on one recipient: a final state
// in the journal, results and summary (and the suppression list for hard
// bounces), or a deferral in the journal.
func (r *Runner) decided(it *scheduler.Item, site string, dec scheduler.Decision, o engine.Outcome) {
	if dec.Final {
		st := journal.StateBounced
		switch dec.State {
		case scheduler.StateDelivered:
			st = journal.StateDelivered
		case scheduler.StateExpired:
			st = journal.StateExpired
		case scheduler.StateSuppressed:
			st = journal.StateSuppressed
		}
		r.final(it.Row, it.Rcpt, it.Domain, site, st, dec.Class, o, it.Attempts, it.First)
		if st == journal.StateBounced && r.suppress != nil && (dec.Class == "invalid-recipient" || dec.Class == "bad-domain") {
			_ = r.suppress.Add(it.Rcpt, dec.Class)
		}
		return
	}
	r.deferred.Add(1)
	if info, ok := it.Tag.(*recipientInfo); ok {
		info.last = o
	}
	_ = r.jr.Append(journalRecord(it.Row, journal.StateDeferred, o, it.Attempts, r.o.Now()))
}

// Done recycles the delivery once the engine is finished with it.
func (r *Runner) Done(env *engine.Envelope) { r.recycle(env.Tag.(*delivery)) }

func (r *Runner) recycle(d *delivery) {
	hdr := d.hdr
	*d = delivery{hdr: hdr[:0]}
	r.envPool.Put(d)
}

// siteDownAfter is how many connections in a row must fail, with nothing
// delivered, before the runner calls a path's site unreachable (at least one
// per MX address): like Postfix's failed cohort, one refusal is not enough.
const siteDownAfter = 3

// ConnClosed releases the path's connection slot. A connection that failed
// before delivering anything moves the path to its next MX address; when
// every address has failed in a row (and at least siteDownAfter connections),
// the site is unreachable and its queued recipients are deferred onto the
// retry schedule instead of being dialed for again and again.
func (r *Runner) ConnClosed(c engine.ConnInfo, err error) {
	down := false
	r.mu.Lock()
	if ps := r.paths[c.Path]; ps != nil {
		idx := -1
		for i, a := range ps.addrs {
			if a.addr == c.Addr {
				idx = i
				break
			}
		}
		switch {
		case err != nil && c.Delivered == 0:
			ps.fails++
			if idx >= 0 {
				ps.failed[idx] = true // dial moves on to the next address
			}
			all := true
			for _, f := range ps.failed {
				all = all && f
			}
			if all && ps.fails >= siteDownAfter && !r.stopping.Load() {
				down, ps.fails = true, 0
				clear(ps.failed) // the retries start over from the preferred MX
				ps.next = 0
			}
		case c.Delivered > 0:
			// This address works: stay on it, forget the failures.
			ps.fails = 0
			clear(ps.failed)
			if idx >= 0 {
				ps.next = idx
			}
		}
	}
	r.mu.Unlock()
	// A refusal or timeout is the site's feedback (local=false): the
	// scheduler's adaptive concurrency backs off on it.
	r.sched.ConnClosed(c.Path, err, false)
	if down {
		o := engine.Outcome{Result: engine.ResultDeferred, Code: 451, Enhanced: codec.EnhancedCode{Class: 4, Subject: 4, Detail: 1},
			Text: "site unreachable: " + err.Error(), Local: true, Host: c.Host, Source: c.Source}
		site := r.siteOf(c.Path)
		for _, d := range r.sched.DeferQueued(c.Path, schedOutcome(o)) {
			r.decided(d.Item, site, d.Decision, o)
		}
	}
	r.kick()
}

// final records a recipient's final state (or, for a deferral the run leaves
// behind, its last state) in the journal, the results and the summary.
func (r *Runner) final(row int, email, domain, site string, st journal.State, class string, o engine.Outcome, attempts int, first time.Time) {
	now := r.o.Now()
	_ = r.jr.Append(journalRecord(row, st, o, attempts, now))
	state := st.String()
	switch st {
	case journal.StateDelivered:
		r.delivered.Add(1)
	case journal.StateBounced, journal.StateExpired:
		r.bounced.Add(1)
	}
	res := Result{Row: row, Email: email, Domain: domain, State: state, Class: class, Code: o.Code,
		Text: o.Text, MX: o.Host, Site: site, Attempts: attempts, FirstTry: first, LastTry: now, Completed: now}
	if o.Source.IsValid() {
		res.Source = o.Source.String()
	}
	if o.Enhanced != (codec.EnhancedCode{}) {
		res.Enhanced = o.Enhanced.String()
	}
	_ = r.results.Write(&res)
	r.summary.Add(domain, site, state, class)
	select { // the run is done with this recipient: free its window slot
	case <-r.window:
	default:
	}
}

// finish closes the books: recipients still deferred are recorded as such,
// the journal and results are flushed.
func (r *Runner) finish() (*Summary, error) {
	now := r.o.Now()
	for _, it := range r.sched.Drain() {
		o := engine.Outcome{Text: "still deferred at exit; use --resume"}
		if info, ok := it.Tag.(*recipientInfo); ok && info.last.Code != 0 {
			o = info.last
			o.Text += " (still deferred at exit; use --resume)"
		}
		r.final(it.Row, it.Rcpt, it.Domain, "", journal.StateDeferred, "", o, it.Attempts, it.First)
	}
	r.summary.End = now
	r.summary.BadRows = r.list.Stats().Bad
	r.summary.Attempts = int(r.attempts.Load())
	var err error
	if e := r.jr.Close(); e != nil {
		err = e
	}
	if e := r.results.Close(); e != nil && err == nil {
		err = e
	}
	if e, _ := r.readErr.Load().(error); e != nil && err == nil {
		err = e
	}
	return r.summary, err
}

// journalRecord is the journal's fixed-size record of one recipient's state.
func journalRecord(row int, st journal.State, o engine.Outcome, attempts int, now time.Time) journal.Record {
	e := o.Enhanced
	return journal.Record{Row: uint32(row), State: st, Code: uint16(o.Code),
		Enhanced: [3]uint8{uint8(e.Class), uint8(e.Subject), uint8(e.Detail)},
		Attempts: uint8(min(attempts, 255)), Time: now.UnixMilli()}
}

// schedOutcome is the scheduler's view of an engine outcome.
func schedOutcome(o engine.Outcome) scheduler.Outcome {
	res := scheduler.Outcome{Result: scheduler.Deferred, Code: o.Code, Enhanced: o.Enhanced.String(), Text: o.Text, Local: o.Local}
	switch o.Result {
	case engine.ResultDelivered:
		res.Result = scheduler.Delivered
	case engine.ResultBounced:
		res.Result = scheduler.Bounced
	}
	return res
}
