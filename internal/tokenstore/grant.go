package tokenstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/model"
)

// ErrGenerationChanged means the grant was replaced (a refresh committed by
// another process, or a new setup) since the caller read it, so the caller's
// write was not applied.
var ErrGenerationChanged = errors.New("token grant changed since it was read")

// Grant is everything tokens.db knows about the current authorization.
type Grant struct {
	// Token is the stored token; valid only when HasToken is set.
	Token    model.Token
	HasToken bool
	// Generation increases with every committed token (setup or refresh).
	// Writes that depend on what the caller read carry it, so that a stale
	// writer cannot overwrite a newer grant.
	Generation int64
	// State, Reason and Since are the authorization state of this grant.
	State  model.AuthState
	Reason string
	Since  time.Time
	// Email is the account email from userinfo, when known.
	Email string
	// LastRefresh is when a token was last received (setup or refresh).
	LastRefresh time.Time
	// InFlight is the refresh-in-flight marker (R7).
	InFlight InFlight
	// Backoff is the token-endpoint backoff (R25).
	Backoff Backoff
}

// Status returns the grant's authorization status (no secrets).
func (g Grant) Status() model.AuthStatus {
	st := model.AuthStatus{State: g.State, Reason: g.Reason, Since: g.Since, Email: g.Email}
	if g.HasToken {
		st.GrantedScopes = append([]string(nil), g.Token.Scopes...)
		st.AccessExpiresAt = g.Token.Expiry
		st.RefreshIssuedAt = g.Token.RefreshIssuedAt
	}
	return st
}

// InFlight is the refresh-in-flight marker: it is written before a refresh
// request is sent and cleared once the outcome is known.
type InFlight struct {
	// Since is when the first unanswered request was sent.
	Since time.Time
	// Sends counts refresh requests with the current refresh token whose
	// outcome is unknown (0 means no marker).
	Sends int
}

// Active reports whether a marker is set.
func (f InFlight) Active() bool { return f.Sends > 0 }

// Backoff is the persisted token-endpoint backoff.
type Backoff struct {
	// Next is the earliest time of the next token request (zero: none pending).
	Next time.Time
	// Delay is the current delay (doubled after each failure, capped).
	Delay time.Duration
	// Failures counts consecutive transient failures.
	Failures int
	// LastError describes the last failure (status, code, description; no secrets).
	LastError string
}

// Grant reads the current grant.
func (s *Store) Grant(ctx context.Context) (Grant, error) {
	var (
		g                                        Grant
		access, refresh                          sql.NullString
		expiry, issued, refreshIssued, lastRefr  sql.NullInt64
		since, inflightSince, backoffNext        sql.NullInt64
		scopes, state                            string
		inflightSends, backoffDelay, backoffFail int64
	)
	err := s.db.QueryRowContext(ctx, `
SELECT generation,
       access_token,
       refresh_token,
       token_type,
       expiry_ms,
       issued_at_ms,
       refresh_issued_at_ms,
       scopes,
       last_refresh_ms,
       state,
       reason,
       state_since_ms,
       email,
       inflight_since_ms,
       inflight_sends,
       backoff_next_ms,
       backoff_delay_ms,
       backoff_failures,
       backoff_error
FROM grant_state
WHERE id = 1`).Scan(
		&g.Generation,
		&access,
		&refresh,
		&g.Token.TokenType,
		&expiry,
		&issued,
		&refreshIssued,
		&scopes,
		&lastRefr,
		&state,
		&g.Reason,
		&since,
		&g.Email,
		&inflightSince,
		&inflightSends,
		&backoffNext,
		&backoffDelay,
		&backoffFail,
		&g.Backoff.LastError,
	)
	if err != nil {
		return Grant{}, fmt.Errorf("read token grant: %w", err)
	}
	g.HasToken = access.Valid && access.String != ""
	g.Token.AccessToken = logging.NewSecret(access.String)
	g.Token.RefreshToken = logging.NewSecret(refresh.String)
	g.Token.Expiry = fromMS(expiry)
	g.Token.IssuedAt = fromMS(issued)
	g.Token.RefreshIssuedAt = fromMS(refreshIssued)
	g.Token.Scopes = strings.Fields(scopes)
	g.LastRefresh = fromMS(lastRefr)
	g.State = model.AuthState(state)
	g.Since = fromMS(since)
	g.InFlight = InFlight{Since: fromMS(inflightSince), Sends: int(inflightSends)}
	g.Backoff.Next = fromMS(backoffNext)
	g.Backoff.Delay = time.Duration(backoffDelay) * time.Millisecond
	g.Backoff.Failures = int(backoffFail)
	return g, nil
}

