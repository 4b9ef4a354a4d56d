package codec

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzValidateAddress: never panics; an accepted address never holds CR, LF,
// NUL, '<' or '>', fits the path limit and makes exactly one command line;
// NormalizeAddress output is valid and a fixed point.
func FuzzValidateAddress(f *testing.F) {
	for _, s := range []string{
		"a@example.com", `"john doe"@example.com`, "a@[IPv6:2001:db8::1]", "a@[192.0.2.1]",
		"José@Bücher.example", "a@b>\r\nDATA", "\"a\\\"b\"@x", "a..b@c", "a@b.com.", "a@ａｂｃ.com",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, addr string, smtputf8 bool) {
		if err := ValidateAddress(addr, smtputf8); err == nil {
			if strings.ContainsAny(addr, "\r\n\x00<>") {
				t.Fatalf("accepted %q", addr)
			}
			if local, _ := SplitAddress(addr); !smtputf8 && !asciiOnly(local) {
				t.Fatalf("accepted a UTF-8 local part without SMTPUTF8: %q", addr)
			}
			if asciiOnly(addr) && len(addr) > MaxAddressLen {
				t.Fatalf("accepted %d octets", len(addr))
			}
			cmd := AppendRcptTo(nil, addr)
			if bytes.Count(cmd, []byte("\r\n")) != 1 || bytes.IndexByte(cmd, '\n') != len(cmd)-1 {
				t.Fatalf("command %q is not one line", cmd)
			}
		}
		n, err := NormalizeAddress(addr)
		if err != nil {
			return
		}
		if err := ValidateAddress(n, true); err != nil {
			t.Fatalf("NormalizeAddress(%q) = %q, invalid: %v", addr, n, err)
		}
		if n2, err := NormalizeAddress(n); err != nil || n2 != n {
			t.Fatalf("NormalizeAddress not idempotent: %q -> %q -> %q, %v", addr, n, n2, err)
		}
		if _, d := SplitAddress(n); !asciiOnly(d) || d != strings.ToLower(d) && !strings.HasPrefix(d, "[IPv6:") {
			t.Fatalf("domain of %q not lower-case ASCII", n)
		}
	})
}
