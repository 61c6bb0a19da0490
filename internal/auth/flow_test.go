package auth_test

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/auth"
	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/model"
)

func TestS256ChallengeRFC7636AppendixB(t *testing.T) {
	const verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	if got, want := auth.S256Challenge(verifier), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"; got != want {
		t.Fatalf("S256Challenge=%q, want %q", got, want)
	}
}

func TestGenerateVerifier(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		v := auth.GenerateVerifier().Reveal()
		if len(v) != 43 {
			t.Fatalf("verifier length=%d, want 43", len(v))
		}
		for _, r := range v {
			if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				t.Fatalf("verifier has non-base64url character %q", r)
			}
		}
		if seen[v] {
			t.Fatal("verifier repeated")
		}
		seen[v] = true
	}
}

func TestStartBuildsAuthorizeURL(t *testing.T) {
	e := newEnv(t)
	f := e.flow()
	raw, err := f.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Scheme + "://" + u.Host + u.Path; got != e.fake.authURL() {
		t.Errorf("authorize endpoint=%q, want %q", got, e.fake.authURL())
	}
	q := u.Query()
	for k, want := range map[string]string{
		"response_type":         "code",
		"client_id":             testClientID,
		"redirect_uri":          testRedirect,
		"scope":                 strings.Join(auth.DefaultScopes, " "),
		"code_challenge_method": "S256",
	} {
		if got := q.Get(k); got != want {
			t.Errorf("%s=%q, want %q", k, got, want)
		}
	}
	state := q.Get("state")
	// crypto/rand.Text: base32, 5 bits per character.
	if bits := 5 * len(state); bits < 128 {
		t.Errorf("state carries %d bits, want ≥ 128", bits)
	}
	if len(q.Get("code_challenge")) != 43 {
		t.Errorf("code_challenge=%q is not an S256 challenge", q.Get("code_challenge"))
	}
	if q.Has("code_verifier") || q.Has("client_secret") {
		t.Error("authorize URL carries the verifier or the secret")
	}

	if ok, err := f.Pending(context.Background()); err != nil || !ok {
		t.Fatalf("Pending=%v, %v after Start", ok, err)
	}
	q2 := e.start(f)
	if q2.Get("state") == state || q2.Get("code_challenge") == q.Get("code_challenge") {
		t.Error("second attempt reuses state or challenge")
	}
	// The first attempt was replaced, the second completes.
	if _, err := f.Complete(context.Background(), e.consent(q)); !errors.Is(err, auth.ErrOtherAttempt) {
		t.Errorf("first attempt: err=%v, want ErrOtherAttempt", err)
	}
	if _, err := f.Complete(context.Background(), e.consent(q2)); err != nil {
		t.Errorf("second attempt: %v", err)
	}
	if ok, err := f.Pending(context.Background()); err != nil || ok {
		t.Errorf("Pending=%v, %v after Complete", ok, err)
	}
	if strings.Contains(e.logs.String(), state) {
		t.Error("the state was logged")
	}
}

func TestStartWithoutSecret(t *testing.T) {
	e := newEnv(t)
	e.opts.ClientSecret = logging.Secret{}
	f := e.flow()
	if _, err := f.Start(context.Background()); !errors.Is(err, auth.ErrNoClientSecret) {
		t.Fatalf("Start without secret: %v, want ErrNoClientSecret", err)
	}
}

