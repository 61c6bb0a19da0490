package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/tibbersync/tibbersync/internal/model"
)

// AuthStatus returns the current auth state. Before anything was recorded
// it is setup_required (with a zero Since).
func (db *DB) AuthStatus(ctx context.Context) (model.AuthStatus, error) {
	return authStatus(ctx, db.sql)
}

// queryer is what both *sql.DB and *sql.Tx offer for reads.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func authStatus(ctx context.Context, q queryer) (model.AuthStatus, error) {
	var (
		st     model.AuthStatus
		state  string
		since  sql.NullInt64
		scopes string
		accExp sql.NullInt64
		refIss sql.NullInt64
	)
	err := q.QueryRowContext(ctx, `SELECT
    state,
    reason,
    since,
    granted_scopes,
    email,
    access_expires_at,
    refresh_issued_at
FROM auth_status
WHERE id = 1`).Scan(&state, &st.Reason, &since, &scopes, &st.Email, &accExp, &refIss)
	switch {
	case err == sql.ErrNoRows:
		return model.AuthStatus{State: model.AuthSetupRequired, Reason: "authorization has not been set up yet"}, nil
	case err != nil:
		return model.AuthStatus{}, fmt.Errorf("auth status: %w", err)
	}
	st.State = model.AuthState(state)
	st.Since = fromMS(since)
	st.GrantedScopes = strings.Fields(scopes)
	st.AccessExpiresAt = fromMS(accExp)
	st.RefreshIssuedAt = fromMS(refIss)
	return st, nil
}

// SetAuthStatus records st as the single current auth state. The granted
// scopes are stored space-separated, as OAuth2 writes them. Nothing here is
// a secret; callers pass reasons that name no token or code.
func (db *DB) SetAuthStatus(ctx context.Context, st model.AuthStatus) error {
	switch st.State {
	case model.AuthOK, model.AuthSetupRequired, model.AuthReauthRequired, model.AuthConfigError:
	default:
		return fmt.Errorf("set auth status: unknown state %q", st.State)
	}
	tx, err := db.begin(ctx)
	if err != nil {
		return fmt.Errorf("set auth status: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	since := st.Since
	if since.IsZero() {
		since = tx.now
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO auth_status (id, state, reason, since, granted_scopes, email, updated_at, access_expires_at, refresh_issued_at)
VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
ON CONFLICT (id) DO UPDATE SET
    state = excluded.state,
    reason = excluded.reason,
    since = excluded.since,
    granted_scopes = excluded.granted_scopes,
    email = excluded.email,
    updated_at = excluded.updated_at,
    access_expires_at = excluded.access_expires_at,
    refresh_issued_at = excluded.refresh_issued_at`,
		string(st.State), st.Reason, since.UnixMilli(), strings.Join(st.GrantedScopes, " "), st.Email, tx.now.UnixMilli(),
		ms(st.AccessExpiresAt), ms(st.RefreshIssuedAt)); err != nil {
		return fmt.Errorf("set auth status: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("set auth status: commit: %w", err)
	}
	return nil
}
