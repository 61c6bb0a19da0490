package daemon

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/config"
	"github.com/tibbersync/tibbersync/internal/control"
	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/simulator"
	"github.com/tibbersync/tibbersync/internal/version"
)

var start = time.Date(2026, 9, 14, 8, 7, 30, 0, time.UTC)

// recorder is an Observer that remembers what it was told.
type recorder struct {
	mu   sync.Mutex
	runs []string // job/status
	auth []model.AuthState
}

func (r *recorder) RunFinished(_ context.Context, run model.Run, _ error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs = append(r.runs, run.Job+"/"+run.Status)
}

func (r *recorder) AuthChanged(_ context.Context, st model.AuthStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.auth = append(r.auth, st.State)
}

func (r *recorder) snapshot() ([]string, []model.AuthState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.runs), slices.Clone(r.auth)
}

// testConfig points a default config at a simulator on a fake clock.
func testConfig(t *testing.T, clk *clock.Fake) (config.Config, *simulator.Simulator) {
	t.Helper()
	sim := simulator.New(simulator.Options{Now: clk.Now, Seed: 3, AutoConsent: true, PageSize: 168})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	t.Cleanup(sim.Close)
	sim.SetBaseURL(srv.URL)
	cfg := config.Default()
	cfg.Storage.Dir = filepath.Join(t.TempDir(), "state")
	simulator.Configure(&cfg, srv.URL, "")
	cfg.History.BackfillDays = 2
	cfg.Schedule.Jitter = 0
	return cfg, sim
}