func TestCompleteSuccess(t *testing.T) {
	e := newEnv(t)
	e.fake.grantedScopes = "openid profile email offline_access data-api-user-read data-api-homes-read data-api-vehicles-read"
	src := e.source()
	if err := src.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := e.rec.get().State; got != model.AuthSetupRequired {
		t.Fatalf("before setup: state=%s", got)
	}
	_, err := src.AccessToken(context.Background())
	if !errors.Is(err, model.ErrNotAuthorized) || !errors.Is(err, auth.ErrSetupRequired) {
		t.Fatalf("AccessToken before setup: %v", err)
	}

	st := e.setup()
	if st.State != model.AuthOK || st.Email != "user@example.com" {
		t.Fatalf("status=%+v", st)
	}
	if !slices.Contains(st.GrantedScopes, "data-api-vehicles-read") || slices.Contains(st.GrantedScopes, "data-api-chargers-read") {
		t.Fatalf("granted scopes=%v", st.GrantedScopes)
	}
	if got := model.MissingCategories(st.GrantedScopes); len(got) != 4 || slices.Contains(got, model.CategoryVehicle) {
		t.Fatalf("missing categories=%v", got)
	}
	if got := e.rec.get(); got.State != model.AuthOK || got.Email != "user@example.com" {
		t.Fatalf("recorded=%+v", got)
	}
	calls := e.notif.calls()
	if len(calls) != 2 || calls[1].State != model.AuthOK {
		t.Fatalf("notifications=%+v, want setup_required then ok", calls)
	}
	s := e.fake.stats()
	if s.codePosts != 1 || s.userinfo != 1 {
		t.Fatalf("code posts=%d userinfo=%d", s.codePosts, s.userinfo)
	}
	for _, ua := range s.userAgents {
		if ua != e.opts.UserAgent {
			t.Errorf("token request User-Agent=%q", ua)
		}
	}
	g := e.grant()
	if g.Token.RefreshToken.Reveal() != s.current || g.Email != "user@example.com" {
		t.Fatalf("stored grant does not hold the issued token")
	}
	if !g.Token.Expiry.Equal(tStart.Add(time.Hour)) {
		t.Fatalf("expiry=%v, want receipt + expires_in", g.Token.Expiry)
	}
	// The same Source serves it without a restart.
	tok, err := src.AccessToken(context.Background())
	if err != nil || !tok.Equal(g.Token.AccessToken) {
		t.Fatalf("AccessToken after setup: %v", err)
	}
	meta, ok, err := src.Token(context.Background())
	if err != nil || !ok || !meta.AccessToken.Empty() || !meta.RefreshToken.Empty() || !meta.Expiry.Equal(g.Token.Expiry) {
		t.Fatalf("Token()=%+v,%v,%v", meta, ok, err)
	}
}

func TestCompleteRejectsBadCallbacks(t *testing.T) {
	type tc struct {
		// redirect builds the callback URL from a started attempt's query
		// and a valid consent URL for it.
		redirect func(e *env, f *auth.Flow, q url.Values, ok *url.URL) *url.URL
		want     error
	}
	withQuery := func(ok *url.URL, mod func(v url.Values)) *url.URL {
		u := *ok
		v := u.Query()
		mod(v)
		u.RawQuery = v.Encode()
		return &u
	}
	tests := map[string]tc{
		"NoState": {func(e *env, f *auth.Flow, q url.Values, ok *url.URL) *url.URL {
			return withQuery(ok, func(v url.Values) { v.Del("state") })
		}, auth.ErrStateMissing},
		"WrongState": {func(e *env, f *auth.Flow, q url.Values, ok *url.URL) *url.URL {
			return withQuery(ok, func(v url.Values) { v.Set("state", "AAAAAAAAAAAAAAAAAAAAAAAAAA") })
		}, auth.ErrStateMismatch},
		"ReplayedState": {func(e *env, f *auth.Flow, q url.Values, ok *url.URL) *url.URL {
			u := withQuery(ok, func(v url.Values) { v.Set("error", "access_denied"); v.Del("code") })
			if _, err := f.Complete(context.Background(), u); !errors.Is(err, auth.ErrAccessDenied) {
				e.t.Fatalf("first callback: %v", err)
			}
			return ok
		}, auth.ErrStateReplayed},
		"ExpiredState": {func(e *env, f *auth.Flow, q url.Values, ok *url.URL) *url.URL {
			e.clk.Advance(10*time.Minute + time.Second)
			return ok
		}, auth.ErrStateExpired},
		"AccessDenied": {func(e *env, f *auth.Flow, q url.Values, ok *url.URL) *url.URL {
			return withQuery(ok, func(v url.Values) { v.Set("error", "access_denied"); v.Del("code") })
		}, auth.ErrAccessDenied},
		"OtherError": {func(e *env, f *auth.Flow, q url.Values, ok *url.URL) *url.URL {
			return withQuery(ok, func(v url.Values) { v.Set("error", "server_error"); v.Set("error_description", "boom"); v.Del("code") })
		}, auth.ErrAuthorizationFailed},
		"MissingCode": {func(e *env, f *auth.Flow, q url.Values, ok *url.URL) *url.URL {
			return withQuery(ok, func(v url.Values) { v.Del("code") })
		}, auth.ErrNoCode},
		"URLFromAnotherAttempt": {func(e *env, f *auth.Flow, q url.Values, ok *url.URL) *url.URL {
			e.start(f) // a newer attempt replaces the one ok belongs to
			return ok
		}, auth.ErrOtherAttempt},
		"NoPendingAttempt": {func(e *env, f *auth.Flow, q url.Values, ok *url.URL) *url.URL {
			return withQuery(ok, func(v url.Values) { v.Set("state", "BBBBBBBBBBBBBBBBBBBBBBBBBB") })
		}, auth.ErrNoPendingAttempt},
		"NilURL": {func(e *env, f *auth.Flow, q url.Values, ok *url.URL) *url.URL { return nil }, auth.ErrStateMissing},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.setup() // a previous, working token
			before := e.grant()
			beforeStatus := e.rec.get()
			beforePosts := e.fake.stats().posts

			f := e.flow()
			var q url.Values
			var ok *url.URL
			if name == "NoPendingAttempt" {
				// No attempt is pending at all.
				ok = e.consent(url.Values{"redirect_uri": {testRedirect}, "state": {"x"}, "code_challenge": {"y"}})
			} else {
				q = e.start(f)
				ok = e.consent(q)
			}
			u := tt.redirect(e, f, q, ok)
			st, err := f.Complete(context.Background(), u)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Complete: err=%v, want %v", err, tt.want)
			}
			if st.State != "" {
				t.Errorf("status=%+v on failure", st)
			}
			noCanary(t, err)
			if got := e.fake.stats().posts - beforePosts; got != 0 {
				t.Errorf("token requests=%d, want 0", got)
			}
			after := e.grant()
			if !after.Token.AccessToken.Equal(before.Token.AccessToken) || !after.Token.RefreshToken.Equal(before.Token.RefreshToken) ||
				after.Generation != before.Generation || after.State != model.AuthOK {
				t.Error("previous token or state changed")
			}
			if got := e.rec.get(); got.State != beforeStatus.State || !got.Since.Equal(beforeStatus.Since) {
				t.Errorf("recorded status changed: %+v", got)
			}
			if !strings.Contains(e.logs.String(), "level=WARN") {
				t.Error("no log line for the rejected callback")
			}
		})
	}
}

