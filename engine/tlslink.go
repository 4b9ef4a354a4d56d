package engine

// TLS inside the event loop (ARCHITECTURE decision 6): crypto/tls runs over
// an in-memory net.Conn. The handshake runs on a short-lived goroutine over
// a blocking variant of that conn (fed from OnTraffic); afterwards the record
// layer is driven on the loop goroutine over the same conn made
// non-blocking: a Read with nothing buffered returns a net.Error whose
// Timeout and Temporary are true, which crypto/tls returns without making it
// sticky, so the next Read resumes the record where it stopped.

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"
)

// ErrTLSLinkBusy is returned by ReadPlain and WritePlain while the
// handshake runs (or before it was started).
var ErrTLSLinkBusy = errors.New("engine: TLS link used before its handshake completed")

// errWouldBlock is what the link's conn returns from Read when it has no
// ciphertext and is not handshaking.
var errWouldBlock net.Error = wouldBlockError{}

type wouldBlockError struct{}

func (wouldBlockError) Error() string   { return "engine: TLS link would block" }
func (wouldBlockError) Timeout() bool   { return true }
func (wouldBlockError) Temporary() bool { return true }

// tlsLinkMaxPlain is the plaintext coalesced into one TLS record by
// WritePlain (the TLS maximum record payload).
const tlsLinkMaxPlain = 16 << 10

// TLSLink is a client TLS connection without a socket: the driver feeds it
// ciphertext from the socket and writes the ciphertext it produces.
//
// Goroutines: NewTLSLink, Close and the wake/done callbacks' senders may be
// anything. FeedCiphertext and TakeCiphertext are called on the loop
// goroutine, at any time, also while the handshake runs (they lock).
// Handshake is called once, on the loop goroutine; its wake and done
// callbacks run on the handshake goroutine (the driver then gets back on
// the loop with gnet's Wake/Trigger). ReadPlain and WritePlain are called on
// the loop goroutine only, and only after done(nil) has been received there.
// After FeedCiphertext, ReadPlain or WritePlain, the driver calls
// TakeCiphertext and writes what it returns (ReadPlain may answer a TLS 1.3
// KeyUpdate).
type TLSLink struct {
	tc *tls.Conn
	c  linkConn

	plain []byte // WritePlain's coalescing buffer
}

// linkConn is the in-memory net.Conn under crypto/tls.
type linkConn struct {
	mu      sync.Mutex
	cond    sync.Cond
	in      []byte // ciphertext received, from off on not yet read
	off     int
	out     []byte // ciphertext to write to the socket
	spare   []byte // the buffer TakeCiphertext returned last time
	block   bool   // handshaking: Read waits for data
	started bool
	hsDone  bool
	closed  bool
	wake    func()
}

// NewTLSLink returns a client link; cfg is used as tls.Client uses it
// (ServerName, RootCAs, InsecureSkipVerify, versions).
func NewTLSLink(cfg *tls.Config) *TLSLink {
	l := &TLSLink{}
	l.c.cond.L = &l.c.mu
	l.tc = tls.Client(&l.c, cfg)
	return l
}

// Handshake starts the TLS handshake on a new goroutine. wake (may be nil)
// is called from that goroutine each time ciphertext is waiting for
// TakeCiphertext; done is called from it once, with the handshake's error.
// Close aborts a handshake that takes too long (done then reports an
// error). Loop goroutine, once.
func (l *TLSLink) Handshake(wake func(), done func(err error)) {
	c := &l.c
	c.mu.Lock()
	if c.started {
		c.mu.Unlock()
		panic("engine: BUG: TLSLink.Handshake called twice")
	}
	c.started, c.block, c.wake = true, true, wake
	c.mu.Unlock()
	go func() {
		err := l.tc.Handshake()
		c.mu.Lock()
		c.block, c.wake, c.hsDone = false, nil, err == nil
		c.mu.Unlock()
		done(err)
	}()
}

// FeedCiphertext hands the link bytes read from the socket; p is copied
// (it may be gnet's inbound buffer). Loop goroutine.
func (l *TLSLink) FeedCiphertext(p []byte) {
	c := &l.c
	c.mu.Lock()
	if c.off > 0 && c.off == len(c.in) {
		c.in, c.off = c.in[:0], 0
	}
	c.in = append(c.in, p...)
	c.cond.Broadcast()
	c.mu.Unlock()
}

