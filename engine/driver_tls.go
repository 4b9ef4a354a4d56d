//go:build spatedriver

package engine

import "github.com/panjf2000/gnet/v2"

// drvTLS is the TLS state of one connection (placeholder until tlslink.go lands).
type drvTLS struct {
	handshaking bool
	deadline    int64
}

func (d *drvConn) startTLS(now int64) {
	d.fail(errTLSUnavailable, now)
}

func (d *drvConn) trafficTLS(c gnet.Conn, now int64) gnet.Action { return gnet.Close }
func (d *drvConn) writeTLS(out [][]byte)                         {}
func (d *drvConn) handshakeTimeout(now int64)                    {}
func (t *drvTLS) close()                                         {}
