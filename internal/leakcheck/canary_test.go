package leakcheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/auth"
	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/config"
	"github.com/tibbersync/tibbersync/internal/daemon"
	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/simulator"
	"github.com/tibbersync/tibbersync/internal/store"
	"github.com/tibbersync/tibbersync/internal/tokenstore"
	"github.com/tibbersync/tibbersync/internal/web"
)

// start is the fake clock's start: after the build-time floor (R26), so
// that token requests are allowed.
var start = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// notBefore stands in for the build time.
var notBefore = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// heldToken keeps a token behind an unexported field, as auth's flight and
// unsavedToken do. fmt cannot call Secret's methods there, so printing it
// with %v would print the raw token: a panic carrying one is the hardest
// case for every recover-and-log path.
type heldToken struct {
	tok model.Token
}

// hybridClock tells the fake time but sleeps for real, for the notifier,
// whose loop would spin on a fake Sleep.
type hybridClock struct{ fake *clock.Fake }

func (c hybridClock) Now() time.Time { return c.fake.Now() }
func (c hybridClock) Sleep(ctx context.Context, d time.Duration) error {
	return clock.Real{}.Sleep(ctx, d)
}

// errLog collects every error string the product hands back.
type errLog struct {
	mu   sync.Mutex
	errs []string
}

func (e *errLog) add(s ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, x := range s {
		if x != "" {
			e.errs = append(e.errs, x)
		}
	}
}

func (e *errLog) addErr(err error) {
	if err != nil {
		e.add(err.Error(), fmt.Sprintf("%v", err), fmt.Sprintf("%+v", err))
	}
}

func (e *errLog) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.errs)
}

func (e *errLog) joined() []byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	return []byte(strings.Join(e.errs, "\n"))
}

// panicRunner wraps the daemon's runner: it runs jobs through it, or
// panics with a queued value instead.
type panicRunner struct {
	next  jobs.Runner
	mu    sync.Mutex
	queue []any
}

func (r *panicRunner) panicWith(v any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.queue = append(r.queue, v)
}

func (r *panicRunner) Run(ctx context.Context, job string) (model.Run, error) {
	r.mu.Lock()
	if len(r.queue) > 0 {
		p := r.queue[0]
		r.queue = r.queue[1:]
		r.mu.Unlock()
		panic(p)
	}
	r.mu.Unlock()
	return r.next.Run(ctx, job)
}

// statusSource is data.db as the daemon's web server reads it, with a
// one-shot panic for the web handler test.
type statusSource struct {
	web.StatusSource
	panicV atomic.Pointer[any]
}

func (s *statusSource) Summary(ctx context.Context) (model.Summary, error) {
	if p := s.panicV.Swap(nil); p != nil {
		panic(*p)
	}
	return s.StatusSource.Summary(ctx)
}

// pageLog records the body of every response tibbersync's web server sends
// to the test's browser-like clients.
type pageLog struct {
	base  http.RoundTripper
	port  string
	pages syncBuffer
	n     atomic.Int64
}

func (p *pageLog) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := p.base.RoundTrip(r)
	if err != nil || r.URL.Port() != p.port {
		return resp, err
	}
	body, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	fmt.Fprintf(&p.pages, "== %s %s → %d\n", r.Method, r.URL.Path, resp.StatusCode)
	for k, vs := range resp.Header {
		if k == "Location" && r.URL.Path == "/setup/start" {
			// The authorize URL carries the state to Tibber: that is
			// its purpose, not a leak.
			continue
		}
		fmt.Fprintf(&p.pages, "%s: %s\n", k, strings.Join(vs, ", "))
	}
	_, _ = p.pages.Write(body)
	p.n.Add(1)
	return resp, rerr
}

// hookLog is the notification webhook receiver.
type hookLog struct {
	bodies syncBuffer
	n      atomic.Int64
}

func (h *hookLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	fmt.Fprintf(&h.bodies, "%s %s\n", r.Method, r.URL.Path)
	_, _ = h.bodies.Write(append(b, '\n'))
	h.n.Add(1)
	w.WriteHeader(http.StatusOK)
}

