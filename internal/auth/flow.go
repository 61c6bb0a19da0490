package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"unicode"

	"golang.org/x/oauth2"

	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/tokenstore"
)

// Flow runs authorization attempts (web.AuthFlow): Start creates an attempt
// and the authorize URL, Complete handles the redirect back. It shares the
// token store with Source, so a completed setup reaches a running Source.
type Flow struct {
	o   Options
	log *slog.Logger
}

// NewFlow returns a Flow. Options need Store, Status, ClientID, AuthURL,
// TokenURL and RedirectURL.
func NewFlow(opts Options) (*Flow, error) {
	o, err := opts.normalize(true)
	if err != nil {
		return nil, err
	}
	return &Flow{o: o, log: o.Logger}, nil
}

// Start creates a fresh attempt, a new one-time state (130 random bits) and
// PKCE verifier, persisted in tokens.db and replacing any pending attempt,
// valid for 10 minutes, and returns the authorize URL: response_type=code,
// client_id, redirect_uri, scope, state and an S256 code_challenge.
func (f *Flow) Start(ctx context.Context) (string, error) {
	secret := f.o.ClientSecret
	if secret.Empty() {
		return "", fmt.Errorf("start authorization: %w", ErrNoClientSecret)
	}
	verifier := GenerateVerifier()
	state := newState()
	now := f.o.Clock.Now()
	err := f.o.Store.SaveAttempt(ctx, tokenstore.Attempt{
		State:       state,
		Verifier:    verifier,
		RedirectURI: f.o.RedirectURL,
		Created:     now,
		Expires:     now.Add(AttemptTTL),
	})
	if err != nil {
		return "", fmt.Errorf("start authorization: %w", err)
	}
	cfg := oauth2.Config{
		ClientID:    f.o.ClientID,
		Endpoint:    oauth2.Endpoint{AuthURL: f.o.AuthURL, TokenURL: f.o.TokenURL, AuthStyle: oauth2.AuthStyleInParams},
		RedirectURL: f.o.RedirectURL,
		Scopes:      f.o.Scopes,
	}
	u := cfg.AuthCodeURL(state.Reveal(), oauth2.S256ChallengeOption(verifier.Reveal()))
	f.log.Info("authorization attempt started", "expires", now.Add(AttemptTTL), "redirect_uri", f.o.RedirectURL)
	return u, nil
}

// Pending reports whether an unexpired authorization attempt is pending, so
// that /callback answers only during an attempt and `setup` knows when to
// stop waiting (R2).
func (f *Flow) Pending(ctx context.Context) (bool, error) {
	ok, err := f.o.Store.PendingAttempt(ctx, f.o.Clock.Now())
	if err != nil {
		return false, fmt.Errorf("check pending authorization: %w", err)
	}
	return ok, nil
}

