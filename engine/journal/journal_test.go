package journal

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"
)

const testFP = 0x5eed5eed5eed5eed

// recFor is the record the tests write for row (version v): every field is a
// function of row, so a replayed record can be checked on its own.
func recFor(row uint32, v int) Record {
	st := StateDeferred
	if v > 0 {
		st = [...]State{StateDelivered, StateBounced, StateSuppressed, StateInvalid, StateExpired}[row%5]
	}
	return Record{
		Row: row, State: st, Code: uint16(200 + row%400), Attempts: uint8(v + 1),
		Enhanced: [3]uint8{uint8(2 + row%4), uint8(row % 8), uint8(row % 10)},
		Time:     1_700_000_000_000 + int64(row)*7 + int64(v),
	}
}

func openT(t testing.TB, path string, opts Options) *Journal {
	t.Helper()
	if opts.Fingerprint == 0 {
		opts.Fingerprint = testFP
	}
	j, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return j
}

func TestRecordRoundTrip(t *testing.T) {
	for i, r := range []Record{
		recFor(0, 0), recFor(1, 1), recFor(1<<32-1, 1),
		{Row: 7, State: StateExpired, Code: 65535, Enhanced: [3]uint8{255, 255, 255}, Attempts: 255, Time: -1},
	} {
		b := appendRecord(nil, &r)
		if len(b) != RecordSize {
			t.Fatalf("#%d: len %d; want %d", i, len(b), RecordSize)
		}
		got, ok := decodeRecord(b)
		if !ok || got != r {
			t.Fatalf("#%d: got %+v, %v; want %+v", i, got, ok, r)
		}
		// Every single-bit flip must be detected.
		for bit := 0; bit < 8*RecordSize; bit++ {
			c := append([]byte(nil), b...)
			c[bit/8] ^= 1 << (bit % 8)
			if got, ok := decodeRecord(c); ok {
				t.Fatalf("#%d: flip of bit %d accepted as %+v", i, bit, got)
			}
		}
	}
	// An all-zero record (a file extended with zeros by a crash) is corrupt.
	if _, ok := decodeRecord(make([]byte, RecordSize)); ok {
		t.Fatal("zero record accepted")
	}
}

func TestStateNames(t *testing.T) {
	for i, tt := range []struct {
		s     State
		name  string
		final bool
	}{
		{StateNone, "none", false},
		{StateDelivered, "delivered", true},
		{StateDeferred, "deferred", false},
		{StateBounced, "bounced", true},
		{StateSuppressed, "suppressed", true},
		{StateInvalid, "invalid", true},
		{StateExpired, "expired", true},
		{State(42), "state(42)", false},
	} {
		if got := tt.s.String(); got != tt.name {
			t.Errorf("#%d: got %q; want %q", i, got, tt.name)
		}
		if got := tt.s.Final(); got != tt.final {
			t.Errorf("#%d: %s.Final() = %v; want %v", i, tt.s, got, tt.final)
		}
	}
}

// TestConcurrentAppendReplay writes every row twice (deferred, then a final
// state) from several goroutines and checks that Replay returns the last
// record of every row and the right counts.
func TestConcurrentAppendReplay(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.journal")
	j := openT(t, path, Options{SyncInterval: 2 * time.Millisecond, MaxBatch: 256})
	const goroutines, n = 8, 20000
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for row := uint32(g); row < n; row += goroutines {
				for v := range 2 {
					if err := j.Append(recFor(row, v)); err != nil {
						t.Errorf("Append: %v", err)
						return
					}
				}
				if row%1000 == 0 {
					if err := j.Sync(); err != nil {
						t.Errorf("Sync: %v", err)
					}
				}
			}
		}()
	}
	wg.Wait()
	if err := j.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	st := j.Stats()
	if st.Appended != 2*n || st.Synced != 2*n {
		t.Fatalf("stats %+v; want %d appended and synced", st, 2*n)
	}
	if st.Syncs == 0 || st.MaxGroup < 2 {
		t.Fatalf("stats %+v: no group commit happened", st)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != headerSize+2*n*RecordSize {
		t.Fatalf("file size %v, %v; want %d", fi.Size(), err, headerSize+2*n*RecordSize)
	}

	s, err := Replay(path, testFP)
	if err != nil {
		t.Fatal(err)
	}
	if s.Records != 2*n || s.Len() != n || s.Dropped != 0 {
		t.Fatalf("Records %d Len %d Dropped %d; want %d, %d, 0", s.Records, s.Len(), s.Dropped, 2*n, n)
	}
	var want [numStates]int
	for row := uint32(0); row < n; row++ {
		got, ok := s.Get(int(row))
		if w := recFor(row, 1); !ok || got != w {
			t.Fatalf("row %d: got %+v, %v; want %+v", row, got, ok, w)
		}
		want[got.State]++
	}
	for st := range numStates {
		if s.Count(st) != want[st] {
			t.Errorf("Count(%s) = %d; want %d", st, s.Count(st), want[st])
		}
	}
	if s.Final() != n {
		t.Errorf("Final() = %d; want %d", s.Final(), n)
	}
	if _, ok := s.Get(n); ok {
		t.Error("Get past the end found a record")
	}
	if _, ok := s.Get(-1); ok {
		t.Error("Get(-1) found a record")
	}
}

