package main

import (
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
		// Saved while the clock ran 48 h ahead, then corrected: unknown, not fresh.
		"SuccessInTheFuture": {model.Summary{Auth: model.AuthSummary{State: model.AuthOK}, Jobs: []model.JobSummary{
			{Job: "devices", LastSuccessAt: now.Add(48 * time.Hour)},
			{Job: "homes", LastSuccessAt: now.Add(-50 * time.Minute)},
		}}, statusStale},
		// A minute ahead is ordinary skew between processes, not suspect.
		"SuccessJustAhead": {model.Summary{Auth: model.AuthSummary{State: model.AuthOK}, Jobs: []model.JobSummary{
			{Job: "devices", LastSuccessAt: now.Add(time.Minute)},
			{Job: "homes", LastSuccessAt: now.Add(-50 * time.Minute)},
		}}, statusHealthy},
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
	simulator.Configure(&cfg, srv.URL, redirect)
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

// TestStatusPageChartsSimulatorData renders / from real data after a
// 30-day backfill: every chart is drawn from stored history (data-source
// "history"), is well-formed, and the battery's hourly state of charge has a
// point for (nearly) every hour of the last 7 days, not one dot.
func TestStatusPageChartsSimulatorData(t *testing.T) {
	a, _, _ := syncedApp(t)
	if r, err := a.RunJob(testCtx(t, 60*time.Second), "history"); err != nil || r.Status != "ok" {
		t.Fatalf("history: %+v %v", r, err)
	}
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
	svgs := regexp.MustCompile(`(?s)<figure class="chart" id="([^"]+)">.*?(<svg class="plot".*?</svg>)`).FindAllStringSubmatch(page, -1)
	if len(svgs) == 0 {
		t.Fatalf("no chart on the status page:\n%s", page)
	}
	var socHour, energyDay string
	for _, m := range svgs {
		s := m[2]
		if err := xml.Unmarshal([]byte(s), new(struct{})); err != nil {
			t.Fatalf("chart SVG is not well-formed XML: %v\n%s", err, s)
		}
		if !strings.Contains(s, `data-source="history"`) {
			t.Fatalf("chart %s is not drawn from history", m[1])
		}
		switch {
		case strings.HasSuffix(m[1], "-soc-hour") && socHour == "":
			socHour = s
		case strings.HasSuffix(m[1], "-energy-day") && energyDay == "":
			energyDay = s
		}
	}
	if socHour == "" || energyDay == "" {
		t.Fatalf("no hourly state-of-charge or daily energy chart among %d charts", len(svgs))
	}
	points := func(svg string) int {
		most := 0
		for _, d := range regexp.MustCompile(` d="([^"]+)"`).FindAllStringSubmatch(svg, -1) {
			most = max(most, strings.Count(d[1], ",")) // one comma per point
		}
		return most
	}
	if n := points(socHour); n < 150 {
		t.Fatalf("hourly state of charge has %d points, want about 168 (7 days)", n)
	}
	if n := points(energyDay); n < 25 {
		t.Fatalf("daily energy has %d points, want about 30", n)
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
			cols, err := rows.Columns()
			if err != nil {
				t.Fatal(err)
			}
			named := false
			for _, c := range cols {
				if c == "device_id" {
					t.Errorf("example prints 80-character device ids instead of names:\n%s", q)
				}
				named = named || c == "device_name" || c == "name"
			}
			if strings.Contains(q, "device") && strings.Contains(q, "history") && !named {
				t.Errorf("history example prints no device name:\n%s", q)
			}
			n := 0
			for rows.Next() {
				n++
				vals := make([]any, len(cols))
				ptrs := make([]any, len(cols))
				for i := range vals {
					ptrs[i] = &vals[i]
				}
				if err := rows.Scan(ptrs...); err != nil {
					t.Fatal(err)
				}
				for i, c := range cols {
					if c != "device_name" && c != "name" {
						continue
					}
					if v, ok := vals[i].(string); !ok || v == "" {
						t.Errorf("example prints an empty %s (%#v):\n%s", c, vals[i], q)
					}
				}
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

// TestStatusExitCodesMatchREADME: `status` with a config file that does not
// load exits 78 like every command (its 6 is the stored auth state
// config_error), and README.md's list of status exit codes says exactly
// what the code does.
func TestStatusExitCodesMatchREADME(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte("[schedule]\ndevices = \"not cron\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t, 10*time.Second)
	for _, args := range [][]string{{"-c", cfg, "status"}, {"-c", cfg, "status", "--json"}} {
		code, out, errOut := runCmd(t, ctx, nil, "", args...)
		if code != exitConfig || !strings.Contains(errOut, "schedule.devices") || out != "" {
			t.Errorf("%v with a bad config: exit %d, stdout %q, stderr %q; want 78 naming schedule.devices", args, code, out, errOut)
		}
	}

	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)`tibbersync status \\[--json\\]` reads data.db.*?Exit codes: (.*?)\n\n").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no exit-code list for tibbersync status")
	}
	doc := strings.Join(strings.Fields(string(m[1])), " ")
	for code, want := range map[int]string{
		statusHealthy:        "`0` healthy",
		statusError:          "`1` data.db missing",
		statusStale:          "`3` stale",
		statusSetupRequired:  "`4` setup required",
		statusReauthRequired: "`5` re-authorization required",
		statusConfigError:    "`6` Tibber rejected the client configuration (auth state `config_error`)",
		exitConfig:           "does not load exits `78`",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("README.md's status exit codes lack %q for %d:\n%s", want, code, doc)
		}
	}
}
