package codec

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"io"
	"net/textproto"
	"strings"
	"testing"
)

// Reply parsing: ParseReply on a 10-line EHLO reply against
// textproto.Reader.ReadResponse (the parser net/smtp uses).

func BenchmarkParseReplyEHLO(b *testing.B) {
	in := []byte(ehloReply)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ParseReply(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseReplyEHLOTextproto(b *testing.B) {
	in := []byte(ehloReply)
	src := bytes.NewReader(in)
	br := bufio.NewReader(src)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		src.Reset(in)
		br.Reset(src)
		if _, _, err := textproto.NewReader(br).ReadResponse(250); err != nil {
			b.Fatal(err)
		}
	}
}

// EHLO capabilities: ParseEHLO against net/smtp's way (split the text from
// ReadResponse into a keyword map).

func BenchmarkParseEHLO(b *testing.B) {
	r := mustParseReply(b, ehloReply)
	b.ReportAllocs()
	for b.Loop() {
		if c := ParseEHLO(r); !c.Pipelining {
			b.Fatal("no PIPELINING")
		}
	}
}

func BenchmarkParseEHLONetSMTPStyle(b *testing.B) {
	_, msg, err := textproto.NewReader(bufio.NewReader(strings.NewReader(ehloReply))).ReadResponse(250)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		ext := make(map[string]string)
		for _, line := range strings.Split(msg, "\n")[1:] {
			args := strings.SplitN(line, " ", 2)
			if len(args) > 1 {
				ext[args[0]] = args[1]
			} else {
				ext[args[0]] = ""
			}
		}
		if _, ok := ext["PIPELINING"]; !ok {
			b.Fatal("no PIPELINING")
		}
	}
}

// Command encoding: one pipelined envelope (MAIL, 3 RCPT, DATA) with Append*
// into a reused buffer, against textproto.Writer.PrintfLine (what net/smtp
// does per command).

func BenchmarkAppendEnvelope(b *testing.B) {
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendMailFrom(buf[:0], "bounce+c42.r1234@news.example.com", MailParams{Size: 20480, EightBit: true})
		buf = AppendRcptTo(buf, "alice@example.org")
		buf = AppendRcptTo(buf, "bob@example.org")
		buf = AppendRcptTo(buf, "carol@example.org")
		buf = AppendData(buf)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkAppendEnvelopeTextproto(b *testing.B) {
	bw := bufio.NewWriter(io.Discard)
	w := textproto.NewWriter(bw)
	b.ReportAllocs()
	for b.Loop() {
		w.PrintfLine("MAIL FROM:<%s> SIZE=%d BODY=8BITMIME", "bounce+c42.r1234@news.example.com", 20480)
		w.PrintfLine("RCPT TO:<%s>", "alice@example.org")
		w.PrintfLine("RCPT TO:<%s>", "bob@example.org")
		w.PrintfLine("RCPT TO:<%s>", "carol@example.org")
		w.PrintfLine("DATA")
	}
}

func BenchmarkAppendAuthPlain(b *testing.B) {
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendAuthPlain(buf[:0], "", "user@example.com", "correct horse battery staple")
	}
}

func BenchmarkAppendAuthPlainStdlib(b *testing.B) {
	bw := bufio.NewWriter(io.Discard)
	w := textproto.NewWriter(bw)
	b.ReportAllocs()
	for b.Loop() {
		resp := []byte("\x00user@example.com\x00correct horse battery staple")
		w.PrintfLine("AUTH PLAIN %s", base64.StdEncoding.EncodeToString(resp))
	}
}