// Complete handles the redirect back from Tibber: the /callback request URL
// or a pasted URL (see ParseRedirect). It checks the state before anything
// else and consumes the attempt; handles error=access_denied and other
// errors; exchanges the code exactly once (client secret in the form body,
// PKCE verifier); stores the token; fetches the account email from userinfo;
// and records the auth status ok with the granted scopes.
//
// A failed Complete stores no token and leaves the previous token and auth
// state intact. Its error wraps one of ErrStateMissing, ErrStateMismatch,
// ErrStateExpired, ErrStateReplayed, ErrOtherAttempt, ErrNoPendingAttempt,
// ErrAccessDenied, ErrAuthorizationFailed, ErrNoCode, ErrExchangeFailed or
// ErrNoClientSecret (or a storage error) and is safe to show to the user.
func (f *Flow) Complete(ctx context.Context, redirected *url.URL) (model.AuthStatus, error) {
	var q url.Values
	if redirected != nil {
		q = redirected.Query()
	}
	state := q.Get("state")
	if state == "" {
		f.log.Warn("authorization callback rejected", "err", ErrStateMissing)
		return model.AuthStatus{}, ErrStateMissing
	}
	now := f.o.Clock.Now()
	att, err := f.o.Store.ConsumeAttempt(ctx, state, now)
	if err != nil {
		err = attemptError(err)
		f.log.Warn("authorization callback rejected", "err", err)
		return model.AuthStatus{}, err
	}
	// The attempt is consumed: finish even if the caller goes away, so that
	// an exchanged code is never lost to a closed browser tab.
	ctx = context.WithoutCancel(ctx)

	if e := q.Get("error"); e != "" {
		if e == "access_denied" {
			f.log.Warn("authorization denied by the user")
			return model.AuthStatus{}, ErrAccessDenied
		}
		ae := &AuthorizeError{Code: cleanCode(e, state), Description: scrub(q.Get("error_description"), state)}
		f.log.Warn("authorization failed at Tibber", "oauth_error", ae.Code, "description", ae.Description)
		return model.AuthStatus{}, ae
	}
	code := logging.NewSecret(q.Get("code"))
	if code.Empty() {
		f.log.Warn("authorization callback rejected", "err", ErrNoCode)
		return model.AuthStatus{}, ErrNoCode
	}
	secret := f.o.ClientSecret
	if secret.Empty() {
		return model.AuthStatus{}, fmt.Errorf("complete authorization: %w", ErrNoClientSecret)
	}

	otok, err := exchangeCode(f.o.HTTPClient, f.o, secret, code, att.Verifier, att.RedirectURI)
	receipt := f.o.Clock.Now()
	if err != nil {
		var te *TokenError
		attrs := []any{"class", Classify(err), "err", err}
		if errors.As(err, &te) {
			attrs = append(attrs, "status", te.Status, "oauth_error", te.Code, "description", te.Description)
		}
		f.log.Warn("authorization code exchange failed", attrs...)
		return model.AuthStatus{}, fmt.Errorf("%w: %w", ErrExchangeFailed, err)
	}
	tok := tokenFromOAuth2(otok, receipt)
	if err := validateExchangedToken(tok, f.o.Scopes); err != nil {
		f.log.Warn("authorization code exchange gave an unusable token; nothing stored", "err", err)
		return model.AuthStatus{}, fmt.Errorf("%w: %w", ErrExchangeFailed, err)
	}

	// Persist before use (R5): the token is stored before userinfo uses it.
	gen, err := f.o.Store.SaveGrant(ctx, tok, receipt)
	if err != nil {
		f.log.Error("store token after authorization", "err", err)
		return model.AuthStatus{}, fmt.Errorf("complete authorization: %w", err)
	}

	var email string
	var info userinfo
	if f.o.UserinfoURL != "" {
		info, err = fetchUserinfo(ctx, f.o.HTTPClient, f.o.UserinfoURL, tok.AccessToken)
		email = info.Email
		if err != nil {
			f.log.Warn("fetch account email; authorization is still complete", "err", err)
		} else if err := f.o.Store.SetEmail(ctx, gen, email); err != nil {
			f.log.Warn("store account email", "err", err)
		}
	}
	if tok.RefreshToken.Empty() {
		// offline_access was neither requested nor granted (checked above).
		f.log.Warn("no refresh token was issued; access ends when the access token expires (offline_access not granted)")
	}

	st := model.AuthStatus{
		State:           model.AuthOK,
		Since:           receipt,
		GrantedScopes:   append([]string(nil), tok.Scopes...),
		Email:           email,
		AccessExpiresAt: tok.Expiry,
		RefreshIssuedAt: tok.RefreshIssuedAt,
	}
	if err := f.o.Status.SetAuthStatus(ctx, st); err != nil {
		f.log.Error("record auth status", "err", err)
	} else if ar, ok := f.o.Status.(AccountRecorder); ok {
		// Kept as Tibber sent them; cleared when userinfo was unavailable.
		if err := ar.SetAccount(ctx, info.Sub, info.Name); err != nil {
			f.log.Warn("record account sub and name", "err", err)
		}
	}
	if f.o.Notifier != nil {
		f.o.Notifier.Notify(ctx, st)
	}
	if tok.Scopes == nil {
		f.log.Info("authorization complete; Tibber's response named no granted scopes, so they are recorded as unknown",
			"expires", tok.Expiry)
		return st, nil
	}
	missing := model.MissingCategories(tok.Scopes)
	f.log.Info("authorization complete", "granted_scopes", strings.Join(tok.Scopes, " "),
		"invisible_categories", fmt.Sprint(missing), "expires", tok.Expiry)
	return st, nil
}

// validateExchangedToken validates a code exchange's token: token_type Bearer,
// and a refresh token whenever offline_access was granted, or requested
// while the granted scopes are unknown.
func validateExchangedToken(tok model.Token, requested []string) error {
	if err := checkBearer(tok.TokenType); err != nil {
		return err
	}
	if !tok.RefreshToken.Empty() {
		return nil
	}
	offline := slices.Contains(tok.Scopes, "offline_access")
	if tok.Scopes == nil {
		offline = slices.Contains(requested, "offline_access")
	}
	if offline {
		return ErrNoRefreshToken
	}
	return nil
}

// AccountRecorder is implemented by a StatusRecorder that also keeps the
// account's userinfo subject and name (*store.DB: auth_status.user_sub and
// user_name).
type AccountRecorder interface {
	SetAccount(ctx context.Context, sub, name string) error
}

// AuthorizeError is an error other than access_denied that Tibber sent back
// to the redirect URI. It wraps ErrAuthorizationFailed.
type AuthorizeError struct {
	// Code is the RFC 6749 §4.1.2.1 error code.
	Code string
	// Description is error_description, sanitised and shortened.
	Description string
}

// Error implements error.
func (e *AuthorizeError) Error() string {
	s := ErrAuthorizationFailed.Error() + ": " + e.Code
	if e.Description != "" {
		s += " (" + e.Description + ")"
	}
	return s
}

// Unwrap returns ErrAuthorizationFailed.
func (e *AuthorizeError) Unwrap() error { return ErrAuthorizationFailed }

