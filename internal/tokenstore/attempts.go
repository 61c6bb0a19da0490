package tokenstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/tibbersync/tibbersync/internal/logging"
)

// Errors of ConsumeAttempt. None of them carries the state value.
var (
	// ErrNoAttempt means no authorization attempt is pending and the state
	// belongs to no known attempt.
	ErrNoAttempt = errors.New("no authorization attempt is pending")
	// ErrUnknownState means an attempt is pending but the state is not its
	// state nor that of any earlier attempt.
	ErrUnknownState = errors.New("state does not match the pending authorization attempt")
	// ErrAttemptUsed means the attempt was already completed or failed: the
	// callback is a replay.
	ErrAttemptUsed = errors.New("authorization attempt was already used")
	// ErrAttemptSuperseded means a newer attempt was started after this one.
	ErrAttemptSuperseded = errors.New("authorization attempt was replaced by a newer one")
	// ErrAttemptExpired means the attempt is older than its expiry.
	ErrAttemptExpired = errors.New("authorization attempt has expired")
)

// attemptRetention is how long closed attempts are remembered, so that a
// replayed or out-of-date callback gets a specific answer.
const attemptRetention = 7 * 24 * time.Hour

// Attempt is one authorization attempt (R1).
type Attempt struct {
	// State is the one-time state sent in the authorize URL. Only its
	// SHA-256 hash is stored; ConsumeAttempt leaves it empty.
	State logging.Secret
	// Verifier is the PKCE code verifier.
	Verifier logging.Secret
	// RedirectURI is the exact redirect_uri sent in the authorize request.
	RedirectURI string
	// Created and Expires bound the attempt's validity.
	Created time.Time
	Expires time.Time
}

// SaveAttempt stores a new pending attempt, superseding (and wiping the
// verifier of) any pending one, in one transaction.
func (s *Store) SaveAttempt(ctx context.Context, a Attempt) error {
	if a.State.Empty() || a.Verifier.Empty() {
		return errors.New("save authorization attempt: empty state or verifier")
	}
	now := s.clk.Now()
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `
UPDATE auth_attempts
SET status = 'superseded',
    verifier = NULL,
    closed_ms = ?
WHERE status = 'pending'`, now.UnixMilli()); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `
DELETE FROM auth_attempts
WHERE status <> 'pending'
  AND closed_ms < ?`, now.Add(-attemptRetention).UnixMilli()); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `
INSERT INTO auth_attempts (
    state_hash,
    verifier,
    redirect_uri,
    created_ms,
    expires_ms,
    status
) VALUES (?, ?, ?, ?, ?, 'pending')`,
			hashState(a.State.Reveal()),
			a.Verifier.Reveal(),
			a.RedirectURI,
			a.Created.UnixMilli(),
			a.Expires.UnixMilli(),
		)
		return err
	})
	if err != nil {
		return fmt.Errorf("save authorization attempt: %w", err)
	}
	return nil
}

// ConsumeAttempt looks up the attempt whose state is state and, if it is the
// pending one and not expired at now, marks it consumed, wipes its verifier
// and returns it. A pending attempt is consumed by the first callback that
// names it, even if what follows fails. An unknown state leaves the pending
// attempt untouched. Errors are ErrNoAttempt, ErrUnknownState,
// ErrAttemptUsed, ErrAttemptSuperseded or ErrAttemptExpired (or a database
// error).
func (s *Store) ConsumeAttempt(ctx context.Context, state string, now time.Time) (Attempt, error) {
	var a Attempt
	var outcome error
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var (
			verifier sql.NullString
			status   string
			created  int64
			expires  int64
		)
		h := hashState(state)
		err := tx.QueryRowContext(ctx, `
SELECT verifier,
       redirect_uri,
       created_ms,
       expires_ms,
       status
FROM auth_attempts
WHERE state_hash = ?`, h).Scan(&verifier, &a.RedirectURI, &created, &expires, &status)
		if errors.Is(err, sql.ErrNoRows) {
			var pending int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM auth_attempts WHERE status = 'pending'`).Scan(&pending); err != nil {
				return err
			}
			if pending > 0 {
				outcome = ErrUnknownState
			} else {
				outcome = ErrNoAttempt
			}
			return nil
		}
		if err != nil {
			return err
		}
		switch status {
		case "consumed":
			outcome = ErrAttemptUsed
			return nil
		case "superseded":
			outcome = ErrAttemptSuperseded
			return nil
		case "expired":
			outcome = ErrAttemptExpired
			return nil
		}
		a.Created = time.UnixMilli(created).UTC()
		a.Expires = time.UnixMilli(expires).UTC()
		newStatus := "consumed"
		if !now.Before(a.Expires) {
			newStatus = "expired"
			outcome = ErrAttemptExpired
		}
		a.Verifier = logging.NewSecret(verifier.String)
		_, err = tx.ExecContext(ctx, `
UPDATE auth_attempts
SET status = ?,
    verifier = NULL,
    closed_ms = ?
WHERE state_hash = ?`, newStatus, now.UnixMilli(), h)
		return err
	})
	if err != nil {
		return Attempt{}, fmt.Errorf("consume authorization attempt: %w", err)
	}
	if outcome != nil {
		return Attempt{}, outcome
	}
	return a, nil
}

// PendingAttempt reports whether an unexpired attempt is pending at now (the
// web layer answers /callback only then, R2).
func (s *Store) PendingAttempt(ctx context.Context, now time.Time) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `
SELECT count(*)
FROM auth_attempts
WHERE status = 'pending'
  AND expires_ms > ?`, now.UnixMilli()).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("read pending attempt: %w", err)
	}
	return n > 0, nil
}

func hashState(state string) string {
	sum := sha256.Sum256([]byte(state))
	return hex.EncodeToString(sum[:])
}
