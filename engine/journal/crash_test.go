package journal

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	crashEnvPath = "SPATE_JOURNAL_CRASH_PATH"
	crashEnvBase = "SPATE_JOURNAL_CRASH_BASE"
	crashWriters = 4
)

// TestCrashChild is the child process of TestCrash: it appends records from
// crashWriters goroutines as fast as it can, and a syncer repeatedly takes the
// per-writer counts of returned Appends, calls Sync and then prints
// "S base c0 c1 c2 c3". It runs until killed.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashEnvPath)
	if path == "" {
		t.Skip("child process of TestCrash")
	}
	base, _ := strconv.Atoi(os.Getenv(crashEnvBase))
	j, err := Open(path, Options{Fingerprint: testFP, SyncInterval: 2 * time.Millisecond, MaxBatch: 512})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(3)
	}
	var counts [crashWriters]atomic.Uint64
	for g := range crashWriters {
		go func() {
			for k := uint64(0); ; k++ {
				row := uint32(base) + uint32(k)*crashWriters + uint32(g)
				if err := j.Append(recFor(row, 1)); err != nil {
					fmt.Fprintln(os.Stderr, "child: Append:", err)
					os.Exit(3)
				}
				counts[g].Store(k + 1)
				if k%64 == 63 {
					time.Sleep(200 * time.Microsecond) // keep the file small
				}
			}
		}()
	}
	os.Stdout.WriteString("R\n")
	for {
		line := "S " + strconv.Itoa(base)
		for g := range crashWriters {
			line += " " + strconv.FormatUint(counts[g].Load(), 10)
		}
		if err := j.Sync(); err != nil {
			fmt.Fprintln(os.Stderr, "child: Sync:", err)
			os.Exit(3)
		}
		os.Stdout.WriteString(line + "\n")
	}
}

// TestCrash kills a child process that appends and syncs at random moments
// with SIGKILL, then checks that every record whose Append returned before
// the last completed Sync is replayed intact, that no damaged record is ever
// replayed, and that each writer's records form a prefix of what it wrote.
// The next child continues the same journal (Open truncates the torn tail).
//
// A killed process loses nothing the kernel has accepted, so this tests the
// write path and tail recovery; it cannot test fsync against power loss.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	path := filepath.Join(t.TempDir(), "crash.journal")
	rounds := 6
	base := 0
	guaranteed, droppedTotal, total := 0, int64(0), 0
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnvPath+"="+path, crashEnvBase+"="+strconv.Itoa(base))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var (
			mu    sync.Mutex
			last  string
			ready = make(chan struct{})
			eof   = make(chan struct{})
		)
		go func() {
			defer close(eof)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				switch l := sc.Text(); {
				case l == "R":
					close(ready)
				case strings.HasPrefix(l, "S "):
					mu.Lock()
					last = l
					mu.Unlock()
				}
			}
		}()
		select {
		case <-ready:
		case <-eof:
			cmd.Wait()
			t.Fatalf("round %d: child exited early: %s", round, stderr.String())
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("round %d: child not ready", round)
		}
		time.Sleep(time.Duration(20+rand.IntN(130)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-eof
		cmd.Wait()
		mu.Lock()
		line := last
		mu.Unlock()

		var want [crashWriters]uint64
		if line != "" {
			f := strings.Fields(line)
			if len(f) != 2+crashWriters || f[1] != strconv.Itoa(base) {
				t.Fatalf("round %d: bad line %q", round, line)
			}
			for g := range crashWriters {
				want[g], _ = strconv.ParseUint(f[2+g], 10, 64)
			}
		}

		s, err := Replay(path, testFP)
		if err != nil {
			t.Fatalf("round %d: Replay: %v", round, err)
		}
		droppedTotal += s.Dropped
		maxRow := base - 1
		for g := range crashWriters {
			// Rows of writer g present in the journal must be a prefix
			// 0..have-1 of what it wrote, and cover what Sync promised.
			have := uint64(0)
			for ; ; have++ {
				row := base + int(have)*crashWriters + g
				r, ok := s.Get(row)
				if !ok {
					break
				}
				if r != recFor(uint32(row), 1) {
					t.Fatalf("round %d: row %d replayed as %+v; want %+v", round, row, r, recFor(uint32(row), 1))
				}
				maxRow = max(maxRow, row)
			}
			if have < want[g] {
				t.Fatalf("round %d: writer %d: %d records replayed; %d were synced before the kill", round, g, have, want[g])
			}
			guaranteed += int(want[g])
			total += int(have)
		}
		// Nothing beyond the prefixes: every replayed row is accounted for.
		if s.Len() != total || s.Records != total {
			t.Fatalf("round %d: Len %d, Records %d; want %d (the writers' prefixes)", round, s.Len(), s.Records, total)
		}
		base = maxRow + 1
	}
	if guaranteed == 0 {
		t.Fatal("no Sync completed in any round: the test checked nothing")
	}
	t.Logf("%d rounds: %d records in the journal, %d guaranteed by Sync, %d torn-tail bytes dropped", rounds, total, guaranteed, droppedTotal)
}
