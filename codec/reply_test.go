package codec

import (
	"errors"
	"strings"
	"testing"
)

func TestParseReply(t *testing.T) {
	tests := []struct {
		in       string
		code     int
		enhanced string
		text     string
		n        int // bytes used; 0 = len(in)
	}{
		{"220 mx.example.com ESMTP\r\n", 220, "", "mx.example.com ESMTP", 0},
		{"250 2.1.0 Ok\r\n", 250, "2.1.0", "Ok", 0},
		{"250 2.1.0\r\n", 250, "2.1.0", "", 0},
		{"250 2.1.0Ok\r\n", 250, "", "2.1.0Ok", 0},              // not followed by space
		{"550 2.1.0 odd\r\n", 550, "", "2.1.0 odd", 0},          // class mismatch
		{"554 5.7.1234 x\r\n", 554, "", "5.7.1234 x", 0},        // detail too long
		{"451 4.7.0 Try later\n", 451, "4.7.0", "Try later", 0}, // bare LF
		{"250\r\n", 250, "", "", 0},
		{"250 \r\n", 250, "", "", 0},
		{"250-\r\n250 x\r\n", 250, "", "\nx", 0},
		{"250-mx Hello\r\n250-SIZE 1000\r\n250 PIPELINING\r\n", 250, "", "mx Hello\nSIZE 1000\nPIPELINING", 0},
		{"550-5.1.1 No such\r\n550-5.1.1 user\r\n550 5.1.1 here\r\nNEXT", 550, "5.1.1", "No such\nuser\nhere", 51},
		{"550-5.1.1 a\r\n550 4.1.1 b\r\n", 550, "5.1.1", "a\n4.1.1 b", 0}, // only the same code is stripped
		{"250 a\rb\r\n", 250, "", "a\rb", 0},
		{"250 ok\r\n250 next\r\n", 250, "", "ok", 8},
	}
	for i, tt := range tests {
		r, n, err := ParseReply([]byte(tt.in))
		if err != nil {
			t.Errorf("#%d: %q: %v", i, tt.in, err)
			continue
		}
		want := tt.n
		if want == 0 {
			want = len(tt.in)
		}
		if r.Code != tt.code || r.Enhanced.String() != tt.enhanced || r.Text() != tt.text || n != want || string(r.Raw) != tt.in[:n] {
			t.Errorf("#%d: got %d %q %q n=%d; want %d %q %q n=%d", i, r.Code, r.Enhanced, r.Text(), n, tt.code, tt.enhanced, tt.text, want)
		}
	}
}

func TestParseReplyErrors(t *testing.T) {
	tests := []struct {
		in   string
		want string // "incomplete", "toolong", or the SyntaxError reason
	}{
		{"", "incomplete"},
		{"250", "incomplete"},
		{"250 ok", "incomplete"},
		{"250-ok\r\n", "incomplete"},
		{"250-ok\r\n250 ok", "incomplete"},
		{"xyz", "incomplete"}, // judged once the line is whole
		{"\r\n", "shorter than a reply code"},
		{"25\r\n", "shorter than a reply code"},
		{"2x0 ok\r\n", "reply code is not three digits"},
		{"150 ok\r\n", "reply code outside 2xx-5xx"},
		{"650 ok\r\n", "reply code outside 2xx-5xx"},
		{"250_ok\r\n", "reply code not followed by space or hyphen"},
		{"250-ok\r\n251 ok\r\n", "code differs from the reply's first line (250)"},
		{"250-ok\r\nbogus\r\n", "reply code is not three digits"},
		{"250-ok\r\nbogus", "incomplete"},
		{"250 " + strings.Repeat("x", MaxReplyLen), "toolong"},
		{strings.Repeat("250-x\r\n", MaxReplyLen/7+1), "toolong"},
		{strings.Repeat("250-x\r\n", MaxReplyLen/7) + "250 x\r\n", "toolong"},
	}
	for i, tt := range tests {
		_, n, err := ParseReply([]byte(tt.in))
		var got string
		var se *SyntaxError
		switch {
		case err == ErrIncomplete:
			got = "incomplete"
		case err == ErrReplyTooLong:
			got = "toolong"
		case errors.As(err, &se):
			got = se.Reason
		default:
			got = "unexpected " + errText(err)
		}
		if got != tt.want || n != 0 {
			t.Errorf("#%d: %.40q: got %q n=%d; want %q", i, tt.in, got, n, tt.want)
		}
	}
}

