package daemon_test

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/config"
	"github.com/tibbersync/tibbersync/internal/daemon"
	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/simulator"
	"github.com/tibbersync/tibbersync/internal/testutil"
	"github.com/tibbersync/tibbersync/internal/tibber"
	"github.com/tibbersync/tibbersync/internal/version"
)

var start = time.Date(2026, 9, 14, 10, 0, 0, 0, time.UTC)

// stamp is one request the simulator received, at fake-clock time.
type stamp struct {
	at       time.Time
	endpoint string
}

// rig is a simulator on loopback and daemons on one state directory, all on
// one fake clock, with every request stamped.
type rig struct {
	t    *testing.T
	clk  *clock.Fake
	sim  *simulator.Simulator
	srv  *httptest.Server
	dir  string
	logs *testutil.SyncBuffer

	mu     sync.Mutex
	stamps []stamp
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{t: t, clk: clock.NewFake(start), dir: t.TempDir(), logs: &testutil.SyncBuffer{}}
	r.sim = simulator.New(simulator.Options{Seed: 7, Now: r.clk.Now, AutoConsent: true})
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.HasPrefix(req.URL.Path, "/v1/") {
			r.mu.Lock()
			r.stamps = append(r.stamps, stamp{at: r.clk.Now(), endpoint: tibber.Route(req.URL)})
			r.mu.Unlock()
		}
		r.sim.ServeHTTP(w, req)
	}))
	r.sim.SetBaseURL(r.srv.URL)
	t.Cleanup(func() {
		r.sim.Close()
		r.srv.Close()
		if t.Failed() {
			t.Logf("log:\n%s", r.logs.String())
		}
	})
	return r
}

func (r *rig) config() config.Config {
	cfg := config.Default()
	cfg.Storage.Dir = r.dir
	cfg.Tibber.ClientID = simulator.DefaultClientID
	cfg.ClientSecret = logging.NewSecret(simulator.DefaultClientSecret)
	cfg.ClientSecretSource = "test"
	cfg.Tibber.RedirectURL = simulator.DefaultRedirectURI
	cfg.Tibber.AuthURL = r.srv.URL + "/connect/authorize"
	cfg.Tibber.TokenURL = r.srv.URL + "/connect/token"
	cfg.Tibber.UserinfoURL = r.srv.URL + "/connect/userinfo"
	cfg.Tibber.APIURL = r.srv.URL
	cfg.Schedule.Jitter = 0
	cfg.History.BackfillDays = 2
	return cfg
}

func (r *rig) open(obs ...daemon.Observer) *daemon.Daemon {
	r.t.Helper()
	return r.openWith(daemon.Options{Observers: obs})
}

func (r *rig) openWith(o daemon.Options) *daemon.Daemon {
	r.t.Helper()
	d, err := daemon.Open(context.Background(), r.config(), daemon.Options{
		Observers:      o.Observers,
		Service:        o.Service,
		Listener:       o.Listener,
		Logger:         slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Clock:          r.clk,
		NotBefore:      start.Add(-24 * time.Hour),
		RateLimit:      daemon.Unlimited,
		ManualSchedule: true,
		Metrics:        true,
	})
	if err != nil {
		r.t.Fatalf("daemon.Open: %v", err)
	}
	r.t.Cleanup(func() { _ = d.Close() })
	return d
}

func (r *rig) authorize(d *daemon.Daemon) {
	r.t.Helper()
	ctx := context.Background()
	authURL, err := d.Flow().Start(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	browser := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest(http.MethodGet, authURL, nil)
	req.Header.Set("User-Agent", version.UserAgent())
	resp, err := browser.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := d.Flow().Complete(ctx, u); err != nil {
		r.t.Fatal(err)
	}
}

// mark is the position of the next request in the log.
func (r *rig) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.stamps)
}

// from returns the requests logged from mark on.
func (r *rig) from(mark int) []stamp {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]stamp(nil), r.stamps[mark:]...)
}

// tick runs the scheduler's due jobs and waits for them.
func tick(d *daemon.Daemon) {
	d.Scheduler().RunDue(context.Background())
	d.Scheduler().Wait()
}

