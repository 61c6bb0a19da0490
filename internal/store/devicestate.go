package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
)

// DeviceStates returns every device data.db knows (removed ones included,
// with Removed set), each with its homes and the rows of the
// latest_capabilities view, ordered by device id. It reads the documented
// views and tables only, so what it returns is what an analyst sees.
func (db *DB) DeviceStates(ctx context.Context) ([]model.DeviceState, error) {
	tx, err := db.sql.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("device states: %w", err)
	}
	defer func() { _ = tx.Rollback() }()

	rows, err := tx.QueryContext(ctx, `SELECT
    d.id,
    d.name,
    d.brand,
    d.model,
    d.external_id,
    d.category,
    d.removed_at IS NOT NULL,
    (SELECT max(s.observed_at) FROM device_snapshots AS s WHERE s.device_id = d.id)
FROM devices AS d
ORDER BY d.id`)
	if err != nil {
		return nil, fmt.Errorf("device states: %w", err)
	}
	var out []model.DeviceState
	index := map[string]int{}
	for rows.Next() {
		var (
			d                     model.DeviceState
			name, brand, mdl, ext sql.NullString
			category              string
			obs                   sql.NullInt64
		)
		if err := rows.Scan(&d.ID, &name, &brand, &mdl, &ext, &category, &d.Removed, &obs); err != nil {
			_ = rows.Close()
			return nil, fmt.Errorf("device states: scan device: %w", err)
		}
		d.Name, d.Brand, d.Model, d.ExternalID = name.String, brand.String, mdl.String, ext.String
		d.Category = model.Category(category)
		d.ObservedAt = fromMS(obs)
		index[d.ID] = len(out)
		out = append(out, d)
	}
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("device states: %w", err)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("device states: %w", err)
	}

	rows, err = tx.QueryContext(ctx, `SELECT hd.device_id, h.id, h.name
FROM home_devices AS hd JOIN homes AS h ON h.id = hd.home_id
WHERE hd.removed_at IS NULL AND h.removed_at IS NULL
ORDER BY hd.device_id, h.id`)
	if err != nil {
		return nil, fmt.Errorf("device states: homes: %w", err)
	}
	for rows.Next() {
		var devID string
		var h model.HomeRef
		if err := rows.Scan(&devID, &h.ID, &h.Name); err != nil {
			_ = rows.Close()
			return nil, fmt.Errorf("device states: scan home: %w", err)
		}
		if i, ok := index[devID]; ok {
			out[i].Homes = append(out[i].Homes, h)
		}
	}
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("device states: homes: %w", err)
	}

	rows, err = tx.QueryContext(ctx, `SELECT device_id, capability_id, value_num, value_text, unit, observed_at, missing
FROM latest_capabilities
ORDER BY device_id, capability_id`)
	if err != nil {
		return nil, fmt.Errorf("device states: capabilities: %w", err)
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var (
			devID string
			c     model.CapabilityState
			num   sql.NullFloat64
			text  sql.NullString
			unit  sql.NullString
			obs   sql.NullString
		)
		if err := rows.Scan(&devID, &c.ID, &num, &text, &unit, &obs, &c.Missing); err != nil {
			return nil, fmt.Errorf("device states: scan capability: %w", err)
		}
		if num.Valid {
			v := num.Float64
			c.Num = &v
		}
		if text.Valid {
			v := text.String
			c.Text = &v
		}
		c.Unit = unit.String
		if obs.Valid {
			if t, err := time.Parse(time.RFC3339Nano, obs.String); err == nil {
				c.ObservedAt = t.UTC()
			}
		}
		if i, ok := index[devID]; ok {
			out[i].Capabilities = append(out[i].Capabilities, c)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("device states: capabilities: %w", err)
	}
	return out, nil
}
