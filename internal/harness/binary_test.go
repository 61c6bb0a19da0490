package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// binDir holds the tibbersync binary built for this test run; TestMain
// removes it.
var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
	binTook time.Duration
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// tibbersyncBinary builds ./cmd/tibbersync once per test binary, with -race
// when the tests run under -race (so the build reuses the packages the test
// build compiled), bounded by a deadline.
func tibbersyncBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		started := time.Now()
		binDir, binErr = os.MkdirTemp("", "tibbersync-harness-bin-")
		if binErr != nil {
			return
		}
		goTool, err := exec.LookPath("go")
		if err != nil {
			binErr = fmt.Errorf("build tibbersync: %w", err)
			return
		}
		binPath = filepath.Join(binDir, "tibbersync")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "github.com/tibbersync/tibbersync/cmd/tibbersync")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, goTool, args...).CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go %v: %w\n%s", args, err, out)
		}
		binTook = time.Since(started)
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}
