package codec

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
)

// DefaultDKIMHeaders are the header fields signed when DKIMOptions.Headers
// is nil (RFC 6376 §5.4.1 recommendations plus the RFC 8058 one-click
// unsubscribe pair). A listed field absent from a message is still named in
// h=, so that nobody can add it later without breaking the signature.
var DefaultDKIMHeaders = []string{"From", "To", "Subject", "Date", "Message-ID",
	"MIME-Version", "Content-Type", "List-Unsubscribe", "List-Unsubscribe-Post"}

// ErrDKIMKey reports a private key that ParseDKIMKey cannot use.
var ErrDKIMKey = errors.New("codec: unsupported DKIM key (want PEM RSA, PKCS#1 or PKCS#8, of at least 1024 bits, or Ed25519 PKCS#8)")

// ParseDKIMKey parses a PEM private key for DKIM signing: RSA in PKCS#1
// ("RSA PRIVATE KEY") or PKCS#8 ("PRIVATE KEY"), or Ed25519 in PKCS#8
// (RFC 8463). RSA keys under 1024 bits are refused (RFC 8301 §3.2).
func ParseDKIMKey(pemBytes []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block", ErrDKIMKey)
	}
	var key any
	var err error
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%w: PEM type %q", ErrDKIMKey, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDKIMKey, err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 1024 {
			return nil, fmt.Errorf("%w: RSA key of %d bits", ErrDKIMKey, k.N.BitLen())
		}
		k.Precompute()
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("%w: %T", ErrDKIMKey, key)
}

// DKIMOptions configure a DKIMSigner.
type DKIMOptions struct {
	Domain   string        // d=, the signing domain
	Selector string        // s=
	Key      crypto.Signer // from ParseDKIMKey: *rsa.PrivateKey or ed25519.PrivateKey
	// Headers are the fields to sign; nil means DefaultDKIMHeaders. "From"
	// must be among them (RFC 6376 §5.4).
	Headers []string
}

// DKIMSigner signs rendered Messages (RFC 6376, relaxed/relaxed
// canonicalisation, SHA-256; RSA or Ed25519 per RFC 8463) with
// emersion/go-msgauth. It holds only the parsed key and options, never
// changed after NewDKIMSigner: it is safe for concurrent use by any number
// of goroutines (each Sign uses its own go-msgauth signer).
type DKIMSigner struct {
	opts dkim.SignOptions
}

// NewDKIMSigner checks o and returns a signer.
func NewDKIMSigner(o DKIMOptions) (*DKIMSigner, error) {
	if o.Domain == "" || o.Selector == "" || o.Key == nil {
		return nil, errors.New("codec: DKIM needs a domain, a selector and a key")
	}
	switch o.Key.Public().(type) {
	case *rsa.PublicKey, ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("%w: %T", ErrDKIMKey, o.Key)
	}
	hdrs := o.Headers
	if hdrs == nil {
		hdrs = DefaultDKIMHeaders
	}
	hasFrom := false
	for _, h := range hdrs {
		if strings.ContainsAny(h, ": \t\r\n") || h == "" {
			return nil, fmt.Errorf("codec: DKIM header name %q", h)
		}
		hasFrom = hasFrom || strings.EqualFold(h, "From")
	}
	if !hasFrom {
		return nil, errors.New("codec: DKIM must sign the From header")
	}
	return &DKIMSigner{opts: dkim.SignOptions{
		Domain:                 o.Domain,
		Selector:               o.Selector,
		Signer:                 o.Key,
		Hash:                   crypto.SHA256,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             append([]string(nil), hdrs...),
	}}, nil
}

// Sign signs the content of m (its segments un-stuffed, as the receiver
// will see them) and inserts the DKIM-Signature field as the first header
// of m, copied into m's pooled buffer. Call it after Render, once; m's
// segments are rebuilt. Sign allocates (go-msgauth's signer) and costs one
// private-key operation; its cost is measured in BenchmarkDKIMSign.
func (s *DKIMSigner) Sign(m *Message) error {
	if len(m.spans) == 0 || m.spans[len(m.spans)-1].static == nil {
		return errors.New("codec: DKIM Sign needs a rendered message")
	}
	var scratch [64][]byte // on the stack; a longer list grows on the heap
	runs, n := m.AppendUnstuffed(scratch[:0])
	m.asm = appendRuns(m.asm[:0], runs, n)
	opts := s.opts // go-msgauth keeps a pointer while it signs
	signer, err := dkim.NewSigner(&opts)
	if err != nil {
		return err
	}
	if _, err := signer.Write(m.asm); err != nil {
		signer.Close()
		return err
	}
	if err := signer.Close(); err != nil {
		return err
	}
	sig := signer.Signature()
	off := m.mark()
	var st Stuffer
	m.buf.B = st.Append(m.buf.B, []byte(sig))
	if !st.AtLineStart() {
		m.buf.B = append(m.buf.B, '\r', '\n')
	}
	m.spans = append(m.spans, span{})
	copy(m.spans[1:], m.spans)
	m.spans[0] = span{off: off, n: len(m.buf.B) - off}
	m.build()
	return nil
}