func TestCompleteExchangeErrors(t *testing.T) {
	tests := map[string]struct {
		fault string
		class auth.Class
	}{
		"InvalidGrant":  {faultInvalidGrant, auth.ClassReauth},
		"InvalidClient": {faultInvalidClient, auth.ClassConfig},
		"ServerError":   {fault500, auth.ClassTransient},
		"Dropped":       {faultDrop, auth.ClassTransient},
		"NoAccessToken": {faultNoAccessToken, auth.ClassTransient},
		"ErrorIn200":    {fault200Error, auth.ClassReauth},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.setup()
			before := e.grant()
			posts := e.fake.stats().posts
			f := e.flow()
			u := e.consent(e.start(f))
			e.fake.addFaults(tt.fault)
			_, err := f.Complete(context.Background(), u)
			if !errors.Is(err, auth.ErrExchangeFailed) {
				t.Fatalf("err=%v, want ErrExchangeFailed", err)
			}
			if got := auth.Classify(err); got != tt.class {
				t.Errorf("Classify=%v, want %v", got, tt.class)
			}
			noCanary(t, err)
			if got := e.fake.stats().posts - posts; got != 1 {
				t.Errorf("token POSTs=%d, want exactly 1 (a code is never sent twice)", got)
			}
			after := e.grant()
			if !after.Token.RefreshToken.Equal(before.Token.RefreshToken) || after.State != model.AuthOK {
				t.Error("a failed exchange changed the stored token or state")
			}
			// The attempt is consumed: the same URL cannot be tried again.
			if _, err := f.Complete(context.Background(), u); !errors.Is(err, auth.ErrStateReplayed) {
				t.Errorf("retry of a consumed attempt: %v", err)
			}
			if got := e.fake.stats().posts - posts; got != 1 {
				t.Errorf("token POSTs after replay=%d, want 1", got)
			}
		})
	}
}

// R3: the setup ctx being cancelled does not affect later refreshes.
func TestCancelledSetupContextDoesNotBreakRefresh(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	f := e.flow()
	if _, err := f.Complete(ctx, e.consent(e.start(f))); err != nil {
		t.Fatal(err)
	}
	cancel()
	e.clk.Advance(2 * time.Hour)
	if _, err := e.source().AccessToken(context.Background()); err != nil {
		t.Fatalf("refresh after cancelled setup ctx: %v", err)
	}
	if got := e.fake.stats().refreshPosts; got != 1 {
		t.Fatalf("refreshes=%d, want 1", got)
	}
}

