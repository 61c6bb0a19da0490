package browser

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/chromedp"

	"github.com/tibbersync/tibbersync/internal/auth"
	"github.com/tibbersync/tibbersync/internal/cisummary"
	"github.com/tibbersync/tibbersync/internal/config"
	"github.com/tibbersync/tibbersync/internal/daemon"
	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/simulator"
)

// chromiumPath is where Debian's chromium package (installed by .ci/run)
// puts the browser.
const chromiumPath = "/usr/bin/chromium"

// outputDir is where the screenshots go, relative to this package: the
// repository's test-output/browser (ignored by git).
const outputDir = "../../test-output/browser"

// TestSetupFlowInChromium drives the setup flow in headless Chromium:
// /setup → Connect → the simulator's consent page → Approve → the success
// page, which must show the account email and every granted scope. It saves
// 01-setup.png, 02-consent.png and 03-success.png (failure.png when a step
// fails) under test-output/browser/. Without Chromium it skips loudly,
// unless CI is set, where it fails.
func TestSetupFlowInChromium(t *testing.T) {
	requireChromium(t, "setup test")
	began := time.Now()
	outDir := screenshotDir(t, "01-setup.png", "02-consent.png", "03-success.png", "failure.png")

	env := newSetupEnv(t)

	// The whole browser session, start-up included, is bounded; each step
	// has its own deadline inside it.
	browserCtx, ctx := startChromium(t, 75*time.Second, 60*time.Second)
	v, err := cdp.Call(ctx, chromedp.FromContext(ctx).Browser, cdpbrowser.GetVersion, cdp.Empty{})
	if err != nil {
		t.Fatalf("browser version: %v", err)
	}

	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			png, err := chromedp.FullScreenshot(100)(ctx, t)
			if err != nil {
				return fmt.Errorf("screenshot %s: %w", name, err)
			}
			return os.WriteFile(filepath.Join(outDir, name), png, 0o644)
		})
	}
	var consentText, successText, successURL string
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			// Whatever the browser shows now is the best clue.
			sctx, scancel := context.WithTimeout(browserCtx, 10*time.Second)
			defer scancel()
			if serr := chromedp.Do(sctx, shot("failure.png")); serr != nil {
				t.Logf("failure screenshot: %v", serr)
			} else {
				t.Logf("failure screenshot: %s", filepath.Join(outDir, "failure.png"))
			}
			t.Fatalf("%s: %v", what, err)
		}
	}

	step("open /setup",
		chromedp.Navigate(env.webURL+"/setup"),
		chromedp.WaitVisible(chromedp.CSS("a#connect")),
		chromedp.WaitVisible(chromedp.ID("redirect-uri")),
		shot("01-setup.png"),
	)
	step("press Connect and reach the consent page",
		chromedp.Click(chromedp.CSS("a#connect")),
		chromedp.WaitVisible(chromedp.ID("approve")),
		into(chromedp.Text(chromedp.CSS("body")), &consentText),
		shot("02-consent.png"),
	)
	step("approve and reach the success page",
		chromedp.Click(chromedp.ID("approve")),
		chromedp.WaitVisible(chromedp.Search(`//h1[contains(., "Connected to Tibber")]`)),
		into(chromedp.Location(), &successURL),
		into(chromedp.Text(chromedp.CSS("body")), &successText),
		shot("03-success.png"),
	)

	// The consent page asked for the requested scopes.
	for _, sc := range []string{simulator.ScopeOfflineAccess, simulator.ScopeHomesRead} {
		if !strings.Contains(consentText, sc) {
			t.Errorf("consent page does not list %s:\n%s", sc, consentText)
		}
	}
	// The browser came back through the registered redirect URI.
	if !strings.HasPrefix(successURL, env.redirect+"?") {
		t.Errorf("success page at %q, want the redirect URI %s", successURL, env.redirect)
	}
	// The success page shows the account and every granted scope, and the
	// grant is stored.
	st, err := env.source.Status(context.Background())
	if err != nil || st.State != model.AuthOK {
		t.Fatalf("after the browser flow: state %s, %v", st.State, err)
	}
	email := env.sim.Account().Email
	if st.Email != email || !strings.Contains(successText, email) {
		t.Errorf("success page or status lacks the account email %q (status %q):\n%s", email, st.Email, successText)
	}
	if len(st.GrantedScopes) < len(auth.DefaultScopes) {
		t.Errorf("granted scopes %v, want all of %v", st.GrantedScopes, auth.DefaultScopes)
	}
	for _, sc := range st.GrantedScopes {
		if !strings.Contains(successText, sc) {
			t.Errorf("success page does not show granted scope %s:\n%s", sc, successText)
		}
	}
	if stats := env.sim.Stats(); stats.CodesRedeemed != 1 || stats.Requests["consent"] != 1 {
		t.Errorf("simulator: %d codes redeemed, %d consents; want 1 and 1", stats.CodesRedeemed, stats.Requests["consent"])
	}
	// tibbersync's own requests (token, userinfo) carry a valid User-Agent;
	// only the browser's (e.g. its favicon request) may not.
	for _, ev := range env.sim.Events() {
		if ev.Kind == "user-agent-violation" && (ev.Endpoint == "token" || ev.Endpoint == "userinfo") {
			t.Errorf("simulator: User-Agent violation on %s: %s", ev.Endpoint, ev.Detail)
		}
	}
	for _, name := range []string{"01-setup.png", "02-consent.png", "03-success.png"} {
		fi, err := os.Stat(filepath.Join(outDir, name))
		if err != nil || fi.Size() < 2000 {
			t.Errorf("screenshot %s missing or empty: %v", name, err)
		}
	}
	line := fmt.Sprintf("browser: setup flow in headless %s: /setup → Connect → consent → Approve → success page with %s and %d scopes; 3 screenshots in test-output/browser, %.1fs",
		v.Product, email, len(st.GrantedScopes), time.Since(began).Seconds())
	t.Log(line)
	if !t.Failed() {
		appendSummary(t, line)
	}
}

