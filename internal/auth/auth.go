// Package auth runs tibbersync's OAuth2 authorization against Tibber
// (thewall.tibber.com) and supplies access tokens to the Data API client.
//
// Flow is the one-time authorization: PKCE S256 with a fresh verifier and a
// one-time state kept in tokens.db (R1), the callback or pasted URL checked
// state-first, the code exchanged exactly once with the client secret in the
// form body (R3), userinfo fetched, and the token stored before it is used.
//
// Source is the token source every API call goes through. It refreshes ahead
// of expiry and as a keep-alive (R8), commits a rotated refresh token to
// tokens.db before using it (R5), allows exactly one refresh at a time across
// goroutines and processes (R6), marks refreshes in flight so a lost response
// ends in a clear state (R7), classifies token-endpoint errors (R4), backs
// off with persisted state (R25), and keeps reauth_required and config_error
// sticky and quiet until setup runs again (R9).
//
// Secrets (tokens, codes, verifiers, the client secret, the state) are
// logging.Secret values; no error or log line of this package contains one.
package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/tokenstore"
)

// Defaults for Options.
const (
	// DefaultKeepAlive is how old the last refresh may get before KeepAlive
	// refreshes, so that a ~30-day refresh token never lapses from disuse.
	DefaultKeepAlive = 72 * time.Hour
	// DefaultHTTPTimeout bounds every token and userinfo request when
	// Options.HTTPClient has no timeout of its own.
	DefaultHTTPTimeout = 30 * time.Second
	// AttemptTTL is how long an authorization attempt stays valid (R1).
	AttemptTTL = 10 * time.Minute
	// LockFileName is the refresh lock in the secrets directory (R6).
	LockFileName = "refresh.lock"
	// maxBody caps token and userinfo response bodies.
	maxBody = 1 << 20
	// defaultExpiresIn is assumed when a token response has no expires_in
	// (Tibber documents 3600).
	defaultExpiresIn = 3600 * time.Second
	// staleRefreshWarning is the age of the last refresh that Init warns about.
	staleRefreshWarning = model.RefreshLifetimeEstimate
)

// DefaultScopes are the scopes requested when Options.Scopes is empty: the
// five baseline scopes, homes, and the five category scopes.
var DefaultScopes = []string{
	"openid", "profile", "email", "offline_access", "data-api-user-read",
	"data-api-homes-read", "data-api-vehicles-read", "data-api-chargers-read",
	"data-api-thermostats-read", "data-api-energy-systems-read", "data-api-inverters-read",
}

// Sentinel errors. Flow.Complete's errors wrap exactly one of the Err*
// attempt errors below, so the web page and the CLI can explain what went
// wrong; none of them carries a code, state or token.
var (
	// ErrStateMissing: the redirect carries no state parameter.
	ErrStateMissing = errors.New("the redirect has no state parameter; start the authorization again")
	// ErrStateMismatch: the state matches neither the pending attempt nor any earlier one.
	ErrStateMismatch = errors.New("the state does not match the pending authorization attempt; start the authorization again")
	// ErrStateExpired: the attempt is older than 10 minutes.
	ErrStateExpired = errors.New("the authorization attempt expired (it is valid for 10 minutes); start it again")
	// ErrStateReplayed: the attempt was already used by an earlier callback.
	ErrStateReplayed = errors.New("this authorization response was already used; start the authorization again")
	// ErrOtherAttempt: the URL belongs to an older attempt that a newer one replaced.
	ErrOtherAttempt = errors.New("this URL belongs to an earlier authorization attempt; use the URL from the latest attempt or start again")
	// ErrNoPendingAttempt: no attempt is pending.
	ErrNoPendingAttempt = errors.New("no authorization attempt is pending; start the authorization first")
	// ErrAccessDenied: the user declined consent (error=access_denied).
	ErrAccessDenied = errors.New("access was denied at Tibber; nothing was stored")
	// ErrAuthorizationFailed: Tibber redirected back with another error.
	ErrAuthorizationFailed = errors.New("the authorization server reported an error")
	// ErrNoCode: the redirect has neither a code nor an error.
	ErrNoCode = errors.New("the redirect has no authorization code")
	// ErrExchangeFailed: the token endpoint did not issue a token for the code.
	ErrExchangeFailed = errors.New("the authorization code could not be exchanged for a token")
	// ErrNoClientSecret: no client secret is configured (Tibber requires one even with PKCE).
	ErrNoClientSecret = errors.New("no client secret is configured")
	// ErrNoClientID: the client id is not configured, so no token request is made.
	ErrNoClientID = errors.New("no client id is configured ([tibber].client_id)")
	// ErrBadRedirect: a pasted URL could not be understood.
	ErrBadRedirect = errors.New("the pasted text is not a redirect URL with code and state")

	// ErrSetupRequired: no token is stored yet. Wraps model.ErrNotAuthorized in Source errors.
	ErrSetupRequired = errors.New("authorization setup required")
	// ErrReauthRequired: Tibber rejected the grant; setup must run again.
	ErrReauthRequired = errors.New("re-authorization required")
	// ErrConfig: Tibber rejected the client configuration; fix it and run setup again.
	ErrConfig = errors.New("client configuration rejected")
)

