package simulator_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/simulator"
)

const testUA = "tibbersync-test/1.0.0 (linux; amd64)"

// testStart is the default fake "now": a Monday morning in September.
var testStart = time.Date(2026, 9, 14, 8, 7, 0, 0, time.UTC)

// fakeClock is a settable clock for Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *fakeClock { return &fakeClock{t: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// env is a simulator behind an httptest server with a fake clock.
type env struct {
	t     *testing.T
	sim   *simulator.Simulator
	srv   *httptest.Server
	clock *fakeClock
	hc    *http.Client
}

// uaTransport sets the test User-Agent on every request.
type uaTransport struct {
	ua   string
	base http.RoundTripper
}

func (u uaTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if u.ua != "" && r.Header.Get("User-Agent") == "" {
		r.Header.Set("User-Agent", u.ua)
	}
	return u.base.RoundTrip(r)
}

func newEnv(t *testing.T, opts simulator.Options) *env {
	t.Helper()
	clock := newClock(testStart)
	if opts.Now == nil {
		opts.Now = clock.Now
	}
	sim := simulator.New(opts)
	srv := httptest.NewServer(sim)
	t.Cleanup(func() {
		sim.Close()
		srv.Close()
	})
	hc := &http.Client{
		Transport:     uaTransport{ua: testUA, base: srv.Client().Transport},
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &env{t: t, sim: sim, srv: srv, clock: clock, hc: hc}
}

// defaultScopes are the 11 scopes Home Assistant requests.
var defaultScopes = []string{"openid", "profile", "email", "offline_access", "data-api-user-read",
	"data-api-homes-read", "data-api-vehicles-read", "data-api-chargers-read",
	"data-api-thermostats-read", "data-api-energy-systems-read", "data-api-inverters-read"}

// postToken posts a form to /connect/token and decodes the JSON body.
func (e *env) postToken(form url.Values) (int, map[string]any) {
	e.t.Helper()
	resp, err := e.hc.PostForm(e.srv.URL+"/connect/token", form)
	if err != nil {
		e.t.Fatalf("post token: %v", err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		e.t.Fatalf("decode token response (status %d): %v", resp.StatusCode, err)
	}
	return resp.StatusCode, body
}

func (e *env) codeForm(code, verifier string) url.Values {
	f := url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {simulator.DefaultRedirectURI},
		"client_id": {simulator.DefaultClientID}, "client_secret": {simulator.DefaultClientSecret},
	}
	if verifier != "" {
		f.Set("code_verifier", verifier)
	}
	return f
}

func refreshForm(rt string) url.Values {
	return url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {rt},
		"client_id": {simulator.DefaultClientID}, "client_secret": {simulator.DefaultClientSecret},
	}
}

// login returns the access and refresh token of a fresh grant.
func (e *env) login(scopes ...string) (access, refresh string) {
	e.t.Helper()
	if len(scopes) == 0 {
		scopes = defaultScopes
	}
	code := e.sim.IssueCode(scopes, "", "")
	status, body := e.postToken(e.codeForm(code, ""))
	if status != 200 {
		e.t.Fatalf("code exchange: status %d body %v", status, body)
	}
	access, _ = body["access_token"].(string)
	refresh, _ = body["refresh_token"].(string)
	return access, refresh
}

// get performs an authenticated GET and returns status, headers and body.
func (e *env) get(path, token string) (int, http.Header, []byte) {
	e.t.Helper()
	u := path
	if !strings.HasPrefix(path, "http") {
		u = e.srv.URL + path
	}
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		e.t.Fatalf("new request: %v", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		e.t.Fatalf("get %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("read %s: %v", path, err)
	}
	return resp.StatusCode, resp.Header, b
}

// getJSON GETs and decodes into v, failing unless the status is want.
func (e *env) getJSON(path, token string, want int, v any) {
	e.t.Helper()
	status, _, body := e.get(path, token)
	if status != want {
		e.t.Fatalf("GET %s: status %d, want %d; body %s", path, status, want, body)
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			e.t.Fatalf("GET %s: decode: %v; body %s", path, err, body)
		}
	}
}

// jwtClaims decodes the claims of a JWT without verifying it.
func jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("decode claims: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("unmarshal claims: %v", err)
	}
	return m
}

func devicePath(homeID, deviceID string) string {
	return "/v1/homes/" + url.PathEscape(homeID) + "/devices/" + url.PathEscape(deviceID)
}

// findDevice returns the fixture device of the given kind.
func findDevice(t *testing.T, sim *simulator.Simulator, kind string) (simulator.Home, simulator.Device) {
	t.Helper()
	for _, h := range sim.Account().Homes {
		for _, d := range h.Devices {
			if d.Kind == kind {
				return h, d
			}
		}
	}
	t.Fatalf("no %s device", kind)
	return simulator.Home{}, simulator.Device{}
}

// problemBody decodes a problem+json response and checks its basics.
func checkProblem(t *testing.T, status int, h http.Header, body []byte, want int) map[string]any {
	t.Helper()
	if status != want {
		t.Fatalf("status %d, want %d; body %s", status, want, body)
	}
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Fatalf("Content-Type %q, want application/problem+json", ct)
	}
	var p map[string]any
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("decode problem: %v", err)
	}
	if p["status"] != float64(want) || p["title"] == "" || p["traceId"] == nil || p["type"] == nil {
		t.Fatalf("problem body %v lacks type/title/status/traceId", p)
	}
	return p
}
