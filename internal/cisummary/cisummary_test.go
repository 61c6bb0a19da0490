package cisummary_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tibbersync/tibbersync/internal/cisummary"
)

func TestAppend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "summary.txt")
	t.Setenv(cisummary.Env, path)
	if err := cisummary.Append("bench: one\n"); err != nil {
		t.Fatal(err)
	}
	if err := cisummary.Append("bench: two\nlines"); err != nil {
		t.Fatal(err)
	}
	if err := cisummary.Append("  \n "); err == nil {
		t.Fatal("an empty line was accepted")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), "bench: one\nbench: two; lines\n"; got != want {
		t.Fatalf("summary file %q, want %q", got, want)
	}
	t.Setenv(cisummary.Env, "")
	if err := cisummary.Append("ignored"); err != nil {
		t.Fatalf("unset variable: %v", err)
	}
}
