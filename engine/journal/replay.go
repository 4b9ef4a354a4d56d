package journal

import (
	"bufio"
	"fmt"
	"os"
	"time"
)

// Snapshot is the state of a campaign as its journal tells it: the last
// record of every row. Its methods are safe for concurrent readers; it is
// never modified after Replay returns. A nil *Snapshot is empty.
type Snapshot struct {
	dense  []slot            // indexed by row; state StateNone means absent
	sparse map[uint32]Record // rows far beyond the dense range (never in practice)
	rows   int
	counts [numStates]int

	// Records is the number of intact records read (all rows, all states).
	Records int
	// Dropped is the size in bytes of the torn or corrupt tail that was
	// ignored (a crash between write and fsync leaves one).
	Dropped int64
	// Created is when the journal was created.
	Created time.Time
}

// slot is a Record without its row (the index): 16 bytes instead of 24.
type slot struct {
	time     int64
	code     uint16
	enhanced [3]uint8
	state    State
	attempts uint8
}

func (s slot) record(row uint32) Record {
	return Record{Row: row, State: s.state, Code: s.code, Enhanced: s.enhanced, Attempts: s.attempts, Time: s.time}
}

// Replay reads the journal at path, which must carry fingerprint, and returns
// the last record of each row. It reads only whole, intact records and stops
// at the first torn or corrupt one, reporting the ignored bytes in
// Snapshot.Dropped; it never modifies the file (Open truncates the tail).
// Errors wrap os.ErrNotExist, ErrNotJournal, ErrVersion or ErrFingerprint.
func Replay(path string, fingerprint uint64) (*Snapshot, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	s := &Snapshot{}
	if n := st.Size() / RecordSize; n > 0 {
		s.dense = make([]slot, 0, min(n, 1<<20))
	}
	h, end, err := scan(bufio.NewReaderSize(f, 64<<10), path, fingerprint, s.put)
	if err != nil {
		return nil, err
	}
	s.Created = h.created
	s.Dropped = st.Size() - end
	return s, nil
}

// put records r as its row's latest state.
func (s *Snapshot) put(r *Record) {
	s.Records++
	if old, ok := s.Get(int(r.Row)); ok {
		s.counts[old.State]--
	} else {
		s.rows++
	}
	s.counts[r.State]++
	row := int(r.Row)
	if row >= len(s.dense) && row < 2*len(s.dense)+1<<16 {
		if row >= cap(s.dense) {
			grown := make([]slot, len(s.dense), max(2*cap(s.dense), row+1))
			copy(grown, s.dense)
			s.dense = grown
		}
		s.dense = s.dense[:row+1]
	}
	if row < len(s.dense) {
		s.dense[row] = slot{time: r.Time, code: r.Code, enhanced: r.Enhanced, state: r.State, attempts: r.Attempts}
		if s.sparse != nil {
			delete(s.sparse, r.Row)
		}
		return
	}
	if s.sparse == nil {
		s.sparse = make(map[uint32]Record)
	}
	s.sparse[r.Row] = *r
}

// Get returns the last record of row and whether there is one.
func (s *Snapshot) Get(row int) (Record, bool) {
	if s == nil || row < 0 || uint64(row) > 1<<32-1 {
		return Record{}, false
	}
	if row < len(s.dense) && s.dense[row].state != StateNone {
		return s.dense[row].record(uint32(row)), true
	}
	if s.sparse != nil {
		r, ok := s.sparse[uint32(row)]
		return r, ok
	}
	return Record{}, false
}

// Len returns the number of rows that have a record.
func (s *Snapshot) Len() int {
	if s == nil {
		return 0
	}
	return s.rows
}

// Count returns the number of rows whose last record is in state st.
func (s *Snapshot) Count(st State) int {
	if s == nil || st >= numStates {
		return 0
	}
	return s.counts[st]
}

// Final returns the number of rows whose last record is final (State.Final).
func (s *Snapshot) Final() int {
	n := 0
	for st := StateNone; st < numStates; st++ {
		if st.Final() {
			n += s.Count(st)
		}
	}
	return n
}
