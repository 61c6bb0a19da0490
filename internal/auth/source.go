package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/tokenstore"
)

// Backoff bounds for the token endpoint (R25).
const (
	minTokenBackoff = time.Minute
	maxTokenBackoff = time.Hour
	// minRefreshMargin is the least time before expiry at which a refresh
	// is due; 10 % of the lifetime is used when larger (R8).
	minRefreshMargin = 60 * time.Second
	// usableSkew: a token with less than this left is not handed out while
	// the refresh backs off.
	usableSkew = 10 * time.Second
	// maxLostSends is how many requests with one refresh token may end with
	// an unknown outcome: the original and the single recovery (R7).
	maxLostSends = 2
)

// ReasonPersistFailed is the auth status reason while a refreshed token
// could not be committed to tokens.db and lives only in memory (R5).
const ReasonPersistFailed = "token_persist_failed"

// ReasonStorageUnwritable is the auth status reason while refreshes are
// postponed because tokens.db cannot be written (disk full, read-only file
// system, file replaced or deleted).
const ReasonStorageUnwritable = "token_storage_unwritable"

// ErrStorageUnsafe is wrapped (with model.ErrTokenBackoff) by the error of a
// refresh that was not sent because its in-flight marker could not be
// stored: the answer could not have been stored either.
var ErrStorageUnsafe = errors.New("cannot store tokens safely (disk full / read-only): refresh postponed")

// ErrTokenLost is returned by Close when a refreshed token that was never
// stored is dropped at shutdown.
var ErrTokenLost = errors.New("a refreshed token could not be stored and is lost")

// Retries of an unsaved token's commit (R5): every few seconds, doubling.
const (
	persistRetryMin = 2 * time.Second
	persistRetryMax = 30 * time.Second
)

// refreshKind is why a refresh was asked for.
type refreshKind int

const (
	refreshExpiring  refreshKind = iota // the access token is (nearly) expired
	refreshKeepAlive                    // the last refresh is older than KeepAlive
	refreshForced                       // the Data API rejected the access token (401)
)

// Source supplies access tokens to the Data API client (tibber.Tokens). It
// is safe for concurrent use. Its state lives in the token store, which it
// re-reads on every call, so a setup completed by a Flow (in this or another
// process) takes effect without a restart.
type Source struct {
	o     Options
	log   *slog.Logger
	crash string

	mu     sync.Mutex
	flight *flight
	// unsaved is a refreshed token whose commit failed (R5); it is used
	// instead of the stored one until a retry of the commit succeeds.
	unsaved *unsavedToken
	// persistFailed is set while unsaved is reported as token_persist_failed.
	persistFailed bool
	// clockWarned is set once the "clock before build time" warning is logged.
	clockWarned bool
	// cache is the grant as last read. It serves the fast path (a token that
	// needs no refresh, or a backoff still running) without a database read;
	// blocked states, refreshes and the status methods always re-read.
	cache *tokenstore.Grant

	// storageErr is the last failure to write the in-flight marker; nil
	// while tokens.db takes writes.
	storageErr error

	// persistMu serialises retries of an unsaved commit.
	persistMu sync.Mutex
	// closing stops the background retry of an unsaved commit; closed
	// under mu. persisting counts the running retry loops (added under
	// mu while closing is open), so that Close can wait for them.
	closing    chan struct{}
	closeOnce  sync.Once
	persisting sync.WaitGroup
}

type flight struct {
	done chan struct{}
	tok  logging.Secret
	err  error
}

type unsavedToken struct {
	tok  model.Token
	base int64 // the stored generation it replaces
}

// NewSource returns a token source. Options need Store, Status, ClientID and
// TokenURL; the rest have defaults.
func NewSource(opts Options) (*Source, error) {
	o, err := opts.normalize(false)
	if err != nil {
		return nil, err
	}
	return &Source{o: o, log: o.Logger, crash: testCrash.at, closing: make(chan struct{})}, nil
}