func openTest(t *testing.T, ctx context.Context, cfg config.Config, clk *clock.Fake, o Options) *Daemon {
	t.Helper()
	o.Clock = clk
	o.NotBefore = start.Add(-24 * time.Hour)
	o.RateLimit = Unlimited
	o.ManualSchedule = true
	d, err := Open(ctx, cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// authorize completes the flow against the AutoConsent simulator.
func authorize(t *testing.T, ctx context.Context, d *Daemon) {
	t.Helper()
	authURL, err := d.Flow().Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st, err := d.Flow().Complete(ctx, consent(t, ctx, authURL))
	if err != nil || st.State != model.AuthOK {
		t.Fatalf("complete: %+v %v", st, err)
	}
}

// round lets the scheduler start what is due and waits for it.
func round(ctx context.Context, d *Daemon) []string {
	started := d.Scheduler().RunDue(ctx)
	d.Scheduler().Wait()
	slices.Sort(started)
	return started
}

// TestHistoryChainedAfterDevices: the product's scheduling policy. At
// start-up and after each new authorization, history runs again as soon
// as a devices run stored the inventory, once; on authorization homes and
// devices start at once (history waits for devices). Observers hear of
// every run and of the authorization.
func TestHistoryChainedAfterDevices(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	clk := clock.NewFake(start)
	cfg, _ := testConfig(t, clk)
	rec := &recorder{}
	d := openTest(t, ctx, cfg, clk, Options{Observers: []Observer{rec}})
	authorize(t, ctx, d)
	if _, auth := rec.snapshot(); !slices.Contains(auth, model.AuthOK) {
		t.Fatalf("observer was not told about the authorization: %v", auth)
	}

	// Start-up: everything is due at once.
	if got := round(ctx, d); !slices.Equal(got, []string{"devices", "history", "homes"}) {
		t.Fatalf("first round started %v", got)
	}
	// The first devices run chained one more history run...
	if got := round(ctx, d); !slices.Equal(got, []string{"history"}) {
		t.Fatalf("after the first devices run, round started %v; want history", got)
	}
	// ...and only one.
	if got := round(ctx, d); len(got) != 0 {
		t.Fatalf("third round started %v; want nothing before the next slot", got)
	}

	// A new authorization triggers homes and devices, not history; the
	// devices run chains history again.
	d.authorized(model.AuthStatus{State: model.AuthOK})
	if got := round(ctx, d); !slices.Equal(got, []string{"devices", "homes"}) {
		t.Fatalf("after authorization, round started %v; want devices and homes", got)
	}
	if got := round(ctx, d); !slices.Equal(got, []string{"history"}) {
		t.Fatalf("after the devices run that followed authorization, round started %v; want history", got)
	}
	runs, _ := rec.snapshot()
	want := map[string]int{"homes/ok": 2, "devices/ok": 2, "history/ok": 3}
	got := map[string]int{}
	for _, r := range runs {
		got[r]++
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("observer saw %d runs %s, want %d (all: %v)", got[k], k, n, runs)
		}
	}

	// RunJob (tibbersync sync) is observed too, with the cycle deadline.
	if r, err := d.RunJob(ctx, jobs.JobHomes); err != nil || r.Status != jobs.StatusOK {
		t.Fatalf("RunJob homes: %+v %v", r, err)
	}
	if runs2, _ := rec.snapshot(); len(runs2) != len(runs)+1 {
		t.Fatalf("RunJob was not observed: %v", runs2)
	}
}

// TestQuietSkipsWithoutAuthorization: before setup the first scheduled run
// of each job is recorded as skipped, later slots write nothing.
func TestQuietSkipsWithoutAuthorization(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	clk := clock.NewFake(start)
	cfg, sim := testConfig(t, clk)
	d := openTest(t, ctx, cfg, clk, Options{})
	// history with no stored inventory has nothing to fetch and ends ok
	// without a call, so only homes and devices can be skipped.
	count := func() int {
		db, err := sql.Open("sqlite", "file:"+filepath.Join(cfg.Storage.Dir, "data.db")+"?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var n int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sync_runs WHERE job IN ('homes', 'devices') AND status = 'skipped'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	round(ctx, d)
	if n := count(); n != 2 {
		t.Fatalf("first slot without authorization recorded %d skipped runs, want 2: %s", n, dumpRuns(t, cfg))
	}
	for range 3 {
		clk.Advance(time.Hour)
		if got := round(ctx, d); !slices.Contains(got, jobs.JobDevices) {
			t.Fatalf("devices not due an hour later (started %v)", got)
		}
	}
	if n := count(); n != 2 {
		t.Fatalf("later slots recorded skipped runs: %d, want still 2: %s", n, dumpRuns(t, cfg))
	}
	if n := sim.Stats().Requests["homes"]; n != 0 {
		t.Fatalf("%d API calls without authorization", n)
	}
}

// TestRunServesOnListenerAndStops: Run serves on the handed-over listener
// (no port closed and hoped free), is Ready, and returns nil on cancel;
// Close releases the socket.
func TestRunServesOnListenerAndStops(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	clk := clock.NewFake(start)
	cfg, _ := testConfig(t, clk)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := openTest(t, ctx, cfg, clk, Options{Listener: ln, Metrics: true})
	if got, want := d.URL(), "http://"+ln.Addr().String(); got != want {
		t.Fatalf("URL before Run = %q, want the listener's %q", got, want)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()
	select {
	case <-d.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	for _, path := range []string{"/healthz", "/metrics", "/setup"} {
		resp, err := http.Get(d.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %s", path, resp.Status)
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ln.Accept(); err == nil {
		t.Fatal("listener still open after Close")
	}
}

// TestOpenErrors: a configuration the daemon cannot serve is a
// ConfigError (exit 78); a second service on the same directory is not.
func TestOpenErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	clk := clock.NewFake(start)
	cfg, _ := testConfig(t, clk)

	remote := cfg
	remote.Web.Listen = "192.0.2.1:8765" // beyond loopback without allow_remote
	if _, err := Open(ctx, remote, Options{Clock: clk}); err == nil || !IsConfigError(err) {
		t.Fatalf("non-loopback listen: %v, want a ConfigError", err)
	}

	d, err := Open(ctx, cfg, Options{Clock: clk, Service: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := Open(ctx, cfg, Options{Clock: clk, Service: true}); err == nil || IsConfigError(err) {
		t.Fatalf("second service on one directory: %v, want a lock error that is not a ConfigError", err)
	}
	// Not a service (tibbersync sync): opens beside the running daemon.
	d2, err := Open(ctx, cfg, Options{Clock: clk})
	if err != nil {
		t.Fatalf("sync beside the daemon: %v", err)
	}
	d2.Close()
}

func TestJobIntervalsAndTimeouts(t *testing.T) {
	cfg := config.Default()
	cfg.Schedule = config.Schedule{Homes: "0 * * * *", Devices: "@every 2s", History: "7 */3 * * *"}
	got := JobIntervals(cfg)
	want := map[string]time.Duration{"homes": time.Hour, "devices": 2 * time.Second, "history": 3 * time.Hour}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("interval %s = %s, want %s", k, got[k], v)
		}
	}
	if JobTimeout(cfg, "history") != 6*cfg.Sync.CycleTimeout || JobTimeout(cfg, "devices") != cfg.Sync.CycleTimeout {
		t.Errorf("timeouts: history %s, devices %s (cycle %s)", JobTimeout(cfg, "history"), JobTimeout(cfg, "devices"), cfg.Sync.CycleTimeout)
	}
}

func dumpRuns(t *testing.T, cfg config.Config) string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(cfg.Storage.Dir, "data.db")+"?mode=ro")
	if err != nil {
		return err.Error()
	}
	defer db.Close()
	rows, err := db.Query(`SELECT job, status, error FROM sync_runs ORDER BY id`)
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var j, s string
		var e sql.NullString
		_ = rows.Scan(&j, &s, &e)
		fmt.Fprintf(&b, "%s %s %s; ", j, s, e.String)
	}
	return b.String()
}

// consent follows an authorize URL at the AutoConsent simulator and
// returns where it redirects the browser (the redirect URL with code and
// state).
func consent(t *testing.T, ctx context.Context, authURL string) *url.URL {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
	req.Header.Set("User-Agent", version.UserAgent())
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	loc, err := resp.Location()
	if err != nil {
		t.Fatalf("authorize: %s, no redirect", resp.Status)
	}
	return loc
}

// TestAuthorizationAdvancesControlGenerationOnce: every authorization,
// through the control socket (`tibbersync setup`, paste) or through the
// web page's /callback (browser flow), advances the control socket's
// generation exactly once, so OpWait and OpComplete's After see one new
// authorization, not two.
func TestAuthorizationAdvancesControlGenerationOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	clk := clock.NewFake(start)
	cfg, _ := testConfig(t, clk)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := openTest(t, ctx, cfg, clk, Options{Listener: ln, Service: true})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	select {
	case <-d.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	cli := control.NewClient(cfg.Storage.Dir)

	// Through the socket.
	first, err := cli.Do(ctx, control.Request{Op: control.OpStart})
	if err != nil {
		t.Fatal(err)
	}
	loc := consent(t, ctx, first.AuthorizeURL)
	if _, err := cli.Do(ctx, control.Request{Op: control.OpComplete, Redirect: loc.String(), After: &first.Generation}); err != nil {
		t.Fatalf("complete through the socket: %v", err)
	}
	second, err := cli.Do(ctx, control.Request{Op: control.OpStart})
	if err != nil {
		t.Fatal(err)
	}
	if second.Generation != first.Generation+1 {
		t.Errorf("one authorization through the control socket moved the generation from %d to %d, want %d", first.Generation, second.Generation, first.Generation+1)
	}

	// Through the web page's /callback.
	loc = consent(t, ctx, second.AuthorizeURL)
	resp, err := http.Get(d.URL() + "/callback?" + loc.RawQuery)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /callback: %s\n%.400s", resp.Status, body)
	}
	after, err := cli.Do(ctx, control.Request{Op: control.OpStart})
	if err != nil {
		t.Fatal(err)
	}
	if after.Generation != second.Generation+1 {
		t.Errorf("one authorization through /callback moved the generation from %d to %d, want %d", second.Generation, after.Generation, second.Generation+1)
	}
}
