package leakcheck

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/simulator"
	"github.com/tibbersync/tibbersync/internal/testutil"
)

// cliRun is one finished invocation of the binary.
type cliRun struct {
	args           string
	code           int
	stdout, stderr []byte
}

// TestCanaryRealBinary runs the built tibbersync binary against the
// simulator: setup --paste, sync, a Data API error echoing the token, a
// token endpoint error echoing the refresh token and client secret, status,
// and the daemon with /metrics; then scans every stdout and stderr, the
// pages, /metrics and the state directory. Access tokens live 30 s here,
// shorter than the refresh margin, so every Data API call refreshes.
func TestCanaryRealBinary(t *testing.T) {
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	tmp := t.TempDir()
	bin := testutil.BuildTibbersync(t, tmp)

	c := newCanaries()
	c.add("client_secret", canaryClientSecret)
	c.add("webhook_token", canaryWebhookToken)
	// The daemon's web socket: bound here, held for the whole test and
	// passed to the daemon by socket activation.
	sock := testutil.NewSocket(t)
	webAddr, port := sock.Addr, sock.PortString()
	redirect := "http://localhost:" + port + "/callback"
	sim := simulator.New(simulator.Options{
		Seed: 31, ClientSecret: canaryClientSecret, RedirectURIs: []string{redirect},
		AccessTTL: 30 * time.Second, PageSize: 168, HistoryDays: 10,
	})
	t.Cleanup(sim.Close)
	proxy := newRecorder(sim, c)
	simSrv := httptest.NewServer(proxy)
	t.Cleanup(simSrv.Close)
	sim.SetBaseURL(simSrv.URL)
	hook := &hookLog{}
	hookSrv := httptest.NewServer(hook)
	t.Cleanup(hookSrv.Close)

	state := filepath.Join(tmp, "state")
	secretFile := filepath.Join(tmp, "client_secret")
	if err := os.WriteFile(secretFile, []byte(canaryClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(tmp, "config.toml")
	testutil.SimConfig{
		ClientID: simulator.DefaultClientID, SecretFile: secretFile, RedirectURL: redirect, SimURL: simSrv.URL,
		StateDir: state, Listen: webAddr,
		Extra: fmt.Sprintf("[notify]\nwebhook_url = %q\n", hookSrv.URL+"/hook?token="+canaryWebhookToken),
	}.Write(t, cfgPath)
	environ := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + tmp, "NO_COLOR=1"}
	var runs []cliRun
	cli := func(stdin string, args ...string) cliRun {
		t.Helper()
		cmd := exec.CommandContext(ctx, bin, append([]string{"-c", cfgPath}, args...)...)
		cmd.Env = environ
		cmd.Stdin = strings.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		r := cliRun{args: strings.Join(args, " "), code: cmd.ProcessState.ExitCode(), stdout: out.Bytes(), stderr: errb.Bytes()}
		if err != nil && r.code < 0 {
			t.Fatalf("%s: %v", r.args, err)
		}
		runs = append(runs, r)
		return r
	}

	jar, _ := cookiejar.New(nil)
	pages := &pageLog{base: uaTransport{http.DefaultTransport}, port: port}
	noFollow := &http.Client{Jar: jar, Transport: pages, Timeout: 15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	h := &harness{t: t, ctx: ctx, c: c, simURL: simSrv.URL, redirect: redirect, noFollow: noFollow, browser: noFollow}

	// 1. setup --paste: read the authorize URL from stdout, consent, paste
	// the redirect back on stdin.
	setup := exec.CommandContext(ctx, bin, "-c", cfgPath, "setup", "--paste")
	setup.Env = environ
	stdin, _ := setup.StdinPipe()
	stdoutPipe, _ := setup.StdoutPipe()
	var setupErr syncBuffer
	setup.Stderr = &setupErr
	if err := setup.Start(); err != nil {
		t.Fatal(err)
	}
	var setupOut bytes.Buffer
	rd := bufio.NewReader(io.TeeReader(stdoutPipe, &setupOut))
	var authURL string
	for authURL == "" {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("setup --paste printed no authorize URL: %v\n%s\n%s", err, c.redact(setupOut.String()), c.redact(string(setupErr.Bytes())))
		}
		if s := strings.TrimSpace(line); strings.HasPrefix(s, simSrv.URL+"/connect/authorize?") {
			authURL = s
		}
	}
	cb := h.consent(authURL)
	if _, err := io.WriteString(stdin, "  '"+cb+"'\n"); err != nil {
		t.Fatal(err)
	}
	stdin.Close()
	if _, err := io.Copy(io.Discard, rd); err != nil {
		t.Fatal(err)
	}
	if err := setup.Wait(); err != nil || !strings.Contains(setupOut.String(), "Authorized.") {
		t.Fatalf("setup --paste: %v\n%s\n%s", err, c.redact(setupOut.String()), c.redact(string(setupErr.Bytes())))
	}

	// 2. A full sync: every API call refreshes (30 s tokens).
	if r := cli("", "sync"); r.code != 0 {
		t.Fatalf("sync: exit %d\n%s", r.code, c.redact(string(r.stderr)))
	}
	// 3. The Data API answers 500 on every attempt, echoing the bearer token.
	proxy.queueAPI("/v1/homes", apiEcho(500), apiEcho(500), apiEcho(500), apiEcho(500), apiEcho(500))
	if r := cli("", "sync", "homes"); r.code == 0 || proxy.pending() != 0 {
		t.Fatalf("sync homes against 500s: exit %d, %d echoes unused", r.code, proxy.pending())
	}
	// 4. The daemon: status page, /readyz and /metrics, then SIGTERM.
	daemon := exec.CommandContext(ctx, bin, "-c", cfgPath, "run")
	daemon.Env = environ
	var dOut, dErr syncBuffer
	daemon.Stdout, daemon.Stderr = &dOut, &dErr
	sock.Activate(daemon)
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	base := "http://" + webAddr
	waitUntil(t, ctx, "the daemon's /healthz", func() bool {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	// Let the first cycle run (it refreshes), then scrape.
	waitUntil(t, ctx, "the daemon's first devices run", func() bool {
		for line := range bytes.SplitSeq(dErr.Bytes(), []byte("\n")) {
			if bytes.Contains(line, []byte(`"msg":"job finished"`)) && bytes.Contains(line, []byte(`"job":"devices"`)) {
				return true
			}
		}
		return false
	})
	var metricsBody string
	for _, p := range []string{"/metrics", "/", "/readyz", "/setup"} {
		resp, body := h.get(noFollow, base+p)
		if p == "/metrics" {
			if resp.StatusCode != http.StatusOK || !strings.Contains(body, "tibbersync_") {
				t.Fatalf("/metrics: status %d", resp.StatusCode)
			}
			metricsBody = body
		}
	}
	if err := daemon.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := daemon.Wait(); err != nil {
		t.Fatalf("daemon: %v\n%s", err, c.redact(string(dErr.Bytes())))
	}
	runs = append(runs, cliRun{args: "run", stdout: dOut.Bytes(), stderr: dErr.Bytes()})

	// 5. The token endpoint answers 500 echoing refresh token and client
	// secret in every field; then status reports the backoff.
	// (The sync itself may still succeed with the access token it has.)
	proxy.queueToken(tokenEchoes()[2])
	failing := cli("", "sync", "devices")
	if proxy.pending() != 0 || !bytes.Contains(failing.stderr, []byte("token refresh failed; backing off")) {
		t.Fatalf("sync devices against a failing token endpoint: exit %d, %d echoes unused:\n%s",
			failing.code, proxy.pending(), c.redact(string(failing.stderr)))
	}
	cli("", "status", "--json")
	cli("", "status")

	// Positive controls.
	st := sim.Stats()
	if st.Refreshes < 3 || c.count("refresh_token") < 4 || c.count("code") < 1 || c.count("code_verifier") < 1 {
		t.Errorf("too little went through: %d refreshes; %s", st.Refreshes, c.summary())
	}
	served, echoed := proxy.echoes()
	if served != 6 || echoed["refresh_token"] != 1 || echoed["client_secret"] != 1 || echoed["access_token"] != 5 {
		t.Errorf("echo answers: %d served, secrets echoed %v", served, echoed)
	}

	rep := &leakReport{c: c}
	// setup --paste prints the authorize URL, state included, for the user
	// to open: that is its job.
	rep.check("setup --paste stdout", setupOut.Bytes(), "access_token", "refresh_token", "id_token", "code", "code_verifier", "client_secret", "webhook_token")
	rep.check("setup --paste stderr", setupErr.Bytes())
	for _, r := range runs {
		rep.check(r.args+" stdout", r.stdout)
		rep.check(r.args+" stderr", r.stderr)
	}
	rep.check("/metrics", []byte(metricsBody))
	rep.check("web pages", pages.pages.Bytes())
	rep.check("webhook bodies", hook.bodies.Bytes())
	files := fileHits(t, c, state)
	tokensDB := filepath.Join("secrets", "tokens.db")
	for rel := range files {
		if rel != tokensDB {
			rep.check("file "+rel, readFile(t, filepath.Join(state, rel)))
		}
	}
	if cur := sim.CurrentRefreshToken(); cur == "" || !bytes.Contains(readFile(t, filepath.Join(state, tokensDB)), []byte(cur)) {
		t.Errorf("tokens.db does not hold the current refresh token (files %v)", files)
	}
	for _, l := range rep.leaks {
		t.Error("LEAK: " + l)
	}
	line := fmt.Sprintf("leak canary (binary): %d secrets (%s), %d refreshes, %d echoing error bodies, %d commands; %d leaks in %d outputs, %.1f MB scanned, %.1fs",
		c.total(), c.summary(), st.Refreshes, served, len(runs)+1, len(rep.leaks), rep.places, float64(rep.scanned)/1e6, time.Since(began).Seconds())
	t.Log(line)
	appendSummary(t, line)
}
