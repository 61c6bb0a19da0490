package simulator_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/simulator"
)

const (
	rfcVerifier  = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	rfcChallenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
)

func TestS256ChallengeRFC7636Vector(t *testing.T) {
	if got := simulator.S256Challenge(rfcVerifier); got != rfcChallenge {
		t.Fatalf("S256Challenge=%q, want %q", got, rfcChallenge)
	}
}

func authorizeURL(base string, scopes []string, extra url.Values) string {
	v := url.Values{
		"response_type": {"code"}, "client_id": {simulator.DefaultClientID},
		"redirect_uri": {simulator.DefaultRedirectURI}, "scope": {strings.Join(scopes, " ")},
		"state": {"st-123"}, "code_challenge": {rfcChallenge}, "code_challenge_method": {"S256"},
	}
	for k, vv := range extra {
		v[k] = vv
	}
	return base + "/connect/authorize?" + v.Encode()
}

var requestIDRE = regexp.MustCompile(`name="request" value="([0-9a-f]+)"`)

// browser is a plain cookie-jar client that stops at the redirect to the
// (unreachable) redirect_uri.
func browser(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{
		Jar:     jar,
		Timeout: 10 * time.Second,
		CheckRedirect: func(req *http.Request, _ []*http.Request) error {
			if req.URL.Host == "localhost:8765" {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
}

// consent GETs the authorize URL, checks the consent page and clicks decision.
func consent(t *testing.T, c *http.Client, authURL, decision string) *url.URL {
	t.Helper()
	resp, err := c.Get(authURL)
	if err != nil {
		t.Fatalf("authorize: %v", err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("authorize: status %d type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{`id="approve"`, `id="deny"`, `data-scope="data-api-homes-read"`, `action="/connect/consent"`} {
		if !strings.Contains(string(page), want) {
			t.Fatalf("consent page lacks %s:\n%s", want, page)
		}
	}
	m := requestIDRE.FindStringSubmatch(string(page))
	if m == nil {
		t.Fatalf("no request id in consent page")
	}
	base, _ := url.Parse(authURL)
	resp, err = c.PostForm(base.Scheme+"://"+base.Host+"/connect/consent", url.Values{"request": {m[1]}, "decision": {decision}})
	if err != nil {
		t.Fatalf("consent: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("consent: status %d, want 302", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatalf("parse Location: %v", err)
	}
	return loc
}

func TestAuthorizeConsentApproveAndTokenExchange(t *testing.T) {
	e := newEnv(t, simulator.Options{})
	loc := consent(t, browser(t), authorizeURL(e.srv.URL, defaultScopes, nil), "approve")
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != simulator.DefaultRedirectURI {
		t.Fatalf("redirect to %q, want %q", got, simulator.DefaultRedirectURI)
	}
	q := loc.Query()
	if q.Get("state") != "st-123" || q.Get("code") == "" || q.Get("session_state") == "" {
		t.Fatalf("redirect query %v lacks state/code/session_state", q)
	}
	if got := q.Get("scope"); got != strings.Join(defaultScopes, " ") {
		t.Fatalf("scope=%q", got)
	}
	status, body := e.postToken(e.codeForm(q.Get("code"), rfcVerifier))
	if status != 200 {
		t.Fatalf("token: %d %v", status, body)
	}
	if body["token_type"] != "Bearer" || body["expires_in"] != float64(3600) || body["refresh_token"] == nil || body["id_token"] == nil {
		t.Fatalf("token response %v", body)
	}
	if body["scope"] != strings.Join(defaultScopes, " ") {
		t.Fatalf("granted scope %v", body["scope"])
	}
	c := jwtClaims(t, body["access_token"].(string))
	if c["iss"] != e.srv.URL || c["client_id"] != simulator.DefaultClientID || c["sub"] != e.sim.Account().UserID {
		t.Fatalf("claims %v", c)
	}
	if c["exp"].(float64)-c["iat"].(float64) != 3600 || c["iat"] != float64(testStart.Unix()) {
		t.Fatalf("iat/exp %v/%v", c["iat"], c["exp"])
	}
	sc, ok := c["scope"].([]any)
	if !ok || len(sc) != len(defaultScopes) {
		t.Fatalf("scope claim %v is not a JSON array of the granted scopes", c["scope"])
	}
	var ui map[string]any
	e.getJSON("/connect/userinfo", body["access_token"].(string), 200, &ui)
	acct := e.sim.Account()
	if ui["sub"] != acct.UserID || ui["email"] != acct.Email || ui["name"] != acct.Name {
		t.Fatalf("userinfo %v", ui)
	}
	if s := e.sim.Stats(); s.CodesIssued != 1 || s.CodesRedeemed != 1 || s.TokenRequests["authorization_code"] != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestAuthorizeConsentOnPostToAuthorize(t *testing.T) {
	// A headless browser posting the form to /connect/authorize instead.
	e := newEnv(t, simulator.Options{})
	c := browser(t)
	resp, err := c.Get(authorizeURL(e.srv.URL, defaultScopes, nil))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	id := requestIDRE.FindStringSubmatch(string(page))[1]
	resp, err = c.PostForm(e.srv.URL+"/connect/authorize", url.Values{"request": {id}, "decision": {"approve"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 302 || !strings.Contains(resp.Header.Get("Location"), "code=") {
		t.Fatalf("status %d location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// The request id is single use.
	resp, err = c.PostForm(e.srv.URL+"/connect/consent", url.Values{"request": {id}, "decision": {"approve"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("reused consent request: status %d, want 400", resp.StatusCode)
	}
}

func TestAuthorizeDeny(t *testing.T) {
	t.Run("Button", func(t *testing.T) {
		e := newEnv(t, simulator.Options{})
		loc := consent(t, browser(t), authorizeURL(e.srv.URL, defaultScopes, nil), "deny")
		if q := loc.Query(); q.Get("error") != "access_denied" || q.Get("state") != "st-123" || q.Get("code") != "" {
			t.Fatalf("deny redirect %v", loc)
		}
	})
	t.Run("Option", func(t *testing.T) {
		e := newEnv(t, simulator.Options{Deny: true})
		resp, err := browser(t).Get(authorizeURL(e.srv.URL, defaultScopes, nil))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != 302 || loc.Query().Get("error") != "access_denied" || loc.Query().Get("state") != "st-123" {
			t.Fatalf("status %d location %v", resp.StatusCode, loc)
		}
	})
}

func TestAuthorizeAutoConsent(t *testing.T) {
	e := newEnv(t, simulator.Options{AutoConsent: true})
	resp, err := browser(t).Get(authorizeURL(e.srv.URL, defaultScopes, nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != 302 || loc.Query().Get("code") == "" {
		t.Fatalf("status %d location %v", resp.StatusCode, loc)
	}
	// The verifier is reusable across attempts: a second code with the same
	// challenge redeems with the same verifier.
	for range 2 {
		code := e.sim.IssueCode(defaultScopes, "", rfcChallenge)
		if st, b := e.postToken(e.codeForm(code, rfcVerifier)); st != 200 {
			t.Fatalf("reused verifier: %d %v", st, b)
		}
	}
	if st, b := e.postToken(e.codeForm(loc.Query().Get("code"), rfcVerifier)); st != 200 {
		t.Fatalf("code exchange: %d %v", st, b)
	}
}

func TestAuthorizeErrorPage(t *testing.T) {
	e := newEnv(t, simulator.Options{AutoConsent: true})
	cases := map[string]url.Values{
		"UnknownClient":         {"client_id": {"nope"}},
		"RedirectTrailingSlash": {"redirect_uri": {simulator.DefaultRedirectURI + "/"}},
		"RedirectOtherPort":     {"redirect_uri": {"http://localhost:8766/callback"}},
		"UnknownScope":          {"scope": {"openid data-api-everything"}},
		"PlainPKCE":             {"code_challenge_method": {"plain"}},
		"ChallengeNoMethod":     {"code_challenge_method": {""}},
		"ResponseTypeToken":     {"response_type": {"token"}},
	}
	for name, extra := range cases {
		t.Run(name, func(t *testing.T) {
			resp, err := e.hc.Get(authorizeURL(e.srv.URL, defaultScopes, extra))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 400 || resp.Header.Get("Location") != "" {
				t.Fatalf("status %d location %q, want 400 without redirect", resp.StatusCode, resp.Header.Get("Location"))
			}
			if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
				t.Fatalf("Content-Type %q", resp.Header.Get("Content-Type"))
			}
			if !strings.Contains(string(body), "Sorry, there was an error : invalid_request") ||
				!regexp.MustCompile(`Request Id: 0HN[0-9A-F]+:[0-9A-F]{8}`).Match(body) {
				t.Fatalf("error page:\n%s", body)
			}
		})
	}
}

func TestScopeFiltering(t *testing.T) {
	registered := []string{"openid", "profile", "email", "offline_access", "data-api-user-read",
		"data-api-homes-read", "data-api-vehicles-read"}
	e := newEnv(t, simulator.Options{AutoConsent: true, RegisteredScopes: registered})
	resp, err := e.hc.Get(authorizeURL(e.srv.URL, defaultScopes, nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if got := loc.Query().Get("scope"); got != strings.Join(registered, " ") {
		t.Fatalf("granted %q, want only the registered %q", got, strings.Join(registered, " "))
	}
	st, body := e.postToken(e.codeForm(loc.Query().Get("code"), rfcVerifier))
	if st != 200 || body["scope"] != strings.Join(registered, " ") {
		t.Fatalf("token %d %v", st, body)
	}
	tok := body["access_token"].(string)
	// Only vehicles are visible; other categories are hidden, not errors.
	acct := e.sim.Account()
	for _, h := range acct.Homes {
		var list struct{ Devices []struct{ ID string } }
		e.getJSON("/v1/homes/"+h.ID+"/devices", tok, 200, &list)
		var want []string
		for _, d := range h.Devices {
			if d.Category == "vehicle" {
				want = append(want, d.ID)
			}
		}
		var got []string
		for _, d := range list.Devices {
			got = append(got, d.ID)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("home %s devices %v, want vehicles %v", h.Name, got, want)
		}
		for _, d := range h.Devices {
			if d.Category != "vehicle" {
				st, hdr, b := e.get(devicePath(h.ID, d.ID), tok)
				checkProblem(t, st, hdr, b, 404)
				st, hdr, b = e.get(devicePath(h.ID, d.ID)+"/history?resolution=hour&since=2026-09-01T00:00:00Z", tok)
				checkProblem(t, st, hdr, b, 404)
			}
		}
	}
}

func TestHomesWithoutHomesScope(t *testing.T) {
	scopes := []string{"openid", "offline_access", "data-api-user-read", "data-api-vehicles-read"}
	t.Run("Empty", func(t *testing.T) {
		e := newEnv(t, simulator.Options{})
		tok, _ := e.login(scopes...)
		var homes struct{ Homes []any }
		e.getJSON("/v1/homes", tok, 200, &homes)
		if homes.Homes == nil || len(homes.Homes) != 0 {
			t.Fatalf("homes %v, want an empty list", homes.Homes)
		}
	})
	t.Run("Forbidden", func(t *testing.T) {
		e := newEnv(t, simulator.Options{MissingHomesScope403: true})
		tok, _ := e.login(scopes...)
		st, h, b := e.get("/v1/homes", tok)
		checkProblem(t, st, h, b, 403)
	})
}

func TestPKCEVerification(t *testing.T) {
	e := newEnv(t, simulator.Options{})
	cases := map[string]struct {
		challenge, verifier string
		want                int
	}{
		"Match":           {rfcChallenge, rfcVerifier, 200},
		"Mismatch":        {rfcChallenge, strings.Repeat("a", 43), 400},
		"MissingVerifier": {rfcChallenge, "", 400},
		"NoChallenge":     {"", "", 200},
		"ShortVerifier":   {simulator.S256Challenge("short"), "short", 400},
		"VerifierIgnored": {"", rfcVerifier, 200},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			code := e.sim.IssueCode(defaultScopes, "", c.challenge)
			st, body := e.postToken(e.codeForm(code, c.verifier))
			if st != c.want {
				t.Fatalf("status %d, want %d (%v)", st, c.want, body)
			}
			if c.want == 400 && body["error"] != "invalid_grant" {
				t.Fatalf("error %v, want invalid_grant", body["error"])
			}
		})
	}
}

func TestCodeSingleUseExpiryAndBinding(t *testing.T) {
	e := newEnv(t, simulator.Options{})
	code := e.sim.IssueCode(defaultScopes, "", rfcChallenge)
	st, body := e.postToken(e.codeForm(code, rfcVerifier))
	if st != 200 {
		t.Fatalf("first redemption: %d %v", st, body)
	}
	rt := body["refresh_token"].(string)
	st, body = e.postToken(e.codeForm(code, rfcVerifier))
	if st != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("reuse: %d %v", st, body)
	}
	s := e.sim.Stats()
	if s.CodesReused != 1 || s.GrantsRevoked != 1 {
		t.Fatalf("CodesReused=%d GrantsRevoked=%d, want 1/1", s.CodesReused, s.GrantsRevoked)
	}
	// Code reuse revoked the grant issued from that code.
	if st, body := e.postToken(refreshForm(rt)); st != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("refresh after code reuse: %d %v", st, body)
	}

	code = e.sim.IssueCode(defaultScopes, "", "")
	e.clock.Advance(simulator.DefaultCodeTTL)
	if st, body := e.postToken(e.codeForm(code, "")); st != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("expired code: %d %v", st, body)
	}
	if e.sim.Stats().CodesExpired != 1 {
		t.Fatalf("CodesExpired=%d", e.sim.Stats().CodesExpired)
	}
	code = e.sim.IssueCode(defaultScopes, "", "")
	e.clock.Advance(simulator.DefaultCodeTTL - time.Second)
	f := e.codeForm(code, "")
	f.Set("redirect_uri", "http://localhost:8765/other")
	if st, body := e.postToken(f); st != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("redirect mismatch: %d %v", st, body)
	}
}

func TestTokenEndpointErrors(t *testing.T) {
	e := newEnv(t, simulator.Options{})
	code := e.sim.IssueCode(defaultScopes, "", "")
	base := e.codeForm(code, "")
	with := func(k, v string) url.Values {
		f := url.Values{}
		for kk, vv := range base {
			f[kk] = vv
		}
		if v == "" {
			f.Del(k)
		} else {
			f.Set(k, v)
		}
		return f
	}
	cases := map[string]struct {
		form      url.Values
		status    int
		errorCode string
	}{
		"MissingSecret":     {with("client_secret", ""), 400, "invalid_client"},
		"WrongSecret":       {with("client_secret", "nope"), 400, "invalid_client"},
		"UnknownClient":     {with("client_id", "other"), 400, "invalid_client"},
		"MissingGrantType":  {with("grant_type", ""), 400, "invalid_request"},
		"PasswordGrant":     {with("grant_type", "password"), 400, "unsupported_grant_type"},
		"ClientCredentials": {with("grant_type", "client_credentials"), 400, "unsupported_grant_type"},
		"MissingCode":       {with("code", ""), 400, "invalid_request"},
		"UnknownCode":       {with("code", "ABC"), 400, "invalid_grant"},
		"MissingRefresh":    {with("grant_type", "refresh_token"), 400, "invalid_request"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			st, body := e.postToken(c.form)
			if st != c.status || body["error"] != c.errorCode {
				t.Fatalf("got %d %v, want %d %s", st, body, c.status, c.errorCode)
			}
		})
	}
	t.Run("JSONBody", func(t *testing.T) {
		resp, err := e.hc.Post(e.srv.URL+"/connect/token", "application/json", strings.NewReader(`{"grant_type":"authorization_code"}`))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(b), "invalid_request") {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
	})
	t.Run("BasicRefused", func(t *testing.T) {
		req, _ := http.NewRequest("POST", e.srv.URL+"/connect/token", strings.NewReader(url.Values{
			"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {simulator.DefaultRedirectURI}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(simulator.DefaultClientID, simulator.DefaultClientSecret)
		resp, err := e.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(b), `"invalid_client"`) {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
	})
	// The failed attempts above did not consume the code.
	if st, body := e.postToken(base); st != 200 {
		t.Fatalf("code after failed attempts: %d %v", st, body)
	}
}

func TestInvalidClientStatusAndBasic(t *testing.T) {
	e := newEnv(t, simulator.Options{InvalidClientStatus: 401, AcceptBasic: true})
	f := e.codeForm(e.sim.IssueCode(defaultScopes, "", ""), "")
	f.Set("client_secret", "wrong")
	if st, body := e.postToken(f); st != 401 || body["error"] != "invalid_client" {
		t.Fatalf("wrong secret: %d %v", st, body)
	}
	code := e.sim.IssueCode(defaultScopes, "", "")
	req, _ := http.NewRequest("POST", e.srv.URL+"/connect/token", strings.NewReader(url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {simulator.DefaultRedirectURI}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(simulator.DefaultClientID, simulator.DefaultClientSecret)
	resp, err := e.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("Basic with AcceptBasic: %d", resp.StatusCode)
	}
}

func TestNoOfflineAccessNoRefreshToken(t *testing.T) {
	e := newEnv(t, simulator.Options{})
	access, refresh := e.login("openid", "profile", "email", "data-api-user-read", "data-api-homes-read")
	if access == "" || refresh != "" {
		t.Fatalf("access %t refresh %q: want an access token and no refresh token", access != "", refresh)
	}
	if e.sim.CurrentRefreshToken() != "" {
		t.Fatal("CurrentRefreshToken without offline_access")
	}
}

func TestRefreshRotationWithFamilyRevocation(t *testing.T) {
	e := newEnv(t, simulator.Options{})
	_, rt1 := e.login()
	if e.sim.CurrentRefreshToken() != rt1 {
		t.Fatal("CurrentRefreshToken is not the issued token")
	}
	st, body := e.postToken(refreshForm(rt1))
	rt2, _ := body["refresh_token"].(string)
	if st != 200 || rt2 == "" || rt2 == rt1 {
		t.Fatalf("rotation: %d new=%q", st, rt2)
	}
	if e.sim.CurrentRefreshToken() != rt2 {
		t.Fatal("CurrentRefreshToken did not follow the rotation")
	}
	st, body = e.postToken(refreshForm(rt1))
	if st != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("reuse of rotated-out token: %d %v", st, body)
	}
	// The whole family is revoked now.
	if st, body := e.postToken(refreshForm(rt2)); st != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("new token after family revocation: %d %v", st, body)
	}
	s := e.sim.Stats()
	if s.RefreshReuse != 1 || s.GrantsRevoked != 1 || s.Refreshes != 1 || s.TokenRequests["refresh_token"] != 3 {
		t.Fatalf("stats %+v", s)
	}
	if e.sim.CurrentRefreshToken() != "" {
		t.Fatal("CurrentRefreshToken after revocation")
	}
	var kinds []string
	for _, ev := range e.sim.Events() {
		kinds = append(kinds, ev.Kind)
		if strings.Contains(ev.Detail, rt1) || strings.Contains(ev.Detail, rt2) {
			t.Fatalf("event %+v leaks a refresh token", ev)
		}
	}
	for _, k := range []string{"code-redeemed", "refresh-rotated", "refresh-reuse", "grant-revoked"} {
		if !slices.Contains(kinds, k) {
			t.Fatalf("events %v lack %s", kinds, k)
		}
	}
}

func TestRefreshRotationWithoutFamilyRevocation(t *testing.T) {
	e := newEnv(t, simulator.Options{DisableFamilyRevocation: true})
	_, rt1 := e.login()
	_, body := e.postToken(refreshForm(rt1))
	rt2 := body["refresh_token"].(string)
	if st, _ := e.postToken(refreshForm(rt1)); st != 400 {
		t.Fatalf("old token accepted: %d", st)
	}
	if st, body := e.postToken(refreshForm(rt2)); st != 200 || body["refresh_token"] == rt2 {
		t.Fatalf("current token after reuse: %d %v", st, body)
	}
	if s := e.sim.Stats(); s.RefreshReuse != 1 || s.GrantsRevoked != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestRefreshWithoutRotation(t *testing.T) {
	e := newEnv(t, simulator.Options{DisableRotation: true})
	_, rt := e.login()
	for i := range 3 {
		e.clock.Advance(time.Hour)
		st, body := e.postToken(refreshForm(rt))
		if st != 200 || body["refresh_token"] != rt {
			t.Fatalf("refresh %d: %d %v, want the same refresh token", i, st, body)
		}
	}
	if e.sim.CurrentRefreshToken() != rt || e.sim.Stats().RefreshReuse != 0 {
		t.Fatal("no-rotation mode changed the token or counted reuse")
	}
}

func TestRefreshReuseGrace(t *testing.T) {
	e := newEnv(t, simulator.Options{ReuseGrace: 5 * time.Second})
	_, rt1 := e.login()
	st, first := e.postToken(refreshForm(rt1))
	if st != 200 {
		t.Fatalf("refresh: %d", st)
	}
	e.clock.Advance(4 * time.Second)
	st, again := e.postToken(refreshForm(rt1))
	if st != 200 || again["refresh_token"] != first["refresh_token"] || again["access_token"] != first["access_token"] {
		t.Fatalf("grace reuse: %d %v, want the first response again", st, again)
	}
	if s := e.sim.Stats(); s.RefreshReuseGrace != 1 || s.RefreshReuse != 0 {
		t.Fatalf("stats %+v", s)
	}
	e.clock.Advance(2 * time.Second) // 6s after rotation: outside the window
	if st, _ := e.postToken(refreshForm(rt1)); st != 400 {
		t.Fatalf("reuse after grace: %d", st)
	}
	if s := e.sim.Stats(); s.RefreshReuse != 1 || s.GrantsRevoked != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestOmitRefreshTokenOption(t *testing.T) {
	e := newEnv(t, simulator.Options{OmitRefreshToken: true})
	_, rt := e.login()
	for range 2 {
		st, body := e.postToken(refreshForm(rt))
		if _, has := body["refresh_token"]; st != 200 || has {
			t.Fatalf("%d %v, want no refresh_token", st, body)
		}
	}
	if e.sim.CurrentRefreshToken() != rt {
		t.Fatal("omitting the refresh token must keep the old one valid")
	}
}

func TestRefreshExpiry(t *testing.T) {
	for name, sliding := range map[string]bool{"Absolute": false, "Sliding": true} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, simulator.Options{RefreshTTL: 10 * time.Hour, RefreshExpirySliding: sliding})
			_, rt := e.login()
			ok := 0
			for range 4 { // refresh every 4h: 4h, 8h, 12h, 16h
				e.clock.Advance(4 * time.Hour)
				st, body := e.postToken(refreshForm(rt))
				if st != 200 {
					if body["error"] != "invalid_grant" {
						t.Fatalf("expired: %v", body)
					}
					break
				}
				ok++
				rt = body["refresh_token"].(string)
			}
			want := 2 // absolute: 10h from the grant
			if sliding {
				want = 4
			}
			if ok != want {
				t.Fatalf("%d successful refreshes, want %d", ok, want)
			}
		})
	}
}

func TestExpiresInAsString(t *testing.T) {
	e := newEnv(t, simulator.Options{ExpiresInAsString: true, AccessTTL: 30 * time.Minute})
	st, body := e.postToken(e.codeForm(e.sim.IssueCode(defaultScopes, "", ""), ""))
	if st != 200 || body["expires_in"] != "1800" {
		t.Fatalf("%d expires_in=%#v", st, body["expires_in"])
	}
}

func TestRevokeGrantsAndDeleteClient(t *testing.T) {
	e := newEnv(t, simulator.Options{})
	access, rt := e.login()
	e.sim.RevokeGrants()
	if st, body := e.postToken(refreshForm(rt)); st != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("refresh after revoke: %d %v", st, body)
	}
	// Issued access tokens stay valid until they expire.
	e.getJSON("/v1/homes", access, 200, nil)

	_, rt = e.login()
	e.sim.DeleteClient()
	if st, body := e.postToken(refreshForm(rt)); st != 400 || body["error"] != "invalid_client" {
		t.Fatalf("refresh after delete: %d %v", st, body)
	}
	st, h, b := e.get("/v1/homes", access)
	checkProblem(t, st, h, b, 401)
	resp, err := e.hc.Get(authorizeURL(e.srv.URL, defaultScopes, nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("authorize after delete: %d", resp.StatusCode)
	}
}

func TestAccessTokenValidation(t *testing.T) {
	e := newEnv(t, simulator.Options{})
	access, _ := e.login()
	e.getJSON("/v1/homes", access, 200, nil)
	parts := strings.Split(access, ".")
	tampered := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
	cases := map[string]string{"Missing": "", "Garbage": "abc", "Tampered": tampered}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			st, h, b := e.get("/v1/homes", tok)
			checkProblem(t, st, h, b, 401)
			if !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("WWW-Authenticate %q", h.Get("WWW-Authenticate"))
			}
		})
	}
	e.clock.Advance(time.Hour)
	st, h, b := e.get("/v1/homes", access)
	checkProblem(t, st, h, b, 401)
	if !strings.Contains(h.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("WWW-Authenticate %q", h.Get("WWW-Authenticate"))
	}
	st, _, _ = e.get("/connect/userinfo", access)
	if st != 401 {
		t.Fatalf("userinfo with expired token: %d", st)
	}
	if e.sim.Stats().Unauthorized < 5 {
		t.Fatalf("Unauthorized=%d", e.sim.Stats().Unauthorized)
	}
}

func TestUserAgentRule(t *testing.T) {
	valid := []string{"tibbersync/1.2.3 (linux; amd64)", "MyIntegration/1.0.0 tibber-data-go/0.1.0 (linux; amd64)", "tibbersync/dev", "tibbersync/0.1.0-rc.1+abc"}
	invalid := []string{"", "tibbersync", "Go-http-client/1.1", "tibbersync/1.0 (", "/1.0", "tibber sync/1.0", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"}
	for _, ua := range valid {
		if !simulator.ValidUserAgent(ua) {
			t.Errorf("ValidUserAgent(%q)=false", ua)
		}
	}
	for _, ua := range invalid {
		if simulator.ValidUserAgent(ua) {
			t.Errorf("ValidUserAgent(%q)=true", ua)
		}
	}

	send := func(e *env, ua string) int {
		req, _ := http.NewRequest("GET", e.srv.URL+"/v1/homes", nil)
		access, _ := e.login()
		req.Header.Set("Authorization", "Bearer "+access)
		req.Header.Set("User-Agent", ua)
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	e := newEnv(t, simulator.Options{})
	if st := send(e, ""); st != 400 {
		t.Fatalf("missing UA: %d", st)
	}
	if st := send(e, "Go-http-client/1.1"); st != 400 {
		t.Fatalf("default Go UA: %d", st)
	}
	if st := send(e, testUA); st != 200 {
		t.Fatalf("valid UA: %d", st)
	}
	if v := e.sim.Stats().UserAgentViolations; v != 2 {
		t.Fatalf("UserAgentViolations=%d, want 2", v)
	}
	// The token endpoint checks it too.
	req, _ := http.NewRequest("POST", e.srv.URL+"/connect/token", strings.NewReader(refreshForm("x").Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", "")
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 || e.sim.Stats().UserAgentViolations != 3 {
		t.Fatalf("token without UA: %d, violations %d", resp.StatusCode, e.sim.Stats().UserAgentViolations)
	}

	lenient := newEnv(t, simulator.Options{LenientUserAgent: true})
	if st := send(lenient, ""); st != 200 || lenient.sim.Stats().UserAgentViolations != 1 {
		t.Fatalf("lenient: %d, violations %d", st, lenient.sim.Stats().UserAgentViolations)
	}
}

func TestDiscovery(t *testing.T) {
	e := newEnv(t, simulator.Options{})
	var d map[string]any
	e.getJSON("/.well-known/openid-configuration", "", 200, &d)
	if d["token_endpoint"] != e.srv.URL+"/connect/token" || d["authorization_endpoint"] != e.srv.URL+"/connect/authorize" {
		t.Fatalf("discovery %v", d)
	}
	e.sim.SetBaseURL("https://thewall.example/")
	e.getJSON("/.well-known/openid-configuration", "", 200, &d)
	if d["issuer"] != "https://thewall.example" {
		t.Fatalf("issuer %v after SetBaseURL", d["issuer"])
	}
}