// Init reads the stored state at start: it records setup_required when no
// token is stored, brings the data.db status in line with tokens.db, and
// warns about an implausible clock and a last refresh older than 30 days. An
// interrupted refresh found here is resolved lazily by the next token call.
func (s *Source) Init(ctx context.Context) error {
	g, err := s.o.Store.Grant(ctx)
	if err != nil {
		return fmt.Errorf("init token source: %w", err)
	}
	now := s.o.Clock.Now()
	s.clockOK(now)
	if !g.HasToken && g.State != model.AuthSetupRequired {
		s.transition(ctx, g, model.AuthSetupRequired, "no token is stored; run tibbersync setup")
		if g, err = s.o.Store.Grant(ctx); err != nil {
			return fmt.Errorf("init token source: %w", err)
		}
	}
	st := g.Status()
	cur, err := s.o.Status.AuthStatus(ctx)
	if err != nil || cur.State != st.State || cur.Reason != st.Reason || cur.Email != st.Email ||
		!equalStrings(cur.GrantedScopes, st.GrantedScopes) {
		if err := s.o.Status.SetAuthStatus(ctx, st); err != nil {
			s.log.Error("record auth status", "err", err)
		} else if cur.State != st.State {
			s.notify(ctx, st)
		}
	}
	switch {
	case !g.HasToken:
		s.log.Info("authorization setup required", "state", g.State)
	case g.State.Sticky():
		s.log.Info("authorization is blocked until setup runs again", "state", g.State, "reason", g.Reason, "since", g.Since)
	default:
		if g.InFlight.Active() {
			s.log.Info("an interrupted token refresh will be retried once", "unanswered_requests", g.InFlight.Sends)
		}
		if !g.LastRefresh.IsZero() && now.Sub(g.LastRefresh) > staleRefreshWarning {
			s.log.Warn("last token refresh is more than 30 days old; the refresh token may have expired",
				"last_refresh", g.LastRefresh)
		}
	}
	return nil
}

// AccessToken returns a valid access token, refreshing it first when less
// than max(60 s, 10 % of its lifetime) remains. In setup_required,
// reauth_required and config_error it returns an error wrapping
// model.ErrNotAuthorized at once, without network; while the token endpoint
// backs off and the token has expired, one wrapping model.ErrTokenBackoff.
func (s *Source) AccessToken(ctx context.Context) (logging.Secret, error) {
	now := s.o.Clock.Now()
	if err := s.clockOK(now); err != nil {
		return logging.Secret{}, err
	}
	if tok, ok, err := s.fastPath(now); ok {
		return tok, err
	}
	g, err := s.load(ctx)
	if err != nil {
		return logging.Secret{}, err
	}
	if blocked(g) {
		return logging.Secret{}, notAuthorized(g)
	}
	if !needsRefresh(g.Token, now) {
		return g.Token.AccessToken, nil
	}
	return s.refresh(ctx, refreshExpiring, logging.Secret{})
}

// fastPath answers from the cached grant when that needs no database: the
// token needs no refresh yet, or the backoff is still running. ok is false
// when the slow path must run.
func (s *Source) fastPath(now time.Time) (tok logging.Secret, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.cache
	if g == nil || blocked(*g) || s.unsaved != nil {
		// Blocked states re-read the store to notice a new setup; an
		// unsaved token makes every call retry its commit.
		return logging.Secret{}, false, nil
	}
	if !needsRefresh(g.Token, now) {
		return g.Token.AccessToken, true, nil
	}
	b := g.Backoff
	if !b.Next.IsZero() && b.Next.After(now) && b.Next.Sub(now) <= b.Delay {
		if usable(g.Token, now) {
			return g.Token.AccessToken, true, nil
		}
		return logging.Secret{}, true, backoffErr(b)
	}
	return logging.Secret{}, false, nil
}

// Refresh is called after the Data API answered 401 to rejected. Unless the
// stored token already differs from rejected (another caller refreshed), it
// forces one refresh; concurrent calls with the same rejected token share
// it. It returns the token to retry with.
func (s *Source) Refresh(ctx context.Context, rejected logging.Secret) (logging.Secret, error) {
	now := s.o.Clock.Now()
	if err := s.clockOK(now); err != nil {
		return logging.Secret{}, err
	}
	g, err := s.load(ctx)
	if err != nil {
		return logging.Secret{}, err
	}
	if blocked(g) {
		return logging.Secret{}, notAuthorized(g)
	}
	if !rejected.Empty() && !g.Token.AccessToken.Equal(rejected) {
		return g.Token.AccessToken, nil
	}
	if rejected.Empty() {
		rejected = g.Token.AccessToken
	}
	return s.refresh(ctx, refreshForced, rejected)
}

// KeepAlive refreshes when the last refresh is older than Options.KeepAlive,
// so that the refresh token never lapses from disuse (R8). The daemon calls
// it from a ticker; it does nothing while authorization is blocked.
func (s *Source) KeepAlive(ctx context.Context) error {
	now := s.o.Clock.Now()
	if err := s.clockOK(now); err != nil {
		return err
	}
	g, err := s.load(ctx)
	if err != nil {
		return err
	}
	if blocked(g) || !s.keepAliveDue(g, now) {
		return nil
	}
	_, err = s.refresh(ctx, refreshKeepAlive, logging.Secret{})
	return err
}

// Status returns the current auth status from the token store (no secrets).
func (s *Source) Status(ctx context.Context) (model.AuthStatus, error) {
	g, err := s.load(ctx)
	if err != nil {
		return model.AuthStatus{}, err
	}
	st := g.Status()
	s.mu.Lock()
	switch {
	case s.persistFailed:
		st.Reason = ReasonPersistFailed
	case s.storageErr != nil && !st.State.Sticky():
		st.Reason = ReasonStorageUnwritable
	}
	s.mu.Unlock()
	return st, nil
}

