package codec

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestAppendCommands(t *testing.T) {
	tests := []struct {
		got  []byte
		want string
	}{
		{AppendEHLO(nil, "client.example.net"), "EHLO client.example.net\r\n"},
		{AppendHELO(nil, "client.example.net"), "HELO client.example.net\r\n"},
		{AppendMailFrom(nil, "bounce@example.com", MailParams{}), "MAIL FROM:<bounce@example.com>\r\n"},
		{AppendMailFrom(nil, "", MailParams{}), "MAIL FROM:<>\r\n"},
		{AppendMailFrom(nil, "b@x", MailParams{Size: 12345, EightBit: true, UTF8: true}), "MAIL FROM:<b@x> SIZE=12345 BODY=8BITMIME SMTPUTF8\r\n"},
		{AppendMailFrom(nil, "b@x", MailParams{Size: -1, UTF8: true}), "MAIL FROM:<b@x> SMTPUTF8\r\n"},
		{AppendRcptTo(nil, "rcpt@example.org"), "RCPT TO:<rcpt@example.org>\r\n"},
		{AppendData(nil), "DATA\r\n"},
		{AppendBDAT(nil, 1234, true), "BDAT 1234 LAST\r\n"},
		{AppendBDAT(nil, 0, true), "BDAT 0 LAST\r\n"},
		{AppendBDAT(nil, 65536, false), "BDAT 65536\r\n"},
		{AppendRset(nil), "RSET\r\n"},
		{AppendNoop(nil), "NOOP\r\n"},
		{AppendQuit(nil), "QUIT\r\n"},
		{AppendStartTLS(nil), "STARTTLS\r\n"},
		{AppendAuthLogin(nil), "AUTH LOGIN\r\n"},
		{AppendAuthPlain(nil, "", "user", "pass"), "AUTH PLAIN AHVzZXIAcGFzcw==\r\n"},
		{AppendAuthPlain(nil, "admin", "user", "pa55"), "AUTH PLAIN YWRtaW4AdXNlcgBwYTU1\r\n"},
		{AppendBase64Line(nil, "user"), "dXNlcg==\r\n"},
		{AppendBase64Line(nil, ""), "\r\n"},
		{AppendRcptTo([]byte("RSET\r\n"), "a@b"), "RSET\r\nRCPT TO:<a@b>\r\n"},
	}
	for i, tt := range tests {
		if string(tt.got) != tt.want {
			t.Errorf("#%d: got %q; want %q", i, tt.got, tt.want)
		}
	}
}

// TestAppendBase64Long crosses the encoder's 48-byte chunks at every offset.
func TestAppendBase64Long(t *testing.T) {
	for n := 0; n < 200; n++ {
		user := strings.Repeat("u", n)
		pass := strings.Repeat("p", (n*7)%61)
		want := "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("id\x00"+user+"\x00"+pass)) + "\r\n"
		if got := string(AppendAuthPlain(nil, "id", user, pass)); got != want {
			t.Fatalf("#%d: got %q; want %q", n, got, want)
		}
		want = base64.StdEncoding.EncodeToString([]byte(user)) + "\r\n"
		if got := string(AppendBase64Line(nil, user)); got != want {
			t.Fatalf("#%d: got %q; want %q", n, got, want)
		}
	}
}

func TestAppendAllocs(t *testing.T) {
	buf := make([]byte, 0, 512)
	allocs := testing.AllocsPerRun(100, func() {
		b := AppendEHLO(buf[:0], "client.example.net")
		b = AppendMailFrom(b, "bounce+123@example.com", MailParams{Size: 20480, EightBit: true})
		b = AppendRcptTo(b, "rcpt@example.org")
		b = AppendData(b)
		b = AppendBDAT(b, 1048576, true)
		b = AppendAuthPlain(b, "", "user@example.com", "correct horse battery staple")
		b = AppendBase64Line(b, "user@example.com")
		_ = AppendQuit(b)
	})
	if allocs != 0 {
		t.Fatalf("got %v allocs; want 0", allocs)
	}
}
