package scheduler

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// Suppression is the list of addresses later campaigns must not mail (hard
// bounces: invalid-recipient, bad-domain). The file holds one address per
// line, optionally followed by a tab, the class and the time; '#' starts a
// comment. Lookups ignore ASCII case. Safe for concurrent use.
type Suppression struct {
	mu   sync.Mutex
	path string
	set  map[string]struct{}
	f    *os.File
}

// LoadSuppression reads path (a missing file is an empty list) and keeps it
// open for appending.
func LoadSuppression(path string) (*Suppression, error) {
	s := &Suppression{path: path, set: make(map[string]struct{})}
	f, err := os.Open(path)
	switch {
	case err == nil:
		sc := bufio.NewScanner(f)
		line := 0
		for sc.Scan() {
			line++
			t := strings.TrimSpace(sc.Text())
			if t == "" || t[0] == '#' {
				continue
			}
			addr, _, _ := strings.Cut(t, "\t")
			if !strings.Contains(addr, "@") {
				f.Close()
				return nil, fmt.Errorf("%s:%d: %q is not an address", path, line, addr)
			}
			s.set[strings.ToLower(strings.TrimSpace(addr))] = struct{}{}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("scheduler: suppression %s: %w", path, err)
		}
	case errors.Is(err, os.ErrNotExist):
	default:
		return nil, fmt.Errorf("scheduler: suppression: %w", err)
	}
	return s, nil
}

// Has reports whether addr is suppressed.
func (s *Suppression) Has(addr string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.set[strings.ToLower(addr)]
	return ok
}

// Len is the number of suppressed addresses.
func (s *Suppression) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.set)
}

// Add suppresses addr and appends it to the file (once).
func (s *Suppression) Add(addr, class string) error {
	key := strings.ToLower(addr)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.set[key]; ok {
		return nil
	}
	s.set[key] = struct{}{}
	if s.f == nil {
		f, err := os.OpenFile(s.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("scheduler: suppression: %w", err)
		}
		s.f = f
	}
	_, err := fmt.Fprintf(s.f, "%s\t%s\t%s\n", addr, class, time.Now().UTC().Format(time.RFC3339))
	return err
}

// Close closes the file.
func (s *Suppression) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}
