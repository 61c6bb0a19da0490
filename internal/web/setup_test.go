package web_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/tibbersync/tibbersync/internal/auth"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/web"
)

const (
	canaryCode  = "CANARYCODE7d1f0b"
	canaryState = "CANARYSTATE9e4c22"
)

func TestSetupPageExplainsRegistration(t *testing.T) {
	opts := baseOptions(&syncBuffer{})
	opts.RedirectURL = "http://localhost:8765/callback"
	_, ts := handlerServer(t, opts)
	r := get(t, noRedirect(), ts.URL+"/setup")
	if r.status != http.StatusOK {
		t.Fatalf("status %d", r.status)
	}
	mustContain(t, r.body,
		`<pre class="copy" id="redirect-uri">http://localhost:8765/callback</pre>`,
		`<code id="client-id">client-123</code>`,
		`<a class="btn" id="connect" href="/setup/start">Connect to Tibber</a>`,
		web.ClientManageURL,
		"<code>data-api-vehicles-read</code>",
		"<code>data-api-homes-read</code>",
		`action="/setup/paste"`,
		// Scopes not requested leave categories invisible.
		"EV chargers",
	)
	// The page is served on the httptest port, not 8765: the user is told
	// to paste the URL.
	mustContain(t, r.body, "tibbersync listens on port")
}

func TestSetupPageWithoutClientDisablesConnect(t *testing.T) {
	opts := baseOptions(&syncBuffer{})
	opts.ClientConfigured = false
	opts.ClientID = ""
	opts.Flow = nil
	opts.ConfigHint = "Set tibber.client_id and put the secret in /etc/tibbersync/client_secret."
	_, ts := handlerServer(t, opts)
	r := get(t, noRedirect(), ts.URL+"/setup")
	if r.status != http.StatusOK {
		t.Fatalf("status %d", r.status)
	}
	mustContain(t, r.body,
		`<span class="btn disabled" id="connect" aria-disabled="true">Connect to Tibber</span>`,
		"Set tibber.client_id and put the secret in /etc/tibbersync/client_secret.",
		"http://localhost:8765/callback",
		"not set",
	)
	if strings.Contains(r.body, `href="/setup/start"`) {
		t.Error("disabled setup page still links to /setup/start")
	}
	r = get(t, noRedirect(), ts.URL+"/setup/start")
	if r.status != http.StatusConflict {
		t.Fatalf("/setup/start without client: status %d, want 409", r.status)
	}
	mustContain(t, r.body, "Set tibber.client_id and put the secret")
}

func TestNewRequiresFlowWhenClientConfigured(t *testing.T) {
	opts := baseOptions(&syncBuffer{})
	opts.Flow = nil
	if _, err := web.New(opts); err == nil {
		t.Fatal("New accepted a configured client without a flow")
	}
}