// harness is the daemon (internal/daemon, the product's wiring) against the
// simulator behind a recording proxy, on a fake clock, with the scheduler
// driven by the test.
type harness struct {
	t      *testing.T
	ctx    context.Context
	dir    string
	clk    *clock.Fake
	c      *canaries
	sim    *simulator.Simulator
	proxy  *recorder
	simURL string
	logs   *logSinks
	errs   *errLog
	hook   *hookLog

	d        *daemon.Daemon
	data     *store.DB
	secrets  *tokenstore.Store
	source   *auth.Source
	flow     *auth.Flow
	sched    *jobs.Scheduler
	runner   *panicRunner
	status   *statusSource
	webURL   string
	redirect string

	pages    *pageLog
	browser  *http.Client // cookie jar, follows redirects
	noFollow *http.Client // cookie jar, stops at redirects

	// stopStderr ends the capture of fd 2 and returns what was written.
	stopStderr func() []byte

	stopDaemon context.CancelFunc
	daemonDone chan error
	closed     bool
}

func newHarness(t *testing.T, ctx context.Context) *harness {
	t.Helper()
	h := &harness{
		t: t, ctx: ctx, dir: filepath.Join(t.TempDir(), "state"),
		clk: clock.NewFake(start), c: newCanaries(), errs: &errLog{}, hook: &hookLog{},
	}
	h.c.add("client_secret", canaryClientSecret)
	h.c.add("webhook_token", canaryWebhookToken)
	h.stopStderr = captureStderr(t, h.c)
	sinks, logger := newLogSinks(t)
	h.logs = sinks

	// The web port must be known before the simulator registers the
	// redirect URI: the socket is bound now and handed to the daemon.
	webLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	webAddr := webLn.Addr().String()
	_, port, _ := net.SplitHostPort(webAddr)
	h.redirect = "http://localhost:" + port + "/callback"

	h.sim = simulator.New(simulator.Options{
		Now:          h.clk.Now,
		Seed:         12,
		ClientSecret: canaryClientSecret,
		RedirectURIs: []string{h.redirect},
		PageSize:     168,
		HistoryDays:  30,
	})
	t.Cleanup(h.sim.Close)
	h.proxy = newRecorder(h.sim, h.c)
	simSrv := httptest.NewServer(h.proxy)
	t.Cleanup(simSrv.Close)
	h.simURL = simSrv.URL
	h.sim.SetBaseURL(simSrv.URL)
	hookSrv := httptest.NewServer(h.hook)
	t.Cleanup(hookSrv.Close)

	cfg := config.Default()
	cfg.Storage.Dir = h.dir
	cfg.Web.Listen = webAddr
	simulator.Configure(&cfg, simSrv.URL, h.redirect)
	cfg.ClientSecret = logging.NewSecret(canaryClientSecret)
	cfg.Tibber.RequestTimeout = 10 * time.Second
	cfg.History.BackfillDays = 2
	cfg.Schedule = config.Schedule{Devices: "@every 5m", Homes: "@every 1h", History: "@every 1h"}
	cfg.Notify.WebhookURL = hookSrv.URL + "/hook?token=" + canaryWebhookToken

	// The daemon as the product wires it, with the test's clock, logger,
	// an unlimited request rate, and hooks for panics and run errors.
	h.d, err = daemon.Open(ctx, cfg, daemon.Options{
		Logger:         logger,
		Clock:          h.clk,
		NotifyClock:    hybridClock{h.clk},
		NotBefore:      notBefore,
		RateLimit:      daemon.Unlimited,
		Metrics:        true,
		Listener:       webLn,
		ManualSchedule: true,
		WrapRunner: func(next jobs.Runner) jobs.Runner {
			h.runner = &panicRunner{next: next}
			return h.runner
		},
		WrapStatus: func(next web.StatusSource) web.StatusSource {
			h.status = &statusSource{StatusSource: next}
			return h.status
		},
		Observers: []daemon.Observer{daemon.ObserverFuncs{Run: func(_ context.Context, r model.Run, err error) {
			h.errs.add(r.Error)
			h.errs.addErr(err)
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	h.data, h.secrets, h.source, h.flow, h.sched = h.d.Store(), h.d.Tokens(), h.d.Auth(), h.d.Flow(), h.d.Scheduler()
	dctx, cancel := context.WithCancel(ctx)
	h.stopDaemon = cancel
	h.daemonDone = make(chan error, 1)
	go func() { h.daemonDone <- h.d.Run(dctx) }()
	select {
	case <-h.d.Ready():
	case err := <-h.daemonDone:
		t.Fatalf("daemon: %v", err)
	}
	h.webURL = h.d.URL()

	h.pages = &pageLog{base: uaTransport{http.DefaultTransport}, port: port}
	jar, _ := cookiejar.New(nil)
	h.browser = &http.Client{Jar: jar, Transport: h.pages, Timeout: 15 * time.Second}
	h.noFollow = &http.Client{Jar: jar, Transport: h.pages, Timeout: 15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	t.Cleanup(h.close)
	return h
}

// close stops everything and closes both databases (checkpointing data.db
// first), so that the files can be scanned. It is idempotent.
func (h *harness) close() {
	if h.closed {
		return
	}
	h.closed = true
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Run stops the web server and the notifier and waits for the jobs.
	h.stopDaemon()
	select {
	case err := <-h.daemonDone:
		if err != nil {
			h.t.Errorf("daemon run: %v", err)
		}
	case <-cctx.Done():
		h.t.Error("daemon did not stop")
	}
	if _, err := h.data.Checkpoint(cctx); err != nil {
		h.t.Errorf("checkpoint data.db: %v", err)
	}
	if err := h.d.Close(); err != nil {
		h.t.Errorf("close daemon: %v", err)
	}
}

// runJobs triggers the named jobs (or lets due ones start when none are
// named) and waits for them, and for the runs they trigger in turn (the
// daemon's history after the first devices run), as the scheduler's loop
// would run them at once.
func (h *harness) runJobs(names ...string) {
	h.t.Helper()
	for _, n := range names {
		h.sched.Trigger(n)
	}
	for range 4 {
		started := h.sched.RunDue(h.ctx)
		done := make(chan struct{})
		go func() {
			h.sched.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-h.ctx.Done():
			h.t.Fatal("jobs did not finish in time")
		}
		if len(started) == 0 {
			return
		}
	}
}

// lastState returns job's scheduling state as recorded in data.db.
func (h *harness) lastState(job string) model.JobState {
	h.t.Helper()
	st, err := h.data.JobState(h.ctx, job)
	if err != nil {
		h.t.Fatalf("job state %s: %v", job, err)
	}
	return st
}

func (h *harness) authState() model.AuthStatus {
	h.t.Helper()
	st, err := h.source.Status(h.ctx)
	if err != nil {
		h.t.Fatalf("auth status: %v", err)
	}
	return st
}

// get fetches u with c and returns status and body.
func (h *harness) get(c *http.Client, u string) (*http.Response, string) {
	h.t.Helper()
	req, err := http.NewRequestWithContext(h.ctx, http.MethodGet, u, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		h.t.Fatalf("GET %s: %v", h.c.redact(u), err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var consentRequestRe = regexp.MustCompile(`name="request" value="([^"]+)"`)

// startAttempt presses Connect: GET /setup/start, and returns the authorize
// URL tibbersync redirects to.
func (h *harness) startAttempt() string {
	h.t.Helper()
	resp, _ := h.get(h.noFollow, h.webURL+"/setup/start")
	if resp.StatusCode != http.StatusFound {
		h.t.Fatalf("/setup/start: status %d", resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

// consent opens the authorize URL (the simulator's consent page), approves,
// and returns the URL the simulator redirects back to, without following it.
func (h *harness) consent(authURL string) string {
	h.t.Helper()
	resp, page := h.get(h.noFollow, authURL)
	m := consentRequestRe.FindStringSubmatch(page)
	if resp.StatusCode != http.StatusOK || m == nil {
		h.t.Fatalf("consent page: status %d:\n%s", resp.StatusCode, h.c.redact(page))
	}
	form := url.Values{"request": {html.UnescapeString(m[1])}, "decision": {"approve"}}
	req, _ := http.NewRequestWithContext(h.ctx, http.MethodPost, h.simURL+"/connect/consent", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := h.noFollow.Do(req)
	if err != nil {
		h.t.Fatalf("approve: %v", err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, h.redirect+"?") {
		h.t.Fatalf("approve: status %d, Location %q", resp.StatusCode, h.c.redact(loc))
	}
	return loc
}

// paste posts text to /setup/paste and returns status and page.
func (h *harness) paste(text string) (int, string) {
	h.t.Helper()
	req, _ := http.NewRequestWithContext(h.ctx, http.MethodPost, h.webURL+"/setup/paste",
		strings.NewReader(url.Values{"url": {text}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", h.webURL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := h.browser.Do(req)
	if err != nil {
		h.t.Fatalf("paste: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// token is the stored token with its secrets, as the token store hands it
// to the token source.
func (h *harness) token() model.Token {
	h.t.Helper()
	g, err := h.secrets.Grant(h.ctx)
	if err != nil || !g.HasToken || g.Token.AccessToken.Empty() || g.Token.RefreshToken.Empty() {
		h.t.Fatalf("stored token: has=%v err=%v", g.HasToken, err)
	}
	return g.Token
}

// Echo bodies. Each repeats the secrets of the request it answers.

func tokenEchoes() []echo {
	return []echo{
		{name: "500 JSON error_description", status: 500, ctype: "application/json", body: func(s map[string]string) string {
			return fmt.Sprintf(`{"error":"server_error","error_description":"could not refresh %s for client %s with secret %s"}`,
				s["refresh_token"], simulator.DefaultClientID, s["client_secret"])
		}},
		{name: "502 HTML proxy page", status: 502, ctype: "text/html; charset=utf-8", body: func(s map[string]string) string {
			return fmt.Sprintf("<html><body><h1>502 Bad Gateway</h1><pre>POST /connect/token\ngrant_type=refresh_token&refresh_token=%s&client_secret=%s</pre></body></html>",
				s["refresh_token"], url.QueryEscape(s["client_secret"]))
		}},
		{name: "500 JSON error code", status: 500, ctype: "application/json", body: func(s map[string]string) string {
			return fmt.Sprintf(`{"error":%q,"error_description":%q}`, s["refresh_token"], s["client_secret"])
		}},
		{name: "503 form body", status: 503, ctype: "application/x-www-form-urlencoded", body: func(s map[string]string) string {
			return url.Values{"error": {"temporarily_unavailable"}, "error_description": {"retry " + s["refresh_token"] + " " + s["client_secret"]}}.Encode()
		}},
		{name: "500 plain text", status: 500, ctype: "text/plain", body: func(s map[string]string) string {
			return "internal error while handling refresh_token=" + s["refresh_token"] + "&client_secret=" + s["client_secret"]
		}},
	}
}

func apiEcho(status int) echo {
	return echo{
		name: fmt.Sprintf("%d problem+json echoing the bearer token", status), status: status, ctype: "application/problem+json",
		body: func(s map[string]string) string {
			return fmt.Sprintf(`{"type":"about:blank","title":"Error","status":%d,"detail":"rejected %s (token %s)","traceId":"00-%s-01"}`,
				status, s["authorization"], s["access_token"], strings.ReplaceAll(s["access_token"], ".", ""))
		},
		header: func(s map[string]string) http.Header {
			return http.Header{"Www-Authenticate": {`Bearer error="invalid_token", error_description="` + s["access_token"] + `"`}}
		},
	}
}

// TestCanaryNoSecretLeaks is the R12 canary test (issue 8 item 3).
func TestCanaryNoSecretLeaks(t *testing.T) {
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	h := newHarness(t, ctx)

	// 1. Setup through the web pages with a cookie-jar browser:
	// /setup → Connect → consent page → Approve → /callback → success page.
	if resp, page := h.get(h.browser, h.webURL+"/setup"); resp.StatusCode != 200 || !strings.Contains(page, `id="connect"`) {
		t.Fatalf("/setup: status %d", resp.StatusCode)
	}
	cb := h.consent(h.startAttempt())
	if resp, page := h.get(h.browser, cb); resp.StatusCode != 200 || !strings.Contains(page, "Connected to Tibber") {
		t.Fatalf("callback: status %d:\n%s", resp.StatusCode, h.c.redact(page))
	}
	if st := h.authState(); st.State != model.AuthOK {
		t.Fatalf("after setup: state %s", st.State)
	}

	// 2. The first sync (started by OnAuthorized), then three cycles an
	// hour apart, each of which must refresh the expired access token.
	h.runJobs()
	for i := range 3 {
		h.clk.Advance(61 * time.Minute)
		h.runJobs()
		if st := h.lastState("devices"); st.LastError != "" {
			t.Fatalf("cycle %d: devices failed: %s", i+1, h.c.redact(st.LastError))
		}
	}
	refreshesBefore := h.sim.Stats().Refreshes

	// 3. The token endpoint fails five times, each answer echoing the
	// refresh token and the client secret; the source backs off between
	// them. Then it recovers.
	h.clk.Advance(61 * time.Minute)
	for _, fx := range tokenEchoes() {
		h.proxy.queueToken(fx)
		h.runJobs("devices")
		if h.proxy.pending() != 0 {
			t.Fatalf("token echo %q was not requested", fx.name)
		}
		_, err := h.source.AccessToken(ctx) // the backoff error, without network
		if !errors.Is(err, model.ErrTokenBackoff) {
			t.Fatalf("after %q: AccessToken error %v, want a backoff", fx.name, h.c.redact(fmt.Sprint(err)))
		}
		h.errs.addErr(err)
		h.clk.Advance(time.Hour + time.Minute) // past the longest backoff
	}
	h.runJobs("devices")
	if st := h.lastState("devices"); st.LastError != "" || h.sim.Stats().Refreshes != refreshesBefore+1 {
		t.Fatalf("no recovery after the token echoes: %s", h.c.redact(st.LastError))
	}

	// 4. The Data API answers 401 once (echoing the token; the client
	// refreshes and retries), then 500 on every attempt of one call.
	h.proxy.queueAPI("/v1/homes", apiEcho(401))
	h.runJobs("homes")
	if st := h.lastState("homes"); st.LastError != "" {
		t.Fatalf("homes after one 401: %s", h.c.redact(st.LastError))
	}
	h.proxy.queueAPI("/v1/homes", apiEcho(500), apiEcho(500), apiEcho(500), apiEcho(500), apiEcho(500))
	h.runJobs("homes")
	if st := h.lastState("homes"); st.LastError == "" || h.proxy.pending() != 0 {
		t.Fatalf("homes after five 500s: error %q, %d echoes unused", h.c.redact(st.LastError), h.proxy.pending())
	}

	// 5. Recovered panics carrying the token: four job runs and one web handler.
	tok := h.token()
	for _, p := range []any{tok, &tok, heldToken{tok}, fmt.Errorf("refresh with %v failed: %w", tok.RefreshToken, errors.New("boom"))} {
		h.runner.panicWith(p)
		h.runJobs("homes")
		if st := h.lastState("homes"); !strings.Contains(st.LastError, "panic") {
			t.Fatalf("panicking run recorded %q", h.c.redact(st.LastError))
		}
	}
	var pv any = heldToken{tok}
	h.status.panicV.Store(&pv)
	// A fresh connection: a GET that fails on a reused one is retried.
	fresh := &http.Client{Timeout: 15 * time.Second, Transport: uaTransport{&http.Transport{DisableKeepAlives: true}}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.webURL+"/", nil)
	if resp, err := fresh.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("status page with a panicking source answered %d", resp.StatusCode)
	}

	// 6. Tibber rejects the refresh token with invalid_grant, echoing it:
	// reauth_required, notified by webhook.
	h.clk.Advance(2 * time.Hour)
	h.proxy.queueToken(echo{name: "400 invalid_grant", status: 400, ctype: "application/json", body: func(s map[string]string) string {
		return fmt.Sprintf(`{"error":"invalid_grant","error_description":"refresh token %s of client secret %s was revoked"}`, s["refresh_token"], s["client_secret"])
	}})
	h.runJobs("devices")
	if st := h.authState(); st.State != model.AuthReauthRequired {
		t.Fatalf("after invalid_grant: state %s", st.State)
	}

	// 7. Re-authorization by pasting the redirect URL, after bad pastes and
	// a code exchange whose error echoes code, verifier and secret.
	pastes := 0
	cb = h.consent(h.startAttempt())
	cbURL, _ := url.Parse(cb)
	code, state := cbURL.Query().Get("code"), cbURL.Query().Get("state")
	for _, bad := range []string{
		"ftp://localhost/callback?code=" + code + "&state=" + state,
		"code=" + code + "&state=" + state + "&x=%zz",
		"http://localhost/callback?code=" + code,
		"   ",
	} {
		pastes++
		if u, err := auth.ParseRedirect(bad); err != nil {
			h.errs.addErr(err)
		} else {
			_, err := h.flow.Complete(ctx, u)
			if err == nil {
				t.Fatalf("bad paste %q was accepted", h.c.redact(bad))
			}
			h.errs.addErr(err)
		}
	}
	pastes++
	wrongState := strings.Replace(cb, "state="+url.QueryEscape(state), "state=WRONGSTATE0123456789", 1)
	if u, err := auth.ParseRedirect(wrongState); err != nil {
		t.Fatalf("ParseRedirect(wrong state): %v", h.c.redact(fmt.Sprint(err)))
	} else if _, err := h.flow.Complete(ctx, u); !errors.Is(err, auth.ErrStateMismatch) {
		t.Fatalf("wrong state: %v", h.c.redact(fmt.Sprint(err)))
	} else {
		h.errs.addErr(err)
	}
	pastes++
	if status, page := h.paste("not a URL but " + code + " and " + state); status != http.StatusBadRequest {
		t.Fatalf("bad paste on the page: status %d:\n%s", status, h.c.redact(page))
	}
	h.proxy.queueToken(echo{name: "400 exchange echo", status: 400, ctype: "application/json", body: func(s map[string]string) string {
		return fmt.Sprintf(`{"error":%q,"error_description":"code %s with verifier %s and secret %s"}`, s["code"], s["code"], s["code_verifier"], s["client_secret"])
	}})
	pastes++
	if status, _ := h.paste("  " + cb + "\n"); status < 400 {
		t.Fatalf("paste with a failing exchange: status %d", status)
	}
	if h.proxy.pending() != 0 {
		t.Fatal("the exchange echo was not requested")
	}
	// A good paste on the page.
	cb = h.consent(h.startAttempt())
	pastes++
	if status, page := h.paste("\n" + cb + "  "); status != http.StatusOK || !strings.Contains(page, "Connected to Tibber") {
		t.Fatalf("paste: status %d:\n%s", status, h.c.redact(page))
	}
	// A good paste through ParseRedirect and Complete (the CLI's path), then
	// the same URL again.
	cb = h.consent(h.startAttempt())
	pastes += 2 // the URL and its replay
	u, err := auth.ParseRedirect("\t<" + cb[:len(cb)/2] + "\n" + cb[len(cb)/2:] + ">  ")
	if err != nil {
		t.Fatalf("ParseRedirect(wrapped URL): %v", h.c.redact(fmt.Sprint(err)))
	}
	if st, err := h.flow.Complete(ctx, u); err != nil || st.State != model.AuthOK {
		t.Fatalf("Complete(pasted): %+v, %v", st, h.c.redact(fmt.Sprint(err)))
	}
	if _, err := h.flow.Complete(ctx, u); !errors.Is(err, auth.ErrStateReplayed) {
		t.Fatalf("replayed paste: %v", h.c.redact(fmt.Sprint(err)))
	} else {
		h.errs.addErr(err)
	}
	h.runJobs()
	if st := h.lastState("devices"); st.LastError != "" {
		t.Fatalf("devices after re-authorization: %s", h.c.redact(st.LastError))
	}

	// 8. The notifier delivered the problem and the recovery.
	waitUntil(t, ctx, "two webhook deliveries", func() bool { return h.hook.n.Load() >= 2 })

	// 9. Scrape /metrics, the status page and /readyz.
	resp, metricsBody := h.get(h.browser, h.webURL+"/metrics")
	if resp.StatusCode != 200 || !strings.Contains(metricsBody, "tibbersync_") {
		t.Fatalf("/metrics: status %d", resp.StatusCode)
	}
	for _, p := range []string{"/", "/readyz", "/setup"} {
		h.get(h.browser, h.webURL+p)
	}

	// 10. Stop, checkpoint and close; then look everywhere.
	h.close()
	stderr := h.stopStderr()

	// Positive controls: the canaries were issued and did go through
	// every path, so a clean scan means something.
	for kind, least := range map[string]int{
		"client_secret": 1, "access_token": 8, "refresh_token": 8, "id_token": 4,
		"code": 4, "code_verifier": 4, "state": 4,
	} {
		if n := h.c.count(kind); n < least {
			t.Errorf("only %d %s values seen, want ≥ %d (%s)", n, kind, least, h.c.summary())
		}
	}
	st := h.sim.Stats()
	if st.Refreshes < 4 {
		t.Errorf("simulator saw %d refreshes, want ≥ 4", st.Refreshes)
	}
	served, echoed := h.proxy.echoes()
	if served != 13 || echoed["refresh_token"] != 6 || echoed["client_secret"] != 7 || echoed["access_token"] != 6 ||
		echoed["code"] != 1 || echoed["code_verifier"] != 1 {
		t.Errorf("echo answers: %d served, secrets echoed %v", served, echoed)
	}
	for msg, least := range map[string]int{
		"access token refreshed":             4,
		"token refresh failed; backing off":  5,
		"job panicked":                       4,
		"authorization code exchange failed": 1,
		"authorization complete":             3,
	} {
		if n := h.logs.countJSON(t, msg); n < least {
			t.Errorf("log has %d %q lines, want ≥ %d", n, msg, least)
		}
	}
	if n := h.logs.countJSON(t, "web handler panicked"); n != 1 {
		t.Errorf("the web handler's panic was logged %d times, want once", n)
	}

	rep := &leakReport{c: h.c}
	rep.check("JSON log", h.logs.json.Bytes())
	rep.check("logfmt log", h.logs.logfmt.Bytes())
	rep.check("tint log", h.logs.tint.Bytes())
	rep.check("stderr", stderr)
	rep.check("/metrics", []byte(metricsBody))
	rep.check("web pages", h.pages.pages.Bytes())
	rep.check("webhook bodies", h.hook.bodies.Bytes())
	rep.check("returned errors", h.errs.joined())

	files := fileHits(t, h.c, h.dir)
	var dataBytes int64
	tokensDB := filepath.Join("secrets", "tokens.db")
	for rel := range files {
		b := readFile(t, filepath.Join(h.dir, rel))
		if strings.HasPrefix(rel, "data.db") {
			dataBytes += int64(len(b))
		}
		if rel == tokensDB {
			continue // tokens.db is where tokens belong
		}
		rep.check("file "+rel, b)
	}
	current := h.sim.CurrentRefreshToken()
	if current == "" || !bytes.Contains(readFile(t, filepath.Join(h.dir, tokensDB)), []byte(current)) {
		t.Errorf("tokens.db does not hold the current refresh token (files: %v)", files)
	}
	email := h.sim.Account().Email
	if !bytes.Contains(readFile(t, filepath.Join(h.dir, "data.db")), []byte(email)) {
		t.Error("data.db does not hold the account email: was it checkpointed and scanned?")
	}
	for rel := range files {
		if strings.HasPrefix(rel, tokensDB) && rel != tokensDB {
			t.Errorf("%s still exists after close", rel)
		}
	}

	for _, l := range rep.leaks {
		t.Error("LEAK: " + l)
	}
	panics := h.logs.countJSON(t, "job panicked") + h.logs.countJSON(t, "web handler panicked")
	line := fmt.Sprintf("leak canary: %d secrets (%s) through setup, %d refreshes, %d echoing error bodies, %d panics, %d pastes; %d leaks in %d outputs and %d error strings, %.1f MB scanned (data.db %.1f MB, %d files), %.1fs",
		h.c.total(), h.c.summary(), st.Refreshes, served, panics, pastes, len(rep.leaks), rep.places, h.errs.count(),
		float64(rep.scanned)/1e6, float64(dataBytes)/1e6, len(files), time.Since(began).Seconds())
	t.Log(line)
	appendSummary(t, line)
}

func waitUntil(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
