package peers

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"sync"
	"sync/atomic"
	"time"
)

// RunNetSMTP sends o.N messages with the standard library's net/smtp: one
// goroutine per connection, one message at a time, each command waiting for
// its reply. A rejected recipient or message is counted and the transaction
// reset; a broken connection is redialled.
func RunNetSMTP(ctx context.Context, o Options) (Result, error) {
	var (
		next, sent, rcptOK, conns atomic.Int64
		lat                       hist
		wg                        sync.WaitGroup
		errOnce                   sync.Once
		firstErr                  error // the first dial failure
	)
	bodies := make([][]byte, min(max(o.N, 1), 1024))
	rcpts := make([][]string, len(bodies))
	for i := range bodies {
		rcpts[i] = rcptList(i, o.Rcpts)
		bodies[i] = bodyText(rcpts[i][0], o.Size)
	}
	deadline, _ := ctx.Deadline()
	start := time.Now()
	for w := 0; w < o.Sessions; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *smtp.Client
			var nc net.Conn
			defer func() {
				if c != nil {
					c.Quit()
					c.Close()
				}
			}()
			fails := 0
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(o.N) {
					return
				}
				if c == nil {
					var err error
					conns.Add(1)
					c, nc, err = netsmtpDial(o, deadline)
					if err != nil {
						errOnce.Do(func() { firstErr = err })
						if fails++; fails > 100 {
							return
						}
						continue // message i counts as failed
					}
				}
				nc.SetDeadline(time.Now().Add(30 * time.Second))
				t0 := time.Now()
				ok, n, err := netsmtpSend(c, rcpts[i%int64(len(rcpts))], bodies[i%int64(len(bodies))])
				lat.Record(time.Since(t0))
				rcptOK.Add(int64(n))
				if ok {
					sent.Add(1)
				}
				var te *textproto.Error
				if err != nil && !(errors.As(err, &te) && te.Code != 421) {
					c.Close() // broken connection or 421: redial for the next message
					c = nil
				} else if err != nil {
					if c.Reset() != nil {
						c.Close()
						c = nil
					}
				}
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	var err error
	if firstErr != nil && sent.Load() < int64(o.N) {
		err = fmt.Errorf("peers: netsmtp: %d of %d messages sent; dial: %w", sent.Load(), o.N, firstErr)
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("peers: netsmtp: %d of %d messages sent: %w", sent.Load(), o.N, ctx.Err())
	}
	return Result{
		Sent: sent.Load(), Failed: int64(o.N) - sent.Load(), Rcpts: rcptOK.Load(), WallNS: int64(wall),
		P50NS: int64(lat.Quantile(0.5)), P99NS: int64(lat.Quantile(0.99)), Conns: conns.Load(),
	}, err
}

func netsmtpDial(o Options, deadline time.Time) (*smtp.Client, net.Conn, error) {
	nc, err := net.DialTimeout("tcp", o.Addr, 30*time.Second)
	if err != nil {
		return nil, nil, err
	}
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	host, _, _ := net.SplitHostPort(o.Addr)
	c, err := smtp.NewClient(nc, host)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	if err := c.Hello("netsmtp.bench.test"); err != nil {
		c.Close()
		return nil, nil, err
	}
	if o.StartTLS {
		if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true}); err != nil {
			c.Close()
			return nil, nil, err
		}
	}
	return c, nc, nil
}

// netsmtpSend runs one transaction; ok is true when the final dot got 250,
// n counts accepted recipients.
func netsmtpSend(c *smtp.Client, rcpts []string, body []byte) (ok bool, n int, err error) {
	if err := c.Mail("sender@bench.test"); err != nil {
		return false, 0, err
	}
	var rerr error
	for _, r := range rcpts {
		if err := c.Rcpt(r); err != nil {
			rerr = err
			var te *textproto.Error
			if !errors.As(err, &te) || te.Code == 421 {
				return false, n, err
			}
			continue
		}
		n++
	}
	if n == 0 {
		return false, 0, rerr
	}
	w, err := c.Data()
	if err != nil {
		return false, 0, err
	}
	if _, err := w.Write(body); err != nil {
		return false, 0, err
	}
	if err := w.Close(); err != nil {
		return false, 0, err
	}
	return true, n, nil
}