// A callback whose request ctx is cancelled while the code is being
// exchanged (browser tab closed) still completes, so an exchanged code is
// never lost.
func TestCompleteFinishesDespiteCancelledRequest(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.fake.onPost = cancel
	f := e.flow()
	u := e.consent(e.start(f))
	st, err := f.Complete(ctx, u)
	if err != nil || st.State != model.AuthOK {
		t.Fatalf("Complete=%+v, %v", st, err)
	}
	if !e.grant().HasToken {
		t.Fatal("no token stored")
	}
}

func TestParseRedirect(t *testing.T) {
	const q = "code=CANARY-c&state=S1&scope=openid"
	ok := map[string]string{
		"FullURL":         "http://localhost:8765/callback?" + q,
		"Whitespace":      "  \thttp://localhost:8765/callback?" + q + "\n",
		"DoubleQuotes":    `"http://localhost:8765/callback?` + q + `"`,
		"SingleQuotes":    `'http://localhost:8765/callback?` + q + `'`,
		"AngleBrackets":   `<http://localhost:8765/callback?` + q + `>`,
		"QueryOnly":       "?" + q,
		"BareQuery":       q,
		"PathAndQuery":    "/callback?" + q,
		"Wrapped":         "http://localhost:8765/call\nback?code=CANARY-c&st\r\nate=S1",
		"Fragment":        "http://localhost:8765/callback#" + q,
		"ErrorOnly":       "http://localhost:8765/callback?error=access_denied&state=S1",
		"HTTPSRedirect":   "https://example.com/cb?" + q,
		"ExtraParameters": "http://localhost:8765/callback?" + q + "&session_state=xyz&iss=https%3A%2F%2Fthewall",
	}
	for name, in := range ok {
		t.Run(name, func(t *testing.T) {
			u, err := auth.ParseRedirect(in)
			if err != nil {
				t.Fatalf("ParseRedirect: %v", err)
			}
			v := u.Query()
			if v.Get("state") != "S1" {
				t.Fatalf("state=%q", v.Get("state"))
			}
			if name != "ErrorOnly" && v.Get("code") != "CANARY-c" {
				t.Fatalf("code=%q", v.Get("code"))
			}
		})
	}
	bad := map[string]string{
		"Empty":       "   ",
		"NoParams":    "http://localhost:8765/callback",
		"OtherScheme": "ftp://x/callback?" + q,
		"Garbage":     "hello CANARY-c world",
		"BadEscape":   "http://localhost:8765/callback?code=CANARY-%zz&state=1",
		"TooLong":     "http://localhost/?code=CANARY-" + strings.Repeat("a", 20000),
	}
	for name, in := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := auth.ParseRedirect(in)
			if !errors.Is(err, auth.ErrBadRedirect) {
				t.Fatalf("err=%v, want ErrBadRedirect", err)
			}
			noCanary(t, err)
		})
	}
}

// A pasted URL goes through ParseRedirect and Complete like a callback.
func TestPasteModeEndToEnd(t *testing.T) {
	e := newEnv(t)
	f := e.flow()
	u := e.consent(e.start(f))
	pasted, err := auth.ParseRedirect("  '" + u.String() + "'\n")
	if err != nil {
		t.Fatal(err)
	}
	st, err := f.Complete(context.Background(), pasted)
	if err != nil || st.State != model.AuthOK {
		t.Fatalf("Complete(pasted)=%+v, %v", st, err)
	}
}

