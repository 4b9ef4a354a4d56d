//go:build race

package engine

// sessionRaceEnabled: sync.Pool drops items at random under the race
// detector, so pooled bodies allocate; allocation tests then only log.
const sessionRaceEnabled = true
