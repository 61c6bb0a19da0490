//go:build !race

package bench

// raceEnabled reports whether the test binary has the race detector.
const raceEnabled = false
