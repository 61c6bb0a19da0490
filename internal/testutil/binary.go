package testutil

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// BuildTibbersync builds cmd/tibbersync into dir (with extra go build
// flags, e.g. -race) and returns the binary's path. Without the go tool it
// fails in CI and skips loudly elsewhere.
func BuildTibbersync(t testing.TB, dir string, flags ...string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the go tool is not in PATH: %v", err)
		}
		t.Skipf("SKIPPED: the go tool is not in PATH (%v); this real-binary test did not run", err)
	}
	bin := filepath.Join(dir, "tibbersync")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	args := append(append([]string{"build", "-o", bin}, flags...), "github.com/tibbersync/tibbersync/cmd/tibbersync")
	if out, err := exec.CommandContext(ctx, goTool, args...).CombinedOutput(); err != nil {
		t.Fatalf("go %v: %v\n%s", args, err, out)
	}
	return bin
}