func TestStartRedirectsToAuthorizeURL(t *testing.T) {
	const authURL = "https://thewall.example/connect/authorize?client_id=client-123&state=S1&code_challenge=C"
	opts := baseOptions(&syncBuffer{})
	flow := &fakeFlow{
		StartFn:    func(context.Context) (string, error) { return authURL, nil },
		CompleteFn: func(context.Context, *url.URL) (model.AuthStatus, error) { return model.AuthStatus{}, nil },
	}
	opts.Flow = flow
	_, ts := handlerServer(t, opts)

	r := get(t, noRedirect(), ts.URL+"/setup/start")
	if r.status != http.StatusFound {
		t.Fatalf("status %d, want 302", r.status)
	}
	if got := r.header.Get("Location"); got != authURL {
		t.Fatalf("Location=%q, want %q", got, authURL)
	}
	if strings.Contains(r.body, "S1") {
		t.Error("redirect body repeats the authorize URL")
	}

	// Neither HEAD (prefetchers) nor another site may start an attempt.
	req, _ := http.NewRequest(http.MethodHead, ts.URL+"/setup/start", nil)
	if r := do(t, noRedirect(), req); r.status != http.StatusMethodNotAllowed {
		t.Errorf("HEAD /setup/start: status %d, want 405", r.status)
	}
	req, _ = http.NewRequest(http.MethodGet, ts.URL+"/setup/start", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if r := do(t, noRedirect(), req); r.status != http.StatusForbidden {
		t.Errorf("cross-site /setup/start: status %d, want 403", r.status)
	}
	req, _ = http.NewRequest(http.MethodGet, ts.URL+"/setup/start", nil)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if r := do(t, noRedirect(), req); r.status != http.StatusFound {
		t.Errorf("same-origin /setup/start: status %d, want 302", r.status)
	}
	if starts, _ := flow.counts(); starts != 2 {
		t.Errorf("Start called %d times, want 2", starts)
	}
}

func TestStartErrorShowsPage(t *testing.T) {
	opts := baseOptions(&syncBuffer{})
	opts.Flow = &fakeFlow{
		StartFn:    func(context.Context) (string, error) { return "", userError{msg: "tokens.db is not writable"} },
		CompleteFn: func(context.Context, *url.URL) (model.AuthStatus, error) { return model.AuthStatus{}, nil },
	}
	_, ts := handlerServer(t, opts)
	r := get(t, noRedirect(), ts.URL+"/setup/start")
	if r.status != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", r.status)
	}
	mustContain(t, r.body, "Could not start authorization", "tokens.db is not writable")
}

// fakeAuthorizeServer plays thewall: it sets a session cookie, redirects to
// a login page that needs it, then sends the browser back with a code.
func fakeAuthorizeServer(t *testing.T, callback func() string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /connect/authorize", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("state") != canaryState {
			http.Error(w, "invalid_request", http.StatusBadRequest)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: "idsrv", Value: "session1", Path: "/"})
		http.Redirect(w, r, "/consent?state="+canaryState, http.StatusFound)
	})
	mux.HandleFunc("GET /consent", func(w http.ResponseWriter, r *http.Request) {
		if c, err := r.Cookie("idsrv"); err != nil || c.Value != "session1" {
			http.Error(w, "no session cookie", http.StatusUnauthorized)
			return
		}
		http.Redirect(w, r, callback()+"?code="+canaryCode+"&state="+r.URL.Query().Get("state")+"&scope=openid", http.StatusFound)
	})
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return ts
}