// IsConfigError reports whether err says the client configuration is wrong
// or missing (rejected by Tibber, or no client secret): something only the
// admin can fix, so neither a retry nor a restart helps.
func IsConfigError(err error) bool {
	return errors.Is(err, ErrConfig) || errors.Is(err, ErrNoClientSecret)
}

// TokenStore is the persistence auth needs; *tokenstore.Store implements it.
// Every write is one durable transaction.
type TokenStore interface {
	// Grant reads the current grant (token, state, marker, backoff).
	Grant(ctx context.Context) (tokenstore.Grant, error)
	// SaveGrant stores the token of a completed setup, sets the state to ok
	// and clears marker and backoff. It returns the new generation.
	SaveGrant(ctx context.Context, tok model.Token, at time.Time) (int64, error)
	// SaveRefreshed commits a refreshed token if the grant is still at
	// generation base, else returns tokenstore.ErrGenerationChanged.
	SaveRefreshed(ctx context.Context, tok model.Token, base int64) (int64, error)
	// SetState sets the state of the grant at generation gen and reports
	// whether it changed.
	SetState(ctx context.Context, gen int64, state model.AuthState, reason string, at time.Time) (bool, error)
	// SetEmail records the account email of the grant at generation gen.
	SetEmail(ctx context.Context, gen int64, email string) error
	// SetInFlight writes or clears the refresh-in-flight marker.
	SetInFlight(ctx context.Context, gen int64, f tokenstore.InFlight) error
	// SaveBackoff persists the token-endpoint backoff.
	SaveBackoff(ctx context.Context, gen int64, b tokenstore.Backoff) error
	// SaveAttempt stores a new pending authorization attempt, replacing any.
	SaveAttempt(ctx context.Context, a tokenstore.Attempt) error
	// ConsumeAttempt consumes the pending attempt named by state.
	ConsumeAttempt(ctx context.Context, state string, now time.Time) (tokenstore.Attempt, error)
	// PendingAttempt reports whether an unexpired attempt is pending at now.
	PendingAttempt(ctx context.Context, now time.Time) (bool, error)
	// SecretsDir is the 0700 directory that holds tokens.db and the refresh lock.
	SecretsDir() string
}

// StatusRecorder mirrors the auth status into data.db; *store.DB implements it.
type StatusRecorder interface {
	AuthStatus(ctx context.Context) (model.AuthStatus, error)
	SetAuthStatus(ctx context.Context, st model.AuthStatus) error
}

// Notifier is told about every auth state change; it de-duplicates and
// delivers (webhook, command). *notify.Notifier implements it.
type Notifier interface {
	Notify(ctx context.Context, st model.AuthStatus)
}

