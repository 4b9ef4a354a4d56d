package proctest

import (
	"os"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// The command name holds a space and a parenthesis: fields are counted
	// after the last ')'. utime 250 + stime 50 ticks = 3 s.
	stat := []byte("4242 (a) b) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 1000 1000 100\n")
	if got := parseStatCPU(stat); got != 3*time.Second {
		t.Errorf("parseStatCPU = %v; want 3s", got)
	}
	for _, bad := range []string{"", "4242 no parenthesis", "4242 (a) S 1 2"} {
		if got := parseStatCPU([]byte(bad)); got != 0 {
			t.Errorf("parseStatCPU(%q) = %v; want 0", bad, got)
		}
	}
}

func TestParseIO(t *testing.T) {
	io := []byte("rchar: 100\nwchar: 200\nsyscr: 7\nsyscw: 9\nread_bytes: 0\n")
	if r, w := parseIO(io); r != 7 || w != 9 {
		t.Errorf("parseIO = %d, %d; want 7, 9", r, w)
	}
}

// TestSelf: on Linux a read shows in syscr, and this process holds memory
// and, after 50 ms of spinning, has used CPU by both counts.
func TestSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/io"); err != nil {
		t.Skip("no /proc/self/io")
	}
	r0, w0 := SelfSyscalls()
	if _, err := os.ReadFile("/proc/self/stat"); err != nil {
		t.Fatal(err)
	}
	if r1, w1 := SelfSyscalls(); r1 <= r0 || w1 < w0 {
		t.Errorf("syscr %d then %d, syscw %d then %d; want syscr to grow", r0, r1, w0, w1)
	}
	if SelfRSS() <= 0 {
		t.Error("SelfRSS = 0")
	}
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
	}
	if SelfCPU() <= 0 || CPU(os.Getpid()) <= 0 {
		t.Errorf("SelfCPU %v, CPU(self) %v; want > 0", SelfCPU(), CPU(os.Getpid()))
	}
}
