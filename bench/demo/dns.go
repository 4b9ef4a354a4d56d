// Package demo sets up the offline demo campaign: a fake DNS zone served by an
// in-process miekg/dns server on loopback, a synthetic list over providers
// whose domains share MX sets the way real ones do, and the embedded sink.
package demo

import (
	"net"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// Zone is an authoritative fake DNS server on loopback (UDP and TCP on one
// port). It answers MX and A for the domains it holds, a null MX (RFC 7505)
// for NullMX domains, and NXDOMAIN for the rest. Safe for concurrent use.
type Zone struct {
	mu     sync.RWMutex
	mx     map[string][]string // domain → MX hosts (preference order)
	a      map[string]string   // host → IPv4
	nullMX map[string]bool
	udp    *dns.Server
	tcp    *dns.Server
	addr   string
}

// NewZone returns an empty zone; add records, then Start.
func NewZone() *Zone {
	return &Zone{mx: map[string][]string{}, a: map[string]string{}, nullMX: map[string]bool{}}
}

// AddMX sets domain's MX hosts in preference order (10, 20, ...).
func (z *Zone) AddMX(domain string, hosts ...string) {
	z.mu.Lock()
	z.mx[dns.Fqdn(strings.ToLower(domain))] = hosts
	z.mu.Unlock()
}

// AddA sets host's IPv4 address.
func (z *Zone) AddA(host, ip string) {
	z.mu.Lock()
	z.a[dns.Fqdn(strings.ToLower(host))] = ip
	z.mu.Unlock()
}

// AddNullMX marks domain as accepting no mail (MX 0 ".").
func (z *Zone) AddNullMX(domain string) {
	z.mu.Lock()
	z.nullMX[dns.Fqdn(strings.ToLower(domain))] = true
	z.mu.Unlock()
}

// Start serves the zone on 127.0.0.1 (a free port) and returns its address.
func (z *Zone) Start() (string, error) {
	// UDP and TCP on one port: the UDP port the kernel picks may be taken
	// for TCP (the demo's sink, a test's listener), so try a few.
	var pc net.PacketConn
	var ln net.Listener
	var err error
	for range 20 {
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			return "", err
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		return "", err
	}
	z.addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(z.serve)
	z.udp = &dns.Server{PacketConn: pc, Handler: h}
	z.tcp = &dns.Server{Listener: ln, Handler: h}
	ready := make(chan struct{}, 2)
	z.udp.NotifyStartedFunc = func() { ready <- struct{}{} }
	z.tcp.NotifyStartedFunc = func() { ready <- struct{}{} }
	go z.udp.ActivateAndServe()
	go z.tcp.ActivateAndServe()
	<-ready
	<-ready
	return z.addr, nil
}

// Close stops the servers.
func (z *Zone) Close() {
	if z.udp != nil {
		z.udp.Shutdown()
	}
	if z.tcp != nil {
		z.tcp.Shutdown()
	}
}

const ttl = 300

func (z *Zone) serve(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
	}
	z.mu.RLock()
	hosts, isMX := z.mx[name]
	ip, isA := z.a[name]
	null := z.nullMX[name]
	z.mu.RUnlock()
	switch {
	case null:
		if q.Qtype == dns.TypeMX {
			m.Answer = append(m.Answer, &dns.MX{Hdr: hdr(dns.TypeMX), Preference: 0, Mx: "."})
		}
	case isMX || isA:
		if q.Qtype == dns.TypeMX {
			for i, h := range hosts {
				m.Answer = append(m.Answer, &dns.MX{Hdr: hdr(dns.TypeMX), Preference: uint16(10 * (i + 1)), Mx: dns.Fqdn(h)})
			}
		}
		if q.Qtype == dns.TypeA && isA {
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: net.ParseIP(ip).To4()})
		}
	default:
		m.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(m) // a client that went away is not our problem
}
