package codec

import "testing"

// ehloReply is a typical 10-line EHLO reply (tests and benchmarks).
const ehloReply = "250-mx.example.com Hello client.example.net [192.0.2.7]\r\n" +
	"250-SIZE 52428800\r\n" +
	"250-8BITMIME\r\n" +
	"250-PIPELINING\r\n" +
	"250-AUTH PLAIN LOGIN CRAM-MD5\r\n" +
	"250-AUTH=PLAIN LOGIN\r\n" +
	"250-ENHANCEDSTATUSCODES\r\n" +
	"250-CHUNKING\r\n" +
	"250-STARTTLS\r\n" +
	"250 SMTPUTF8\r\n"

func mustParseReply(t testing.TB, s string) Reply {
	t.Helper()
	r, _, err := ParseReply([]byte(s))
	if err != nil {
		t.Fatalf("ParseReply(%q): %v", s, err)
	}
	return r
}

func TestParseEHLO(t *testing.T) {
	tests := []struct {
		in   string
		want Caps
	}{
		{ehloReply, Caps{Pipelining: true, EightBitMIME: true, SMTPUTF8: true, StartTLS: true,
			EnhancedStatusCodes: true, Chunking: true, Size: 52428800, Auth: AuthPlain | AuthLogin | AuthCRAMMD5}},
		{"250 mx.example.com\r\n", Caps{}},
		{"250-mx\r\n250-size\r\n250 dsn\r\n", Caps{DSN: true}},                 // SIZE alone: no limit
		{"250-mx\r\n250-SIZE 0\r\n250 pipelining\r\n", Caps{Pipelining: true}}, // SIZE 0: no limit
		{"250-mx\r\n250-SIZE 12x\r\n250 STARTTLS\r\n", Caps{StartTLS: true}},   // junk size
		{"250-mx\r\n250-SIZE 99999999999999999999\r\n250 X\r\n", Caps{}},       // overflow
		{"250-mx\r\n250-auth=login xoauth2\r\n250 AUTH oauthbearer\r\n", Caps{Auth: AuthLogin | AuthXOAUTH2 | AuthOAuthBearer}},
		{"250-mx\r\n250-AUTH  SCRAM-SHA-256 GSSAPI\r\n250 X-EXPS PLAIN\r\n", Caps{Auth: AuthScramSHA256}},
		{"250-mx\r\n250-PIPELININGX\r\n250 8BITMIMEX\r\n", Caps{}}, // whole keywords only
		{"250-mx\r\n250-STARTTLS\r\n250 SIZE 1000\r\n", Caps{StartTLS: true, Size: 1000}},
		{"502-PIPELINING\r\n502 STARTTLS\r\n", Caps{}}, // not 2xx
		{"250-mx\r\n250-\r\n250 CHUNKING\r\n", Caps{Chunking: true}},
	}
	for i, tt := range tests {
		got := ParseEHLO(mustParseReply(t, tt.in))
		if got != tt.want {
			t.Errorf("#%d: got %+v; want %+v", i, got, tt.want)
		}
	}
}

func TestParseEHLOAllocs(t *testing.T) {
	r := mustParseReply(t, ehloReply)
	allocs := testing.AllocsPerRun(100, func() { _ = ParseEHLO(r) })
	if allocs != 0 {
		t.Fatalf("got %v allocs; want 0", allocs)
	}
}

func TestAuthMechs(t *testing.T) {
	a := AuthPlain | AuthXOAUTH2
	if !a.Has(AuthPlain) || !a.Has(AuthPlain|AuthXOAUTH2) || a.Has(AuthLogin) || a.Has(AuthPlain|AuthLogin) {
		t.Fatalf("Has is wrong for %v", a)
	}
	if got, want := a.String(), "PLAIN XOAUTH2"; got != want {
		t.Fatalf("got %q; want %q", got, want)
	}
}
