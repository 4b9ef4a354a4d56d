//go:build !race

package engine

const sessionRaceEnabled = false