// Token returns the current token's metadata (expiry, issue times, scopes)
// with both secrets left empty, and whether a token exists.
func (s *Source) Token(ctx context.Context) (model.Token, bool, error) {
	g, err := s.load(ctx)
	if err != nil {
		return model.Token{}, false, err
	}
	if !g.HasToken {
		return model.Token{}, false, nil
	}
	t := g.Token
	t.AccessToken, t.RefreshToken = logging.Secret{}, logging.Secret{}
	t.Scopes = append([]string(nil), t.Scopes...)
	return t, true, nil
}

// needsRefresh reports whether less than max(60 s, 10 % of the lifetime)
// of the access token remains at now.
func needsRefresh(t model.Token, now time.Time) bool {
	margin := max(minRefreshMargin, t.Lifetime()/10)
	return t.Expiry.Sub(now) < margin
}

// usable reports whether the access token may still be handed out.
func usable(t model.Token, now time.Time) bool {
	return now.Add(usableSkew).Before(t.Expiry)
}

// keepAliveDue reports whether the last refresh is older than KeepAlive (or
// lies more than KeepAlive in the future: the clock went back).
func (s *Source) keepAliveDue(g tokenstore.Grant, now time.Time) bool {
	age := now.Sub(g.LastRefresh)
	return g.LastRefresh.IsZero() || age >= s.o.KeepAlive || age <= -s.o.KeepAlive
}

// clockOK returns an error wrapping model.ErrTokenBackoff while the wall
// clock is earlier than NotBefore (R26), warning once.
func (s *Source) clockOK(now time.Time) error {
	if s.o.NotBefore.IsZero() || !now.Before(s.o.NotBefore) {
		s.mu.Lock()
		s.clockWarned = false
		s.mu.Unlock()
		return nil
	}
	s.mu.Lock()
	warn := !s.clockWarned
	s.clockWarned = true
	s.mu.Unlock()
	if warn {
		s.log.Warn("system clock is earlier than the build time; waiting for the clock to be set before calling Tibber",
			"now", now, "not_before", s.o.NotBefore)
	}
	return fmt.Errorf("%w: the system clock (%s) is earlier than the build time (%s)",
		model.ErrTokenBackoff, now.UTC().Format(time.RFC3339), s.o.NotBefore.UTC().Format(time.RFC3339))
}

