// Package journal is a campaign's durable memory: an append-only file of
// fixed-size, checksummed records (list row, state, reply code) written with
// group-commit fsync. The CSV list is the queue; the journal says which rows
// are finished, so that a resumed campaign (Replay) re-sends only what was in
// flight when the previous run stopped, however it stopped.
//
// File format: a 32-byte header (magic "SPATEJNL", version, record size, the
// campaign fingerprint, creation time, CRC-32C) followed by RecordSize-byte
// records, each with its own CRC-32C. A crash can leave a torn or garbled
// tail after the last fsync; Replay ignores it (and reports its size) and
// Open truncates it before appending.
//
// Durability contract: a record is on stable storage once a Sync that began
// after its Append returned has returned nil (or after Close returned nil).
// Without Sync, a record reaches the kernel (and so survives kill -9 of the
// process) within Options.WriteInterval, about 1 ms, and stable storage (it
// survives a crash of the machine) within Options.SyncInterval, about 20 ms.
package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
)

const (
	magic      = "SPATEJNL"
	version    = 1
	headerSize = 32
)

var (
	// ErrFingerprint means the journal was written for another campaign (a
	// different list or template). The returned error wraps it and names both
	// fingerprints.
	ErrFingerprint = errors.New("journal: fingerprint mismatch")
	// ErrNotJournal means the file does not start with a journal header.
	ErrNotJournal = errors.New("journal: not a spate journal")
	// ErrVersion means the file was written by an incompatible version.
	ErrVersion = errors.New("journal: unsupported journal version")
	// ErrClosed is returned by Append after Close.
	ErrClosed = errors.New("journal: closed")
	// ErrState is returned by Append for a record whose State is not valid.
	ErrState = errors.New("journal: invalid record state")
	// ErrLocked means another process has the journal open.
	ErrLocked = errors.New("journal: in use by another process")
)

// Fingerprint identifies a campaign for the journal header: a 64-bit xxhash
// of the list's name and the template's bytes (length-prefixed, so the two
// parts cannot be confused). Resuming with a different list or template is
// refused by Open and Replay.
func Fingerprint(list string, template []byte) uint64 {
	var d xxhash.Digest
	d.Reset()
	var n [8]byte
	_, _ = d.WriteString("spate-journal\x00")
	binary.LittleEndian.PutUint64(n[:], uint64(len(list)))
	_, _ = d.Write(n[:])
	_, _ = d.WriteString(list)
	binary.LittleEndian.PutUint64(n[:], uint64(len(template)))
	_, _ = d.Write(n[:])
	_, _ = d.Write(template)
	return d.Sum64()
}

// Options configure Open. The zero value is usable except for Fingerprint,
// which the caller should always set.
type Options struct {
	// Fingerprint is stored in a new journal's header and must match an
	// existing one's (see Fingerprint).
	Fingerprint uint64
	// Truncate starts a new journal, discarding any existing file at path.
	// Without it an existing journal is continued after its last whole record.
	Truncate bool
	// WriteInterval is how long a record may wait in memory before the
	// flusher writes it (with the others that arrived meanwhile) to the
	// file: what a killed process can lose (default 1 ms).
	WriteInterval time.Duration
	// SyncInterval is how long written records may wait for their fsync:
	// the group-commit window, what a machine crash can lose (default 20 ms).
	SyncInterval time.Duration
	// MaxBatch makes the flusher write at once when this many records wait
	// in memory, and fsync at once when this many wait for it (default 1024).
	MaxBatch int
	// MaxPending makes Append block (back-pressure from a slow disk) while
	// this many records wait to be written (default 64 × MaxBatch).
	MaxPending int
}

// Stats are counters for tests, benchmarks and the operator display.
type Stats struct {
	Appended  uint64 // records accepted by Append since Open
	Written   uint64 // of which written to the file
	Synced    uint64 // of which written and fsynced
	Writes    uint64 // write calls
	Syncs     uint64 // fsync calls (commit groups)
	MaxGroup  int    // largest group committed by one fsync, in records
	Recovered int    // whole records found in the file by Open
	Dropped   int64  // bytes of torn tail that Open truncated
}

