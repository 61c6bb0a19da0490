package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestReleaseBinaryHasNoCrashpoints builds the binary as `make build` does
// and proves that the crash-test hook (a self-SIGKILL at a point of the
// token refresh, driven by $TIBBERSYNC_CRASHPOINT) is not in it: the hook
// lives in internal/auth's test files only.
func TestReleaseBinaryHasNoCrashpoints(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the release binary")
	}
	if _, err := exec.LookPath("make"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("make is required in CI (.ci/run installs it): %v", err)
		}
		t.Skip("no make")
	}
	dist := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "-s", "-C", "../..", "build", "DIST="+dist)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	bin, err := os.ReadFile(filepath.Join(dist, "tibbersync"))
	if err != nil {
		t.Fatal(err)
	}
	for _, needle := range []string{"TIBBERSYNC_CRASHPOINT", "crashpoint_test.go"} {
		if bytes.Contains(bin, []byte(needle)) {
			t.Errorf("the release binary contains %q: the crash-test hook is compiled in", needle)
		}
	}
	// It was built as the Makefile builds releases.
	out, err := exec.CommandContext(ctx, "go", "version", "-m", filepath.Join(dist, "tibbersync")).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("-trimpath=true")) {
		t.Fatalf("go version -m: %v\n%s (want the flags of make build)", err, out)
	}
}