// TestTornTail truncates the file mid-record and appends garbage: Replay keeps
// the intact records and reports the tail; Open cuts it and appends after.
func TestTornTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.journal")
	j := openT(t, path, Options{})
	for row := range uint32(100) {
		if err := j.Append(recFor(row, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	full := int64(headerSize + 100*RecordSize)
	if err := os.Truncate(path, full-10); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	garbage := []byte("this is not a record, it is the garbage a crash may leave")
	f.Write(garbage)
	f.Close()
	wantDropped := int64(RecordSize - 10 + len(garbage))

	s, err := Replay(path, testFP)
	if err != nil {
		t.Fatal(err)
	}
	if s.Records != 99 || s.Dropped != wantDropped {
		t.Fatalf("Records %d Dropped %d; want 99, %d", s.Records, s.Dropped, wantDropped)
	}
	for row := range uint32(99) {
		if got, ok := s.Get(int(row)); !ok || got != recFor(row, 1) {
			t.Fatalf("row %d: got %+v, %v", row, got, ok)
		}
	}
	if _, ok := s.Get(99); ok {
		t.Fatal("torn record 99 replayed")
	}

	j = openT(t, path, Options{})
	if st := j.Stats(); st.Recovered != 99 || st.Dropped != wantDropped {
		t.Fatalf("Open stats %+v; want Recovered 99, Dropped %d", st, wantDropped)
	}
	for row := uint32(99); row < 105; row++ {
		if err := j.Append(recFor(row, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Replay(path, testFP)
	if err != nil {
		t.Fatal(err)
	}
	if s.Records != 105 || s.Dropped != 0 || s.Len() != 105 {
		t.Fatalf("after reopen: Records %d Len %d Dropped %d; want 105, 105, 0", s.Records, s.Len(), s.Dropped)
	}
	if got, _ := s.Get(104); got != recFor(104, 1) {
		t.Fatalf("row 104: got %+v", got)
	}
}

// TestCorruptMiddle: a damaged record ends the replay there (later records,
// written after it in the same unsynced group, are not trusted).
func TestCorruptMiddle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.journal")
	j := openT(t, path, Options{})
	for row := range uint32(10) {
		j.Append(recFor(row, 1))
	}
	j.Close()
	b, _ := os.ReadFile(path)
	b[headerSize+4*RecordSize+13] ^= 0x40
	os.WriteFile(path, b, 0o644)
	s, err := Replay(path, testFP)
	if err != nil {
		t.Fatal(err)
	}
	if s.Records != 4 || s.Dropped != 6*RecordSize {
		t.Fatalf("Records %d Dropped %d; want 4, %d", s.Records, s.Dropped, 6*RecordSize)
	}
}

func TestHeaderErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "h.journal")
	j := openT(t, path, Options{Fingerprint: Fingerprint("list.csv", []byte("tmpl A"))})
	j.Append(recFor(1, 1))
	j.Close()

	other := Fingerprint("list.csv", []byte("tmpl B"))
	if _, err := Open(path, Options{Fingerprint: other}); !errors.Is(err, ErrFingerprint) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open with another fingerprint: %v; want ErrFingerprint naming the file", err)
	}
	if _, err := Replay(path, other); !errors.Is(err, ErrFingerprint) {
		t.Fatalf("Replay with another fingerprint: %v; want ErrFingerprint", err)
	}
	// Truncate starts afresh even for another campaign.
	j = openT(t, path, Options{Fingerprint: other, Truncate: true})
	j.Close()
	if s, err := Replay(path, other); err != nil || s.Len() != 0 {
		t.Fatalf("after Truncate: %v, Len %d; want empty", err, s.Len())
	}

	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, []byte("email,name\nbob@example.com,Bob\n"), 0o644)
	if _, err := Open(junk, Options{Fingerprint: testFP}); !errors.Is(err, ErrNotJournal) {
		t.Fatalf("Open(csv): %v; want ErrNotJournal", err)
	}
	if _, err := Replay(junk, testFP); !errors.Is(err, ErrNotJournal) {
		t.Fatalf("Replay(csv): %v; want ErrNotJournal", err)
	}
	if _, err := Replay(filepath.Join(dir, "missing"), testFP); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Replay(missing): %v; want ErrNotExist", err)
	}

	// A header torn during creation holds no records: Replay is empty, Open
	// writes a new header.
	torn := filepath.Join(dir, "torn")
	os.WriteFile(torn, []byte(magic[:5]), 0o644)
	if s, err := Replay(torn, testFP); err != nil || s.Len() != 0 || s.Dropped != 5 {
		t.Fatalf("Replay(torn header): %v, %+v", err, s)
	}
	j = openT(t, torn, Options{})
	j.Append(recFor(3, 1))
	j.Close()
	if s, err := Replay(torn, testFP); err != nil || s.Len() != 1 {
		t.Fatalf("after reopening a torn header: %v, Len %d", err, s.Len())
	}

	if Fingerprint("ab", []byte("c")) == Fingerprint("a", []byte("bc")) {
		t.Fatal("Fingerprint confuses the list/template boundary")
	}
}