// load reads the grant, overlaying a refreshed token whose commit failed
// (and retrying that commit first), and caches it.
func (s *Source) load(ctx context.Context) (tokenstore.Grant, error) {
	s.retryPersist(ctx)
	g, err := s.o.Store.Grant(ctx)
	if err != nil {
		return tokenstore.Grant{}, fmt.Errorf("read token store: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.unsaved; u != nil {
		if g.Generation != u.base {
			// A newer grant was committed (setup): it supersedes ours.
			s.unsaved = nil
			s.persistFailed = false
		} else {
			g.Token = u.tok
			g.LastRefresh = u.tok.IssuedAt
			g.InFlight = tokenstore.InFlight{}
			g.Backoff = tokenstore.Backoff{}
		}
	}
	c := g
	s.cache = &c
	return g, nil
}

// retryPersist retries committing an unsaved refreshed token (R5).
func (s *Source) retryPersist(ctx context.Context) {
	s.persistMu.Lock()
	defer s.persistMu.Unlock()
	s.mu.Lock()
	u := s.unsaved
	s.mu.Unlock()
	if u == nil {
		return
	}
	_, err := s.o.Store.SaveRefreshed(ctx, u.tok, u.base)
	if err != nil && !errors.Is(err, tokenstore.ErrGenerationChanged) {
		s.log.Debug("retry storing refreshed token", "err", err)
		return
	}
	s.mu.Lock()
	if s.unsaved == u {
		s.unsaved = nil
	}
	s.mu.Unlock()
	if err == nil {
		s.log.Info("refreshed token stored after earlier failure")
	}
	s.clearPersistFailed(ctx)
}

// refresh runs one refresh for all concurrent callers in this process
// (single flight); callers that join give up when their ctx ends, the
// leader finishes the refresh (bounded by the HTTP timeout) so that no
// response is lost to a cancellation.
func (s *Source) refresh(ctx context.Context, kind refreshKind, rejected logging.Secret) (logging.Secret, error) {
	for range 2 {
		s.mu.Lock()
		if f := s.flight; f != nil {
			s.mu.Unlock()
			select {
			case <-f.done:
			case <-ctx.Done():
				return logging.Secret{}, ctx.Err()
			}
			if kind == refreshForced && f.err == nil && f.tok.Equal(rejected) {
				continue // that flight did not replace the rejected token
			}
			return f.tok, f.err
		}
		f := &flight{done: make(chan struct{})}
		s.flight = f
		s.mu.Unlock()

		f.tok, f.err = s.refreshLocked(ctx, kind, rejected)

		s.mu.Lock()
		s.flight = nil
		s.mu.Unlock()
		close(f.done)
		return f.tok, f.err
	}
	return logging.Secret{}, fmt.Errorf("%w: refresh did not replace the rejected token", model.ErrTokenBackoff)
}

// refreshLocked takes the cross-process lock, re-reads the stored grant and
// refreshes if that is still needed. Each step is one function below:
// stillNeeded, credentials, backingOff, markInFlight, the request itself,
// refreshedToken and commitRefreshed.
func (s *Source) refreshLocked(ctx context.Context, kind refreshKind, rejected logging.Secret) (logging.Secret, error) {
	if err := ctx.Err(); err != nil {
		return logging.Secret{}, err
	}
	unlock, err := lockFile(ctx, s.o.LockPath)
	if err != nil {
		return logging.Secret{}, fmt.Errorf("refresh token: %w", err)
	}
	defer unlock()

	// From here on the refresh must not be abandoned half-way.
	ctx = context.WithoutCancel(ctx)
	g, now, a := s.stillNeeded(ctx, kind, rejected)
	if a != nil {
		return a.tok, a.err
	}
	// From here on this refresh may write to the store: the cached grant is
	// then stale.
	defer s.dropCache()
	secret, a := s.credentials(ctx, g)
	if a != nil {
		return a.tok, a.err
	}
	if a := s.backingOff(ctx, g, kind, now); a != nil {
		return a.tok, a.err
	}
	recovering, a := s.markInFlight(ctx, g, kind, now)
	if a != nil {
		return a.tok, a.err
	}
	crashpoint(s.crash, CrashBeforeRequest)

	tr, err := postRefresh(s.o.HTTPClient, s.o.TokenURL, s.o.ClientID, secret, g.Token.RefreshToken)
	receipt := s.o.Clock.Now()
	if err != nil {
		return s.refreshFailed(ctx, g, kind, err, recovering, receipt)
	}
	crashpoint(s.crash, CrashAfterResponse)
	tok, rotated := refreshedToken(tr, g.Token, receipt)
	return s.commitRefreshed(ctx, g, tok, rotated, recovering)
}

// answer is what a refresh step returns when the refresh ends there.
type answer struct {
	tok logging.Secret
	err error
}

func errAnswer(err error) *answer { return &answer{err: err} }

// dropCache forgets the cached grant, so the next call re-reads the store.
func (s *Source) dropCache() {
	s.mu.Lock()
	s.cache = nil
	s.mu.Unlock()
}

// stillNeeded re-reads the grant under the lock and decides whether the
// refresh of this kind is still needed (another goroutine or process may have
// done it). A non-nil answer ends the refresh.
func (s *Source) stillNeeded(ctx context.Context, kind refreshKind, rejected logging.Secret) (tokenstore.Grant, time.Time, *answer) {
	g, err := s.load(ctx)
	if err != nil {
		return g, time.Time{}, errAnswer(err)
	}
	if blocked(g) {
		return g, time.Time{}, errAnswer(notAuthorized(g))
	}
	now := s.o.Clock.Now()
	if err := s.clockOK(now); err != nil {
		return g, now, errAnswer(err)
	}
	current := &answer{tok: g.Token.AccessToken}
	switch kind {
	case refreshExpiring:
		if !needsRefresh(g.Token, now) {
			return g, now, current
		}
	case refreshKeepAlive:
		if !s.keepAliveDue(g, now) && !needsRefresh(g.Token, now) {
			return g, now, current
		}
	case refreshForced:
		if !g.Token.AccessToken.Equal(rejected) {
			return g, now, current
		}
	}
	return g, now, nil
}

// credentials checks that a refresh can be asked for at all: a refresh
// token, a client secret and a client id.
func (s *Source) credentials(ctx context.Context, g tokenstore.Grant) (logging.Secret, *answer) {
	if g.Token.RefreshToken.Empty() {
		s.transition(ctx, g, model.AuthReauthRequired,
			"no refresh token was issued (is offline_access granted?); authorize again")
		return logging.Secret{}, errAnswer(s.blockedErr(ctx))
	}
	secret := s.o.ClientSecret
	if secret.Empty() {
		return logging.Secret{}, errAnswer(fmt.Errorf("%w: %w", model.ErrNotAuthorized, ErrNoClientSecret))
	}
	if s.o.ClientID == "" {
		return logging.Secret{}, errAnswer(fmt.Errorf("%w: %w", model.ErrNotAuthorized, ErrNoClientID))
	}
	return secret, nil
}

// backingOff answers while the token endpoint's backoff runs (R25),
// clamping a backoff that lies further ahead than its delay (the clock went
// back).
func (s *Source) backingOff(ctx context.Context, g tokenstore.Grant, kind refreshKind, now time.Time) *answer {
	if g.Backoff.Next.IsZero() || !g.Backoff.Next.After(now) {
		return nil
	}
	if g.Backoff.Next.Sub(now) > g.Backoff.Delay {
		g.Backoff.Next = now.Add(g.Backoff.Delay)
		if err := s.o.Store.SaveBackoff(ctx, g.Generation, g.Backoff); err != nil {
			s.log.Warn("store token backoff", "err", err)
		}
	}
	if kind != refreshForced && usable(g.Token, now) {
		return &answer{tok: g.Token.AccessToken}
	}
	return errAnswer(backoffErr(g.Backoff))
}

// markInFlight durably writes the refresh-in-flight marker before the
// request is sent (R7). When it cannot be written (disk full, read-only file
// system, tokens.db replaced or deleted), the refresh is not sent: its
// answer could not be stored either, and a rotated refresh token that lives
// only in memory is lost at the next restart. The still-valid token is
// handed out meanwhile; otherwise the call fails with ErrStorageUnsafe.
func (s *Source) markInFlight(ctx context.Context, g tokenstore.Grant, kind refreshKind, now time.Time) (recovering bool, a *answer) {
	recovering = g.InFlight.Active()
	if g.InFlight.Sends >= maxLostSends {
		s.transition(ctx, g, model.AuthReauthRequired,
			"refresh response lost: no answer to the refresh and to its one retry; authorize again")
		return recovering, errAnswer(s.blockedErr(ctx))
	}
	marker := tokenstore.InFlight{Since: g.InFlight.Since, Sends: g.InFlight.Sends + 1}
	if marker.Since.IsZero() {
		marker.Since = now
	}
	err := s.checkFiles()
	if err == nil {
		err = s.o.Store.SetInFlight(ctx, g.Generation, marker)
	}
	if errors.Is(err, tokenstore.ErrGenerationChanged) {
		tok, err := s.currentAfterChange(ctx)
		return recovering, &answer{tok: tok, err: err}
	}
	if err != nil {
		s.storageFailed(ctx, err)
		if kind != refreshForced && usable(g.Token, now) {
			return recovering, &answer{tok: g.Token.AccessToken}
		}
		return recovering, errAnswer(fmt.Errorf("%w: %w: %w", model.ErrTokenBackoff, ErrStorageUnsafe, err))
	}
	s.storageRecovered(ctx)
	if recovering {
		s.log.Info("retrying a refresh whose response was lost, once", "first_sent", g.InFlight.Since)
	}
	return recovering, nil
}

// checkFiles asks the token store, when it can tell, whether tokens.db and
// its -wal and -shm files are still the ones it opened.
func (s *Source) checkFiles() error {
	if c, ok := s.o.Store.(interface{ CheckFiles() error }); ok {
		return c.CheckFiles()
	}
	return nil
}

// refreshedToken builds the new token from a token response received at
// receipt; old supplies what the response left out (R5).
func refreshedToken(tr tokenResponse, old model.Token, receipt time.Time) (tok model.Token, rotated bool) {
	tok = model.Token{
		AccessToken:     tr.AccessToken,
		RefreshToken:    tr.RefreshToken,
		TokenType:       tr.TokenType,
		IssuedAt:        receipt,
		RefreshIssuedAt: receipt,
		Scopes:          tr.Scope,
	}
	expiresIn := tr.ExpiresIn
	if expiresIn <= 0 {
		expiresIn = defaultExpiresIn
	}
	tok.Expiry = receipt.Add(expiresIn)
	rotated = !tr.RefreshToken.Empty() && !tr.RefreshToken.Equal(old.RefreshToken)
	if tr.RefreshToken.Empty() {
		// No refresh_token in the response: keep the old one (R5).
		tok.RefreshToken = old.RefreshToken
		tok.RefreshIssuedAt = old.RefreshIssuedAt
	} else if !rotated {
		tok.RefreshIssuedAt = old.RefreshIssuedAt
	}
	if tok.Scopes == nil {
		tok.Scopes = old.Scopes
	}
	return tok, rotated
}

// commitRefreshed persists the refreshed token before it is used (R5); a
// failed commit keeps it in memory and retries (keepUnsaved).
func (s *Source) commitRefreshed(ctx context.Context, g tokenstore.Grant, tok model.Token, rotated, recovering bool) (logging.Secret, error) {
	if _, err := s.o.Store.SaveRefreshed(ctx, tok, g.Generation); err != nil {
		if errors.Is(err, tokenstore.ErrGenerationChanged) {
			s.log.Warn("a new authorization was stored during the refresh; using it")
			return s.currentAfterChange(ctx)
		}
		s.keepUnsaved(ctx, tok, g.Generation, err)
		return tok.AccessToken, nil
	}
	s.mu.Lock()
	s.unsaved = nil
	s.mu.Unlock()
	s.clearPersistFailed(ctx)
	crashpoint(s.crash, CrashAfterCommit)
	s.mirrorTokenTimes(ctx)

	s.log.Info("access token refreshed", "expires_in", tok.Expiry.Sub(tok.IssuedAt), "rotated", rotated, "after_lost_response", recovering)
	return tok.AccessToken, nil
}

// refreshFailed handles a failed refresh request: marker, classification,
// state transition or backoff.
func (s *Source) refreshFailed(ctx context.Context, g tokenstore.Grant, kind refreshKind, err error, recovering bool, now time.Time) (logging.Secret, error) {
	var te *TokenError
	unknown := errors.As(err, &te) && te.Unknown
	class := Classify(err)
	attrs := []any{"class", class, "err", err}
	if te != nil {
		attrs = append(attrs, "status", te.Status, "oauth_error", te.Code, "description", te.Description, "outcome_unknown", te.Unknown)
	}
	switch {
	case unknown:
		// Keep the marker: the server may have rotated the token (R7).
	case te != nil && te.Status == 0:
		// The request never left (e.g. connection refused): restore the
		// marker as it was, so a pending recovery keeps its one try.
		if ferr := s.o.Store.SetInFlight(ctx, g.Generation, g.InFlight); ferr != nil {
			s.log.Warn("restore refresh marker", "err", ferr)
		}
	default:
		// A definite answer: the outcome is known.
		if ferr := s.o.Store.SetInFlight(ctx, g.Generation, tokenstore.InFlight{}); ferr != nil {
			s.log.Warn("clear refresh marker", "err", ferr)
		}
	}

	switch class {
	case ClassReauth:
		reason := "Tibber rejected the refresh token (invalid_grant); authorize again"
		if recovering {
			reason = "refresh response lost: the retried refresh token was rejected (invalid_grant); authorize again"
		}
		s.transition(ctx, g, model.AuthReauthRequired, reason, attrs...)
		return logging.Secret{}, fmt.Errorf("%w: %w: %w", model.ErrNotAuthorized, ErrReauthRequired, err)
	case ClassConfig:
		s.transition(ctx, g, model.AuthConfigError,
			"Tibber rejected the client ("+codeOr(te, "status")+"); check client_id and the client secret, then authorize again", attrs...)
		return logging.Secret{}, fmt.Errorf("%w: %w: %w", model.ErrNotAuthorized, ErrConfig, err)
	}

	b := g.Backoff
	b.Failures++
	if b.Delay <= 0 {
		b.Delay = minTokenBackoff
	} else {
		b.Delay = min(2*b.Delay, maxTokenBackoff)
	}
	b.Next = now.Add(b.Delay)
	b.LastError = err.Error()
	if serr := s.o.Store.SaveBackoff(ctx, g.Generation, b); serr != nil {
		s.log.Warn("store token backoff", "err", serr)
	}
	s.log.Warn("token refresh failed; backing off", append(attrs, "retry_in", b.Delay, "failures", b.Failures)...)
	if kind != refreshForced && usable(g.Token, now) {
		return g.Token.AccessToken, nil
	}
	return logging.Secret{}, fmt.Errorf("%w: %w", backoffErr(b), err)
}

func codeOr(te *TokenError, fallback string) string {
	if te == nil {
		return fallback
	}
	if te.Code != "" {
		return te.Code
	}
	return fmt.Sprintf("status %d", te.Status)
}

func backoffErr(b tokenstore.Backoff) error {
	return fmt.Errorf("%w: next token request at %s after %d failure(s)",
		model.ErrTokenBackoff, b.Next.UTC().Format(time.RFC3339), b.Failures)
}

// currentAfterChange returns the token of a grant that replaced the one a
// refresh started from.
func (s *Source) currentAfterChange(ctx context.Context) (logging.Secret, error) {
	g, err := s.load(ctx)
	if err != nil {
		return logging.Secret{}, err
	}
	if blocked(g) {
		return logging.Secret{}, notAuthorized(g)
	}
	return g.Token.AccessToken, nil
}

// blockedErr returns the not-authorized error for the stored grant.
func (s *Source) blockedErr(ctx context.Context) error {
	g, err := s.load(ctx)
	if err != nil {
		return fmt.Errorf("%w: %w", model.ErrNotAuthorized, err)
	}
	return notAuthorized(g)
}

// keepUnsaved keeps a refreshed token in memory after its commit failed,
// and reports token_persist_failed (R5). The old refresh token is never
// sent again: refreshes use the in-memory one until the commit succeeds.
func (s *Source) keepUnsaved(ctx context.Context, tok model.Token, base int64, err error) {
	u := &unsavedToken{tok: tok, base: base}
	s.mu.Lock()
	s.unsaved = u
	first := !s.persistFailed
	s.persistFailed = true
	retry := true
	select {
	case <-s.closing:
		retry = false // Close retries once itself and reports the loss
	default:
		s.persisting.Add(1) // under mu: Close closes closing under mu too
	}
	s.mu.Unlock()
	s.log.Error("could not store the refreshed token; keeping it in memory and retrying", "reason", ReasonPersistFailed, "err", err)
	if retry {
		go s.persistLoop(u)
	}
	if first {
		st, serr := s.o.Status.AuthStatus(ctx)
		if serr != nil {
			st = model.AuthStatus{State: model.AuthOK, Since: s.o.Clock.Now()}
		}
		st.Reason = ReasonPersistFailed
		if serr := s.o.Status.SetAuthStatus(ctx, st); serr != nil {
			s.log.Error("record auth status", "err", serr)
		}
	}
}

// clearPersistFailed removes the token_persist_failed reason once the
// token is stored.
func (s *Source) clearPersistFailed(ctx context.Context) {
	s.mu.Lock()
	was := s.persistFailed
	s.persistFailed = false
	s.mu.Unlock()
	if !was {
		return
	}
	g, err := s.o.Store.Grant(ctx)
	if err != nil {
		return
	}
	if err := s.o.Status.SetAuthStatus(ctx, g.Status()); err != nil {
		s.log.Error("record auth status", "err", err)
	}
}

// transition moves the grant at g.Generation to state: it is written to
// tokens.db and, if the state changed, logged once (WARN for blocking
// states), mirrored into data.db and sent to the notifier (R9).
func (s *Source) transition(ctx context.Context, g tokenstore.Grant, state model.AuthState, reason string, attrs ...any) {
	changed, err := s.o.Store.SetState(ctx, g.Generation, state, reason, s.o.Clock.Now())
	if errors.Is(err, tokenstore.ErrGenerationChanged) {
		return // a new grant was stored meanwhile; it decides the state
	}
	if err != nil {
		s.log.Error("store auth state", "state", state, "err", err)
	}
	if !changed && err == nil {
		return
	}
	st := g.Status()
	st.State, st.Reason, st.Since = state, reason, s.o.Clock.Now()
	if ng, gerr := s.o.Store.Grant(ctx); gerr == nil && ng.Generation == g.Generation && ng.State == state {
		st = ng.Status()
	}
	if state == model.AuthReauthRequired || state == model.AuthConfigError {
		s.log.Warn("authorization state changed; no token or API calls until tibbersync setup runs again",
			append([]any{"state", state, "reason", reason}, attrs...)...)
	} else {
		s.log.Info("authorization state changed", append([]any{"state", state, "reason", reason}, attrs...)...)
	}
	if err := s.o.Status.SetAuthStatus(ctx, st); err != nil {
		s.log.Error("record auth status", "err", err)
	}
	s.notify(ctx, st)
}

func (s *Source) notify(ctx context.Context, st model.AuthStatus) {
	if s.o.Notifier != nil {
		s.o.Notifier.Notify(ctx, st)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// mirrorTokenTimes copies the stored grant's status, with the new token's
// expiry metadata, into data.db, so that `tibbersync status` can estimate
// token expiry without opening tokens.db. Failures are only logged: the
// token is already committed.
func (s *Source) mirrorTokenTimes(ctx context.Context) {
	g, err := s.o.Store.Grant(ctx)
	if err != nil || !g.HasToken {
		return
	}
	if err := s.o.Status.SetAuthStatus(ctx, g.Status()); err != nil {
		s.log.Warn("record token expiry in data.db", "err", err)
	}
}

// persistLoop retries the commit of u every few seconds (doubling up to
// persistRetryMax) until it is stored, superseded or the Source is closed.
// Its cadence uses real timers: it bounds how long a token lives only in
// memory, which has nothing to do with token expiry.
func (s *Source) persistLoop(u *unsavedToken) {
	defer s.persisting.Done()
	delay := persistRetryMin
	for {
		t := time.NewTimer(delay)
		select {
		case <-s.closing:
			t.Stop()
			return
		case <-t.C:
		}
		s.retryPersist(context.Background())
		s.mu.Lock()
		done := s.unsaved != u
		s.mu.Unlock()
		if done {
			return
		}
		delay = min(2*delay, persistRetryMax)
	}
}

// Close stops the background retries and, when a refreshed token still
// lives only in memory, tries once more to store it. If that fails too, it
// logs at ERROR exactly what is lost and what to do, and returns an error
// wrapping ErrTokenLost. The daemon calls it at shutdown, before it closes
// the token store.
func (s *Source) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		close(s.closing)
		s.mu.Unlock()
	})
	// A retry already under way finishes first: nothing may write to
	// tokens.db after Close returns (the daemon closes it next).
	s.persisting.Wait()
	s.retryPersist(ctx)
	s.mu.Lock()
	u := s.unsaved
	s.mu.Unlock()
	if u == nil {
		return nil
	}
	path := s.o.Store.SecretsDir()
	s.log.Error("shutting down with a refreshed token that could not be stored: it is lost",
		"lost", "the access and refresh token Tibber issued at "+u.tok.IssuedAt.UTC().Format(time.RFC3339)+
			"; tokens.db still holds the refresh token it replaced, which Tibber has rotated out",
		"what_to_do", "make "+path+" writable and free space on its file system, then start tibbersync; "+
			"if it reports reauth_required, authorize again with `tibbersync setup` or the setup page",
		"reason", ReasonPersistFailed)
	return fmt.Errorf("%w: issued at %s; authorize again if the next start reports reauth_required",
		ErrTokenLost, u.tok.IssuedAt.UTC().Format(time.RFC3339))
}