// Options configure a Source and a Flow; both take the same Options.
type Options struct {
	// ClientID is the registered client id.
	ClientID string
	// ClientSecret is the client secret (config.Load reads it from the
	// systemd credential, client_secret_file or the environment). Without
	// it the flow and refreshes fail with ErrNoClientSecret.
	ClientSecret logging.Secret
	// AuthURL, TokenURL and UserinfoURL are Tibber's endpoints
	// (UserinfoURL may be empty to skip userinfo).
	AuthURL, TokenURL, UserinfoURL string
	// RedirectURL is the registered redirect URI, sent byte for byte.
	RedirectURL string
	// Scopes are requested on authorization (DefaultScopes when empty).
	Scopes []string
	// HTTPClient makes token and userinfo requests. It should be
	// timeout-bounded; DefaultHTTPTimeout is used when its Timeout is zero.
	// Redirects are never followed for token requests.
	HTTPClient *http.Client
	// UserAgent is sent on every token and userinfo request.
	UserAgent string
	// Store keeps tokens (tokens.db). Required.
	Store TokenStore
	// Status mirrors the auth status into data.db. Required.
	Status StatusRecorder
	// Notifier is told about state changes; may be nil.
	Notifier Notifier
	// Clock tells the time (clock.Real when nil).
	Clock clock.Clock
	// Logger receives the package's log lines (discarded when nil).
	Logger *slog.Logger
	// NotBefore is the earliest plausible wall-clock time (e.g. the build
	// time); before it, no token request is made (R26).
	NotBefore time.Time
	// KeepAlive is the longest time between refreshes (DefaultKeepAlive when zero).
	KeepAlive time.Duration
	// LockPath is the cross-process refresh lock (default
	// Store.SecretsDir()/refresh.lock).
	LockPath string
}

// normalize checks required fields and fills in defaults.
func (o Options) normalize(forFlow bool) (Options, error) {
	if o.Store == nil {
		return o, errors.New("auth options: Store is required")
	}
	if o.Status == nil {
		return o, errors.New("auth options: Status is required")
	}
	// A Source without a client id can still report the stored state (the
	// daemon serves its setup page before the client is configured); it
	// refuses to refresh. A Flow needs one.
	if o.ClientID == "" && forFlow {
		return o, errors.New("auth options: client_id is empty")
	}
	if o.TokenURL == "" {
		return o, errors.New("auth options: token_url is empty")
	}
	if forFlow {
		if o.AuthURL == "" {
			return o, errors.New("auth options: auth_url is empty")
		}
		if o.RedirectURL == "" {
			return o, errors.New("auth options: redirect_url is empty")
		}
	}
	if len(o.Scopes) == 0 {
		o.Scopes = append([]string(nil), DefaultScopes...)
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.KeepAlive <= 0 {
		o.KeepAlive = DefaultKeepAlive
	}
	if o.LockPath == "" {
		o.LockPath = filepath.Join(o.Store.SecretsDir(), LockFileName)
	}
	o.HTTPClient = tokenHTTPClient(o.HTTPClient, o.UserAgent)
	return o, nil
}

// tokenHTTPClient returns a copy of base that sends userAgent, has a timeout,
// and never follows redirects (a redirected POST would re-send a code or
// refresh token to another URL).
func tokenHTTPClient(base *http.Client, userAgent string) *http.Client {
	var c http.Client
	if base != nil {
		c = *base
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultHTTPTimeout
	}
	rt := c.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	c.Transport = &uaTransport{base: rt, ua: userAgent}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// uaTransport sets the User-Agent on every request.
type uaTransport struct {
	base http.RoundTripper
	ua   string
}

// RoundTrip implements http.RoundTripper.
func (t *uaTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.ua == "" {
		return t.base.RoundTrip(req)
	}
	r := req.Clone(req.Context())
	r.Header.Set("User-Agent", t.ua)
	return t.base.RoundTrip(r)
}

// notAuthorized returns the error for a grant in which no token call may be made.
func notAuthorized(g tokenstore.Grant) error {
	reason := g.Reason
	switch {
	case g.State == model.AuthReauthRequired:
		return fmt.Errorf("%w: %w: %s", model.ErrNotAuthorized, ErrReauthRequired, reason)
	case g.State == model.AuthConfigError:
		return fmt.Errorf("%w: %w: %s", model.ErrNotAuthorized, ErrConfig, reason)
	default:
		if reason == "" {
			reason = "no token is stored; run tibbersync setup"
		}
		return fmt.Errorf("%w: %w: %s", model.ErrNotAuthorized, ErrSetupRequired, reason)
	}
}

// blocked reports whether no token call may be made for g.
func blocked(g tokenstore.Grant) bool {
	return !g.HasToken || g.State.Sticky()
}