// A 429 with Retry-After: 600 binds the whole installation: the other jobs
// and a `tibbersync sync` started meanwhile send nothing until it opens,
// and the history run that met it is not a success (issue 17, item 2).
func TestRetryAfterBindsEveryJobAndProcess(t *testing.T) {
	r := newRig(t)
	d := r.open()
	r.authorize(d)
	tick(d) // the first runs of every job
	r.clk.Advance(time.Minute)
	r.sim.Faults().Add(simulator.Fault{Endpoint: "history", Kind: simulator.Kind429, RetryAfter: "600", Count: 1})
	t429 := r.clk.Now()
	opens := t429.Add(600 * time.Second)
	mark := r.mark()
	d.Scheduler().Trigger(jobs.JobHistory)
	tick(d)
	if hist := r.from(mark); len(hist) != 1 || hist[0].endpoint != "history" {
		t.Fatalf("history run after its 429 sent %v, want only the one request that got the 429", hist)
	}
	st, err := d.Store().JobState(context.Background(), jobs.JobHistory)
	if err != nil {
		t.Fatal(err)
	}
	if st.ConsecutiveFailures != 1 || !st.LastSuccessAt.Before(t429) || st.BreakerUntil.Before(opens) {
		t.Fatalf("history state after a 429: %+v; want a failure, no new success, breaker until the gate opens", st)
	}

	// The other jobs of this daemon, 10 s later: not sent, failed, their
	// breaker open until the gate opens.
	r.clk.Advance(10 * time.Second)
	d.Scheduler().Trigger(jobs.JobDevices)
	d.Scheduler().Trigger(jobs.JobHomes)
	tick(d)
	for _, j := range []string{jobs.JobDevices, jobs.JobHomes} {
		st, _ := d.Store().JobState(context.Background(), j)
		if st.BreakerUntil.Before(opens) || !strings.Contains(st.LastError, "wait until") {
			t.Errorf("%s during the gate: %+v, want it held until the gate opens", j, st)
		}
	}
	// And a `tibbersync sync` started meanwhile: another daemon.Open on the
	// same state directory, as the command does.
	other := r.open()
	run, err := other.RunJob(context.Background(), jobs.JobDevices)
	if err == nil || run.Status == jobs.StatusOK || !strings.Contains(run.Error+err.Error(), "wait until") {
		t.Fatalf("sync during the gate: %+v %v, want a failed run saying it waits", run, err)
	}
	if got := r.from(mark); len(got) != 1 {
		t.Fatalf("%d requests after the 429 while the gate is closed: %v", len(got)-1, got[1:])
	}
	// A minute before the gate opens, a sync waits for it instead of
	// failing, and sends nothing before.
	r.clk.Set(opens.Add(-time.Minute))
	if run, err := other.RunJob(context.Background(), jobs.JobDevices); err != nil || run.Status != jobs.StatusOK {
		t.Fatalf("sync a minute before the gate opens: %+v %v", run, err)
	}
	for _, s := range r.from(mark)[1:] {
		if s.at.Before(opens) {
			t.Errorf("request %s at %s, before the gate opened at %s", s.endpoint, s.at, opens)
		}
	}
	if b, err := os.ReadFile(filepath.Join(r.dir, tibber.GateFileName)); err != nil || !strings.Contains(string(b), "429") {
		t.Fatalf("gate file: %q %v", b, err)
	}
}

