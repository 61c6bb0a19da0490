package auth_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/auth"
	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/testutil"
	"github.com/tibbersync/tibbersync/internal/tokenstore"
)

// Canary values: none of them may ever appear in a log line or error string.
const (
	canaryPrefix = "CANARY"
	testClientID = "tibbersync-test"
	testSecret   = "CANARY-client-secret-7f3a"
	testRedirect = "http://localhost:8765/callback"
)

// Faults the fake token endpoint can be told to produce, one per POST, in order.
const (
	fault500           = "500"            // 500 before processing, HTML body echoing the posted refresh token
	faultProcess500    = "process-500"    // rotate, then answer 500
	faultDrop          = "drop"           // read the request, close the connection, no processing
	faultRotateDrop    = "rotate-drop"    // rotate, then close the connection (lost response)
	faultInvalidGrant  = "invalid_grant"  // 400 {"error":"invalid_grant"}
	faultInvalidClient = "invalid_client" // 400 {"error":"invalid_client"}
	fault429           = "429"
	fault200Error      = "200-error"       // 200 {"error":"invalid_grant"}
	faultNoAccessToken = "no-access-token" // 200 without access_token
	faultExpiresString = "expires-string"  // expires_in as a numeric string
)

// fakeTibber is a token endpoint and userinfo endpoint for tests: it issues
// codes, rotates refresh tokens (optionally), detects reuse of rotated-out
// tokens (revoking the family unless inside the grace window), counts POSTs
// and injects faults.
type fakeTibber struct {
	srv *httptest.Server
	now func() time.Time
	// onPost, if set before the server is used, runs at every token POST.
	onPost func()

	mu            sync.Mutex
	rotate        bool
	omitRefresh   bool
	grace         time.Duration
	expiresIn     int
	grantedScopes string
	faults        []string
	// tokenType replaces "Bearer" in token responses ("-" leaves it out);
	// omitScope leaves scope out; omitRefreshAll leaves refresh_token out
	// of every response, code exchanges included.
	tokenType      string
	omitScope      bool
	omitRefreshAll bool

	posts        int
	codePosts    int
	refreshPosts int
	userinfoGets int
	reuse        int
	revoked      bool
	refreshTimes []time.Time
	userAgents   []string

	n        int
	current  string
	rotated  map[string]rotation // rotated-out refresh token → when and what replaced it
	access   map[string]bool
	codes    map[string]*codeGrant
	lastPair tokenPair
}

type rotation struct {
	at   time.Time
	next tokenPair
}

type tokenPair struct{ access, refresh string }

type codeGrant struct {
	challenge, redirect string
	used                bool
}

func newFakeTibber(t testing.TB, now func() time.Time) *fakeTibber {
	f := &fakeTibber{
		now:           now,
		rotate:        true,
		expiresIn:     3600,
		grantedScopes: strings.Join(auth.DefaultScopes, " "),
		rotated:       map[string]rotation{},
		access:        map[string]bool{},
		codes:         map[string]*codeGrant{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /connect/token", f.token)
	mux.HandleFunc("GET /connect/userinfo", f.userinfo)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeTibber) tokenURL() string    { return f.srv.URL + "/connect/token" }
func (f *fakeTibber) userinfoURL() string { return f.srv.URL + "/connect/userinfo" }
func (f *fakeTibber) authURL() string     { return f.srv.URL + "/connect/authorize" }

// setNow replaces the server's clock (used for grace windows and refresh times).
func (f *fakeTibber) setNow(now func() time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = now
}

func (f *fakeTibber) addFaults(fs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, fs...)
}

type fakeStats struct {
	posts, codePosts, refreshPosts, reuse, userinfo int
	revoked                                         bool
	current                                         string
	refreshTimes                                    []time.Time
	userAgents                                      []string
}

func (f *fakeTibber) stats() fakeStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fakeStats{
		posts: f.posts, codePosts: f.codePosts, refreshPosts: f.refreshPosts, reuse: f.reuse,
		userinfo: f.userinfoGets, revoked: f.revoked, current: f.current,
		refreshTimes: append([]time.Time(nil), f.refreshTimes...),
		userAgents:   append([]string(nil), f.userAgents...),
	}
}

// issueCode mints an authorization code bound to challenge and redirect, as
// the authorize endpoint would after consent.
func (f *fakeTibber) issueCode(challenge, redirect string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	code := fmt.Sprintf("%s-code-%d", canaryPrefix, f.n)
	f.codes[code] = &codeGrant{challenge: challenge, redirect: redirect}
	return code
}

func (f *fakeTibber) newPair() tokenPair {
	f.n++
	return tokenPair{
		access:  fmt.Sprintf("%s-AT-%d", canaryPrefix, f.n),
		refresh: fmt.Sprintf("%s-RT-%d", canaryPrefix, f.n),
	}
}

