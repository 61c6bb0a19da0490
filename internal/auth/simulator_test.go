package auth_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/auth"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/simulator"
)

// simEnv points e at the project's Tibber simulator instead of the small fake.
func simEnv(t *testing.T, opts simulator.Options) (*env, *simulator.Simulator) {
	t.Helper()
	e := newEnv(t)
	opts.Now = e.clk.Now
	opts.ClientID = testClientID
	opts.ClientSecret = testSecret
	opts.RedirectURIs = []string{testRedirect}
	opts.AutoConsent = true
	sim := simulator.New(opts)
	srv := httptest.NewServer(sim)
	t.Cleanup(func() {
		sim.Close()
		srv.Close()
	})
	e.opts.AuthURL = srv.URL + "/connect/authorize"
	e.opts.TokenURL = srv.URL + "/connect/token"
	e.opts.UserinfoURL = srv.URL + "/connect/userinfo"
	return e, sim
}

// browse follows the authorize URL as a browser with auto-consent would and
// returns the URL it is redirected to.
func browse(t *testing.T, e *env, authorizeURL string) *url.URL {
	t.Helper()
	c := &http.Client{
		Timeout:       5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, _ := http.NewRequest(http.MethodGet, authorizeURL, nil)
	req.Header.Set("User-Agent", e.opts.UserAgent)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("authorize answered %d", resp.StatusCode)
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestSimulatorEndToEnd(t *testing.T) {
	registered := slices.DeleteFunc(slices.Clone(simulator.AllScopes), func(s string) bool {
		return s == simulator.ScopeChargersRead
	})
	e, sim := simEnv(t, simulator.Options{RegisteredScopes: registered})
	f := e.flow()
	authorizeURL, err := f.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st, err := f.Complete(context.Background(), browse(t, e, authorizeURL))
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if st.State != model.AuthOK || st.Email == "" {
		t.Fatalf("status=%+v", st)
	}
	if slices.Contains(st.GrantedScopes, simulator.ScopeChargersRead) ||
		!slices.Contains(model.MissingCategories(st.GrantedScopes), model.CategoryCharger) {
		t.Fatalf("granted=%v: chargers should be invisible", st.GrantedScopes)
	}

	// Two days of 5-minute polling: rotation on, family revocation on.
	src := e.source()
	for range 2 * 24 * 12 {
		e.clk.Advance(5 * time.Minute)
		if _, err := src.AccessToken(context.Background()); err != nil {
			t.Fatalf("at %v: %v", e.clk.Now(), err)
		}
	}
	s := sim.Stats()
	if s.RefreshReuse != 0 || s.GrantsRevoked != 0 || s.UserAgentViolations != 0 {
		t.Fatalf("reuse=%d revoked=%d ua_violations=%d", s.RefreshReuse, s.GrantsRevoked, s.UserAgentViolations)
	}
	// Every 55 minutes (the first 5-minute tick inside the 6-minute margin).
	if want := int(48 * time.Hour / (55 * time.Minute)); s.Refreshes < want-1 || s.Refreshes > want+1 {
		t.Fatalf("refreshes=%d, want %d ± 1", s.Refreshes, want)
	}
	if got := e.grant().Token.RefreshToken.Reveal(); got != sim.CurrentRefreshToken() {
		t.Fatal("stored refresh token is not the simulator's current one")
	}
	if s.TokenRequests["authorization_code"] != 1 {
		t.Fatalf("code exchanges=%d", s.TokenRequests["authorization_code"])
	}
}

func TestSimulatorRotateThenDrop(t *testing.T) {
	e, sim := simEnv(t, simulator.Options{})
	f := e.flow()
	authorizeURL, err := f.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Complete(context.Background(), browse(t, e, authorizeURL)); err != nil {
		t.Fatal(err)
	}
	sim.Faults().Add(simulator.Fault{Endpoint: "token", Kind: simulator.KindRotateThenDrop, Count: 1})
	src := e.source()
	e.clk.Advance(time.Hour)
	if _, err := src.AccessToken(context.Background()); !errors.Is(err, model.ErrTokenBackoff) {
		t.Fatalf("lost response: %v", err)
	}
	e.clk.Advance(time.Minute)
	_, err = src.AccessToken(context.Background())
	if !errors.Is(err, auth.ErrReauthRequired) || !strings.Contains(e.grant().Reason, "lost") {
		t.Fatalf("err=%v reason=%q", err, e.grant().Reason)
	}
	for range 24 {
		e.clk.Advance(time.Hour)
		_, _ = src.AccessToken(context.Background())
	}
	if n := sim.Stats().TokenRequests["refresh_token"]; n != 2 {
		t.Fatalf("refresh requests=%d, want 2 (the lost one and its single retry)", n)
	}
}
