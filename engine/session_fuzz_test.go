package engine

import (
	"bytes"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzSessionSplit replays each golden transcript with the server's bytes
// cut at fuzzed points: the client must write the same bytes and report
// the same events as when every reply arrives whole.
func FuzzSessionSplit(f *testing.F) {
	files, _ := filepath.Glob("testdata/session/*.txt")
	if len(files) == 0 {
		f.Fatal("no transcripts")
	}
	var trs []*transcript
	type golden struct {
		client []byte
		events []string
	}
	var want []golden
	for _, p := range files {
		tr := loadTranscript(f, p)
		c, e := replay(f, tr, nil)
		trs = append(trs, tr)
		want = append(want, golden{c, e})
	}
	for i := range trs {
		f.Add(uint8(i), []byte{1})
		f.Add(uint8(i), []byte{3, 7, 2, 250, 0, 5})
		f.Add(uint8(i), []byte{0, 0, 9, 1, 1, 1, 40})
	}
	f.Fuzz(func(t *testing.T, which uint8, cutBytes []byte) {
		i := int(which) % len(trs)
		cuts := make([]int, len(cutBytes))
		for k, c := range cutBytes {
			cuts[k] = int(c)
		}
		if len(cuts) == 0 {
			cuts = []int{0}
		}
		client, events := replay(t, trs[i], cuts)
		if !bytes.Equal(client, want[i].client) {
			t.Fatalf("%s cut at %v: client wrote\n%q\nwant\n%q", trs[i].name, cuts, client, want[i].client)
		}
		if !slices.Equal(events, want[i].events) {
			t.Fatalf("%s cut at %v: events\n%q\nwant\n%q", trs[i].name, cuts, events, want[i].events)
		}
	})
}