func (f *fakeTibber) token(w http.ResponseWriter, r *http.Request) {
	if f.onPost != nil {
		f.onPost()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.posts++
	f.userAgents = append(f.userAgents, r.UserAgent())
	if err := r.ParseForm(); err != nil {
		writeJSON(w, 400, map[string]any{"error": "invalid_request"})
		return
	}
	grant := r.PostForm.Get("grant_type")
	switch grant {
	case "authorization_code":
		f.codePosts++
	case "refresh_token":
		f.refreshPosts++
		f.refreshTimes = append(f.refreshTimes, f.now())
	}
	var fault string
	if len(f.faults) > 0 {
		fault, f.faults = f.faults[0], f.faults[1:]
	}
	switch fault {
	case fault500:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(500)
		fmt.Fprintf(w, "<h1>Internal error</h1><pre>%s %s</pre>", r.PostForm.Get("refresh_token"), r.PostForm.Get("client_secret"))
		return
	case faultDrop:
		hijackClose(w)
		return
	case fault429:
		w.Header().Set("Retry-After", "3")
		writeJSON(w, 429, map[string]any{"error": "slow_down"})
		return
	case faultInvalidGrant:
		writeJSON(w, 400, map[string]any{"error": "invalid_grant", "error_description": "token " + r.PostForm.Get("refresh_token") + " is not valid"})
		return
	case faultInvalidClient:
		writeJSON(w, 400, map[string]any{"error": "invalid_client"})
		return
	case fault200Error:
		writeJSON(w, 200, map[string]any{"error": "invalid_grant"})
		return
	case faultNoAccessToken:
		writeJSON(w, 200, map[string]any{"token_type": "Bearer", "expires_in": 3600})
		return
	}
	if r.PostForm.Get("client_id") != testClientID || r.PostForm.Get("client_secret") != testSecret {
		writeJSON(w, 400, map[string]any{"error": "invalid_client"})
		return
	}
	if _, _, ok := r.BasicAuth(); ok {
		writeJSON(w, 400, map[string]any{"error": "invalid_client", "error_description": "basic auth not accepted"})
		return
	}
	var pair tokenPair
	switch grant {
	case "authorization_code":
		c := f.codes[r.PostForm.Get("code")]
		switch {
		case c == nil, c.used:
			writeJSON(w, 400, map[string]any{"error": "invalid_grant"})
			return
		case c.redirect != r.PostForm.Get("redirect_uri"):
			writeJSON(w, 400, map[string]any{"error": "invalid_grant", "error_description": "redirect_uri mismatch"})
			return
		case s256(r.PostForm.Get("code_verifier")) != c.challenge:
			writeJSON(w, 400, map[string]any{"error": "invalid_grant", "error_description": "code_verifier mismatch"})
			return
		}
		c.used = true
		pair = f.newPair()
		f.current = pair.refresh
		f.revoked = false
	case "refresh_token":
		rt := r.PostForm.Get("refresh_token")
		switch rot, old := f.rotated[rt]; {
		case f.revoked:
			writeJSON(w, 400, map[string]any{"error": "invalid_grant"})
			return
		case rt == f.current && rt != "":
			pair = f.newPair()
			if f.rotate {
				f.rotated[rt] = rotation{at: f.now(), next: pair}
				f.current = pair.refresh
			} else {
				pair.refresh = rt
			}
		case old && f.grace > 0 && f.now().Sub(rot.at) <= f.grace && rot.next.refresh == f.current:
			pair = rot.next // inside the grace window: the same answer again
		case old:
			f.reuse++
			f.revoked = true
			writeJSON(w, 400, map[string]any{"error": "invalid_grant"})
			return
		default:
			writeJSON(w, 400, map[string]any{"error": "invalid_grant"})
			return
		}
	default:
		writeJSON(w, 400, map[string]any{"error": "unsupported_grant_type"})
		return
	}
	f.access[pair.access] = true
	f.lastPair = pair
	switch fault {
	case faultRotateDrop:
		hijackClose(w)
		return
	case faultProcess500:
		writeJSON(w, 500, map[string]any{"error": "server_error"})
		return
	}
	body := map[string]any{
		"access_token": pair.access,
		"token_type":   "Bearer",
		"expires_in":   f.expiresIn,
		"scope":        f.grantedScopes,
	}
	if fault == faultExpiresString {
		body["expires_in"] = fmt.Sprint(f.expiresIn)
	}
	switch f.tokenType {
	case "":
	case "-":
		delete(body, "token_type")
	default:
		body["token_type"] = f.tokenType
	}
	if f.omitScope {
		delete(body, "scope")
	}
	if !(f.omitRefresh && grant == "refresh_token") && !f.omitRefreshAll {
		body["refresh_token"] = pair.refresh
	}
	writeJSON(w, 200, body)
}

func (f *fakeTibber) userinfo(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.userinfoGets++
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !f.access[tok] {
		writeJSON(w, 401, map[string]any{"error": "invalid_token"})
		return
	}
	writeJSON(w, 200, map[string]any{"sub": "user-1", "email": "user@example.com", "name": "Test User"})
}

func hijackClose(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("no hijacker")
	}
	conn, _, err := hj.Hijack()
	if err == nil {
		_ = conn.Close()
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func s256(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// memRecorder is an in-memory auth.StatusRecorder.
type memRecorder struct {
	mu   sync.Mutex
	st   model.AuthStatus
	sets int
}

func (m *memRecorder) AuthStatus(context.Context) (model.AuthStatus, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st, nil
}

func (m *memRecorder) SetAuthStatus(_ context.Context, st model.AuthStatus) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.st = st
	m.sets++
	return nil
}

func (m *memRecorder) get() model.AuthStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st
}

// memNotifier records notifications.
type memNotifier struct {
	mu  sync.Mutex
	got []model.AuthStatus
}

func (n *memNotifier) Notify(_ context.Context, st model.AuthStatus) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.got = append(n.got, st)
}