// During a 10-minute 503 storm the scheduled jobs (history included) stay
// within a small request budget: each run ends once the API keeps failing
// after all retries (history used to try every stream, five attempts
// each), and the breaker spaces the runs (issue 17, item 2).
func TestStormKeepsRequestsWithinBudget(t *testing.T) {
	r := newRig(t)
	var mu sync.Mutex
	var runs []model.Run
	storming := false
	d := r.open(daemon.ObserverFuncs{Run: func(_ context.Context, run model.Run, _ error) {
		mu.Lock()
		defer mu.Unlock()
		if storming {
			runs = append(runs, run)
		}
	}})
	r.authorize(d)
	tick(d) // the first runs of every job, before the storm
	r.clk.Set(start.Add(time.Hour + 5*time.Minute))
	tick(d) // the catch-up, before the storm
	mu.Lock()
	storming = true
	mu.Unlock()
	r.sim.Faults().Add(simulator.Fault{Endpoint: "api", Kind: simulator.KindStatus, Status: 503})
	t0, mark := r.clk.Now(), r.mark()
	for end := t0.Add(10 * time.Minute); r.clk.Now().Before(end); r.clk.Advance(30 * time.Second) {
		tick(d)
	}
	got := r.from(mark)
	hist := 0
	for _, s := range got {
		if s.endpoint == "history" {
			hist++
		}
	}
	mu.Lock()
	defer mu.Unlock()
	budget, histRuns := 0, 0
	for _, run := range runs {
		limit := tibber.DefaultMaxAttempts // one failed call (homes) ends a devices or homes run
		if run.Job == jobs.JobHistory {
			histRuns++
			limit = 2 * tibber.DefaultMaxAttempts // two failed streams end a history run
		}
		if run.Requests > limit || run.Status != jobs.StatusFailed {
			t.Errorf("%s run in the storm: status %s, %d requests, want failed with at most %d", run.Job, run.Status, run.Requests, limit)
		}
		budget += limit
	}
	if histRuns == 0 || histRuns > 2 || len(runs) > 6 {
		t.Errorf("%d runs (%d history) in 10 minutes of storm, want history to run and at most 6 runs", len(runs), histRuns)
	}
	if len(got) > budget || hist > histRuns*2*tibber.DefaultMaxAttempts {
		t.Fatalf("%d requests in a 10-minute 503 storm (%d history), want at most %d", len(got), hist, budget)
	}
	t.Logf("10-minute 503 storm: %d runs, %d requests (%d history)", len(runs), len(got), hist)
}

// get serves one request through the daemon's web handler (no socket).
func get(d *daemon.Daemon, path string) (int, string) {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, d.URL()+path, nil)
	d.Web().Handler().ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// data.db deleted under the running daemon: it used to be written to as a
// ghost until restart while /readyz stayed ready. Now the next check says
// so everywhere, no job starts (no API call whose answer would be lost) and
// the storage-error metric counts it (issue 17, item 3).
func TestDeletedDataDBShowsAndStopsJobs(t *testing.T) {
	r := newRig(t)
	d := r.open()
	r.authorize(d)
	tick(d)
	d.Maintain(context.Background())
	if code, body := get(d, "/readyz"); code != http.StatusOK || !strings.Contains(body, "ok storage") {
		t.Fatalf("readyz before: %d\n%s", code, body)
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		_ = os.Remove(filepath.Join(r.dir, "data.db"+suffix))
	}
	mark := r.mark()
	r.clk.Advance(5 * time.Minute)
	d.Scheduler().Trigger(jobs.JobDevices)
	tick(d) // the check before the job
	if n := len(r.from(mark)); n != 0 {
		t.Fatalf("%d API requests for a job whose result cannot be stored", n)
	}
	code, body := get(d, "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "FAIL storage") || !strings.Contains(body, "data.db was deleted") {
		t.Fatalf("readyz after data.db was deleted: %d\n%s", code, body)
	}
	if _, page := get(d, "/"); !strings.Contains(page, "Storage problem") {
		t.Fatal("the status page does not show the storage problem")
	}
	if mc, m := get(d, "/metrics"); !strings.Contains(m, `tibbersync_storage_errors_total{kind="replaced"} 1`) || !strings.Contains(m, "tibbersync_storage_ok 0") {
		t.Fatalf("metrics (%d) do not count the storage error:\n%s\n%.300s", mc, grepLines(m, "storage"), m)
	}
}