// TakeCiphertext returns the ciphertext to write to the socket, nil if
// none. The slice is valid until the next TakeCiphertext call. Loop
// goroutine.
func (l *TLSLink) TakeCiphertext() []byte {
	c := &l.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.out) == 0 {
		return nil
	}
	b := c.out
	c.out, c.spare = c.spare[:0], b
	return b
}

// ReadPlain appends the plaintext that the ciphertext fed so far decrypts
// to and returns the extended slice. It returns a nil error when it needs
// more ciphertext; io.EOF after the server's close_notify; another error
// (sticky) for a broken record. Loop goroutine, after the handshake.
func (l *TLSLink) ReadPlain(dst []byte) ([]byte, error) {
	if !l.ready() {
		return dst, ErrTLSLinkBusy
	}
	for {
		if cap(dst)-len(dst) < 512 {
			dst = append(dst[:cap(dst)], make([]byte, tlsLinkMaxPlain)...)[:len(dst)]
		}
		n, err := l.tc.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if err != nil {
			if errors.Is(err, errWouldBlock) {
				return dst, nil
			}
			return dst, err
		}
	}
}

// WritePlain encrypts segs (coalesced into records of up to 16 KB) into the
// outbound ciphertext; segs may be reused when it returns. Loop goroutine,
// after the handshake.
func (l *TLSLink) WritePlain(segs [][]byte) error {
	if !l.ready() {
		return ErrTLSLinkBusy
	}
	buf := l.plain[:0]
	for _, s := range segs {
		for len(s) > 0 {
			if len(buf) == 0 && len(s) >= tlsLinkMaxPlain {
				if _, err := l.tc.Write(s[:tlsLinkMaxPlain]); err != nil {
					return err
				}
				s = s[tlsLinkMaxPlain:]
				continue
			}
			k := min(len(s), tlsLinkMaxPlain-len(buf))
			buf = append(buf, s[:k]...)
			s = s[k:]
			if len(buf) == tlsLinkMaxPlain {
				if _, err := l.tc.Write(buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
		}
	}
	l.plain = buf[:0]
	if len(buf) > 0 {
		if _, err := l.tc.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

// ConnectionState returns the TLS state (version, cipher, peer
// certificates). Loop goroutine, after the handshake.
func (l *TLSLink) ConnectionState() tls.ConnectionState { return l.tc.ConnectionState() }

// Close ends the link: a handshake in progress fails, later reads and
// writes fail with net.ErrClosed. No close_notify is sent. Any goroutine.
func (l *TLSLink) Close() {
	c := &l.c
	c.mu.Lock()
	c.closed = true
	c.cond.Broadcast()
	c.mu.Unlock()
}

func (l *TLSLink) ready() bool {
	c := &l.c
	c.mu.Lock()
	ok := c.hsDone && !c.block
	c.mu.Unlock()
	return ok
}

// Read gives crypto/tls buffered ciphertext; with none, it waits while
// handshaking and returns errWouldBlock otherwise.
func (c *linkConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.off == len(c.in) {
		if c.closed {
			return 0, net.ErrClosed
		}
		if !c.block {
			return 0, errWouldBlock
		}
		c.cond.Wait()
	}
	n := copy(b, c.in[c.off:])
	c.off += n
	return n, nil
}

// Write queues ciphertext for TakeCiphertext (never blocks).
func (c *linkConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	c.out = append(c.out, b...)
	wake := c.wake
	c.mu.Unlock()
	if wake != nil {
		wake()
	}
	return len(b), nil
}

func (c *linkConn) Close() error                     { return nil }
func (c *linkConn) LocalAddr() net.Addr              { return linkAddr{} }
func (c *linkConn) RemoteAddr() net.Addr             { return linkAddr{} }
func (c *linkConn) SetDeadline(time.Time) error      { return nil }
func (c *linkConn) SetReadDeadline(time.Time) error  { return nil }
func (c *linkConn) SetWriteDeadline(time.Time) error { return nil }

type linkAddr struct{}

func (linkAddr) Network() string { return "tlslink" }
func (linkAddr) String() string  { return "tlslink" }

var _ net.Conn = (*linkConn)(nil)
