//go:build race

package bench

// raceEnabled reports whether the test binary has the race detector; the
// daemon binary the tests build then gets it too, so that it links from
// the packages the test run already compiled.
const raceEnabled = true
