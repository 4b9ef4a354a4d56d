package engine

// driverSession is what the gnet driver needs from a session: the sans-I/O
// Session of session.go. All methods are called on one goroutine at a time
// (the connection's event loop, or its goroutine driver after a TLS
// hand-off).
type driverSession interface {
	Feed(in []byte, now int64) (n int, err error)
	Output() [][]byte
	Flushed()
	Poll(now int64)
	Deadline() int64
	Expire(now int64)
	Closed(err error, now int64)
	WantsClose() bool
	WantsTLS() bool
	TLSDone(err error, now int64)
	RetryPlain() bool
	Info() *ConnInfo
}

var _ driverSession = (*Session)(nil)

// newDriverSession makes the session of a new connection: session.go's
// Session (a variable so that a test can substitute another).
var newDriverSession = func(cfg *SessionConfig, info ConnInfo, f Feeder, r Reporter, now int64) driverSession {
	return NewSession(cfg, info, f, r, now)
}

// drvDrainer is implemented by sessions that can be asked to QUIT as soon
// as they are idle (graceful Stop); *Session does. Without it, a stopping
// engine stops feeding sessions and they QUIT at their idle timeout.
type drvDrainer interface{ Drain(now int64) }

func drvDrain(s driverSession, now int64) {
	if d, ok := s.(drvDrainer); ok {
		d.Drain(now)
	}
}