func TestFullRedirectFlowWithCookieJarClient(t *testing.T) {
	var logs syncBuffer
	opts := baseOptions(&logs)
	var s *web.Server
	authSrv := fakeAuthorizeServer(t, func() string { return s.URL() + "/callback" })
	var (
		mu         sync.Mutex
		authorized []model.AuthStatus
		gotCtx     context.Context
	)
	granted := []string{"openid", "profile", "email", "offline_access", "data-api-user-read", "data-api-homes-read", "data-api-vehicles-read", "data-api-thermostats-read"}
	opts.Flow = &fakeFlow{
		StartFn: func(context.Context) (string, error) {
			return authSrv.URL + "/connect/authorize?response_type=code&client_id=client-123&state=" + canaryState, nil
		},
		CompleteFn: func(ctx context.Context, u *url.URL) (model.AuthStatus, error) {
			mu.Lock()
			gotCtx = ctx
			mu.Unlock()
			q := u.Query()
			if q.Get("state") != canaryState || q.Get("code") != canaryCode {
				return model.AuthStatus{}, userError{msg: "state mismatch"}
			}
			return model.AuthStatus{State: model.AuthOK, Email: "ada@example.com", GrantedScopes: granted}, nil
		},
	}
	opts.OnAuthorized = func(st model.AuthStatus) {
		mu.Lock()
		defer mu.Unlock()
		authorized = append(authorized, st)
	}
	s = openServer(t, opts)

	r := get(t, jarClient(t), s.URL()+"/setup/start")
	if r.status != http.StatusOK {
		t.Fatalf("flow ended with status %d:\n%s", r.status, r.body)
	}
	mustContain(t, r.body, "Connected to Tibber", "ada@example.com", "The first sync starts now",
		"<li>data-api-thermostats-read</li>", "<li>data-api-vehicles-read</li>",
		// Missing categories, by name and scope.
		"EV chargers: <code>data-api-chargers-read</code>",
		"Home batteries and energy systems: <code>data-api-energy-systems-read</code>",
		"Inverters: <code>data-api-inverters-read</code>",
		`href="/"`)
	if strings.Contains(r.body, "Vehicles:") {
		t.Error("success page lists vehicles as invisible although granted")
	}
	for _, canary := range []string{canaryCode, canaryState} {
		if strings.Contains(r.body, canary) {
			t.Errorf("success page contains %s", canary)
		}
		if strings.Contains(logs.String(), canary) {
			t.Errorf("logs contain %s", canary)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(authorized) != 1 || authorized[0].Email != "ada@example.com" {
		t.Fatalf("OnAuthorized calls=%v, want one with the email", authorized)
	}
	// The exchange runs on a context of its own, not the request's (R3).
	if gotCtx.Value(http.LocalAddrContextKey) != nil {
		t.Error("Complete got a context derived from the request")
	}
	if _, ok := gotCtx.Deadline(); !ok {
		t.Error("Complete got a context without deadline")
	}
	if !strings.Contains(logs.String(), "authorization completed") {
		t.Error("success not logged")
	}
}

func TestCallbackErrorPages(t *testing.T) {
	cases := map[string]struct {
		err        error
		wantStatus int
		wantText   string
	}{
		"AccessDenied": {userError{msg: "You declined the request at Tibber; nothing was stored."}, http.StatusBadRequest,
			"You declined the request at Tibber; nothing was stored."},
		"NothingPending": {errors.New("no authorization attempt is pending"), http.StatusBadRequest,
			"no authorization attempt is pending"},
		"TokenEndpointDown": {userError{msg: "Tibber's token endpoint failed (HTTP 503). Try again in a minute.", status: http.StatusBadGateway}, http.StatusBadGateway,
			"Tibber&#39;s token endpoint failed (HTTP 503). Try again in a minute."},
		"Timeout": {fmt.Errorf("exchange code: %w", context.DeadlineExceeded), http.StatusGatewayTimeout,
			"Tibber did not answer in time"},
		// An error that carries the code by mistake must not show it.
		"LeakyError": {fmt.Errorf("exchange code %s for state %s: invalid_grant", canaryCode, canaryState), http.StatusBadRequest,
			"exchange code REDACTED for state REDACTED: invalid_grant"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var logs syncBuffer
			opts := baseOptions(&logs)
			opts.Flow = &fakeFlow{
				StartFn:    func(context.Context) (string, error) { return "", nil },
				CompleteFn: func(context.Context, *url.URL) (model.AuthStatus, error) { return model.AuthStatus{}, c.err },
			}
			called := false
			opts.OnAuthorized = func(model.AuthStatus) { called = true }
			_, ts := handlerServer(t, opts)
			r := get(t, noRedirect(), ts.URL+"/callback?code="+canaryCode+"&state="+canaryState+"&error=access_denied&session_state="+canaryState)
			if r.status != c.wantStatus {
				t.Fatalf("status %d, want %d", r.status, c.wantStatus)
			}
			mustContain(t, r.body, "Authorization failed", c.wantText, `href="/setup"`)
			for _, canary := range []string{canaryCode, canaryState} {
				if strings.Contains(r.body, canary) {
					t.Errorf("page echoes %s", canary)
				}
				if strings.Contains(logs.String(), canary) {
					t.Errorf("logs contain %s:\n%s", canary, logs.String())
				}
			}
			if !strings.Contains(logs.String(), "authorization failed") {
				t.Error("failure not logged")
			}
			if called {
				t.Error("OnAuthorized called after a failure")
			}
		})
	}
}

func TestCallbackOnlyGET(t *testing.T) {
	opts := baseOptions(&syncBuffer{})
	_, ts := handlerServer(t, opts)
	for _, m := range []string{http.MethodPost, http.MethodHead, http.MethodPut} {
		req, _ := http.NewRequest(m, ts.URL+"/callback?code=a&state=b", nil)
		if r := do(t, noRedirect(), req); r.status != http.StatusMethodNotAllowed {
			t.Errorf("%s /callback: status %d, want 405", m, r.status)
		}
	}
	if _, completes := opts.Flow.(*fakeFlow).counts(); completes != 0 {
		t.Errorf("Complete called %d times by non-GET requests", completes)
	}
}

func TestCallbackAtRedirectPath(t *testing.T) {
	cases := map[string]struct{ redirect, path string }{
		"CustomPath": {"http://localhost:8765/oauth/tibber", "/oauth/tibber"},
		"Root":       {"http://localhost/", "/"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			opts := baseOptions(&syncBuffer{})
			opts.RedirectURL = c.redirect
			var got *url.URL
			opts.Flow = &fakeFlow{
				StartFn: func(context.Context) (string, error) { return "", nil },
				CompleteFn: func(_ context.Context, u *url.URL) (model.AuthStatus, error) {
					got = u
					return model.AuthStatus{State: model.AuthOK, Email: "ada@example.com"}, nil
				},
			}
			_, ts := handlerServer(t, opts)
			r := get(t, noRedirect(), ts.URL+c.path+"?code=abc&state=def")
			if r.status != http.StatusOK {
				t.Fatalf("status %d", r.status)
			}
			mustContain(t, r.body, "ada@example.com")
			if got == nil || got.Query().Get("code") != "abc" || got.Path != c.path {
				t.Fatalf("Complete got %v", got)
			}
		})
	}
}