// StorageError returns why refreshes are postponed (tokens.db refused the
// in-flight marker), or that a refreshed token lives only in memory because
// its commit failed; nil when tokens are stored safely. Status surfaces show
// it: data.db, where the auth status is mirrored, may be on the same full
// disk.
func (s *Source) StorageError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.storageErr != nil:
		return fmt.Errorf("%w: %w", ErrStorageUnsafe, s.storageErr)
	case s.unsaved != nil:
		return fmt.Errorf("a refreshed token is only in memory (%s): its save to tokens.db failed and is retried; "+
			"free space or make %s writable before tibbersync stops, or it is lost", ReasonPersistFailed, s.o.Store.SecretsDir())
	}
	return nil
}

// storageFailed records that the in-flight marker could not be written:
// logged at ERROR once, mirrored into data.db (when that takes writes).
func (s *Source) storageFailed(ctx context.Context, err error) {
	s.mu.Lock()
	first := s.storageErr == nil
	s.storageErr = err
	s.mu.Unlock()
	if !first {
		s.log.Debug("token store still refuses writes; refresh postponed", "err", err)
		return
	}
	s.log.Error(ErrStorageUnsafe.Error(), "err", err, "secrets_dir", s.o.Store.SecretsDir(),
		"reason", ReasonStorageUnwritable)
	if st, serr := s.o.Status.AuthStatus(ctx); serr == nil && !st.State.Sticky() {
		st.Reason = ReasonStorageUnwritable
		if serr := s.o.Status.SetAuthStatus(ctx, st); serr != nil {
			s.log.Warn("record auth status", "err", serr)
		}
	}
}

