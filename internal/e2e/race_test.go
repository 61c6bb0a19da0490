//go:build race

package e2e

// raceEnabled is true under -race, where SQLite runs ~20x slower: the
// heaviest tests then sync fewer devices (never a shorter window).
const raceEnabled = true
