package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/cisummary"
	"github.com/tibbersync/tibbersync/internal/simulator"
	"github.com/tibbersync/tibbersync/internal/testutil"
	"github.com/tibbersync/tibbersync/internal/version"
)

// restarts is how often the wrapper starts the daemon against the revoked grant.
const restarts = 10

// restartDelay is the least time between one life's job runs and the next
// life's start: the jobs' @every interval, plus a margin.
const restartDelay = 2100 * time.Millisecond

// webhookSink is the notification receiver: it records every message.
type webhookSink struct {
	mu   sync.Mutex
	msgs []map[string]any
}

func (w *webhookSink) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	var m map[string]any
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&m); err != nil {
		http.Error(rw, "bad json", http.StatusBadRequest)
		return
	}
	w.mu.Lock()
	w.msgs = append(w.msgs, m)
	w.mu.Unlock()
	rw.WriteHeader(http.StatusNoContent)
}

func (w *webhookSink) events() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, m := range w.msgs {
		out = append(out, fmt.Sprintf("%v/%v", m["event"], m["state"]))
	}
	return out
}

// daemonFixture is a state dir and config for the real binary.
type daemonFixture struct {
	bin     string
	dir     string // state dir
	cfgPath string
	webURL  string
	web     *testutil.Socket // held for the whole test, passed to each start
}

func newDaemonFixture(t *testing.T, bin, simURL, redirect string, web *testutil.Socket, webhook string) *daemonFixture {
	t.Helper()
	root := t.TempDir()
	f := &daemonFixture{bin: bin, dir: filepath.Join(root, "state"), cfgPath: filepath.Join(root, "config.toml"),
		webURL: "http://" + web.Addr, web: web}
	secret := filepath.Join(root, "client_secret")
	if err := os.WriteFile(secret, []byte(simulator.DefaultClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Every job is due again two seconds after its last run, so each start
	// of the daemon runs all three at once: a restart that made no call
	// would otherwise prove nothing.
	testutil.SimConfig{
		ClientID: simulator.DefaultClientID, SecretFile: secret, RedirectURL: redirect, SimURL: simURL,
		StateDir: f.dir, Listen: web.Addr, RequestsPerSecond: 50,
		Devices: "@every 2s", Homes: "@every 2s", History: "@every 2s", LogLevel: "info",
		Extra: fmt.Sprintf("[notify]\nwebhook_url = %q\n", webhook),
	}.Write(t, f.cfgPath)
	return f
}

// command runs tibbersync -c config args... to completion.
func (f *daemonFixture) command(ctx context.Context, args ...string) (int, string, string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, f.bin, append([]string{"-c", f.cfgPath}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + f.dir}
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); ok {
		err = nil
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String(), err
}

// runningDaemon is one life of `tibbersync run`.
type runningDaemon struct {
	cmd  *exec.Cmd
	logs *lockedBuffer
	done chan struct{}
}

func (f *daemonFixture) start(t *testing.T) *runningDaemon {
	t.Helper()
	cmd := exec.Command(f.bin, "-c", f.cfgPath, "run")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + f.dir}
	d := &runningDaemon{cmd: cmd, logs: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = d.logs, d.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	f.web.Activate(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			_ = cmd.Process.Kill()
			<-d.done
		}
	})
	return d
}

// stop sends SIGTERM, as systemd does, and waits for a clean exit.
func (d *runningDaemon) stop() (int, error) {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return d.cmd.ProcessState.ExitCode(), nil
	case <-time.After(45 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
		return -1, fmt.Errorf("daemon did not stop within 45s of SIGTERM; log:\n%s", tail(d.logs.String(), 3000))
	}
}

// logLine is the part of a JSON log line the test looks at.
type logLine struct {
	Level string `json:"level"`
	Msg   string `json:"msg"`
	State string `json:"state"`
}

// warnLines returns the WARN lines of a daemon's JSON log.
func warnLines(logs string) []logLine {
	var out []logLine
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Level == "WARN" {
			out = append(out, l)
		}
	}
	return out
}

// syncRuns counts data.db's sync_runs rows, optionally of one status.
func syncRuns(ctx context.Context, dir, job, status string) (int, error) {
	db, err := openReadOnly(filepath.Join(dir, "data.db"))
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int
	err = db.QueryRowContext(ctx, `SELECT count(*) FROM sync_runs WHERE (?1 = '' OR job = ?1) AND (?2 = '' OR status = ?2)`, job, status).Scan(&n)
	return n, err
}