// SaveGrant stores the token of a completed authorization (setup): it
// replaces any previous token, sets the state to ok, and clears the email,
// the in-flight marker and the backoff, in one FULL transaction. It returns
// the new generation.
func (s *Store) SaveGrant(ctx context.Context, tok model.Token, at time.Time) (int64, error) {
	if tok.AccessToken.Empty() {
		return 0, errors.New("save token grant: empty access token")
	}
	var gen int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `
UPDATE grant_state
SET generation = generation + 1,
    access_token = ?,
    refresh_token = ?,
    token_type = ?,
    expiry_ms = ?,
    issued_at_ms = ?,
    refresh_issued_at_ms = ?,
    scopes = ?,
    last_refresh_ms = ?,
    state = ?,
    reason = '',
    state_since_ms = ?,
    email = '',
    inflight_since_ms = NULL,
    inflight_sends = 0,
    backoff_next_ms = NULL,
    backoff_delay_ms = 0,
    backoff_failures = 0,
    backoff_error = ''
WHERE id = 1
RETURNING generation`,
			tok.AccessToken.Reveal(),
			nullSecret(tok.RefreshToken),
			tok.TokenType,
			ms(tok.Expiry),
			ms(tok.IssuedAt),
			ms(tok.RefreshIssuedAt),
			strings.Join(tok.Scopes, " "),
			ms(at),
			string(model.AuthOK),
			ms(at),
		).Scan(&gen)
	})
	if err != nil {
		return 0, fmt.Errorf("save token grant: %w", err)
	}
	return gen, nil
}

// SaveRefreshed commits a refreshed token if the grant is still at generation
// base: tokens, expiry, scopes and the last refresh time are replaced and the
// in-flight marker and backoff cleared, in one FULL transaction. It returns
// the new generation, or ErrGenerationChanged.
func (s *Store) SaveRefreshed(ctx context.Context, tok model.Token, base int64) (int64, error) {
	if tok.AccessToken.Empty() || tok.RefreshToken.Empty() {
		return 0, errors.New("save refreshed token: empty access or refresh token")
	}
	var gen int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `
UPDATE grant_state
SET generation = generation + 1,
    access_token = ?,
    refresh_token = ?,
    token_type = ?,
    expiry_ms = ?,
    issued_at_ms = ?,
    refresh_issued_at_ms = ?,
    scopes = ?,
    last_refresh_ms = ?,
    inflight_since_ms = NULL,
    inflight_sends = 0,
    backoff_next_ms = NULL,
    backoff_delay_ms = 0,
    backoff_failures = 0,
    backoff_error = ''
WHERE id = 1
  AND generation = ?
RETURNING generation`,
			tok.AccessToken.Reveal(),
			tok.RefreshToken.Reveal(),
			tok.TokenType,
			ms(tok.Expiry),
			ms(tok.IssuedAt),
			ms(tok.RefreshIssuedAt),
			strings.Join(tok.Scopes, " "),
			ms(tok.IssuedAt),
			base,
		).Scan(&gen)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrGenerationChanged
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("save refreshed token: %w", err)
	}
	return gen, nil
}

// SetState sets the authorization state and reason of the grant at
// generation gen. It reports whether the state changed (a new reason alone
// is not a change); Since is set to at only on a change.
func (s *Store) SetState(ctx context.Context, gen int64, state model.AuthState, reason string, at time.Time) (bool, error) {
	changed := false
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var cur string
		err := tx.QueryRowContext(ctx, `SELECT state FROM grant_state WHERE id = 1 AND generation = ?`, gen).Scan(&cur)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrGenerationChanged
		}
		if err != nil {
			return err
		}
		changed = cur != string(state)
		_, err = tx.ExecContext(ctx, `
UPDATE grant_state
SET state = ?,
    reason = ?,
    state_since_ms = CASE WHEN state = ? THEN state_since_ms ELSE ? END
WHERE id = 1`,
			string(state), reason, string(state), ms(at))
		return err
	})
	if err != nil {
		return false, fmt.Errorf("set auth state: %w", err)
	}
	return changed, nil
}

// SetEmail records the account email of the grant at generation gen.
func (s *Store) SetEmail(ctx context.Context, gen int64, email string) error {
	return s.updateAt(ctx, "set account email", gen, `UPDATE grant_state SET email = ? WHERE id = 1 AND generation = ?`, email, gen)
}

// SetInFlight writes (Sends > 0) or clears (Sends == 0) the
// refresh-in-flight marker of the grant at generation gen.
func (s *Store) SetInFlight(ctx context.Context, gen int64, f InFlight) error {
	if f.Sends <= 0 {
		return s.updateAt(ctx, "clear refresh marker", gen,
			`UPDATE grant_state SET inflight_since_ms = NULL, inflight_sends = 0 WHERE id = 1 AND generation = ?`, gen)
	}
	return s.updateAt(ctx, "set refresh marker", gen,
		`UPDATE grant_state SET inflight_since_ms = ?, inflight_sends = ? WHERE id = 1 AND generation = ?`,
		ms(f.Since), f.Sends, gen)
}

// SaveBackoff persists the token-endpoint backoff of the grant at generation gen.
func (s *Store) SaveBackoff(ctx context.Context, gen int64, b Backoff) error {
	return s.updateAt(ctx, "save token backoff", gen, `
UPDATE grant_state
SET backoff_next_ms = ?,
    backoff_delay_ms = ?,
    backoff_failures = ?,
    backoff_error = ?
WHERE id = 1
  AND generation = ?`,
		ms(b.Next), b.Delay.Milliseconds(), b.Failures, b.LastError, gen)
}

// updateAt runs one UPDATE guarded by a generation check in its own
// transaction; no row updated means ErrGenerationChanged.
func (s *Store) updateAt(ctx context.Context, op string, gen int64, query string, args ...any) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			return ErrGenerationChanged
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// tx runs fn in one write transaction (BEGIN IMMEDIATE via the DSN).
func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

func nullSecret(s logging.Secret) sql.NullString {
	if s.Empty() {
		return sql.NullString{}
	}
	return sql.NullString{String: s.Reveal(), Valid: true}
}
