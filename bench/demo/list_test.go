package demo

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

// TestWriteListUnchanged pins the demo's generated lists: the digests were
// taken before WriteListWith was added, so the demo's list stays
// byte-identical for the same arguments.
func TestWriteListUnchanged(t *testing.T) {
	for _, c := range []struct {
		n, domains int
		seed       uint64
		bad        int
		sum        string
	}{
		{20000, 200, 42, 2, "de9954081680218dd5e01275887797a00d09ccfaf68a8577ef5287d73d5b3a84"},
		{1000, 50, 7, 0, "834d2b13588f2dd14add865bc7d11adaf1a03b245e330c30ac71295a99ad04e7"},
		{500, 10, 1, 5, "609f50b9dbec493fb437decf4248fb90eb9b62661a3a649b01012f44255d371d"},
	} {
		var a, b bytes.Buffer
		if err := WriteList(&a, c.n, Mix(c.domains), c.seed, c.bad); err != nil {
			t.Fatal(err)
		}
		if got := sha256.Sum256(a.Bytes()); hex.EncodeToString(got[:]) != c.sum {
			t.Errorf("WriteList(%d, Mix(%d), %d, %d): sha256 %x; want %s", c.n, c.domains, c.seed, c.bad, got, c.sum)
		}
		if err := WriteListWith(&b, c.n, Mix(c.domains), c.seed, ListOptions{BadRows: c.bad}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Errorf("WriteListWith differs from WriteList for %+v", c)
		}
	}
}

// TestWriteListNoPermfail: without the scripted failures every row is a
// userNNNNNN@ address and only the permfail rows differ from the demo's list.
func TestWriteListNoPermfail(t *testing.T) {
	var a, b bytes.Buffer
	if err := WriteList(&a, 5000, Mix(50), 3, 0); err != nil {
		t.Fatal(err)
	}
	if err := WriteListWith(&b, 5000, Mix(50), 3, ListOptions{NoPermfail: true}); err != nil {
		t.Fatal(err)
	}
	la, lb := strings.Split(a.String(), "\n"), strings.Split(b.String(), "\n")
	if len(la) != len(lb) {
		t.Fatalf("%d lines; want %d", len(lb), len(la))
	}
	permfails := 0
	for i := 1; i < len(lb)-1; i++ {
		if !strings.HasPrefix(lb[i], "user") {
			t.Fatalf("line %d: %q; want a userNNNNNN@ address", i+1, lb[i])
		}
		if la[i] != lb[i] {
			if !strings.HasPrefix(la[i], "permfail@") || la[i][strings.IndexByte(la[i], '@'):] != lb[i][strings.IndexByte(lb[i], '@'):] {
				t.Fatalf("line %d: %q vs %q: more than the local part differs", i+1, la[i], lb[i])
			}
			permfails++
		}
	}
	if permfails == 0 {
		t.Fatal("the reference list has no permfail@ rows; the test proves nothing")
	}
}