func (n *memNotifier) calls() []model.AuthStatus {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]model.AuthStatus(nil), n.got...)
}

// logBuffer is the shared concurrency-safe log sink.
type logBuffer = testutil.SyncBuffer

// env is one test setup: fake Tibber, token store, fake clock, recorder,
// notifier and captured logs.
type env struct {
	t     *testing.T
	dir   string
	fake  *fakeTibber
	clk   *clock.Fake
	store *tokenstore.Store
	rec   *memRecorder
	notif *memNotifier
	logs  *logBuffer
	opts  auth.Options
}

var tStart = time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), clk: clock.NewFake(tStart), rec: &memRecorder{}, notif: &memNotifier{}, logs: &logBuffer{}}
	e.fake = newFakeTibber(t, e.clk.Now)
	e.store = e.openStore()
	e.opts = auth.Options{
		ClientID:     testClientID,
		ClientSecret: logging.NewSecret(testSecret),
		AuthURL:      e.fake.authURL(),
		TokenURL:     e.fake.tokenURL(),
		UserinfoURL:  e.fake.userinfoURL(),
		RedirectURL:  testRedirect,
		HTTPClient:   &http.Client{Timeout: 5 * time.Second},
		UserAgent:    "tibbersync/test (linux; amd64)",
		Store:        e.store,
		Status:       e.rec,
		Notifier:     e.notif,
		Clock:        e.clk,
		Logger:       slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	t.Cleanup(func() {
		if strings.Contains(e.logs.String(), canaryPrefix) {
			t.Errorf("a secret leaked into the logs:\n%s", e.logs.String())
		}
	})
	return e
}

func (e *env) openStore() *tokenstore.Store {
	e.t.Helper()
	s, err := tokenstore.Open(context.Background(), e.dir, e.clk)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = s.Close() })
	return s
}

func (e *env) source() *auth.Source {
	e.t.Helper()
	s, err := auth.NewSource(e.opts)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) flow() *auth.Flow {
	e.t.Helper()
	f, err := auth.NewFlow(e.opts)
	if err != nil {
		e.t.Fatal(err)
	}
	return f
}

// start runs Flow.Start and returns the authorize URL's query.
func (e *env) start(f *auth.Flow) url.Values {
	e.t.Helper()
	raw, err := f.Start(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		e.t.Fatal(err)
	}
	return u.Query()
}

// consent plays the authorize endpoint: it issues a code for the attempt and
// returns the redirect URL the browser would land on.
func (e *env) consent(q url.Values) *url.URL {
	code := e.fake.issueCode(q.Get("code_challenge"), q.Get("redirect_uri"))
	u, _ := url.Parse(q.Get("redirect_uri"))
	u.RawQuery = url.Values{"code": {code}, "state": {q.Get("state")}, "scope": {q.Get("scope")}}.Encode()
	return u
}

// setup runs a complete authorization and returns the status.
func (e *env) setup() model.AuthStatus {
	e.t.Helper()
	f := e.flow()
	st, err := f.Complete(context.Background(), e.consent(e.start(f)))
	if err != nil {
		e.t.Fatalf("Complete: %v", err)
	}
	return st
}

func (e *env) grant() tokenstore.Grant {
	e.t.Helper()
	g, err := e.store.Grant(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return g
}

// noCanary fails if err's text (in every fmt form) contains a secret.
func noCanary(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		if s := fmt.Sprintf(verb, err); strings.Contains(s, canaryPrefix) {
			t.Errorf("error leaks a secret with %s: %s", verb, s)
		}
	}
}

// guard fails the test if fn does not return within d.
func guard(t *testing.T, d time.Duration, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("timed out after %s", d)
	}
}