func TestPasteCompletesAuthorization(t *testing.T) {
	var logs syncBuffer
	opts := baseOptions(&logs)
	var got *url.URL
	opts.Flow = &fakeFlow{
		StartFn: func(context.Context) (string, error) { return "", nil },
		CompleteFn: func(_ context.Context, u *url.URL) (model.AuthStatus, error) {
			got = u
			return model.AuthStatus{State: model.AuthOK, Email: "ada@example.com", GrantedScopes: []string{"openid"}}, nil
		},
	}
	_, ts := handlerServer(t, opts)
	pasted := "  http://localhost:8765/callback?code=" + canaryCode + "&state=" + canaryState + "&scope=openid \n"

	// Same-origin browser post.
	r := postForm(t, noRedirect(), ts.URL+"/setup/paste", url.Values{"url": {pasted}},
		map[string]string{"Origin": ts.URL, "Sec-Fetch-Site": "same-origin"})
	if r.status != http.StatusOK {
		t.Fatalf("paste: status %d\n%s", r.status, r.body)
	}
	mustContain(t, r.body, "Connected to Tibber", "ada@example.com", "<code>tibbersync run</code> syncs")
	if got == nil || got.Query().Get("code") != canaryCode || got.Query().Get("state") != canaryState || got.Host != "localhost:8765" {
		t.Fatalf("Complete got %v", got)
	}
	// curl: no Origin, no Sec-Fetch-Site.
	if r := postForm(t, noRedirect(), ts.URL+"/setup/paste", url.Values{"url": {pasted}}, nil); r.status != http.StatusOK {
		t.Fatalf("paste without browser headers: status %d", r.status)
	}
	for _, canary := range []string{canaryCode, canaryState} {
		if strings.Contains(r.body, canary) || strings.Contains(logs.String(), canary) {
			t.Errorf("%s leaked into the page or logs", canary)
		}
	}
}

