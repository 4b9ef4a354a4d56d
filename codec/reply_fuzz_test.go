package codec

import (
	"bufio"
	"bytes"
	"errors"
	"net/textproto"
	"strings"
	"testing"
)

// FuzzParseReply checks ParseReply's invariants and compares it with
// net/textproto.Reader.ReadResponse.
//
// The comparable subset: textproto is more lenient than ParseReply (it
// accepts a continuation line with another code or no code by folding it
// into the text, codes 100-999, and a last line ended by EOF instead of a
// line ending), and stricter in one point (it refuses a bare "250" line,
// which RFC 5321 allows). So:
//
//   - when textproto returns a reply whose lines all end in LF, all carry the
//     first line's code (200-599) followed by '-' (all but the last) or ' '
//     (the last), and whose length is within MaxReplyLen, ParseReply must
//     accept it with the same code, the same length and the same text;
//   - when ParseReply accepts a reply with no bare-code line, textproto must
//     accept it too, with the same code and length.
func FuzzParseReply(f *testing.F) {
	for _, s := range []string{
		ehloReply,
		"220 mx.example.com ESMTP\r\n",
		"250 2.1.0 Ok\r\n",
		"550-5.1.1 No such\r\n550 5.1.1 user\r\n",
		"250-a\r\n251 b\r\n",
		"250-a\nbogus\n",
		"250\r\n",
		"421 4.7.0 Try again later\n",
		"250 ok",
		"354 go ahead\r\n250 next\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r, n, err := ParseReply(in)
		var se *SyntaxError
		switch {
		case err == nil:
			if n <= 0 || n > len(in) || n > MaxReplyLen || !bytes.Equal(r.Raw, in[:n]) || in[n-1] != '\n' {
				t.Fatalf("bad reply: n=%d Raw=%q", n, r.Raw)
			}
			if r.Code < 200 || r.Code > 599 {
				t.Fatalf("code %d", r.Code)
			}
			lines := 0
			for range r.Lines {
				lines++
			}
			if lines != bytes.Count(r.Raw, []byte{'\n'}) {
				t.Fatalf("Lines yielded %d lines for %q", lines, r.Raw)
			}
			_ = r.Text()
			_ = ParseEHLO(r)
		case err == ErrIncomplete:
			if len(in) > MaxReplyLen {
				t.Fatalf("incomplete past MaxReplyLen")
			}
		case err == ErrReplyTooLong:
			if len(in) <= MaxReplyLen {
				t.Fatalf("too long within MaxReplyLen")
			}
		case errors.As(err, &se):
			if se.Reason == "" {
				t.Fatalf("empty reason")
			}
		default:
			t.Fatalf("unexpected error %v", err)
		}

		src := bytes.NewReader(in)
		br := bufio.NewReader(src)
		code, msg, terr := textproto.NewReader(br).ReadResponse(0)
		used := len(in) - src.Len() - br.Buffered()
		if terr == nil && inSubset(in[:used]) {
			if err != nil || r.Code != code || n != used {
				t.Fatalf("textproto: %d %q (%d bytes); ParseReply: %d n=%d %v", code, msg, used, r.Code, n, err)
			}
			var texts []string
			for raw := r.Raw; len(raw) > 0; {
				var text []byte
				text, raw = nextReplyLine(raw)
				texts = append(texts, string(text))
			}
			if got := strings.Join(texts, "\n"); got != msg {
				t.Fatalf("text: got %q; textproto %q", got, msg)
			}
		}
		if err == nil && !hasBareCode(r.Raw) {
			if terr != nil || code != r.Code || used != n {
				t.Fatalf("ParseReply: %d n=%d; textproto: %d used=%d %v", r.Code, n, code, used, terr)
			}
		}
	})
}

// inSubset reports whether reply (what textproto consumed) is in the
// subset where ParseReply must agree; see FuzzParseReply.
func inSubset(reply []byte) bool {
	if len(reply) == 0 || len(reply) > MaxReplyLen || reply[len(reply)-1] != '\n' {
		return false
	}
	lines := bytes.SplitAfter(reply, []byte{'\n'})
	lines = lines[:len(lines)-1] // the empty piece after the last LF
	for i, l := range lines {
		l = trimLineEnd(l)
		if len(l) < 4 || !bytes.Equal(l[:3], lines[0][:3]) || l[0] < '2' || l[0] > '5' ||
			l[1] < '0' || l[1] > '9' || l[2] < '0' || l[2] > '9' {
			return false
		}
		if want := byte('-'); i == len(lines)-1 && l[3] != ' ' || i < len(lines)-1 && l[3] != want {
			return false
		}
	}
	return true
}

func hasBareCode(raw []byte) bool {
	for _, l := range bytes.SplitAfter(raw, []byte{'\n'}) {
		if len(trimLineEnd(l)) == 3 {
			return true
		}
	}
	return false
}