func errText(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

func TestSyntaxErrorCopiesLine(t *testing.T) {
	b := []byte("250-ok\r\nbad line\r\n")
	_, _, err := ParseReply(b)
	var se *SyntaxError
	if !errors.As(err, &se) {
		t.Fatalf("got %v; want *SyntaxError", err)
	}
	copy(b, strings.Repeat("X", len(b)))
	if got, want := string(se.Line), "bad line"; got != want {
		t.Fatalf("got %q; want %q", got, want)
	}
	if got, want := se.Error(), `codec: malformed reply line "bad line": reply code is not three digits`; got != want {
		t.Fatalf("got %q; want %q", got, want)
	}
}

func TestReplyClassAndClone(t *testing.T) {
	tests := []struct {
		code                      int
		class                     int
		positive, temporary, perm bool
	}{
		{220, 2, true, false, false},
		{354, 3, true, false, false},
		{421, 4, false, true, false},
		{554, 5, false, false, true},
	}
	for i, tt := range tests {
		r := Reply{Code: tt.code}
		if r.Class() != tt.class || r.Positive() != tt.positive || r.Temporary() != tt.temporary || r.Permanent() != tt.perm {
			t.Errorf("#%d: %d: got %d %v %v %v", i, tt.code, r.Class(), r.Positive(), r.Temporary(), r.Permanent())
		}
	}
	buf := []byte("250 2.0.0 ok\r\n")
	r, _, _ := ParseReply(buf)
	c := r.Clone()
	copy(buf, "XXXXXXXXXXXXXX")
	if got := c.Text(); got != "ok" || c.Enhanced.String() != "2.0.0" {
		t.Fatalf("clone aliases the input: %q", got)
	}
}

func TestReplyLines(t *testing.T) {
	r, _, err := ParseReply([]byte("250-a\r\n250-b\r\n250 c\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for text := range r.Lines {
		got = append(got, string(text))
		if len(got) == 2 {
			break
		}
	}
	if strings.Join(got, ",") != "a,b" {
		t.Fatalf("got %q; want [a b]", got)
	}
	n := 0
	allocs := testing.AllocsPerRun(100, func() {
		n = 0
		for text := range r.Lines {
			n += len(text)
		}
	})
	if allocs != 0 || n != 3 {
		t.Fatalf("got %v allocs, %d bytes; want 0, 3", allocs, n)
	}
}

func TestParseReplyAllocs(t *testing.T) {
	in := []byte(ehloReply)
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, err := ParseReply(in); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("got %v allocs; want 0", allocs)
	}
}

func TestEnhancedCode(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" = error
	}{
		{"2.0.0", "2.0.0"},
		{"5.7.26", "5.7.26"},
		{"4.999.999", "4.999.999"},
		{"5.01.1", "5.1.1"},
		{"3.0.0", ""},
		{"5.1", ""},
		{"5.1.", ""},
		{"5..1", ""},
		{"5.1.1 ", ""},
		{" 5.1.1", ""},
		{"5.1000.1", ""},
		{"5.1.1000", ""},
		{"", ""},
	}
	for i, tt := range tests {
		e, err := ParseEnhancedCode(tt.in)
		got := e.String()
		if err != nil {
			got = ""
		}
		if got != tt.want || (err == nil) != (tt.want != "") || e.IsZero() != (tt.want == "") {
			t.Errorf("#%d: %q: got %q, %v; want %q", i, tt.in, got, err, tt.want)
		}
	}
	if (EnhancedCode{}).String() != "" {
		t.Fatal("zero EnhancedCode should print as empty")
	}
}

func TestReplyError(t *testing.T) {
	r, _, _ := ParseReply([]byte("550-5.1.1 No such user\r\n550 5.1.1 here\r\n"))
	e := NewReplyError(CmdRcpt, r)
	if got, want := e.Error(), "RCPT TO: 550 5.1.1 No such user; here"; got != want {
		t.Fatalf("got %q; want %q", got, want)
	}
	if e.Temporary() {
		t.Fatal("550 reported temporary")
	}
	r, _, _ = ParseReply([]byte("421 closing\r\n"))
	e = NewReplyError(CmdBody, r)
	if got, want := e.Error(), "end of data: 421 closing"; got != want || !e.Temporary() {
		t.Fatalf("got %q %v; want %q true", got, e.Temporary(), want)
	}
	names := []string{}
	for c := CmdGreeting; c <= CmdQuit+1; c++ {
		names = append(names, c.String())
	}
	if got, want := strings.Join(names, ","), "greeting,EHLO,HELO,STARTTLS,AUTH,MAIL FROM,RCPT TO,DATA,end of data,RSET,NOOP,QUIT,Command(12)"; got != want {
		t.Fatalf("got %q; want %q", got, want)
	}
}