// Journal appends records to a journal file. All its methods are safe for
// concurrent use by any number of goroutines.
type Journal struct {
	f        *os.File
	path     string
	writeInt time.Duration
	syncInt  time.Duration
	batch    int // bytes
	pending  int // bytes

	wake   chan struct{} // cap 1: something to write (or urgency changed)
	done   chan struct{} // closed by Close
	exited chan struct{} // closed by the flusher when it returns

	mu       sync.Mutex
	cond     sync.Cond // broadcast after every group and on Close
	buf      []byte    // encoded records not yet handed to the flusher
	spare    []byte
	appended uint64
	written  uint64
	synced   uint64
	urgent   bool // a Sync waits: write and fsync now
	closed   bool
	err      error // sticky write or fsync error
	stats    Stats
}

// Open opens the journal at path for appending, creating it (with a header
// holding opts.Fingerprint) if it does not exist, is empty, or
// opts.Truncate is set. An existing journal must carry the same fingerprint;
// its torn tail, if any, is truncated (see Stats.Dropped) and appending
// continues after the last whole record. The file is locked against a second
// writer process (ErrLocked).
func Open(path string, opts Options) (*Journal, error) {
	if opts.WriteInterval <= 0 {
		opts.WriteInterval = time.Millisecond
	}
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = 20 * time.Millisecond
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 1024
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = 64 * opts.MaxBatch
	}
	opts.MaxPending = max(opts.MaxPending, opts.MaxBatch)

	_, statErr := os.Stat(path)
	created := errors.Is(statErr, os.ErrNotExist)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		if errors.Is(err, ErrLocked) {
			return nil, fmt.Errorf("%w: %s", err, path)
		}
		return nil, fmt.Errorf("journal: lock %s: %w", path, err)
	}
	j := &Journal{
		f: f, path: path, writeInt: opts.WriteInterval, syncInt: opts.SyncInterval,
		batch: opts.MaxBatch * RecordSize, pending: opts.MaxPending * RecordSize,
		wake: make(chan struct{}, 1), done: make(chan struct{}), exited: make(chan struct{}),
		buf:   make([]byte, 0, opts.MaxBatch*RecordSize),
		spare: make([]byte, 0, opts.MaxBatch*RecordSize),
	}
	j.cond.L = &j.mu
	if err := j.prepare(opts, created); err != nil {
		f.Close()
		return nil, err
	}
	go j.run()
	return j, nil
}

// prepare writes a fresh header or validates the existing one, truncates the
// torn tail and positions the file for appending.
func (j *Journal) prepare(opts Options, created bool) error {
	st, err := j.f.Stat()
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	fresh := opts.Truncate || st.Size() == 0
	if !fresh && st.Size() < headerSize {
		// A crash while the header was being created: no record can exist.
		var b [headerSize]byte
		n, _ := io.ReadFull(j.f, b[:])
		if string(b[:min(n, len(magic))]) != magic[:min(n, len(magic))] {
			return fmt.Errorf("%w: %s", ErrNotJournal, j.path)
		}
		j.stats.Dropped = st.Size()
		fresh = true
	}
	if fresh {
		if err := j.f.Truncate(0); err != nil {
			return fmt.Errorf("journal: %w", err)
		}
		h := appendHeader(nil, opts.Fingerprint, time.Now())
		if _, err := j.f.WriteAt(h, 0); err != nil {
			return fmt.Errorf("journal: write header: %w", err)
		}
		if _, err := j.f.Seek(headerSize, io.SeekStart); err != nil {
			return fmt.Errorf("journal: %w", err)
		}
		if err := syncData(j.f); err != nil {
			return fmt.Errorf("journal: sync %s: %w", j.path, err)
		}
		if created {
			syncDir(filepath.Dir(j.path))
		}
		return nil
	}
	if _, err := j.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	_, end, err := scan(j.f, j.path, opts.Fingerprint, func(r *Record) { j.stats.Recovered++ })
	if err != nil {
		return err
	}
	if end < st.Size() {
		j.stats.Dropped = st.Size() - end
		if err := j.f.Truncate(end); err != nil {
			return fmt.Errorf("journal: truncate torn tail of %s: %w", j.path, err)
		}
		if err := syncData(j.f); err != nil {
			return fmt.Errorf("journal: sync %s: %w", j.path, err)
		}
	}
	if _, err := j.f.Seek(end, io.SeekStart); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// Append queues r for the next group write. It does not wait for the disk
// (see Sync) and does not allocate once the buffers have grown to their
// working size. It blocks only while Options.MaxPending records wait to be
// written. It returns ErrState for an invalid state, ErrClosed after Close,
// or the error that broke the journal (a failed write or fsync is sticky).
func (j *Journal) Append(r Record) error {
	if !r.State.Valid() {
		return ErrState
	}
	j.mu.Lock()
	for len(j.buf) >= j.pending && j.err == nil && !j.closed {
		j.signal()
		j.cond.Wait()
	}
	if j.closed {
		j.mu.Unlock()
		return ErrClosed
	}
	if err := j.err; err != nil {
		j.mu.Unlock()
		return err
	}
	first := len(j.buf) == 0
	j.buf = appendRecord(j.buf, &r)
	j.appended++
	full := len(j.buf) == j.batch
	j.mu.Unlock()
	if first || full {
		j.signal()
	}
	return nil
}

// Sync writes and fsyncs every record appended before the call and waits for
// it. It returns the journal's sticky error, if any.
func (j *Journal) Sync() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	target := j.appended
	for j.synced < target && j.err == nil {
		j.urgent = true
		j.signal()
		j.cond.Wait()
	}
	return j.err
}

