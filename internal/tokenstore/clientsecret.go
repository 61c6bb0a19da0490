package tokenstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/tibbersync/tibbersync/internal/logging"
)

// SaveClientSecret stores a client secret typed on the setup page (R10/R11:
// the lowest-priority source, after the systemd credential and the secret file).
func (s *Store) SaveClientSecret(ctx context.Context, secret logging.Secret) error {
	if secret.Empty() {
		return errors.New("save client secret: empty secret")
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `
INSERT INTO client_secret (id, secret, saved_ms) VALUES (1, ?, ?)
ON CONFLICT (id) DO UPDATE SET secret = excluded.secret, saved_ms = excluded.saved_ms`,
			secret.Reveal(), s.clk.Now().UnixMilli())
		return err
	})
	if err != nil {
		return fmt.Errorf("save client secret: %w", err)
	}
	return nil
}

// ClientSecret returns the stored client secret, or an empty Secret when none
// was saved.
func (s *Store) ClientSecret(ctx context.Context) (logging.Secret, error) {
	var v string
	err := s.db.QueryRowContext(ctx, `SELECT secret FROM client_secret WHERE id = 1`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return logging.Secret{}, nil
	}
	if err != nil {
		return logging.Secret{}, fmt.Errorf("read client secret: %w", err)
	}
	return logging.NewSecret(v), nil
}
