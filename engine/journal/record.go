package journal

import (
	"encoding/binary"
	"hash/crc32"
	"strconv"
)

// State is the fate of a recipient as the journal records it.
type State uint8

const (
	StateNone       State = iota // zero: no record (never written; a record holding it is corrupt)
	StateDelivered               // 250 to the final dot
	StateDeferred                // temporary failure; will be retried (on --resume if the run ends)
	StateBounced                 // permanent failure (5xx, null MX, NXDOMAIN, ...)
	StateSuppressed              // on the suppression list; never sent
	StateInvalid                 // the list row or address is invalid; never sent
	StateExpired                 // bounced after deferring for longer than max_age
	numStates
)

var stateNames = [numStates]string{"none", "delivered", "deferred", "bounced", "suppressed", "invalid", "expired"}

// String returns the lower-case name used in logs and results ("delivered").
func (s State) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// Final reports whether a recipient in state s is finished: a resumed campaign
// skips it. Only StateDeferred (and the zero StateNone) are not final.
func (s State) Final() bool {
	switch s {
	case StateDelivered, StateBounced, StateSuppressed, StateInvalid, StateExpired:
		return true
	}
	return false
}

// Valid reports whether s is one of the states a record may hold.
func (s State) Valid() bool { return s > StateNone && s < numStates }

// Record is one journal entry: the outcome of one recipient (one list row) at
// one moment. The last record of a row wins on Replay.
type Record struct {
	Row      uint32   // 0-based data record index in the list (codec.Recipient.Row)
	State    State    // never StateNone
	Code     uint16   // SMTP reply code (0 = none, e.g. suppressed)
	Enhanced [3]uint8 // RFC 3463 class, subject, detail (zero = none)
	Attempts uint8    // delivery attempts so far (saturating at 255)
	Time     int64    // unix milliseconds
}

// RecordSize is the size of one encoded record in bytes.
//
// Layout (little endian):
//
//	0  uint32 row
//	4  uint8  state
//	5  uint8  attempts
//	6  uint16 code
//	8  [3]uint8 enhanced code
//	11 uint8  reserved (0)
//	12 int64  time (unix ms)
//	20 uint32 CRC-32C (Castagnoli) of bytes 0..19
const RecordSize = 24

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendRecord encodes r to dst. It trusts r (Append validated it).
func appendRecord(dst []byte, r *Record) []byte {
	n := len(dst)
	dst = append(dst, make([]byte, RecordSize)...) // no temporary: crc32 would make one escape
	b := dst[n : n+RecordSize]
	binary.LittleEndian.PutUint32(b[0:], r.Row)
	b[4] = byte(r.State)
	b[5] = r.Attempts
	binary.LittleEndian.PutUint16(b[6:], r.Code)
	b[8], b[9], b[10] = r.Enhanced[0], r.Enhanced[1], r.Enhanced[2]
	b[11] = 0
	binary.LittleEndian.PutUint64(b[12:], uint64(r.Time))
	binary.LittleEndian.PutUint32(b[20:], crc32.Checksum(b[:20], castagnoli))
	return dst
}

// decodeRecord decodes one record from b (len(b) >= RecordSize) and reports
// whether it is intact: checksum right, state valid, reserved byte zero.
func decodeRecord(b []byte) (Record, bool) {
	b = b[:RecordSize]
	if binary.LittleEndian.Uint32(b[20:]) != crc32.Checksum(b[:20], castagnoli) || b[11] != 0 {
		return Record{}, false
	}
	r := Record{
		Row:      binary.LittleEndian.Uint32(b[0:]),
		State:    State(b[4]),
		Attempts: b[5],
		Code:     binary.LittleEndian.Uint16(b[6:]),
		Enhanced: [3]uint8{b[8], b[9], b[10]},
		Time:     int64(binary.LittleEndian.Uint64(b[12:])),
	}
	if !r.State.Valid() {
		return Record{}, false
	}
	return r, true
}