// waitFor polls cond every 50 ms until it holds or d passes.
func waitFor(d time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(d)
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return err
			}
			return fmt.Errorf("condition not met within %s", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestInvalidGrantRestartLoop is issue 4's "done when" (R9): with the grant
// revoked at Tibber and the access token expired, the real daemon is
// started ten times by a wrapper. Across all ten lives: at most one token
// call after the first failure, one WARN line for the state change, one
// notification; `tibbersync status` exits 5; and after a new setup through
// the daemon's own setup page the state is ok and data flows again.
func TestInvalidGrantRestartLoop(t *testing.T) {
	started := time.Now()
	bin := tibbersyncBinary(t)
	buildTook := binTook
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	web := testutil.NewSocket(t)
	redirect := "http://localhost:" + web.PortString() + "/callback"
	sim, simURL := startSim(t, simulator.Options{Seed: 4, AutoConsent: true, RedirectURIs: []string{redirect}, PageSize: 48})
	sink := &webhookSink{}
	hook := httptest.NewServer(sink)
	defer hook.Close()
	f := newDaemonFixture(t, bin, simURL, redirect, web, hook.URL+"/notify")

	// A grant set up two hours ago (its access token expired an hour ago),
	// then revoked by the user at Tibber.
	setupGrant(t, ctx, rigOptions{dir: f.dir, simURL: simURL, redirectURL: redirect, clock: offsetClock{offset: -2 * time.Hour}})
	sim.RevokeGrants()
	sim.ResetStats()

	var (
		allWarn     []logLine
		exitCodes   []int
		tokenAfter1 int
		firstFail   = -1
		jobsRan     time.Time
	)
	for life := 1; life <= restarts; life++ {
		// The wrapper's restart delay: the next life starts once the jobs,
		// every 2 s, are due again, so that it runs them at once.
		time.Sleep(time.Until(jobsRan.Add(restartDelay)))
		before, err := syncRuns(ctx, f.dir, "", "")
		if err != nil {
			t.Fatal(err)
		}
		lifeStart := time.Now()
		d := f.start(t)
		// Each life runs its three jobs (all due at start); they are skipped
		// once the state is reauth_required.
		if err := waitFor(30*time.Second, func() (bool, error) {
			n, err := syncRuns(ctx, f.dir, "", "")
			return n >= before+3, err
		}); err != nil {
			t.Fatalf("life %d: jobs did not run: %v\nlog:\n%s", life, err, tail(d.logs.String(), 3000))
		}
		jobsRan = time.Now()
		if life == 1 {
			if err := waitFor(10*time.Second, func() (bool, error) { return len(sink.events()) >= 1, nil }); err != nil {
				t.Fatalf("no notification after the grant was rejected: %v\nlog:\n%s", err, tail(d.logs.String(), 3000))
			}
		}
		// Let anything a life would send (notifications, keep-alive) go out
		// before the wrapper stops it.
		time.Sleep(500 * time.Millisecond)
		stopAt := time.Now()
		code, err := d.stop()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("life %d: up %s, stopped in %s, exit %d", life, stopAt.Sub(lifeStart).Round(time.Millisecond), time.Since(stopAt).Round(time.Millisecond), code)
		exitCodes = append(exitCodes, code)
		allWarn = append(allWarn, warnLines(d.logs.String())...)
		if calls := sim.Stats().TokenRequests["refresh_token"]; firstFail < 0 && calls > 0 {
			firstFail = life
		}
	}

	st := sim.Stats()
	// The first token call is the one that fails; every later one is "after".
	tokenAfter1 = max(st.TokenRequests["refresh_token"]-1, 0)
	if firstFail != 1 {
		t.Errorf("the first life made no token call (first call in life %d)", firstFail)
	}
	if tokenAfter1 > 1 {
		t.Errorf("%d token calls after the first failure across %d restarts, want at most 1", tokenAfter1, restarts)
	}
	var stateWarn, startWarn []string
	for _, l := range allWarn {
		switch {
		case strings.HasPrefix(l.Msg, "authorization state changed"):
			stateWarn = append(stateWarn, l.Msg)
		case strings.Contains(l.Msg, "authoriz"):
			startWarn = append(startWarn, l.Msg)
		}
	}
	if len(stateWarn) != 1 {
		t.Errorf("%d WARN lines for the state change across %d lives, want 1: %q", len(stateWarn), restarts, stateWarn)
	}
	// Later lives repeat where to re-authorize at INFO, so across all lives
	// there is exactly one WARN line about authorization: the transition.
	if len(startWarn) != 0 {
		t.Errorf("%d other WARN lines about authorization across %d lives, want none (the start-up hint is INFO): %q", len(startWarn), restarts, startWarn)
	}
	events := sink.events()
	if len(events) != 1 || events[0] != "problem/reauth_required" {
		t.Errorf("notifications %q, want exactly one problem/reauth_required", events)
	}
	for i, c := range exitCodes {
		if c != 0 {
			t.Errorf("life %d exited %d on SIGTERM, want 0", i+1, c)
		}
	}
	code, out, errOut, err := f.command(ctx, "status")
	if err != nil {
		t.Fatal(err)
	}
	if code != 5 {
		t.Errorf("status exited %d, want 5 (reauth required)\n%s%s", code, out, errOut)
	}
	statusCode := code

	// A new setup through the running daemon's setup page: state ok, and
	// the jobs it triggers store data again.
	d := f.start(t)
	if err := waitFor(30*time.Second, func() (bool, error) {
		resp, err := http.Get(f.webURL + "/healthz")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return true, nil
	}); err != nil {
		t.Fatalf("daemon web server: %v\nlog:\n%s", err, tail(d.logs.String(), 3000))
	}
	if err := webSetup(ctx, f.webURL); err != nil {
		t.Fatalf("setup through the status page: %v\nlog:\n%s", err, tail(d.logs.String(), 3000))
	}
	if err := waitFor(60*time.Second, func() (bool, error) {
		n, err := syncRuns(ctx, f.dir, "devices", "ok")
		return n > 0, err
	}); err != nil {
		t.Fatalf("no devices run ok after the new setup: %v\nlog:\n%s", err, tail(d.logs.String(), 3000))
	}
	if c, err := d.stop(); err != nil || c != 0 {
		t.Fatalf("stop after setup: exit %d, %v", c, err)
	}
	code, out, errOut, err = f.command(ctx, "status", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		ExitCode int `json:"exit_code"`
		Auth     struct {
			State string `json:"state"`
		} `json:"auth"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("status --json: %v\n%s%s", err, out, errOut)
	}
	if rep.Auth.State != "ok" {
		t.Errorf("after the new setup: status says state %q (exit %d), want ok\n%s", rep.Auth.State, code, out)
	}
	snaps, err := countRows(ctx, f.dir, "device_snapshots")
	if err != nil {
		t.Fatal(err)
	}
	if snaps == 0 {
		t.Error("after the new setup no device snapshot was stored")
	}
	summary := fmt.Sprintf("invalid_grant restart loop: %d lives, %d token call(s) in all, %d after the first failure, %d WARN line(s) about authorization (%d other), %d notification(s) %v, status exit %d; new setup → state %s, status exit %d, %d snapshots; binary build %s, %s",
		restarts, st.TokenRequests["refresh_token"], tokenAfter1, len(stateWarn), len(startWarn), len(events), events, statusCode,
		rep.Auth.State, code, snaps, buildTook.Round(100*time.Millisecond), time.Since(started).Round(100*time.Millisecond))
	t.Log(summary)
	if err := cisummary.Append(summary); err != nil {
		t.Error(err)
	}
}

// countRows counts a table's rows in data.db (read-only).
func countRows(ctx context.Context, dir, table string) (int, error) {
	db, err := openReadOnly(filepath.Join(dir, "data.db"))
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int
	err = db.QueryRowContext(ctx, `SELECT count(*) FROM `+table).Scan(&n)
	return n, err
}

// webSetup walks the daemon's /setup/start → the simulator's authorize
// (automatic consent) → the daemon's /callback, following redirects with a
// cookie jar as a browser would.
func webSetup(ctx context.Context, webURL string) error {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return err
	}
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, webURL+"/setup/start", nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", version.UserAgent())
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("callback page %s: %s", resp.Status, tail(string(body), 300))
	}
	return nil
}
