package main

import (
	"context"
	"database/sql"
	"encoding/xml"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/config"
	"github.com/tibbersync/tibbersync/internal/daemon"
	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/simulator"
)

func TestJudgeExitCodes(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	iv := map[string]time.Duration{"devices": 5 * time.Minute, "homes": time.Hour}
	fresh := []model.JobSummary{
		{Job: "devices", LastSuccessAt: now.Add(-4 * time.Minute)},
		{Job: "homes", LastSuccessAt: now.Add(-50 * time.Minute)},
	}
	for name, tc := range map[string]struct {
		s    model.Summary
		want int
	}{
		"Healthy":        {model.Summary{Auth: model.AuthSummary{State: model.AuthOK}, Jobs: fresh}, statusHealthy},
		"SetupRequired":  {model.Summary{Auth: model.AuthSummary{State: model.AuthSetupRequired}}, statusSetupRequired},
		"ReauthRequired": {model.Summary{Auth: model.AuthSummary{State: model.AuthReauthRequired, Reason: "invalid_grant"}, Jobs: fresh}, statusReauthRequired},
		"ConfigError":    {model.Summary{Auth: model.AuthSummary{State: model.AuthConfigError}, Jobs: fresh}, statusConfigError},
		"Stale": {model.Summary{Auth: model.AuthSummary{State: model.AuthOK}, Jobs: []model.JobSummary{
			{Job: "devices", LastSuccessAt: now.Add(-16 * time.Minute)},
			{Job: "homes", LastSuccessAt: now.Add(-50 * time.Minute)},
		}}, statusStale},
		"NeverSucceeded": {model.Summary{Auth: model.AuthSummary{State: model.AuthOK}, Jobs: []model.JobSummary{{Job: "devices"}}}, statusStale},
	} {
		t.Run(name, func(t *testing.T) {
			rep := judge(tc.s, iv, now)
			if rep.ExitCode != tc.want || rep.Healthy != (tc.want == 0) {
				t.Fatalf("exit %d healthy %v, want %d; problems %q", rep.ExitCode, rep.Healthy, tc.want, rep.Problems)
			}
			if tc.want != 0 && len(rep.Problems) == 0 {
				t.Fatal("unhealthy report names no problem")
			}
		})
	}
}

// syncedApp wires the real components against the simulator on a shared
// fake clock, authorizes, and runs homes plus a devices cycle every 15
// minutes of simulated time for six hours.
func syncedApp(t *testing.T) (*daemon.Daemon, *clock.Fake, string) {
	a, clk, dir, _ := syncedAppSim(t)
	return a, clk, dir
}

func syncedAppSim(t *testing.T) (*daemon.Daemon, *clock.Fake, string, *simulator.Simulator) {
	t.Helper()
	ctx := testCtx(t, 60*time.Second)
	clk := clock.NewFake(time.Date(2026, 11, 28, 6, 0, 0, 0, time.UTC))
	redirect := simulator.DefaultRedirectURI
	sim := simulator.New(simulator.Options{Now: clk.Now, Seed: 3, AutoConsent: true, RedirectURIs: []string{redirect}})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	t.Cleanup(sim.Close)
	sim.SetBaseURL(srv.URL)

	dir := t.TempDir()
	cfg := config.Default()
	cfg.Storage.Dir = filepath.Join(dir, "state")
	cfg.Tibber.ClientID = simulator.DefaultClientID
	cfg.ClientSecret = logging.NewSecret(simulator.DefaultClientSecret)
	cfg.Tibber.RedirectURL = redirect
	cfg.Tibber.AuthURL = srv.URL + "/connect/authorize"
	cfg.Tibber.TokenURL = srv.URL + "/connect/token"
	cfg.Tibber.UserinfoURL = srv.URL + "/connect/userinfo"
	cfg.Tibber.APIURL = srv.URL
	cfg.Tibber.RequestsPerSecond = 1000
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a, err := daemon.Open(ctx, cfg, daemon.Options{Clock: clk, Metrics: true, Logger: logging.Discard(), Listener: ln})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	authURL, err := a.Flow().Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
	req.Header.Set("User-Agent", "tibbersync-test/1.0 (linux; amd64)")
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := resp.Location()
	if err != nil {
		t.Fatalf("authorize did not redirect: %s", resp.Status)
	}
	if _, err := a.Flow().Complete(ctx, loc); err != nil {
		t.Fatal(err)
	}
	if r, err := a.RunJob(ctx, "homes"); err != nil || r.Status != "ok" {
		t.Fatalf("homes: %+v %v", r, err)
	}
	for i := 0; i < 24; i++ {
		if r, err := a.RunJob(ctx, "devices"); err != nil || r.Status != "ok" {
			t.Fatalf("devices cycle %d: %+v %v", i, r, err)
		}
		clk.Advance(15 * time.Minute)
	}
	return a, clk, cfg.Storage.Dir, sim
}

