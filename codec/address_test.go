package codec

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateAddress(t *testing.T) {
	label63 := strings.Repeat("d", 63)
	tests := []struct {
		addr     string
		smtputf8 bool
		want     string // "" = valid, else the reason
	}{
		{"a@example.com", false, ""},
		{"first.last@example.com", false, ""},
		{"a+tag@sub.example.co.uk", false, ""},
		{"!#$%&'*+-/=?^_`{|}~@x.io", false, ""},
		{`"john doe"@example.com`, false, ""},
		{`"a@b"@example.com`, false, ""},
		{`"a\"b\\c"@x.com`, false, ""},
		{`""@x.com`, false, ""},
		{"a@[192.0.2.1]", false, ""},
		{"a@[IPv6:2001:db8::1]", false, ""},
		{"a@[ipv6:::1]", false, ""},
		{"a@localhost", false, ""},
		{"a@Bücher.example", false, ""},
		{"José@x.com", true, ""},
		{`"José x"@x.com`, true, ""},
		{strings.Repeat("l", 64) + "@x.com", false, ""},
		{"a@" + label63 + ".com", false, ""},

		// injection and forbidden bytes
		{"a@b>\r\nDATA", false, "contains '<' or '>'"},
		{"a@b\r\nRCPT TO:c@d", false, "contains a line break (CR or LF)"},
		{"a@b.com\n", false, "contains a line break (CR or LF)"},
		{"a@b.com\r", false, "contains a line break (CR or LF)"},
		{`"a>\r\nDATA"@b.com`, false, "contains '<' or '>'"},
		{"\"a\r\nDATA\"@b.com", false, "contains a line break (CR or LF)"},
		{"<a@b.com>", false, "contains '<' or '>'"},
		{"a@b.com\x00", false, "contains a NUL byte"},
		{"a\x01@b.com", false, "control character in local part"},
		{"a\x7f@b.com", false, "control character in local part"},

		// syntax
		{"", false, "empty address"},
		{"ab", false, "no '@'"},
		{"@b.com", false, "empty local part"},
		{"a@", false, "empty domain"},
		{"a@@b.com", false, "character '@' not allowed in local part (outside quotes)"},
		{".a@b.com", false, "local part starts or ends with '.'"},
		{"a.@b.com", false, "local part starts or ends with '.'"},
		{"a..b@c.com", false, "local part has consecutive dots"},
		{"a b@c.com", false, "space in local part (outside quotes)"},
		{"a\t@c.com", false, "space in local part (outside quotes)"},
		{"a,b@c.com", false, "character ',' not allowed in local part (outside quotes)"},
		{`"a@b.com`, false, "unterminated quoted local part"},
		{`"ab@b.com`, false, "unterminated quoted local part"},
		{`"a"b"@x.com`, false, "unescaped '\"' inside quoted local part"},
		{"\"a\\\x01\"@x.com", false, "bad escape in quoted local part"},
		{`"a\"@x.com`, false, "bad escape in quoted local part"},
		{"\"a\x01\"@x.com", false, "control character in quoted local part"},
		{"a@b c.com", false, "space in domain"},
		{"a@-b.com", false, "domain label starts or ends with '-'"},
		{"a@b-.com", false, "domain label starts or ends with '-'"},
		{"a@b..com", false, "empty label in domain"},
		{"a@b.com.", false, "empty label in domain"},
		{"a@.b.com", false, "empty label in domain"},
		{"a@b_c.com", false, "character '_' not allowed in domain"},
		{"a@" + label63 + "d.com", false, "domain label longer than 63 octets"},
		{"a@[1.2.3]", false, "invalid address literal (want [a.b.c.d] or [IPv6:...])"},
		{"a@[::1]", false, "invalid address literal (want [a.b.c.d] or [IPv6:...])"},
		{"a@[01.2.3.4]", false, "invalid address literal (want [a.b.c.d] or [IPv6:...])"},
		{"a@[IPv6:zz]", false, "invalid IPv6 address literal"},
		{"a@[IPv6:1.2.3.4]", false, "invalid IPv6 address literal"},
		{"a@[IPv6:fe80::1%eth0]", false, "invalid IPv6 address literal"},
		{"a@[1.2.3.4", false, "unterminated address literal"},

		// limits
		{strings.Repeat("l", 65) + "@x.com", false, "local part longer than 64 octets"},
		{"a@" + strings.Repeat(label63+".", 4) + "com", false, "domain longer than 255 octets"},
		{strings.Repeat("l", 64) + "@" + strings.Repeat(label63+".", 2) + strings.Repeat("d", 59) + ".com", false, "longer than 254 octets"},

		// UTF-8
		{"José@x.com", false, "non-ASCII local part needs SMTPUTF8"},
		{`"José"@x.com`, false, "non-ASCII local part needs SMTPUTF8"},
		{"\xff@x.com", true, "invalid UTF-8"},
		{"a\u00a0b@x.com", true, "control or space character '\\u00a0' in local part"},
		{"a\u0085b@x.com", true, "control or space character '\\u0085' in local part"},
		{"a@b\xff.com", false, "invalid UTF-8 in domain"},
		{"a@-ü.com", false, "invalid internationalised domain: idna: invalid label \"-ü\""},
		{"a@ａｂｃ.com", false, ""}, // full-width letters map to ASCII (UTS #46)
	}
	for i, tt := range tests {
		err := ValidateAddress(tt.addr, tt.smtputf8)
		got := ""
		if err != nil {
			var ae *AddressError
			if !errors.As(err, &ae) || ae.Addr != tt.addr {
				t.Errorf("#%d: %q: got %v; want *AddressError with Addr", i, tt.addr, err)
				continue
			}
			got = ae.Reason
		}
		if got != tt.want {
			t.Errorf("#%d: %q: got %q; want %q", i, tt.addr, got, tt.want)
		}
	}
}

