package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/tibbersync/tibbersync/internal/model"
)

// saveTibberDetails keeps what a device detail carries besides values,
// exactly as Tibber sent it: the attributes (devices.attributes) and each
// capability's description and allowed values (capability_state). Rows are
// written only when something changed, and not counted in the run's
// rows_written (metadata, not data). Nil attributes (an identity-only
// entry) leave the stored ones alone.
func saveTibberDetails(ctx context.Context, tx *tx, d model.Device) error {
	if d.Attributes != nil {
		attrs, err := json.Marshal(d.Attributes)
		if err != nil {
			return fmt.Errorf("attributes: %w", err)
		}
		res, err := tx.ExecContext(ctx, `UPDATE devices SET attributes = ?2 WHERE id = ?1 AND attributes IS NOT ?2`,
			d.ID, string(attrs))
		if err != nil {
			return fmt.Errorf("attributes: %w", err)
		}
		tx.uncount(res)
	}
	for _, c := range d.Capabilities {
		if c.ID == "" {
			continue
		}
		var values any // NULL when Tibber sent none
		if c.AvailableValues != nil {
			b, err := json.Marshal(c.AvailableValues)
			if err != nil {
				return fmt.Errorf("capability %q: %w", c.ID, err)
			}
			values = string(b)
		}
		// The row exists once diffCapabilities saw the capability; one only
		// pending (missing once) exists too.
		res, err := tx.ExecContext(ctx, `UPDATE capability_state SET description = ?3, available_values = ?4
WHERE device_id = ?1 AND capability_id = ?2 AND (description IS NOT ?3 OR available_values IS NOT ?4)`,
			d.ID, c.ID, c.Description, values)
		if err != nil {
			return fmt.Errorf("capability %q: %w", c.ID, err)
		}
		tx.uncount(res)
	}
	return nil
}

// uncount leaves res's changes out of the run's rows_written: metadata
// beside the data rows, not data.
func (t *tx) uncount(res sql.Result) {
	if n, err := res.RowsAffected(); err == nil {
		t.uncounted += n
	}
}

// SetAccount records the account's userinfo subject and name (auth_status
// user_sub and user_name), as Tibber sent them; empty values clear them
// (userinfo unavailable at this setup). It needs the auth_status row, which
// the setup writes first.
func (db *DB) SetAccount(ctx context.Context, sub, name string) error {
	t, err := db.begin(ctx)
	if err != nil {
		return fmt.Errorf("set account: %w", err)
	}
	defer func() { _ = t.Rollback() }()
	if _, err := t.ExecContext(ctx, `UPDATE auth_status SET user_sub = ?1, user_name = ?2, updated_at = ?3 WHERE id = 1`,
		strings.TrimSpace(sub), name, t.now.UnixMilli()); err != nil {
		return fmt.Errorf("set account: %w", err)
	}
	if err := t.Commit(); err != nil {
		return fmt.Errorf("set account: %w", err)
	}
	return nil
}
