//go:build race

package harness

// raceEnabled reports whether this test binary was built with -race; the
// tibbersync binary is then built with -race too, which reuses the
// race-instrumented packages the test build already compiled.
const raceEnabled = true
