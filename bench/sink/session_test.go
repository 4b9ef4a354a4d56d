package sink

import (
	"strings"
	"testing"
)

// converse feeds the client's bytes to a fresh session in pieces of at
// most step bytes and returns every reply and the last action.
func converse(t *testing.T, srv *Server, in string, step int) (string, action) {
	t.Helper()
	s := &session{srv: srv}
	var out, pending []byte
	act := actNone
	for len(in) > 0 && act == actNone {
		k := min(step, len(in))
		pending = append(pending, in[:k]...)
		in = in[k:]
		var n int
		n, out, act = s.feed(pending, out)
		pending = pending[n:]
	}
	srv.flushReplies(s)
	return string(out), act
}

func testServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.Chunking = true
	cfg.Record = true
	srv, err := newServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

const ehlo = "EHLO c.test\r\n"

// TestBDAT: pipelined BDAT transactions, split at every step size, give
// the same replies and record the chunks' octets as they are (a line
// starting with a dot is not un-stuffed).
func TestBDAT(t *testing.T) {
	in := ehlo +
		"MAIL FROM:<a@s.test>\r\nRCPT TO:<b@r.test>\r\nBDAT 16 LAST\r\n.dot\r\nline two\r\n" +
		"MAIL FROM:<a@s.test>\r\nRCPT TO:<c@r.test>\r\nRCPT TO:<permfail@r.test>\r\nBDAT 4\r\nabcdBDAT 0\r\nBDAT 3 LAST\r\nef\n" +
		"QUIT\r\n"
	want := "250-sink.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 ENHANCEDSTATUSCODES\r\n" +
		"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: queued\r\n" +
		"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 No such user\r\n250 2.0.0 Chunk received\r\n250 2.0.0 Chunk received\r\n250 2.0.0 Ok: queued\r\n" +
		"221 2.0.0 Bye\r\n"
	for _, step := range []int{1, 2, 3, 7, 1 << 20} {
		srv := testServer(t, Config{})
		got, act := converse(t, srv, in, step)
		if got != want || act != actClose {
			t.Fatalf("step %d: got %q (%v); want %q", step, got, act, want)
		}
		rec := srv.Received()
		if len(rec) != 2 || string(rec[0].Data) != ".dot\r\nline two\r\n" || string(rec[1].Data) != "abcdef\n" ||
			strings.Join(rec[1].Rcpts, ",") != "c@r.test" {
			t.Fatalf("step %d: received %+v", step, rec)
		}
		if st := srv.Stats(); st.Messages != 2 || st.Recipients != 2 || st.Bytes != 16+7 {
			t.Fatalf("step %d: stats %v", step, st)
		}
	}
}

// TestBDATRefused: a refused BDAT is still read to its last octet, so the
// next command is understood; the transaction ends with BDAT LAST.
func TestBDATRefused(t *testing.T) {
	for i, c := range []struct {
		cfg       Config
		in, want  string
		delivered int64
	}{
		{Config{}, "BDAT 6 LAST\r\nMAIL F" + "NOOP\r\n", "503 5.5.1 Need MAIL\r\n250 2.0.0 Ok\r\n", 0},
		{Config{}, "MAIL FROM:<a@s>\r\nRCPT TO:<tempfail@r>\r\nBDAT 11 LAST\r\nRCPT TO:<\r\nMAIL FROM:<a@s>\r\n",
			"250 2.1.0 Ok\r\n450 4.2.0 Mailbox temporarily unavailable\r\n554 5.5.1 No valid recipients\r\n250 2.1.0 Ok\r\n", 0},
		{Config{MaxMessageSize: 5}, "MAIL FROM:<a@s>\r\nRCPT TO:<b@r>\r\nBDAT 6 LAST\r\n123456MAIL FROM:<a@s>\r\n",
			"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n552 5.3.4 Message size exceeds fixed limit\r\n250 2.1.0 Ok\r\n", 0},
		{Config{MaxMessageSize: 5}, "MAIL FROM:<a@s>\r\nRCPT TO:<b@r>\r\nBDAT 6\r\n123456BDAT 1 LAST\r\nxRSET\r\n",
			"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n552 5.3.4 Message size exceeds fixed limit\r\n554 5.5.0 Transaction failed\r\n250 2.0.0 Ok\r\n", 0},
		{Config{}, "MAIL FROM:<a@s>\r\nRCPT TO:<b@r>\r\nBDAT 1\r\nxDATA\r\nBDAT 0 LAST\r\n",
			"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Chunk received\r\n503 5.5.1 DATA inside a BDAT transaction\r\n250 2.0.0 Ok: queued\r\n", 1},
	} {
		for _, step := range []int{1, 5, 1 << 20} {
			srv := testServer(t, c.cfg)
			got, act := converse(t, srv, ehlo+c.in, step)
			got = got[strings.Index(got, "250 ENHANCEDSTATUSCODES\r\n")+len("250 ENHANCEDSTATUSCODES\r\n"):]
			if got != c.want || act != actNone || srv.Messages() != c.delivered {
				t.Errorf("#%d step %d: got %q (%v, %d delivered); want %q", i, step, got, act, srv.Messages(), c.want)
			}
		}
	}
}

// TestBDATFaults: drop-in-data@ closes as soon as chunk octets arrive; a
// malformed size closes (the chunk's end is unknown); BDAT is unknown
// when CHUNKING is not offered.
func TestBDATFaults(t *testing.T) {
	srv := testServer(t, Config{})
	got, act := converse(t, srv, ehlo+"MAIL FROM:<a@s>\r\nRCPT TO:<drop-in-data@r>\r\nBDAT 5 LAST\r\nab", 1<<20)
	if act != actClose || srv.Messages() != 0 || !strings.HasSuffix(got, "250 2.1.5 Ok\r\n") {
		t.Fatalf("drop-in-data: got %q, %v, %d delivered", got, act, srv.Messages())
	}
	for _, bad := range []string{"BDAT\r\n", "BDAT x LAST\r\n", "BDAT -1\r\n", "BDAT 1 FIRST\r\n", "BDAT +1\r\n"} {
		got, act := converse(t, testServer(t, Config{}), bad, 1<<20)
		if act != actClose || !strings.HasPrefix(got, "501 ") {
			t.Errorf("%q: got %q, %v; want 501 and close", bad, got, act)
		}
	}
	plain, err := newServer(Config{})
	if err != nil {
		t.Fatal(err)
	}
	got, _ = converse(t, plain, ehlo+"BDAT 1 LAST\r\n", 1<<20)
	if strings.Contains(got, "CHUNKING") || !strings.HasSuffix(got, "500 5.5.2 Command not recognized\r\n") {
		t.Fatalf("without Chunking: got %q", got)
	}
}