// The same for a job run outside the schedule (`tibbersync sync`, RunJob):
// it used to skip the storage check and make API calls whose answers could
// not be stored.
func TestSyncRefusedWhenDataDBIsGone(t *testing.T) {
	r := newRig(t)
	d := r.open()
	r.authorize(d)
	tick(d)
	for _, suffix := range []string{"", "-wal", "-shm"} {
		_ = os.Remove(filepath.Join(r.dir, "data.db"+suffix))
	}
	mark := r.mark()
	run, err := d.RunJob(context.Background(), jobs.JobDevices)
	if err == nil || run.Status != jobs.StatusFailed || !strings.Contains(run.Error, "not started") || !strings.Contains(err.Error(), "data.db was deleted") {
		t.Fatalf("sync devices with data.db deleted: run %+v, err %v", run, err)
	}
	if n := len(r.from(mark)); n != 0 {
		t.Fatalf("%d API requests for a sync whose result cannot be stored", n)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A damaged tokens.db (its grant row gone) used to show as "sql: no rows
// in result set" and a 500 on the setup page. Now it is kept aside, the
// state is setup_required with a clear reason, and the pages answer
// (issue 17, item 4).
func TestDamagedTokensDBAtStart(t *testing.T) {
	r := newRig(t)
	d := r.open()
	r.authorize(d)
	_ = d.Close()
	path := filepath.Join(r.dir, "secrets", "tokens.db")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 4096; i < len(b); i++ {
		b[i] = 0xA5
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	d = r.open()
	st, err := d.Auth().Status(context.Background())
	if err != nil || st.State != model.AuthSetupRequired || !strings.Contains(st.Reason, "damaged") || !strings.Contains(st.Reason, "tokens.db.damaged-") {
		t.Fatalf("auth after a damaged tokens.db: %+v %v", st, err)
	}
	for _, p := range []string{"/setup", "/"} {
		if code, body := get(d, p); code != http.StatusOK || !strings.Contains(body, "damaged") {
			t.Fatalf("%s with a damaged tokens.db: %d (want 200 naming the damage)\n%.400s", p, code, body)
		}
	}
	if m, _ := filepath.Glob(path + ".damaged-*"); len(m) == 0 {
		t.Fatal("damaged tokens.db not kept aside")
	}
	// Authorizing again works at once.
	r.authorize(d)
	if st, _ := d.Auth().Status(context.Background()); st.State != model.AuthOK {
		t.Fatalf("after re-authorization: %+v", st)
	}
}

// The service exits (for systemd to restart it on the file now there) when
// data.db is replaced under it, instead of writing into a ghost.
func TestServiceExitsWhenDataDBIsReplaced(t *testing.T) {
	r := newRig(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// ManualSchedule: no job is in flight when the service stops, so its exit
	// does not wait out a running job's stop grace; the waits below only
	// guard against a hang.
	d := r.openWith(daemon.Options{Service: true, Listener: ln, ManualSchedule: true})
	r.authorize(d)
	done := make(chan error, 1)
	go func() { done <- d.Run(context.Background()) }()
	select {
	case <-d.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("daemon not ready")
	}
	d.Maintain(context.Background())
	path := filepath.Join(r.dir, "data.db")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".restore", b, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".restore", path); err != nil {
		t.Fatal(err)
	}
	d.Maintain(context.Background())
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "replaced") {
			t.Fatalf("Run returned %v, want an error saying data.db was replaced", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the service kept running on a replaced data.db")
	}
}

// 8 KiB overwritten in the middle of data.db: the daemon used to start and
// keep writing. Now the background quick_check after start finds it,
// writes are refused, and /readyz and the page say so and name the
// recovery (issue 17, item 4).
func TestDamagedDataDBFoundInTheBackground(t *testing.T) {
	r := newRig(t)
	d := r.open()
	r.authorize(d)
	if _, err := d.RunJob(context.Background(), jobs.JobDevices); err != nil {
		t.Fatal(err)
	}
	_ = d.Close()
	path := filepath.Join(r.dir, "data.db")
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`CREATE TABLE filler (id INTEGER PRIMARY KEY, v TEXT)`); err != nil {
		t.Fatal(err)
	}
	for i := range 400 {
		if _, err := raw.Exec(`INSERT INTO filler (v) VALUES (?)`, strings.Repeat("z", 1000)+string(rune('a'+i%26))); err != nil {
			t.Fatal(err)
		}
	}
	_ = raw.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mid := len(b) / 2 &^ 4095
	for i := mid; i < mid+8192; i++ {
		b[i] = 0x5A
	}
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d = r.openWith(daemon.Options{Listener: ln})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	deadline := time.After(60 * time.Second)
	for !strings.Contains(strings.Join(d.Health().Last().Problems, " "), "damaged") {
		select {
		case <-deadline:
			t.Fatalf("the background quick_check did not report the damage: %+v", d.Health().Last())
		case <-time.After(20 * time.Millisecond):
		}
	}
	code, body := get(d, "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "damaged") || !strings.Contains(body, "backup") {
		t.Fatalf("readyz with a damaged data.db: %d\n%.2000s", code, body)
	}
	if err := d.Store().SaveJobState(context.Background(), model.JobState{Job: "devices", NextRunAt: r.clk.Now()}); err == nil {
		t.Fatal("a write into the damaged data.db was accepted")
	}
}
