package peers

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spate-mta/spate/codec"
	"github.com/spate-mta/spate/engine"
)

// spateRun is the engine peer's Feeder and Reporter: Next hands out N
// envelopes (ID = the feed time in ns since base), Outcome counts and
// records latency at the last recipient, ConnClosed redials while envelopes
// remain (the faults scenario drops connections).
type spateRun struct {
	o     Options
	tmpl  *codec.Template
	base  time.Time
	e     *engine.Engine
	addr  netip.AddrPort
	sc    *engine.SessionConfig
	lat   hist
	pool  sync.Pool
	vals  sync.Pool
	rcpts [][]string // per message mod len: prebuilt recipient lists

	fed, done, sent, failed, rcptOK, conns, redials atomic.Int64
	stopping                                        atomic.Bool
	doneCh                                          chan struct{}
	once                                            sync.Once
	giveUp                                          chan error // the redial budget is spent
	giveUpOnce                                      sync.Once
}

var (
	_ engine.Feeder   = (*spateRun)(nil)
	_ engine.Reporter = (*spateRun)(nil)
)

func (r *spateRun) Next(c engine.ConnInfo, now time.Time) *engine.Envelope {
	i := r.fed.Add(1) - 1
	if i >= int64(r.o.N) {
		return nil
	}
	env := r.pool.Get().(*engine.Envelope)
	env.Rcpts = r.rcpts[i%int64(len(r.rcpts))]
	m := codec.AcquireMessage()
	vals := r.vals.Get().(*[]string)
	(*vals)[0] = env.Rcpts[0]
	if err := r.tmpl.Render(m, *vals, nil); err != nil {
		panic("peers: BUG: render: " + err.Error())
	}
	r.vals.Put(vals)
	env.Body, env.Size = m, m.Len()
	env.ID = uint64(now.Sub(r.base))
	env.Tag = false // set to true once a recipient was accepted
	return env
}

func (r *spateRun) Outcome(env *engine.Envelope, i int, o engine.Outcome) {
	if o.Result == engine.ResultDelivered {
		r.rcptOK.Add(1)
		env.Tag = true
	}
	if i == len(env.Rcpts)-1 {
		r.lat.Record(time.Since(r.base) - time.Duration(env.ID))
	}
}

func (r *spateRun) Done(env *engine.Envelope) {
	if env.Tag == true {
		r.sent.Add(1)
	} else {
		r.failed.Add(1)
	}
	env.Body = nil
	r.pool.Put(env)
	if r.done.Add(1) == int64(r.o.N) {
		r.once.Do(func() { close(r.doneCh) })
	}
}

func (r *spateRun) ConnClosed(c engine.ConnInfo, err error) {
	if err == nil || r.stopping.Load() || r.fed.Load() >= int64(r.o.N) {
		return
	}
	// A dropped or refused connection while work remains: keep Sessions
	// connections busy. Bounded so that a dead sink cannot spin us.
	if r.redials.Add(1) > int64(r.o.N)+int64(r.o.Sessions)*4 {
		r.giveUpOnce.Do(func() { r.giveUp <- fmt.Errorf("%d connections failed, the last: %w", r.redials.Load(), err) })
		return
	}
	r.dial(c.Path)
}

func (r *spateRun) dial(path uint64) {
	r.conns.Add(1)
	r.e.Dial(engine.Dial{Path: path, Host: "sink", Addr: r.addr, Config: r.sc})
}

// RunSpate sends o.N messages with the engine.
func RunSpate(ctx context.Context, o Options) (Result, error) {
	addr, err := netip.ParseAddrPort(o.Addr)
	if err != nil {
		return Result{}, fmt.Errorf("peers: --addr: %v", err)
	}
	src := bodyText("{{email}}", o.Size)
	tmpl, err := codec.CompileTemplate(src, []string{"email"})
	if err != nil {
		return Result{}, err
	}
	r := &spateRun{o: o, tmpl: tmpl, addr: addr, doneCh: make(chan struct{}), giveUp: make(chan error, 1)}
	r.pool.New = func() any { return &engine.Envelope{From: "sender@bench.test"} }
	r.vals.New = func() any { v := make([]string, 1); return &v }
	k := min(o.N, 1024)
	r.rcpts = make([][]string, max(k, 1))
	for i := range r.rcpts {
		r.rcpts[i] = rcptList(i, o.Rcpts)
	}
	r.sc = &engine.SessionConfig{EHLOName: "spate.bench.test", TLS: engine.TLSDisabled,
		MaxRcpts: max(o.Rcpts, 100), Timeouts: engine.DefaultTimeouts()}
	if o.StartTLS {
		r.sc.TLS = engine.TLSRequired // VerifyTLS false: the sink's certificate is self-signed
	}
	if o.Chunking {
		r.sc.Chunking = engine.ChunkingAuto
	}
	e, err := engine.New(engine.Config{Loops: o.Loops, Feeder: r, Reporter: r, Logf: func(string, ...any) {}})
	if err != nil {
		return Result{}, err
	}
	r.e = e
	if err := e.Start(); err != nil {
		return Result{}, err
	}
	defer e.Close()
	r.base = time.Now()
	if o.N == 0 {
		close(r.doneCh)
	}
	for i := 0; i < o.Sessions; i++ {
		r.dial(uint64(i))
	}
	var runErr error
	select {
	case <-r.doneCh:
	case err := <-r.giveUp:
		runErr = fmt.Errorf("peers: spate: %d of %d messages finished: %w", r.done.Load(), o.N, err)
	case <-ctx.Done():
		runErr = fmt.Errorf("peers: spate: %d of %d messages finished: %w", r.done.Load(), o.N, ctx.Err())
	}
	wall := time.Since(r.base)
	r.stopping.Store(true)
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = e.Stop(sctx)
	return Result{
		Sent: r.sent.Load(), Failed: int64(o.N) - r.sent.Load(), Rcpts: r.rcptOK.Load(),
		WallNS: int64(wall), P50NS: int64(r.lat.Quantile(0.50)), P99NS: int64(r.lat.Quantile(0.99)),
		Conns: r.conns.Load(),
	}, runErr
}