func TestLocked(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("flock checked on linux")
	}
	path := filepath.Join(t.TempDir(), "l.journal")
	j := openT(t, path, Options{})
	defer j.Close()
	if _, err := Open(path, Options{Fingerprint: testFP}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v; want ErrLocked", err)
	}
}

func TestAppendErrors(t *testing.T) {
	j := openT(t, filepath.Join(t.TempDir(), "e.journal"), Options{})
	if err := j.Append(Record{Row: 1}); err != ErrState {
		t.Fatalf("Append(StateNone) = %v; want ErrState", err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Append(recFor(1, 1)); err != ErrClosed {
		t.Fatalf("Append after Close = %v; want ErrClosed", err)
	}
	if err := j.Close(); err != ErrClosed {
		t.Fatalf("second Close = %v; want ErrClosed", err)
	}
	if err := j.Sync(); err != nil {
		t.Fatalf("Sync after Close = %v; want nil (nothing pending)", err)
	}
}

// TestGroupTriggers: with a very long SyncInterval, a full batch is written at
// once, and Sync writes the partial rest.
func TestGroupTriggers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.journal")
	j := openT(t, path, Options{SyncInterval: time.Hour, MaxBatch: 10})
	defer j.Close()
	for row := range uint32(10) {
		j.Append(recFor(row, 1))
	}
	deadline := time.Now().Add(5 * time.Second)
	for j.Stats().Synced < 10 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if st := j.Stats(); st.Synced != 10 || st.Syncs != 1 {
		t.Fatalf("after a full batch of 10: %+v; want 10 synced by one fsync", st)
	}
	for row := uint32(10); row < 13; row++ {
		j.Append(recFor(row, 1))
	}
	time.Sleep(30 * time.Millisecond)
	if st := j.Stats(); st.Synced != 10 {
		t.Fatalf("a partial batch was written before the interval: %+v", st)
	}
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	if st := j.Stats(); st.Synced != 13 || st.Syncs != 2 {
		t.Fatalf("after Sync: %+v; want 13 synced by 2 fsyncs", st)
	}
	// Sync means on disk: a concurrent Replay sees all 13.
	if s, err := Replay(path, testFP); err != nil || s.Len() != 13 {
		t.Fatalf("Replay of an open journal: %v, Len %d; want 13", err, s.Len())
	}
}

// TestWriteBeforeSync: a record reaches the file (and survives kill -9)
// within WriteInterval, long before its fsync is due.
func TestWriteBeforeSync(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.journal")
	j := openT(t, path, Options{WriteInterval: 2 * time.Millisecond, SyncInterval: time.Hour})
	defer j.Close()
	j.Append(recFor(1, 1))
	deadline := time.Now().Add(5 * time.Second)
	for j.Stats().Written < 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if st := j.Stats(); st.Written != 1 || st.Synced != 0 || st.Writes != 1 || st.Syncs != 0 {
		t.Fatalf("stats %+v; want 1 written, not yet synced", st)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != headerSize+RecordSize {
		t.Fatalf("file size %d, %v; want %d", fi.Size(), err, headerSize+RecordSize)
	}
}

// TestIntervalFlush: without Sync, records reach the file within the interval.
func TestIntervalFlush(t *testing.T) {
	j := openT(t, filepath.Join(t.TempDir(), "i.journal"), Options{SyncInterval: 5 * time.Millisecond})
	defer j.Close()
	j.Append(recFor(1, 1))
	deadline := time.Now().Add(5 * time.Second)
	for j.Stats().Synced < 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if st := j.Stats(); st.Synced != 1 || st.Syncs != 1 {
		t.Fatalf("stats %+v; want one record in one group", st)
	}
}

// TestBackPressure: Append blocks while MaxPending records wait, and resumes.
func TestBackPressure(t *testing.T) {
	j := openT(t, filepath.Join(t.TempDir(), "b.journal"), Options{SyncInterval: time.Millisecond, MaxBatch: 4, MaxPending: 8})
	for row := range uint32(1000) {
		if err := j.Append(recFor(row, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if st := j.Stats(); st.Synced != 1000 || st.MaxGroup > 8 {
		t.Fatalf("stats %+v; want 1000 synced in groups of at most 8", st)
	}
}

func TestSnapshotSparse(t *testing.T) {
	s := &Snapshot{}
	for _, r := range []Record{recFor(0, 0), recFor(5, 1), recFor(4_000_000_000, 1), recFor(0, 1), recFor(4_000_000_000, 0)} {
		s.put(&r)
	}
	if s.Len() != 3 || s.Records != 5 {
		t.Fatalf("Len %d Records %d; want 3, 5", s.Len(), s.Records)
	}
	if len(s.dense) > 1<<17 {
		t.Fatalf("dense slice grew to %d for a far row", len(s.dense))
	}
	for _, w := range []Record{recFor(0, 1), recFor(5, 1), recFor(4_000_000_000, 0)} {
		if got, ok := s.Get(int(w.Row)); !ok || got != w {
			t.Fatalf("Get(%d) = %+v, %v; want %+v", w.Row, got, ok, w)
		}
	}
	if s.Count(StateDeferred) != 1 || s.Final() != 2 {
		t.Fatalf("Count(deferred) %d Final %d; want 1, 2", s.Count(StateDeferred), s.Final())
	}
	var nilSnap *Snapshot
	if _, ok := nilSnap.Get(1); ok || nilSnap.Len() != 0 {
		t.Fatal("nil Snapshot not empty")
	}
}

func TestAppendAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	j := openT(t, filepath.Join(t.TempDir(), "a.journal"), Options{SyncInterval: time.Millisecond})
	defer j.Close()
	r := recFor(9, 1)
	for range 5000 { // grow the buffers to their working size
		j.Append(r)
	}
	j.Sync()
	if n := testing.AllocsPerRun(1000, func() { j.Append(r) }); n != 0 {
		t.Fatalf("Append allocates %v times; want 0", n)
	}
}

func TestSlotSize(t *testing.T) {
	if n := unsafe.Sizeof(slot{}); n != 16 {
		t.Fatalf("slot is %d bytes; want 16", n)
	}
}

// FuzzReplay: whatever follows a valid header, Replay accounts for every
// byte (intact records + dropped tail) and returns only valid states.
func FuzzReplay(f *testing.F) {
	r := recFor(3, 1)
	f.Add(appendRecord(nil, &r))
	f.Add(append(appendRecord(nil, &r), "garbage"...))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, tail []byte) {
		path := filepath.Join(t.TempDir(), "f.journal")
		data := append(appendHeader(nil, testFP, time.Now()), tail...)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := Replay(path, testFP)
		if err != nil {
			t.Fatal(err)
		}
		if int64(headerSize+s.Records*RecordSize)+s.Dropped != int64(len(data)) {
			t.Fatalf("%d records + %d dropped bytes do not add up to %d", s.Records, s.Dropped, len(data))
		}
		for st := range numStates {
			if !st.Valid() && s.Count(st) != 0 {
				t.Fatalf("%d rows in invalid state %s", s.Count(st), st)
			}
		}
	})
}
