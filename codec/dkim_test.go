package codec

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
)

func loadDKIMKey(t testing.TB, name string) (*DKIMSigner, string) {
	t.Helper()
	pemBytes, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ParseDKIMKey(pemBytes)
	if err != nil {
		t.Fatalf("ParseDKIMKey(%s): %v", name, err)
	}
	var rec string
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		rec = "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
	case ed25519.PublicKey:
		rec = "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	}
	s, err := NewDKIMSigner(DKIMOptions{Domain: "example.com", Selector: "s1", Key: key})
	if err != nil {
		t.Fatal(err)
	}
	return s, rec
}

func verifyDKIM(t *testing.T, content, rec string) {
	t.Helper()
	vs, err := dkim.VerifyWithOptions(strings.NewReader(content), &dkim.VerifyOptions{
		LookupTXT: func(domain string) ([]string, error) {
			if domain != "s1._domainkey.example.com" {
				t.Errorf("lookup %q", domain)
			}
			return []string{rec}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "example.com" {
		t.Fatalf("verification: %+v", vs[0])
	}
}

func TestDKIMSignVerify(t *testing.T) {
	tp := loadNewsletter(t)
	for i, key := range []string{"dkim_rsa2048_pkcs1.pem", "dkim_rsa2048_pkcs8.pem", "dkim_ed25519.pem"} {
		s, rec := loadDKIMKey(t, key)
		for j, vals := range [][]string{
			{"a@example.org", "Ann", "Gent", "free", "https://u.example/1", ""},
			{"b@example.org", "Zoë\r\n.\r\nX", ".Liège\r\n", "a\rb", "https://u.example/?a=1&b=2", ""},
		} {
			m := AcquireMessage()
			if err := tp.Render(m, vals, []byte("Message-ID: <x@example.com>\r\nDate: Sun, 22 Nov 2026 18:00:00 +0000\r\n")); err != nil {
				t.Fatal(err)
			}
			size := m.Len()
			if err := s.Sign(m); err != nil {
				t.Fatalf("#%d/%d: Sign: %v", i, j, err)
			}
			var wire bytes.Buffer
			for _, seg := range m.Segs {
				wire.Write(seg)
			}
			m.Release()
			if !strings.HasPrefix(wire.String(), "DKIM-Signature: ") || wire.Len() <= size {
				t.Fatalf("#%d/%d: no signature first: %q", i, j, wire.String()[:40])
			}
			content := unstuff(t, wire.String())
			verifyDKIM(t, content, rec)
			// A changed body fails.
			bad := strings.Replace(content, "Hello", "Hallo", 1)
			vs, err := dkim.VerifyWithOptions(strings.NewReader(bad), &dkim.VerifyOptions{
				LookupTXT: func(string) ([]string, error) { return []string{rec}, nil },
			})
			if err != nil || len(vs) != 1 || vs[0].Err == nil {
				t.Fatalf("#%d/%d: tampered body verified: %v", i, j, err)
			}
		}
	}
}

func TestParseDKIMKeyErrors(t *testing.T) {
	rsa512, _ := os.ReadFile("testdata/dkim_rsa512.pem")
	for i, in := range [][]byte{
		nil,
		[]byte("not pem"),
		[]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
		[]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
		rsa512,
	} {
		if _, err := ParseDKIMKey(in); !errors.Is(err, ErrDKIMKey) {
			t.Errorf("#%d: got %v; want ErrDKIMKey", i, err)
		}
	}
}

func TestNewDKIMSignerErrors(t *testing.T) {
	pemBytes, _ := os.ReadFile("testdata/dkim_ed25519.pem")
	key, err := ParseDKIMKey(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range []DKIMOptions{
		{Selector: "s", Key: key},
		{Domain: "d", Key: key},
		{Domain: "d", Selector: "s"},
		{Domain: "d", Selector: "s", Key: key, Headers: []string{"To"}},
		{Domain: "d", Selector: "s", Key: key, Headers: []string{"From", "X:Y"}},
	} {
		if _, err := NewDKIMSigner(o); err == nil {
			t.Errorf("#%d: got nil error; want one", i)
		}
	}
}

func TestDKIMSignNeedsRender(t *testing.T) {
	s, _ := loadDKIMKey(t, "dkim_ed25519.pem")
	m := AcquireMessage()
	defer m.Release()
	if err := s.Sign(m); err == nil {
		t.Fatal("Sign of an empty message: got nil error")
	}
}
