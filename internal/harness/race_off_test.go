//go:build !race

package harness

// raceEnabled reports whether this test binary was built with -race.
const raceEnabled = false