// RecheckStorage is for the daemon's periodic health round. While the
// in-flight marker could not be written, it rewrites the stored marker
// unchanged (a real write to tokens.db with no change of meaning), under
// the cross-process refresh lock that every marker writer holds, and
// clears the recorded failure when the write succeeds. Without it the
// status surfaces would report unsafe token storage until the next refresh
// that is actually needed, long after space returned. It does nothing
// while tokens are stored safely.
func (s *Source) RecheckStorage(ctx context.Context) {
	s.mu.Lock()
	failing := s.storageErr != nil
	s.mu.Unlock()
	if !failing {
		return
	}
	unlock, err := lockFile(ctx, s.o.LockPath)
	if err != nil {
		return // a refresh holds it; it writes the marker itself
	}
	defer unlock()
	g, err := s.o.Store.Grant(ctx)
	if err == nil {
		err = s.checkFiles()
	}
	if err == nil {
		err = s.o.Store.SetInFlight(ctx, g.Generation, g.InFlight)
	}
	switch {
	case err == nil:
		s.storageRecovered(ctx)
	case errors.Is(err, tokenstore.ErrGenerationChanged):
		// A setup replaced the grant meanwhile: the next round checks again.
	default:
		s.log.Debug("token store still refuses writes", "err", err)
	}
}

// storageRecovered clears a recorded storage failure once the marker was
// written.
func (s *Source) storageRecovered(ctx context.Context) {
	s.mu.Lock()
	was := s.storageErr != nil
	s.storageErr = nil
	s.mu.Unlock()
	if !was {
		return
	}
	s.log.Info("token store takes writes again; refreshing")
	if g, err := s.o.Store.Grant(ctx); err == nil {
		if err := s.o.Status.SetAuthStatus(ctx, g.Status()); err != nil {
			s.log.Warn("record auth status", "err", err)
		}
	}
}
