package browser

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// requireChromium fails in CI when Debian's chromium is missing (.ci/run
// installs it) and skips loudly elsewhere, naming what did not run.
func requireChromium(t *testing.T, what string) {
	t.Helper()
	_, err := os.Stat(chromiumPath)
	if err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("Chromium is required in CI but %s is missing (%v); .ci/run installs Debian's chromium package", chromiumPath, err)
	}
	appendSummary(t, "browser: "+what+" SKIPPED, no Chromium at "+chromiumPath)
	t.Skipf("\n%s\n!!! SKIPPED: no Chromium at %s (%v).\n!!! The real-browser %s did NOT run. Install it with: apt-get install chromium\n%s",
		strings.Repeat("!", 78), chromiumPath, err, what, strings.Repeat("!", 78))
}

// screenshotDir creates test-output/browser/ and removes the screenshots
// named there by an earlier run; it returns the absolute directory.
func screenshotDir(t *testing.T, old ...string) string {
	t.Helper()
	outDir, err := filepath.Abs(outputDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range old {
		if err := os.Remove(filepath.Join(outDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	return outDir
}

// startChromium starts a headless Chromium with a fresh profile. The whole
// session, start-up included, ends within session. It returns the
// browser's context (for a last screenshot after a step timed out) and the
// context for the test's steps, which ends within steps. Everything is
// stopped when the test ends.
func startChromium(t *testing.T, session, steps time.Duration) (browserCtx, ctx context.Context) {
	t.Helper()
	sessionCtx, cancelSession := context.WithTimeout(context.Background(), session)
	t.Cleanup(cancelSession)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(sessionCtx,
		append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(chromiumPath),
			chromedp.Headless,
			chromedp.NoSandbox,
			chromedp.DisableGPU,
			chromedp.NoFirstRun,
			chromedp.Flag("disable-quic", true),
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
			chromedp.Flag("disable-dev-shm-usage", true),
			chromedp.UserDataDir(t.TempDir()),
			chromedp.WindowSize(1100, 900),
		)...)
	t.Cleanup(cancelAlloc)
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)
	// The first Do starts the browser; it must run on the browser's own
	// context (a deadline there would stop the browser).
	if err := chromedp.Do(browserCtx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(browserCtx, steps)
	t.Cleanup(cancel)
	return browserCtx, ctx
}