// Close writes and fsyncs what is pending, stops the flusher and closes the
// file. Appends blocked on back-pressure, and later ones, get ErrClosed.
// Closing twice returns ErrClosed.
func (j *Journal) Close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return ErrClosed
	}
	j.closed = true
	j.cond.Broadcast()
	j.mu.Unlock()
	close(j.done)
	<-j.exited
	j.mu.Lock()
	err := j.err
	j.mu.Unlock()
	if cerr := j.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("journal: %w", cerr)
	}
	return err
}

// Stats returns a copy of the journal's counters.
func (j *Journal) Stats() Stats {
	j.mu.Lock()
	defer j.mu.Unlock()
	s := j.stats
	s.Appended, s.Written, s.Synced = j.appended, j.written, j.synced
	return s
}

// Path returns the journal's file name.
func (j *Journal) Path() string { return j.path }

// signal wakes the flusher without blocking.
func (j *Journal) signal() {
	select {
	case j.wake <- struct{}{}:
	default:
	}
}

// run is the flusher goroutine. It writes what Append buffered at most
// WriteInterval after the first record of a batch (at once when MaxBatch
// records wait, a Sync waits, or on Close), and fsyncs what it wrote at most
// SyncInterval after the first unsynced write (at once when MaxBatch records
// wait for it, a Sync waits, or on Close). Appends continue into the other
// buffer while it writes.
func (j *Journal) run() {
	defer close(j.exited)
	var (
		timer             = time.NewTimer(time.Hour)
		writeDue, syncDue time.Time // zero: nothing waiting
		closing           bool
	)
	timer.Stop()
	for {
		if next := earliest(writeDue, syncDue); !next.IsZero() {
			timer.Reset(time.Until(next))
		}
		select {
		case <-j.wake:
		case <-timer.C:
		case <-j.done:
			closing = true
		}
		timer.Stop()
		now := time.Now()

		j.mu.Lock()
		urgent := j.urgent || closing
		j.urgent = false
		var group []byte
		var seq uint64
		if len(j.buf) > 0 && j.err == nil {
			if writeDue.IsZero() {
				writeDue = now.Add(j.writeInt)
			}
			if urgent || len(j.buf) >= j.batch || !now.Before(writeDue) {
				group, seq = j.buf, j.appended
				j.buf = j.spare[:0]
				j.spare = nil
			}
		}
		j.mu.Unlock()

		var err error
		if group != nil {
			writeDue = time.Time{}
			if syncDue.IsZero() {
				syncDue = now.Add(j.syncInt)
			}
			_, err = j.f.Write(group)
			j.mu.Lock()
			if err == nil {
				j.written = seq
				j.stats.Writes++
			}
			j.spare = group[:0]
			j.cond.Broadcast() // back-pressure: room again
			j.mu.Unlock()
		}

		j.mu.Lock()
		unsynced := int(j.written - j.synced)
		j.mu.Unlock()
		if err == nil && unsynced > 0 && (urgent || unsynced*RecordSize >= j.batch || !now.Before(syncDue)) {
			syncDue = time.Time{}
			if err = syncData(j.f); err == nil {
				j.mu.Lock()
				j.synced += uint64(unsynced)
				j.stats.Syncs++
				j.stats.MaxGroup = max(j.stats.MaxGroup, unsynced)
				j.cond.Broadcast()
				j.mu.Unlock()
			}
		}
		if err != nil {
			j.mu.Lock()
			if j.err == nil {
				j.err = fmt.Errorf("journal: write %s: %w", j.path, err)
			}
			j.cond.Broadcast()
			j.mu.Unlock()
		}
		if closing {
			j.mu.Lock()
			done := len(j.buf) == 0 && j.written == j.synced || j.err != nil
			j.mu.Unlock()
			if done {
				return
			}
		}
	}
}