func FuzzParseRedirect(f *testing.F) {
	f.Add("http://localhost:8765/callback?code=abc&state=def")
	f.Add("?code=abc&state=def")
	f.Add("code=abc&state=def")
	f.Add(`"http://localhost:8765/callback?error=access_denied&state=x"`)
	f.Add("http://[::1]:8765/callback#code=1&state=2")
	// The pasted text may hold a live code, so no error may echo any of it:
	// every error is one of the fixed messages, learned here from one input
	// per reason. (An earlier check, "the error does not contain the
	// input", failed on the input "h http://", which is part of the fixed
	// text "must start with http://"; that input is kept as a seed.)
	reasons := map[string]bool{}
	for _, bad := range []string{
		strings.Repeat("a", 1<<20), // too long
		" \n\t ",                   // nothing pasted
		"http://%zz",               // not a URL
		"ftp://host/callback?code=1",
		"?code=%zz",                 // malformed query
		"http://localhost/callback", // no code, state or error
	} {
		_, err := auth.ParseRedirect(bad)
		if err == nil {
			f.Fatalf("ParseRedirect(%.40q) accepted a bad redirect", bad)
		}
		reasons[err.Error()] = true
	}
	if len(reasons) != 6 {
		f.Fatalf("%d distinct reasons from 6 bad inputs: %v", len(reasons), reasons)
	}
	f.Fuzz(func(t *testing.T, in string) {
		u, err := auth.ParseRedirect(in)
		if err != nil {
			if !errors.Is(err, auth.ErrBadRedirect) {
				t.Fatalf("error does not wrap ErrBadRedirect: %v", err)
			}
			if !reasons[err.Error()] {
				t.Fatalf("error %q is not one of the fixed messages (it may echo the input)", err)
			}
			return
		}
		q := u.Query()
		if q.Get("state") == "" && q.Get("code") == "" && q.Get("error") == "" {
			t.Fatalf("accepted %q without state, code or error", in)
		}
	})
}

func TestCheckRedirectURL(t *testing.T) {
	tests := map[string]struct {
		uri, listen string
		want        []string // substrings, one per expected warning
	}{
		"Default":          {"http://localhost:8765/callback", "127.0.0.1:8765", nil},
		"TrailingSlash":    {"http://localhost:8765/callback/", "127.0.0.1:8765", []string{"slash"}},
		"PlainHTTPRemote":  {"http://tibber.example.com/callback", "127.0.0.1:8765", []string{"https"}},
		"HTTPSRemote":      {"https://home.example.com/tibber/callback", "127.0.0.1:8765", nil},
		"PortDiffers":      {"http://localhost:9000/callback", "127.0.0.1:8765", []string{"port 9000"}},
		"DefaultPort":      {"http://localhost/callback", "127.0.0.1:8765", []string{"port 80"}},
		"IPv4Literal":      {"http://127.0.0.1:8765/callback", "127.0.0.1:8765", []string{"localhost"}},
		"IPv6Literal":      {"http://[::1]:8765/callback", "[::1]:8765", []string{"localhost"}},
		"WrongPath":        {"http://localhost:8765/cb", "127.0.0.1:8765", []string{"/callback"}},
		"Query":            {"http://localhost:8765/callback?x=1", "127.0.0.1:8765", []string{"query"}},
		"NotAbsolute":      {"localhost:8765/callback", "127.0.0.1:8765", []string{"absolute"}},
		"SlashAndPort":     {"http://localhost:8000/callback/", "127.0.0.1:8765", []string{"slash", "port 8000"}},
		"ListenEmpty":      {"http://localhost:9000/callback", "", nil},
		"FTPScheme":        {"ftp://localhost:8765/callback", "127.0.0.1:8765", []string{"https"}},
		"LocalhostUpper":   {"http://LOCALHOST:8765/callback", "127.0.0.1:8765", nil},
		"ListenAllIfaces":  {"http://localhost:8765/callback", ":8765", nil},
		"ListenOtherPort2": {"http://localhost:8765/callback", "0.0.0.0:80", []string{"port 8765"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got := auth.CheckRedirectURL(tt.uri, tt.listen)
			if len(got) != len(tt.want) {
				t.Fatalf("warnings=%q, want %d matching %q", got, len(tt.want), tt.want)
			}
			for _, w := range tt.want {
				if !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, w) }) {
					t.Errorf("no warning mentions %q: %q", w, got)
				}
			}
		})
	}
}

// TestAttemptSurvivesRestart: the daemon restarts between the user's consent
// and the callback; the attempt (state and verifier) was persisted in
// tokens.db, so a new process completes it.
func TestAttemptSurvivesRestart(t *testing.T) {
	e := newEnv(t)
	q := e.start(e.flow())
	redirected := e.consent(q)

	// "Restart": close tokens.db, reopen it, build a new Flow.
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	e.store = e.openStore()
	e.opts.Store = e.store
	e.clk.Advance(3 * time.Minute)

	st, err := e.flow().Complete(context.Background(), redirected)
	if err != nil || st.State != model.AuthOK {
		t.Fatalf("Complete after a restart: %+v, %v", st, err)
	}
	if s := e.fake.stats(); s.codePosts != 1 {
		t.Fatalf("code posts = %d, want 1", s.codePosts)
	}
	if g := e.grant(); !g.HasToken {
		t.Fatal("no token stored after completing the persisted attempt")
	}
}