// appendSummary appends one plain line to $TIBBERSYNC_SUMMARY_FILE when it
// is set, so that .ci/run can print one summary per harness.
func appendSummary(t *testing.T, line string) {
	t.Helper()
	if err := cisummary.Append(line); err != nil {
		t.Error(err)
	}
}

// into runs a that returns a value and stores the value in dst.
func into[T any](a chromedp.Action[T], dst *T) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		v, err := a(ctx, t)
		*dst = v
		return err
	})
}

// setupEnv is the daemon (internal/daemon, the product's wiring) serving
// its setup pages, and the simulator showing its consent page (no
// AutoConsent). The scheduler is left idle: the test is about the pages.
type setupEnv struct {
	sim      *simulator.Simulator
	source   *auth.Source
	webURL   string
	redirect string
}

func newSetupEnv(t *testing.T) *setupEnv {
	t.Helper()
	ctx := context.Background()
	// The web port must be known before the simulator registers the
	// redirect URI: the socket is bound now and handed to the daemon.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	e := &setupEnv{redirect: "http://localhost:" + port + "/callback"}

	e.sim = simulator.New(simulator.Options{Seed: 5, RedirectURIs: []string{e.redirect}})
	t.Cleanup(e.sim.Close)
	simSrv := httptest.NewServer(e.sim)
	t.Cleanup(simSrv.Close)
	e.sim.SetBaseURL(simSrv.URL)

	cfg := config.Default()
	cfg.Storage.Dir = t.TempDir()
	cfg.Web.Listen = ln.Addr().String()
	simulator.Configure(&cfg, simSrv.URL, e.redirect)
	d, err := daemon.Open(ctx, cfg, daemon.Options{Logger: logging.Discard(), Listener: ln, ManualSchedule: true})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	runDaemon(t, d)
	e.source = d.Auth()
	e.webURL = d.URL()
	return e
}

// runDaemon runs d until the test ends, then closes it; it returns once d
// serves.
func runDaemon(t *testing.T, d *daemon.Daemon) {
	t.Helper()
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("daemon run: %v", err)
		}
		if err := d.Close(); err != nil {
			t.Errorf("close daemon: %v", err)
		}
	})
	select {
	case <-d.Ready():
	case err := <-done:
		t.Fatalf("daemon run: %v", err)
	}
}