// TestStatusPageChartsSimulatorData renders / from real data: the page is
// well-formed, and the state-of-charge chart has a polyline per battery and
// vehicle with a point for each stored change.
func TestStatusPageChartsSimulatorData(t *testing.T) {
	a, clk, _ := syncedApp(t)
	// The daemon's own web server on its listener.
	if err := a.Web().Open(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(a.URL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %s\n%s", resp.Status, body)
	}
	page := string(body)
	svgs := regexp.MustCompile(`(?s)<svg class="plot".*?</svg>`).FindAllString(page, -1)
	if len(svgs) == 0 {
		t.Fatalf("no chart on the status page:\n%s", page)
	}
	var soc string
	for _, s := range svgs {
		if err := xml.Unmarshal([]byte(s), new(struct{})); err != nil {
			t.Fatalf("chart SVG is not well-formed XML: %v\n%s", err, s)
		}
		if strings.Contains(s, "stateOfCharge") || strings.Contains(s, "state of charge") || strings.Contains(strings.ToLower(s), "charge") {
			soc = s
		}
	}
	if soc == "" {
		t.Fatalf("no state-of-charge chart among %d charts", len(svgs))
	}
	lines := regexp.MustCompile(`points="([^"]+)"`).FindAllStringSubmatch(soc, -1)
	if len(lines) < 2 {
		t.Fatalf("state-of-charge chart has %d polylines, want one per battery and vehicle (>= 2):\n%s", len(lines), soc)
	}
	series, err := a.Store().CapabilitySeries(context.Background(), "storage.stateOfCharge", clk.Now().Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	maxPoints := 0
	for _, s := range series {
		maxPoints = max(maxPoints, len(s.Points))
	}
	most := 0
	for _, l := range lines {
		most = max(most, len(strings.Fields(l[1])))
	}
	if maxPoints < 3 || most < 3 {
		t.Fatalf("simulator data gave %d points at most and the chart %d; want a real curve", maxPoints, most)
	}
}

// TestBackupCommand: a consistent, checked copy that refuses to overwrite.
func TestBackupCommand(t *testing.T) {
	_, _, stateDir := syncedApp(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte("[storage]\ndir = \""+stateDir+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t, 30*time.Second)
	dest := filepath.Join(dir, "copy.db")
	if code, out, errOut := runCmd(t, ctx, nil, "", "-c", cfg, "backup", dest); code != 0 || !strings.Contains(out, "checked") {
		t.Fatalf("backup: exit %d, out %q, err %q", code, out, errOut)
	}
	if code, _, errOut := runCmd(t, ctx, nil, "", "-c", cfg, "backup", dest); code == 0 || !strings.Contains(errOut, "exist") {
		t.Fatalf("backup over an existing file: exit %d, err %q; want a refusal", code, errOut)
	}
	if code, _, errOut := runCmd(t, ctx, nil, "", "-c", cfg, "backup", "--force", dest); code != 0 {
		t.Fatalf("backup --force: exit %d, err %q", code, errOut)
	}
}

// TestMetricsCountTokenAndDataAPIRequests: /metrics sees the Data API routes
// and the token endpoint (through the observing transport).
func TestMetricsCountTokenAndDataAPIRequests(t *testing.T) {
	a, _, _ := syncedApp(t)
	rec := httptest.NewRecorder()
	a.Metrics().Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`tibbersync_http_requests_total{endpoint="token",status="200"}`,
		`tibbersync_http_requests_total{endpoint="homes",status="200"}`,
		`tibbersync_http_requests_total{endpoint="device",status="200"}`,
		`tibbersync_http_requests_total{endpoint="userinfo",status="200"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestQuietSkipWhileReauthRequired: once Tibber rejects the refresh token,
// the first skipped run of each job is recorded, later slots write nothing
// (SD-card wear) and make no call.
func TestQuietSkipWhileReauthRequired(t *testing.T) {
	a, clk, _, sim := syncedAppSim(t)
	ctx := testCtx(t, 30*time.Second)
	sim.RevokeGrants()
	clk.Advance(2 * time.Hour)     // the access token expired: the next call refreshes
	runner := a.Scheduler().Runner // the scheduler's: quiet skips
	r, err := runner.Run(ctx, "devices")
	if r.Status != "skipped" || err == nil {
		t.Fatalf("first run after revocation: %+v, %v; want skipped", r, err)
	}
	if st, _ := a.Auth().Status(ctx); st.State != model.AuthReauthRequired {
		t.Fatalf("state = %s, want reauth_required", st.State)
	}
	countRuns := func() int64 {
		s, err := a.Store().Summary(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return s.Tables["sync_runs"]
	}
	before := countRuns()
	tokenCalls := sim.Stats().TokenRequests["refresh_token"]
	for i := 0; i < 5; i++ {
		clk.Advance(5 * time.Minute)
		if r, _ := runner.Run(ctx, "devices"); r.Status != "skipped" {
			t.Fatalf("run %d while reauth_required: %+v", i, r)
		}
	}
	if got := countRuns(); got != before {
		t.Fatalf("sync_runs grew from %d to %d while re-authorization was pending", before, got)
	}
	if got := sim.Stats().TokenRequests["refresh_token"]; got != tokenCalls {
		t.Fatalf("refresh requests grew from %d to %d while re-authorization was pending", tokenCalls, got)
	}
}

// TestSchemaDocExampleQueries runs every SQL example in docs/schema.md on a
// read-only connection to a data.db filled from the simulator: analysts copy
// these, so they must run and the main ones must return rows.
func TestSchemaDocExampleQueries(t *testing.T) {
	a, _, stateDir := syncedApp(t)
	ctx := testCtx(t, 60*time.Second)
	if r, err := a.RunJob(ctx, "history"); err != nil || r.Status != "ok" {
		t.Fatalf("history: %+v %v", r, err)
	}
	doc, err := os.ReadFile("../../docs/schema.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(string(doc), -1)
	if len(blocks) < 5 {
		t.Fatalf("found %d SQL examples in docs/schema.md, want at least 5", len(blocks))
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(stateDir, "data.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	mustHaveRows := []string{"latest_capabilities", "energyFlow.gridImport", "avg_temp_c", "FROM sync_health"}
	ran := 0
	for _, b := range blocks {
		for _, stmt := range strings.Split(b[1], ";") {
			var lines []string
			for _, l := range strings.Split(stmt, "\n") {
				if !strings.HasPrefix(strings.TrimSpace(l), "--") {
					lines = append(lines, l)
				}
			}
			q := strings.TrimSpace(strings.Join(lines, "\n"))
			if q == "" {
				continue
			}
			ran++
			rows, err := db.QueryContext(ctx, q)
			if err != nil {
				t.Errorf("example query fails: %v\n%s", err, q)
				continue
			}
			n := 0
			for rows.Next() {
				n++
			}
			if err := rows.Err(); err != nil {
				t.Errorf("example query: %v\n%s", err, q)
			}
			rows.Close()
			for _, key := range mustHaveRows {
				if strings.Contains(q, key) && n == 0 {
					t.Errorf("example query returned no rows on simulator data:\n%s", q)
				}
			}
		}
	}
	if ran < 7 {
		t.Fatalf("ran %d example statements, want at least 7", ran)
	}
}