// earliest returns the earlier of two times, ignoring zero ones.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// appendHeader encodes the file header.
//
//	0  [8]byte magic "SPATEJNL"
//	8  uint16  version
//	10 uint16  record size
//	12 uint64  fingerprint
//	20 int64   creation time (unix ms)
//	28 uint32  CRC-32C of bytes 0..27
func appendHeader(dst []byte, fp uint64, now time.Time) []byte {
	var b [headerSize]byte
	copy(b[:], magic)
	binary.LittleEndian.PutUint16(b[8:], version)
	binary.LittleEndian.PutUint16(b[10:], RecordSize)
	binary.LittleEndian.PutUint64(b[12:], fp)
	binary.LittleEndian.PutUint64(b[20:], uint64(now.UnixMilli()))
	binary.LittleEndian.PutUint32(b[28:], crc32.Checksum(b[:28], castagnoli))
	return append(dst, b[:]...)
}

// header is a decoded file header.
type header struct {
	fingerprint uint64
	created     time.Time
}

// parseHeader validates b (headerSize bytes) against the fingerprint.
func parseHeader(b []byte, path string, fp uint64) (header, error) {
	if string(b[:len(magic)]) != magic {
		return header{}, fmt.Errorf("%w: %s", ErrNotJournal, path)
	}
	if binary.LittleEndian.Uint32(b[28:]) != crc32.Checksum(b[:28], castagnoli) {
		return header{}, fmt.Errorf("%w: %s: header checksum mismatch", ErrNotJournal, path)
	}
	if v, rs := binary.LittleEndian.Uint16(b[8:]), binary.LittleEndian.Uint16(b[10:]); v != version || rs != RecordSize {
		return header{}, fmt.Errorf("%w: %s has version %d with %d-byte records; this is version %d with %d-byte records",
			ErrVersion, path, v, rs, version, RecordSize)
	}
	h := header{
		fingerprint: binary.LittleEndian.Uint64(b[12:]),
		created:     time.UnixMilli(int64(binary.LittleEndian.Uint64(b[20:]))),
	}
	if h.fingerprint != fp {
		return h, fmt.Errorf("%w: %s was written for a different list or template (journal %016x, this campaign %016x); start without --resume or use the original files",
			ErrFingerprint, path, h.fingerprint, fp)
	}
	return h, nil
}

// scan reads the header and then whole records from r, calling fn for each
// intact one, and stops at the first torn or corrupt record. It returns the
// header and the offset just past the last intact record.
func scan(r io.Reader, path string, fp uint64, fn func(*Record)) (header, int64, error) {
	var hb [headerSize]byte
	n, err := io.ReadFull(r, hb[:])
	if err != nil {
		if n == 0 || string(hb[:min(n, len(magic))]) == magic[:min(n, len(magic))] {
			return header{}, 0, nil // torn creation: no records
		}
		return header{}, 0, fmt.Errorf("%w: %s", ErrNotJournal, path)
	}
	h, err := parseHeader(hb[:], path, fp)
	if err != nil {
		return h, 0, err
	}
	end := int64(headerSize)
	buf := make([]byte, 256*RecordSize)
	for {
		n, err := io.ReadFull(r, buf)
		whole := n - n%RecordSize
		for off := 0; off < whole; off += RecordSize {
			rec, ok := decodeRecord(buf[off:])
			if !ok {
				return h, end, nil
			}
			fn(&rec)
			end += RecordSize
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return h, end, nil
		}
		if err != nil {
			return h, end, fmt.Errorf("journal: read %s: %w", path, err)
		}
	}
}

// syncDir fsyncs a directory so a newly created file's entry is durable.
// Errors are ignored: some file systems refuse to sync directories.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