// attemptError maps the token store's attempt errors to the user-facing ones.
func attemptError(err error) error {
	switch {
	case errors.Is(err, tokenstore.ErrNoAttempt):
		return ErrNoPendingAttempt
	case errors.Is(err, tokenstore.ErrUnknownState):
		return ErrStateMismatch
	case errors.Is(err, tokenstore.ErrAttemptUsed):
		return ErrStateReplayed
	case errors.Is(err, tokenstore.ErrAttemptSuperseded):
		return ErrOtherAttempt
	case errors.Is(err, tokenstore.ErrAttemptExpired):
		return ErrStateExpired
	}
	return fmt.Errorf("check authorization state: %w", err)
}

// maxPaste bounds the pasted text ParseRedirect accepts.
const maxPaste = 16 << 10

// ParseRedirect parses what a user pasted in paste mode: the full URL from
// the browser's address bar (even if that page failed to load), with
// surrounding whitespace or quotes, or only its query ("?code=…&state=…" or
// "code=…&state=…"). Whitespace inside (a URL wrapped by a terminal) is
// dropped. The result has at least a state, code or error parameter. Errors
// wrap ErrBadRedirect and never contain the pasted text.
func ParseRedirect(raw string) (*url.URL, error) {
	if len(raw) > maxPaste {
		return nil, fmt.Errorf("%w: the text is longer than %d bytes", ErrBadRedirect, maxPaste)
	}
	s := strings.TrimSpace(raw)
	for len(s) >= 2 && isQuote(s[0]) && isQuote(s[len(s)-1]) {
		s = strings.TrimSpace(s[1 : len(s)-1])
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, s)
	if s == "" {
		return nil, fmt.Errorf("%w: nothing was pasted", ErrBadRedirect)
	}
	var u *url.URL
	switch {
	case strings.Contains(s, "://"):
		var err error
		u, err = url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("%w: it is not a valid URL", ErrBadRedirect)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return nil, fmt.Errorf("%w: the URL must start with http:// or https://", ErrBadRedirect)
		}
		if u.RawQuery == "" && u.Fragment != "" {
			// Some browsers show the parameters after '#'.
			u.RawQuery, u.Fragment = u.Fragment, ""
		}
	default:
		rq := strings.TrimPrefix(s, "?")
		if i := strings.IndexByte(rq, '?'); i >= 0 {
			rq = rq[i+1:] // "/callback?code=…"
		}
		u = &url.URL{RawQuery: rq}
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("%w: its query string is malformed", ErrBadRedirect)
	}
	if q.Get("state") == "" && q.Get("code") == "" && q.Get("error") == "" {
		return nil, fmt.Errorf("%w: it has no code, state or error parameter; copy the whole address of the page the browser was sent to", ErrBadRedirect)
	}
	return u, nil
}

func isQuote(c byte) bool {
	return c == '"' || c == '\'' || c == '`' || c == '<' || c == '>'
}

// CheckRedirectURL returns warnings about a redirect URI: a trailing slash
// (the registered URI must match byte for byte), a non-HTTPS URI that is not
// localhost, the 127.0.0.1 or ::1 literal (only localhost has been seen
// working with Tibber), a loopback port that differs from the port of
// [web].listen, a path other than /callback, and a query or fragment.
func CheckRedirectURL(redirectURL, listen string) []string {
	var w []string
	u, err := url.Parse(redirectURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return []string{fmt.Sprintf("redirect_url %q is not an absolute URL", redirectURL)}
	}
	host := u.Hostname()
	loopbackLiteral := false
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		loopbackLiteral = true
	}
	local := strings.EqualFold(host, "localhost") || loopbackLiteral
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		w = append(w, fmt.Sprintf("redirect_url %q must use http (localhost) or https", redirectURL))
	case u.Scheme == "http" && !local:
		w = append(w, fmt.Sprintf("redirect_url %q uses plain http on a host other than localhost; Tibber requires https there", redirectURL))
	}
	if loopbackLiteral {
		w = append(w, fmt.Sprintf("redirect_url %q uses the IP literal %s; Tibber has only been seen accepting http://localhost…, use localhost", redirectURL, host))
	}
	if strings.HasSuffix(u.Path, "/") {
		w = append(w, fmt.Sprintf("redirect_url %q ends with a slash; it must match the URI registered at Tibber byte for byte, slash included", redirectURL))
	}
	if u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(redirectURL, "?") || strings.HasSuffix(redirectURL, "#") {
		w = append(w, fmt.Sprintf("redirect_url %q has a query or fragment; use a plain URI such as http://localhost:8765/callback", redirectURL))
	}
	if local {
		if p := strings.TrimSuffix(u.Path, "/"); p != "/callback" {
			w = append(w, fmt.Sprintf("redirect_url %q has path %q, but tibbersync serves the callback at /callback", redirectURL, u.Path))
		}
		port := u.Port()
		if port == "" {
			port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
		}
		if listen != "" {
			if _, lport, err := net.SplitHostPort(listen); err == nil && lport != port {
				w = append(w, fmt.Sprintf("redirect_url %q uses port %s, but [web].listen %q uses port %s; the browser would not reach the callback", redirectURL, port, listen, lport))
			}
		}
	}
	return w
}