func TestValidateAddressAllocs(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		if ValidateAddress("first.last+tag@mail.example.com", false) != nil {
			t.Fatal("rejected")
		}
		if _, err := NormalizeAddress("first.last+tag@mail.example.com"); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("got %v allocs; want 0", allocs)
	}
}

func TestNormalizeAddress(t *testing.T) {
	tests := []struct {
		in, want string // want "" = error
	}{
		{"a@example.com", "a@example.com"},
		{" \tA.B@Example.COM \r\n", "A.B@example.com"},
		{"a@Bücher.Example", "a@xn--bcher-kva.example"},
		{"José@Bücher.example", "José@xn--bcher-kva.example"},
		{"a@[ipv6:2001:DB8::1]", "a@[IPv6:2001:db8::1]"},
		{"a@[IPv6:2001:db8::1]", "a@[IPv6:2001:db8::1]"},
		{`"Quoted Part"@X.org`, `"Quoted Part"@x.org`},
		{"a@b>\r\nDATA", ""},
		{"nope", ""},
		{"a@b..com", ""},
	}
	for i, tt := range tests {
		got, err := NormalizeAddress(tt.in)
		if (err != nil) != (tt.want == "") || got != tt.want {
			t.Errorf("#%d: %q: got %q, %v; want %q", i, tt.in, got, err, tt.want)
		}
	}
}

func TestSplitAddressAndNeedsSMTPUTF8(t *testing.T) {
	tests := []struct {
		in, local, domain string
		utf8              bool
	}{
		{"a@b.com", "a", "b.com", false},
		{`"a@b"@c.com`, `"a@b"`, "c.com", false},
		{"nope", "nope", "", false},
		{"José@x.com", "José", "x.com", true},
		{"a@Bücher.example", "a", "Bücher.example", true},
	}
	for i, tt := range tests {
		l, d := SplitAddress(tt.in)
		if l != tt.local || d != tt.domain || NeedsSMTPUTF8(tt.in) != tt.utf8 {
			t.Errorf("#%d: got %q %q %v; want %q %q %v", i, l, d, NeedsSMTPUTF8(tt.in), tt.local, tt.domain, tt.utf8)
		}
	}
}