func TestPasteRefusesCrossOriginPosts(t *testing.T) {
	cases := map[string]map[string]string{
		"ForeignOrigin":     {"Origin": "http://evil.test"},
		"NullOrigin":        {"Origin": "null"},
		"CrossSiteFetch":    {"Sec-Fetch-Site": "cross-site"},
		"SameSiteFetch":     {"Sec-Fetch-Site": "same-site", "Origin": "http://localhost:9999"},
		"OtherPortOrigin":   {"Origin": "http://127.0.0.1:1"},
		"CrossSiteNoOrigin": {"Sec-Fetch-Site": "cross-site"},
	}
	for name, hdr := range cases {
		t.Run(name, func(t *testing.T) {
			opts := baseOptions(&syncBuffer{})
			flow := opts.Flow.(*fakeFlow)
			_, ts := handlerServer(t, opts)
			r := postForm(t, noRedirect(), ts.URL+"/setup/paste",
				url.Values{"url": {"http://localhost:8765/callback?code=a&state=b"}}, hdr)
			if r.status != http.StatusForbidden {
				t.Fatalf("status %d, want 403", r.status)
			}
			if _, completes := flow.counts(); completes != 0 {
				t.Fatalf("cross-origin paste reached Complete")
			}
		})
	}
}

func TestPasteRejectsGarbage(t *testing.T) {
	for name, v := range map[string]string{"Empty": "  ", "NoQuery": "http://localhost:8765/callback", "NotAURL": "%zz"} {
		t.Run(name, func(t *testing.T) {
			opts := baseOptions(&syncBuffer{})
			flow := opts.Flow.(*fakeFlow)
			_, ts := handlerServer(t, opts)
			r := postForm(t, noRedirect(), ts.URL+"/setup/paste", url.Values{"url": {v}}, nil)
			if r.status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", r.status)
			}
			mustContain(t, r.body, "Not a redirect address")
			if _, completes := flow.counts(); completes != 0 {
				t.Fatal("garbage reached Complete")
			}
		})
	}
}

func TestPasteWithoutPendingAttemptIs400(t *testing.T) {
	opts := baseOptions(&syncBuffer{})
	_, ts := handlerServer(t, opts)
	r := postForm(t, noRedirect(), ts.URL+"/setup/paste", url.Values{"url": {"http://localhost:8765/callback?code=a&state=b"}}, nil)
	if r.status != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", r.status)
	}
	mustContain(t, r.body, "no authorization attempt is pending")
}

func TestCallbackWithoutPendingAttemptIs400(t *testing.T) {
	_, ts := handlerServer(t, baseOptions(&syncBuffer{}))
	r := get(t, noRedirect(), ts.URL+"/callback")
	if r.status != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", r.status)
	}
	mustContain(t, r.body, "no authorization attempt is pending")
}

// TestPasteUsesTheConfiguredParser: the paste box accepts what the CLI's
// paste mode accepts (auth.ParseRedirect: quotes, line breaks, bare query).
func TestPasteUsesTheConfiguredParser(t *testing.T) {
	var logs syncBuffer
	opts := baseOptions(&logs)
	var got *url.URL
	opts.Flow = &fakeFlow{
		StartFn: func(context.Context) (string, error) { return "", nil },
		CompleteFn: func(_ context.Context, u *url.URL) (model.AuthStatus, error) {
			got = u
			return model.AuthStatus{State: model.AuthOK, Email: "ada@example.com"}, nil
		},
	}
	opts.ParseRedirect = auth.ParseRedirect
	_, ts := handlerServer(t, opts)
	pasted := "\"http://localhost:8765/callback?code=" + canaryCode + "&state=" + canaryState + "\""
	r := postForm(t, noRedirect(), ts.URL+"/setup/paste", url.Values{"url": {pasted}}, nil)
	if r.status != http.StatusOK {
		t.Fatalf("quoted paste: status %d\n%s", r.status, r.body)
	}
	if got == nil || got.Query().Get("code") != canaryCode || got.Query().Get("state") != canaryState {
		t.Fatalf("Complete got %v", got)
	}
}
