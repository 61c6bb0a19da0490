package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tibbersync/tibbersync/internal/config"
	"github.com/tibbersync/tibbersync/internal/daemon"
	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/simulator"
	"github.com/tibbersync/tibbersync/internal/version"
)

// docsShots are the README's screenshots of the status page; the test
// refreshes them in docs/ when TIBBERSYNC_UPDATE_SCREENSHOTS is set.
var docsShots = map[string]string{"status-desktop.png": "../../docs/status-desktop.png", "status-phone.png": "../../docs/status-phone.png"}

// layoutReport is what the page measures about itself in the browser.
type layoutReport struct {
	Width    float64   `json:"w"`
	Overflow float64   `json:"over"`
	Tables   []float64 `json:"tables"`
	MinFont  float64   `json:"minFont"`
	Texts    int       `json:"n"`
	Charts   int       `json:"charts"`
}

const measureLayout = `(() => {
  const w = window.innerWidth;
  const over = document.documentElement.scrollWidth - w;
  const tables = ['jobs', 'devices'].map(id => { const t = document.getElementById(id); return t ? t.getBoundingClientRect().right - w : -1000; });
  let minFont = 1e9, n = 0, charts = 0;
  for (const svg of document.querySelectorAll('svg[data-source="history"]')) {
    charts++;
    const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
    for (const t of svg.querySelectorAll('text')) { n++; minFont = Math.min(minFont, parseFloat(getComputedStyle(t).fontSize) * scale); }
  }
  return JSON.stringify({w, over, tables, minFont, n, charts});
})()`

// TestStatusPageInChromium syncs homes, devices and a 30-day history
// backfill from the simulator, then opens the status page in headless
// Chromium on a desktop and on a 390-px phone: history charts are there, no
// key column scrolls sideways on the phone, and chart text renders at 11 px
// or more. It saves status-desktop.png and status-phone.png under
// test-output/browser/ (and in docs/ with TIBBERSYNC_UPDATE_SCREENSHOTS=1).
func TestStatusPageInChromium(t *testing.T) {
	requireChromium(t, "status page test")
	began := time.Now()
	names := make([]string, 0, len(docsShots))
	for name := range docsShots {
		names = append(names, name)
	}
	outDir := screenshotDir(t, names...)
	pageURL := newSyncedStatusServer(t)
	_, ctx := startChromium(t, 90*time.Second, 75*time.Second)

	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			png, err := chromedp.FullScreenshot(100)(ctx, t)
			if err != nil {
				return fmt.Errorf("screenshot %s: %w", name, err)
			}
			return os.WriteFile(filepath.Join(outDir, name), png, 0o644)
		})
	}
	measure := func(what string, width, height int64, mobile bool, name string) layoutReport {
		t.Helper()
		var raw string
		opts := []chromedp.EmulateViewportOption{}
		if mobile {
			opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulateScale(2))
		}
		if err := chromedp.Do(ctx,
			chromedp.EmulateViewport(width, height, opts...),
			chromedp.Navigate(pageURL),
			chromedp.WaitVisible(chromedp.CSS(`svg[data-source="history"]`)),
			into(chromedp.Evaluate[string](measureLayout), &raw),
			shot(name),
		); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		var r layoutReport
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			t.Fatalf("%s: layout report %q: %v", what, raw, err)
		}
		return r
	}

	desk := measure("desktop", 1100, 900, false, "status-desktop.png")
	phone := measure("phone", 390, 844, true, "status-phone.png")
	for what, r := range map[string]layoutReport{"desktop": desk, "phone": phone} {
		if r.Charts < 2 || r.Texts == 0 {
			t.Errorf("%s: %d history charts with %d labels, want charts from the backfill", what, r.Charts, r.Texts)
		}
		if r.MinFont < 11 {
			t.Errorf("%s: chart text renders at %.1f px, want at least 11", what, r.MinFont)
		}
		if r.Overflow > 0 {
			t.Errorf("%s: the page scrolls sideways by %.0f px", what, r.Overflow)
		}
		for i, over := range r.Tables {
			if over > 0 {
				t.Errorf("%s: table %d reaches %.0f px beyond the viewport", what, i, over)
			}
		}
	}
	if phone.Width != 390 {
		t.Errorf("phone viewport is %.0f px wide, want 390", phone.Width)
	}
	for name, doc := range docsShots {
		png, err := os.ReadFile(filepath.Join(outDir, name))
		if err != nil || len(png) < 5000 {
			t.Fatalf("screenshot %s missing or empty: %v", name, err)
		}
		if os.Getenv("TIBBERSYNC_UPDATE_SCREENSHOTS") != "" {
			if err := os.WriteFile(doc, png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	line := fmt.Sprintf("browser: status page after a 30-day backfill: %d history charts, chart text ≥ %.1f px on a 390-px phone, no sideways scroll; 2 screenshots, %.1fs",
		phone.Charts, phone.MinFont, time.Since(began).Seconds())
	t.Log(line)
	if !t.Failed() {
		appendSummary(t, line)
	}
}

// newSyncedStatusServer builds the daemon (internal/daemon, the product's
// wiring) against the simulator, authorizes, runs homes, devices and a
// 30-day history backfill into a fresh data.db through the daemon's own job
// runner, and serves the status page on loopback. It returns the page's URL.
func newSyncedStatusServer(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The web port must be known before the simulator registers the
	// redirect URI: the socket is bound now and handed to the daemon.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	redirect := "http://localhost:" + port + "/callback"
	sim := simulator.New(simulator.Options{Seed: 3, AutoConsent: true, RedirectURIs: []string{redirect}, Homes: 1})
	t.Cleanup(sim.Close)
	simSrv := httptest.NewServer(sim)
	t.Cleanup(simSrv.Close)
	sim.SetBaseURL(simSrv.URL)

	cfg := config.Default()
	cfg.Storage.Dir = t.TempDir()
	cfg.Web.Listen = ln.Addr().String()
	cfg.History.BackfillDays = 30
	simulator.Configure(&cfg, simSrv.URL, redirect)
	d, err := daemon.Open(ctx, cfg, daemon.Options{Logger: logging.Discard(), Listener: ln, ManualSchedule: true, RateLimit: 1000})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
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

	authURL, err := d.Flow().Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
	req.Header.Set("User-Agent", version.UserAgent())
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := resp.Location()
	if err != nil {
		t.Fatalf("authorize did not redirect: %s", resp.Status)
	}
	// The browser's way back: the daemon's own /callback completes the flow.
	cb, err := http.NewRequestWithContext(ctx, http.MethodGet, d.URL()+"/callback?"+loc.RawQuery, nil)
	if err != nil {
		t.Fatal(err)
	}
	cbResp, err := noFollow.Do(cb)
	if err != nil {
		t.Fatal(err)
	}
	cbResp.Body.Close()
	if st, err := d.Auth().Status(ctx); err != nil || st.State != model.AuthOK {
		t.Fatalf("after the callback (%s): auth %+v %v", cbResp.Status, st, err)
	}
	for _, job := range []string{jobs.JobHomes, jobs.JobDevices, jobs.JobHistory} {
		if r, err := d.RunJob(ctx, job); err != nil || r.Status != jobs.StatusOK {
			t.Fatalf("%s: %+v %v", job, r, err)
		}
	}
	return d.URL() + "/"
}
