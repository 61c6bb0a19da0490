package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/auth"
	"github.com/tibbersync/tibbersync/internal/daemon"
	"github.com/tibbersync/tibbersync/internal/simulator"
	"github.com/tibbersync/tibbersync/internal/testutil"
)

// syncBuffer is the shared concurrency-safe log sink.
type syncBuffer = testutil.SyncBuffer

// runCmd runs the CLI in-process with the given environment.
func runCmd(t *testing.T, ctx context.Context, environ []string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb syncBuffer
	env := &environment{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, environ: environ}
	code := runMain(ctx, args, env)
	return code, out.String(), errb.String()
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// fixture is a simulator on loopback and a config file pointing at it.
type fixture struct {
	sim     *simulator.Simulator
	srv     *httptest.Server
	dir     string
	cfgPath string
	port    int
	sock    *testutil.Socket // the web socket, held for the whole test
	environ []string
}

// runEnv is the environment of an in-process `run` whose web server serves
// the fixture's socket, handed over as systemd's socket activation does.
func (f *fixture) runEnv(out io.Writer) *environment {
	return withSocket(&environment{stdin: strings.NewReader(""), stdout: out, stderr: out, environ: f.environ}, f.sock)
}

// withSocket passes a new descriptor of sock to env's `run`.
func withSocket(env *environment, sock *testutil.Socket) *environment {
	env.inherited = func() ([]net.Listener, error) { return []net.Listener{sock.Listener()}, nil }
	return env
}

func newFixture(t *testing.T, mutate func(*simulator.Options)) *fixture {
	t.Helper()
	return newFixtureWrapped(t, mutate, nil)
}

// newFixtureWrapped is newFixture with the simulator's handler wrapped (to
// hold or observe requests).
func newFixtureWrapped(t *testing.T, mutate func(*simulator.Options), wrap func(http.Handler) http.Handler) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), sock: testutil.NewSocket(t)}
	f.port = f.sock.Port
	redirect := fmt.Sprintf("http://localhost:%d/callback", f.port)
	opts := simulator.Options{Seed: 7, RedirectURIs: []string{redirect}, PageSize: 48}
	if mutate != nil {
		mutate(&opts)
	}
	f.sim = simulator.New(opts)
	var h http.Handler = f.sim
	if wrap != nil {
		h = wrap(h)
	}
	f.srv = httptest.NewServer(h)
	t.Cleanup(f.srv.Close)
	t.Cleanup(f.sim.Close)
	f.sim.SetBaseURL(f.srv.URL)

	secretFile := filepath.Join(f.dir, "client_secret")
	if err := os.WriteFile(secretFile, []byte("sim-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(f.dir, "state")
	f.cfgPath = filepath.Join(f.dir, "config.toml")
	testutil.SimConfig{
		ClientID: simulator.DefaultClientID, SecretFile: secretFile, RedirectURL: redirect, SimURL: f.srv.URL,
		StateDir: state, Listen: f.sock.Addr, BackfillDays: 3,
	}.Write(t, f.cfgPath)
	f.environ = []string{"PATH=" + os.Getenv("PATH")}
	return f
}

func TestVersion(t *testing.T) {
	code, out, _ := runCmd(t, testCtx(t, 10*time.Second), nil, "", "version")
	if code != 0 || !strings.Contains(out, "tibbersync") {
		t.Fatalf("version: code %d, out %q", code, out)
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		code, out, _ := runCmd(t, testCtx(t, 10*time.Second), nil, "", args...)
		if code != 0 || !strings.Contains(out, "Commands:") {
			t.Errorf("%v: exit %d, stdout %q", args, code, out)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	ctx := testCtx(t, 10*time.Second)
	for name, args := range map[string][]string{
		"NoCommand":      {},
		"UnknownCommand": {"frobnicate"},
		"BadFlag":        {"status", "--bogus"},
		"SyncUnknownJob": {"sync", "weather"},
		"BackupNoFile":   {"backup"},
	} {
		t.Run(name, func(t *testing.T) {
			code, _, errOut := runCmd(t, ctx, nil, "", args...)
			if code != exitUsage {
				t.Fatalf("%v: exit %d, want %d; stderr %q", args, code, exitUsage, errOut)
			}
		})
	}
}

func TestBadConfigExits78AndWritesNothing(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	cfg := filepath.Join(dir, "config.toml")
	body := fmt.Sprintf(`
[storage]
dir = %q
[schedule]
devices = "*/5 * *"
jitter = "-3s"
[history]
resolutions = ["hourly"]
[tibber]
api_url = "not a url"
`, state)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCmd(t, testCtx(t, 10*time.Second), nil, "", "-c", cfg, "run")
	if code != exitConfig {
		t.Fatalf("exit %d, want 78; stderr %q", code, errOut)
	}
	for _, key := range []string{"schedule.devices", "schedule.jitter", "history.resolutions", "tibber.api_url"} {
		if !strings.Contains(errOut, key) {
			t.Errorf("stderr does not name %s:\n%s", key, errOut)
		}
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Fatalf("state dir was created by a bad config: %v", err)
	}
}

// TestDaemonEndToEnd runs `tibbersync run` against the simulator: setup
// through the web page with a cookie-jar client, jobs starting without a
// restart, status exit codes, then a clean stop.
func TestDaemonEndToEnd(t *testing.T) {
	f := newFixture(t, nil)
	ctx := testCtx(t, 90*time.Second)
	// systemd's notify socket: the daemon must say READY=1 with its state.
	sockPath := filepath.Join(t.TempDir(), "notify.sock")
	notifySock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notifySock.Close()
	f.environ = append(f.environ, "NOTIFY_SOCKET="+sockPath)

	// Before setup: status says setup required once the daemon created data.db.
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var runCode int
	var runErr syncBuffer
	wg.Add(1)
	go func() {
		defer wg.Done()
		env := f.runEnv(&runErr)
		runCode = runMain(runCtx, []string{"-c", f.cfgPath, "run"}, env)
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
	// READY=1 comes after the start-up hint is logged: wait for it, then
	// look for the hint (the web server answers before both).
	buf := make([]byte, 1024)
	_ = notifySock.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, err := notifySock.Read(buf)
	if err != nil || !strings.Contains(string(buf[:n]), "READY=1") || !strings.Contains(string(buf[:n]), "STATUS=authorization required") {
		t.Errorf("sd_notify datagram = %q, %v; want READY=1 and the setup status", buf[:n], err)
	}
	if !strings.Contains(runErr.String(), "authorization required: open http://127.0.0.1:") {
		t.Errorf("daemon did not log the setup URL:\n%s", runErr.String())
	}
	code, _, _ := runCmd(t, ctx, f.environ, "", "-c", f.cfgPath, "status")
	if code != statusSetupRequired {
		t.Fatalf("status before setup: exit %d, want %d", code, statusSetupRequired)
	}
	if n := f.sim.Stats().Requests["homes"]; n != 0 {
		t.Fatalf("daemon called /v1/homes %d times before authorization", n)
	}
	// `sync` before authorization: a clear message, exit 78, no API call.
	code, _, errOut := runCmd(t, ctx, f.environ, "", "-c", f.cfgPath, "sync", "devices")
	if code != exitConfig || !strings.Contains(errOut, "not authorized") {
		t.Fatalf("sync before setup: exit %d, stderr %q; want 78 and 'not authorized'", code, errOut)
	}
	if n := f.sim.Stats().Requests["homes"]; n != 0 {
		t.Fatalf("sync called /v1/homes %d times before authorization", n)
	}

	// Setup: /setup/start → simulator consent page → approve → /callback.
	if err := walkConsent(ctx, base); err != nil {
		t.Fatalf("setup flow: %v", err)
	}
	// Jobs start without a restart.
	waitFor(t, ctx, func() bool {
		code, _, _ := runCmd(t, ctx, f.environ, "", "-c", f.cfgPath, "status", "--json")
		return code == statusHealthy
	})
	// History follows the first devices run at once, not an hour later.
	waitFor(t, ctx, func() bool {
		_, out, _ := runCmd(t, ctx, f.environ, "", "-c", f.cfgPath, "status", "--json")
		var r statusReport
		return json.Unmarshal([]byte(out), &r) == nil && r.Tables["device_history"] > 0
	})
	code, out, _ := runCmd(t, ctx, f.environ, "", "-c", f.cfgPath, "status", "--json")
	var rep statusReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if code != 0 || rep.Auth.State != "ok" || rep.Tables["devices"] == 0 || rep.Tables["homes"] != 2 ||
		rep.Auth.AccessExpiresAt.IsZero() || rep.Auth.RefreshExpiresEst.IsZero() {
		t.Fatalf("status after setup: code %d, report %+v", code, rep)
	}

	// A second daemon on the same state directory refuses to start.
	code, _, errOut = runCmd(t, ctx, f.environ, "", "-c", f.cfgPath, "run")
	if code == 0 || !strings.Contains(errOut, "already running") {
		t.Fatalf("second daemon: exit %d, stderr %q", code, errOut)
	}

	stop()
	wg.Wait()
	if runCode != 0 {
		t.Fatalf("daemon exit %d\n%s", runCode, runErr.String())
	}
	if strings.Contains(runErr.String(), "sim-secret") {
		t.Fatal("client secret appeared in the daemon's log")
	}
	// `sync all` once, the scheduler's code path, with the daemon stopped.
	code, out, errOut = runCmd(t, ctx, f.environ, "", "-c", f.cfgPath, "sync", "all")
	if code != 0 {
		t.Fatalf("sync all: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, job := range []string{"homes", "devices", "history"} {
		if !regexp.MustCompile(`(?m)^` + job + `\s+ok\s+requests=\d+`).MatchString(out) {
			t.Errorf("sync all output lacks an ok line for %s:\n%s", job, out)
		}
	}
	if st := f.sim.Stats(); st.UserAgentViolations != 0 || st.RefreshReuse != 0 {
		t.Fatalf("simulator saw UA violations %d, refresh reuse %d", st.UserAgentViolations, st.RefreshReuse)
	}
}

func waitFor(t *testing.T, ctx context.Context, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatal("timed out waiting")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func TestDemo(t *testing.T) {
	code, out, errOut := runCmd(t, testCtx(t, 120*time.Second), nil, "", "demo", "--cycles", "3", "--backfill-days", "3")
	if code != 0 {
		t.Fatalf("demo exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{"authorized as", "cycle 3", "latest values", "history_hourly covers"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}

// walkConsent does what a person with a browser does, with a plain
// cookie-jar HTTP client: /setup/start → the simulator's consent page →
// Approve → /callback → success page.
func walkConsent(ctx context.Context, base string) error {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	get := func(u string) (*http.Response, string, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		req.Header.Set("User-Agent", "tibbersync-test/1.0 (linux; amd64)")
		resp, err := c.Do(req)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b), nil
	}
	resp, page, err := get(base + "/setup/start")
	if err != nil {
		return err
	}
	m := regexp.MustCompile(`name="request" value="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		return fmt.Errorf("no consent form at %s (%s):\n%s", resp.Request.URL, resp.Status, page)
	}
	consent := resp.Request.URL.ResolveReference(&url.URL{Path: "/connect/consent"})
	form := url.Values{"request": {html.UnescapeString(m[1])}, "decision": {"approve"}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, consent.String(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", "tibbersync-test/1.0 (linux; amd64)")
	resp2, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp2.Body.Close()
	body, _ := io.ReadAll(resp2.Body)
	if resp2.StatusCode != http.StatusOK || !strings.Contains(string(body), "data-api-homes-read") {
		return fmt.Errorf("success page: %s at %s:\n%s", resp2.Status, resp2.Request.URL, body)
	}
	return nil
}

// TestRunWithoutClientServesSetupInstructions: a fresh install without a
// client id or secret still serves /setup with what to register and what to
// configure, instead of exiting.
func TestRunWithoutClientServesSetupInstructions(t *testing.T) {
	dir := t.TempDir()
	sock := testutil.NewSocket(t)
	port := sock.Port
	cfg := filepath.Join(dir, "config.toml")
	body := fmt.Sprintf("[storage]\ndir = %q\n[web]\nlisten = \"127.0.0.1:%d\"\n[tibber]\nredirect_url = \"http://localhost:%d/callback\"\n", filepath.Join(dir, "state"), port, port)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t, 30*time.Second)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan int, 1)
	var logs syncBuffer
	go func() {
		env := withSocket(&environment{stdin: strings.NewReader(""), stdout: &logs, stderr: &logs, environ: []string{"PATH=" + os.Getenv("PATH")}}, sock)
		done <- runMain(runCtx, []string{"-c", cfg, "run"}, env)
	}()
	var page string
	waitFor(t, ctx, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/setup", port))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		page = string(b)
		return resp.StatusCode == http.StatusOK
	})
	for _, want := range []string{fmt.Sprintf("http://localhost:%d/callback", port), "client_id", "data-api-homes-read"} {
		if !strings.Contains(page, want) {
			t.Errorf("/setup without a client lacks %q", want)
		}
	}
	// The hint is logged by the run loop, which may reach it after the web
	// server already answers: wait for it (bounded by ctx) instead of racing.
	waitFor(t, ctx, func() bool { return strings.Contains(logs.String(), "client not configured") })
	stop()
	if code := <-done; code != 0 {
		t.Fatalf("run exit %d\n%s", code, logs.String())
	}
}

// TestExitCodeMapping: main's one mapping from a command's error to the
// exit code.
func TestExitCodeMapping(t *testing.T) {
	for name, tc := range map[string]struct {
		err  error
		want int
	}{
		"Nil":             {nil, exitOK},
		"Plain":           {errors.New("boom"), exitError},
		"WithCode":        {withCode(statusReauthRequired, nil), statusReauthRequired},
		"WrappedWithCode": {fmt.Errorf("ctx: %w", withCode(exitUsage, errors.New("bad"))), exitUsage},
		"DaemonConfig":    {fmt.Errorf("tibbersync: %w", &daemon.ConfigError{Err: errors.New("bad dir")}), exitConfig},
		"AuthConfig":      {fmt.Errorf("tibbersync setup: %w", auth.ErrConfig), exitConfig},
		"NoClientSecret":  {fmt.Errorf("tibbersync setup: %w", auth.ErrNoClientSecret), exitConfig},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("%s: exitCode(%v) = %d, want %d", name, tc.err, got, tc.want)
		}
	}
	// A silent code prints nothing; a message is printed once, as it is.
	var out, errb syncBuffer
	env := &environment{stdin: strings.NewReader(""), stdout: &out, stderr: &errb}
	if code := runMain(context.Background(), []string{"sync", "weather"}, env); code != exitUsage {
		t.Fatalf("sync weather: exit %d", code)
	}
	if got := errb.String(); strings.Count(got, "unknown job") != 1 || !strings.HasSuffix(got, "\n") {
		t.Fatalf("stderr %q: want the message once, one line", got)
	}
}
