package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/simulator"
)

// historyGate holds the gateAt-th history request of the simulator until
// release is closed, so a test can look at a backfill while it runs.
type historyGate struct {
	gateAt  int64
	n       atomic.Int64
	held    chan struct{}
	release chan struct{}
	once    sync.Once
}

func (g *historyGate) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/history") && g.n.Add(1) == g.gateAt {
			g.once.Do(func() { close(g.held) })
			select {
			case <-g.release:
			case <-r.Context().Done():
			}
		}
		next.ServeHTTP(w, r)
	})
}

// daemonProc is `tibbersync run` started in-process.
type daemonProc struct {
	stop func()
	done chan int
	log  *syncBuffer
}

func startDaemon(t *testing.T, ctx context.Context, f *fixture) *daemonProc {
	t.Helper()
	runCtx, stop := context.WithCancel(ctx)
	d := &daemonProc{stop: stop, done: make(chan int, 1), log: &syncBuffer{}}
	go func() {
		env := f.runEnv(d.log)
		d.done <- exitCode(runWith(runCtx, []string{"-c", f.cfgPath, "run"}, env))
	}()
	base := fmt.Sprintf("http://127.0.0.1:%d", f.port)
	waitFor(t, ctx, func() bool {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return d
}

func (d *daemonProc) wait(t *testing.T) {
	t.Helper()
	select {
	case code := <-d.done:
		if code != 0 {
			t.Fatalf("daemon exit %d\n%s", code, d.log.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("daemon did not stop\n%s", d.log.String())
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestTruthfulStatusDuringBackfill is issue 13's acceptance test: a real
// backfill against the simulator with added latency, watched while it runs.
func TestTruthfulStatusDuringBackfill(t *testing.T) {
	gate := &historyGate{gateAt: 4, held: make(chan struct{}), release: make(chan struct{})}
	f := newFixtureWrapped(t, nil, gate.wrap)
	f.sim.Faults().Add(simulator.Fault{Endpoint: "history", Kind: simulator.KindLatency, Delay: 20 * time.Millisecond})
	ctx := testCtx(t, 4*time.Minute)
	base := fmt.Sprintf("http://127.0.0.1:%d", f.port)
	dataPath := filepath.Join(f.dir, "state", "data.db")

	statusJSON := func() (int, statusReport) {
		t.Helper()
		code, out, errOut := runCmd(t, ctx, f.environ, "", "-c", f.cfgPath, "status", "--json")
		var rep statusReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("status --json (exit %d): %v\n%s\n%s", code, err, out, errOut)
		}
		return code, rep
	}
	// agree checks that /readyz and `status` give the same verdict now.
	agree := func(when string) int {
		t.Helper()
		code, rep := statusJSON()
		ready, body := httpGet(t, base+"/readyz")
		if (ready == http.StatusOK) != (code == 0) || rep.Healthy != (code == 0) {
			t.Fatalf("%s: /readyz %d but status exit %d (healthy %v)\n/readyz:\n%s\nstatus problems: %q", when, ready, code, rep.Healthy, body, rep.Problems)
		}
		return code
	}
	query := func(q string) int {
		t.Helper()
		ro, err := sql.Open("sqlite", "file:"+dataPath+"?mode=ro&_pragma=busy_timeout(10000)")
		if err != nil {
			t.Fatal(err)
		}
		defer ro.Close()
		var n int
		if err := ro.QueryRowContext(ctx, q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}

	// Before authorization: every job is skipped, none is "ok".
	d := startDaemon(t, ctx, f)
	waitFor(t, ctx, func() bool { return query(`SELECT count(*) FROM sync_runs WHERE job = 'history'`) > 0 })
	if n := query(`SELECT count(*) FROM sync_runs WHERE status = 'ok'`); n != 0 {
		t.Fatalf("%d ok runs before authorization", n)
	}
	if n := query(`SELECT count(*) FROM sync_runs WHERE status <> 'skipped'`); n != 0 {
		t.Fatalf("%d runs before authorization that are not skipped", n)
	}
	if code := agree("before authorization"); code != statusSetupRequired {
		t.Fatalf("status before authorization: exit %d, want %d", code, statusSetupRequired)
	}

	// Authorize: devices run, then the history backfill, which is held at
	// its fourth page.
	if err := walkConsent(ctx, base); err != nil {
		t.Fatalf("setup flow: %v", err)
	}
	select {
	case <-gate.held:
	case <-ctx.Done():
		t.Fatalf("the backfill never reached its fourth page\n%s", d.log.String())
	}
	code, rep := statusJSON()
	var hist *struct{ running bool }
	for _, j := range rep.Jobs {
		if j.Job != "history" {
			continue
		}
		hist = &struct{ running bool }{j.Running}
		if !j.Running || j.Progress == nil || j.Progress.StreamsTotal == 0 || j.Progress.StreamsDone == 0 || j.Progress.Pages == 0 || j.Progress.Requests == 0 {
			t.Fatalf("status --json during the backfill: history %+v progress %+v", j, j.Progress)
		}
	}
	if hist == nil {
		t.Fatal("status --json lists no history job")
	}
	if c := agree("during the backfill"); c != code {
		t.Fatalf("status changed its mind: %d then %d", code, c)
	}
	_, page := httpGet(t, base+"/")
	for _, want := range []string{`<span class="running-badge">running</span>`, "streams done"} {
		if !strings.Contains(page, want) {
			t.Fatalf("status page during the backfill lacks %q", want)
		}
	}
	_, plain := runCmdOut(t, ctx, f, "status")
	if !strings.Contains(plain, "RUNNING since") {
		t.Fatalf("status during the backfill does not say running:\n%s", plain)
	}

	// Stop mid-run: the run ends interrupted, not failed.
	d.stop()
	close(gate.release)
	d.wait(t)
	if n := query(`SELECT count(*) FROM sync_runs WHERE job = 'history' AND status = 'interrupted'`); n != 1 {
		t.Fatalf("%d interrupted history runs after the stop, want 1\n%s", n, d.log.String())
	}
	if n := query(`SELECT count(*) FROM sync_runs WHERE status IN ('failed', 'running')`); n != 0 {
		t.Fatalf("%d failed or still running runs after a clean stop", n)
	}

	// Restart: the backfill resumes and finishes; both surfaces turn healthy together.
	// The daemon was down long enough that devices is due at the restart
	// too: its first run must not start history a second time.
	rw, err := sql.Open("sqlite", "file:"+dataPath+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rw.ExecContext(ctx, `UPDATE job_state SET next_run_at = ?1 WHERE job IN ('homes', 'devices')`, time.Now().Add(-time.Minute).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	rw.Close()
	restarted := time.Now().UnixMilli() // after the first daemon stopped
	d = startDaemon(t, ctx, f)
	stopped := false
	defer func() {
		if !stopped {
			d.stop()
			d.wait(t)
		}
	}()
	waitFor(t, ctx, func() bool {
		code, _ := statusJSON()
		return code == 0
	})
	agree("after the backfill")
	// The homes job says what it saw, even though the devices job stored
	// the homes first.
	_, rep = statusJSON()
	for _, j := range rep.Jobs {
		if j.Job == "homes" && (j.LastProgress == nil || j.LastProgress.Homes != 2 || j.LastProgress.Devices == 0) {
			t.Fatalf("homes job reports %+v, want the 2 homes and their devices it saw", j.LastProgress)
		}
	}
	for _, view := range []string{"history_hourly", "history_daily", "latest_capabilities"} {
		if n := query(`SELECT count(*) FROM ` + view); n == 0 {
			t.Fatalf("%s is empty", view)
		}
		if n := query(`SELECT count(*) FROM ` + view + ` WHERE device_name IS NULL OR device_name = ''`); n != 0 {
			t.Fatalf("%s: %d rows without device_name", view, n)
		}
	}
	_, page = httpGet(t, base+"/")
	if !strings.Contains(page, `<svg class="plot" data-source="history"`) {
		t.Fatal(`status page has no <svg data-source="history">`)
	}

	// The user revokes the grant: the next refresh fails, and nothing
	// promises a renewal any more.
	f.sim.RevokeGrants()
	f.sim.Faults().Add(simulator.Fault{Endpoint: "api", Kind: simulator.KindUnauthorizedOnce, Count: 1})
	runCmd(t, ctx, f.environ, "", "-c", f.cfgPath, "sync", "devices")
	waitFor(t, ctx, func() bool {
		_, page = httpGet(t, base+"/")
		return strings.Contains(page, "Re-authorization required")
	})
	for _, bad := range []string{"renewed", "days left", "left (estimate"} {
		if strings.Contains(page, bad) {
			t.Fatalf("after a revoked grant the page still promises %q", bad)
		}
	}
	if !strings.Contains(page, `id="auth-action"`) {
		t.Fatal("after a revoked grant the page does not say what to do")
	}
	if code := agree("after the grant was revoked"); code != statusReauthRequired {
		t.Fatalf("status after a revoked grant: exit %d, want %d", code, statusReauthRequired)
	}
	_, rep = statusJSON()
	if !rep.Auth.AccessExpiresAt.IsZero() || !rep.Auth.RefreshExpiresEst.IsZero() || len(rep.Checks) == 0 || rep.Checks[0].Action == "" {
		t.Fatalf("status --json after a revoked grant promises expiries or says nothing to do: auth %+v, checks %+v", rep.Auth, rep.Checks)
	}
	_, plain = runCmdOut(t, ctx, f, "status")
	if strings.Contains(plain, "days left") || strings.Contains(plain, "refreshed ahead") || !strings.Contains(plain, "what to do:") {
		t.Fatalf("status after a revoked grant:\n%s", plain)
	}

	// The restarted daemon ran history once (resuming the backfill), not
	// twice back to back after its first devices run.
	d.stop()
	d.wait(t)
	stopped = true
	if n := query(fmt.Sprintf(`SELECT count(*) FROM sync_runs WHERE job = 'history' AND status <> 'skipped' AND started_at >= %d`, restarted)); n != 1 {
		ro, _ := sql.Open("sqlite", "file:"+dataPath+"?mode=ro")
		rows, _ := ro.QueryContext(ctx, `SELECT id, started_at, coalesce(finished_at, 0), job || ' ' || status, coalesce(error, ''), requests FROM sync_runs ORDER BY id`)
		var b strings.Builder
		for rows != nil && rows.Next() {
			var id, st, fin, req int64
			var status, msg string
			_ = rows.Scan(&id, &st, &fin, &status, &msg, &req)
			fmt.Fprintf(&b, "%d %d %d %s %d %.100s\n", id, st, fin, status, req, msg)
		}
		ro.Close()
		t.Fatalf("history ran %d times after the restart, want once; runs:\n%s", n, b.String())
	}
}

// runCmdOut runs a CLI command against the fixture's config.
func runCmdOut(t *testing.T, ctx context.Context, f *fixture, args ...string) (int, string) {
	t.Helper()
	code, out, _ := runCmd(t, ctx, f.environ, "", append([]string{"-c", f.cfgPath}, args...)...)
	return code, out
}
