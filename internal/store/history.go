package store

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
)

// SaveHistoryPage upserts one page of history and saves cp, in one BEGIN
// IMMEDIATE transaction, so that the checkpoint never runs ahead of the
// rows (R14). Items outside [EffectiveStart, EffectiveEnd) (either bound
// may be zero: open) and items with no usable metric are skipped.
//
// Each (period, metric) is inserted once; a later page that brings a
// different value (Tibber back-fills) updates it, bumps revisions and
// counts as Updated; the same value again writes nothing. cp.LastPeriod is
// kept monotonic: the stored value is the newest of the old one, cp's and
// the newest period saved from this page.
func (db *DB) SaveHistoryPage(ctx context.Context, deviceID, resolution string, page model.HistoryPage, cp model.HistoryCheckpoint) (model.HistoryResult, error) {
	var res model.HistoryResult
	if deviceID == "" {
		return res, fmt.Errorf("save history page: empty device id")
	}
	if !model.ValidResolution(resolution) {
		return res, fmt.Errorf("save history page: unknown resolution %q", resolution)
	}
	tx, err := db.begin(ctx)
	if err != nil {
		return res, fmt.Errorf("save history page: %w", err)
	}
	defer func() { _ = tx.Rollback() }()

	// Two statements instead of one upsert with RETURNING: an insert that
	// does nothing on conflict, then (only then) a conditional update. Both
	// report through RowsAffected, which tells inserted from updated from
	// unchanged without reading rows back, and the common case (new rows)
	// costs one plain insert.
	ins, err := tx.PrepareContext(ctx, `INSERT INTO device_history (device_id, resolution, period_start, utc_offset_s,
    metric, value, inserted_at, updated_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
ON CONFLICT (device_id, resolution, period_start, metric) DO NOTHING`)
	if err != nil {
		return res, fmt.Errorf("save history page: prepare: %w", err)
	}
	defer func() { _ = ins.Close() }()
	upd, err := tx.PrepareContext(ctx, `UPDATE device_history SET
    value = ?6,
    utc_offset_s = ?4,
    updated_at = ?7,
    revisions = revisions + 1
WHERE device_id = ?1 AND resolution = ?2 AND period_start = ?3 AND metric = ?5
  AND (value IS NOT ?6 OR utc_offset_s IS NOT ?4)`)
	if err != nil {
		return res, fmt.Errorf("save history page: prepare: %w", err)
	}
	defer func() { _ = upd.Close() }()

	now := tx.now.UnixMilli()
	var newest time.Time
	for _, it := range page.Items {
		if !inWindow(it.Time, page.EffectiveStart, page.EffectiveEnd) {
			res.Skipped++
			continue
		}
		start := it.Time.UnixMilli()
		stored := 0
		for metric, v := range it.Metrics {
			if metric == "" || math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			r, err := ins.ExecContext(ctx, deviceID, resolution, start, it.UTCOffsetSeconds, metric, v, now)
			if err != nil {
				return res, fmt.Errorf("save history page: insert %s at %s: %w", metric, it.Time.Format(time.RFC3339), err)
			}
			if n, _ := r.RowsAffected(); n > 0 {
				res.Inserted++
				stored++
				continue
			}
			r, err = upd.ExecContext(ctx, deviceID, resolution, start, it.UTCOffsetSeconds, metric, v, now)
			if err != nil {
				return res, fmt.Errorf("save history page: update %s at %s: %w", metric, it.Time.Format(time.RFC3339), err)
			}
			if n, _ := r.RowsAffected(); n > 0 {
				res.Updated++
			}
			stored++
		}
		if stored == 0 {
			res.Skipped++
			continue
		}
		if it.Time.After(newest) {
			newest = it.Time
		}
	}

	cp.DeviceID, cp.Resolution = deviceID, resolution
	if newest.After(cp.LastPeriod) {
		cp.LastPeriod = newest
	}
	if cp.UpdatedAt.IsZero() {
		cp.UpdatedAt = tx.now
	}
	if err := putCheckpoint(ctx, tx, cp); err != nil {
		return res, fmt.Errorf("save history page: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return res, fmt.Errorf("save history page: commit: %w", err)
	}
	return res, nil
}

func inWindow(t, start, end time.Time) bool {
	if t.IsZero() {
		return false
	}
	if !start.IsZero() && t.Before(start) {
		return false
	}
	if !end.IsZero() && !t.Before(end) {
		return false
	}
	return true
}

func putCheckpoint(ctx context.Context, tx *tx, cp model.HistoryCheckpoint) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO history_checkpoints (device_id, resolution, home_id, next_url,
    last_period, backfill_done, updated_at, last_error)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
ON CONFLICT (device_id, resolution) DO UPDATE SET
    home_id = excluded.home_id,
    next_url = excluded.next_url,
    last_period = CASE
        WHEN history_checkpoints.last_period IS NULL THEN excluded.last_period
        WHEN excluded.last_period IS NULL THEN history_checkpoints.last_period
        ELSE max(history_checkpoints.last_period, excluded.last_period) END,
    backfill_done = excluded.backfill_done,
    updated_at = excluded.updated_at,
    last_error = excluded.last_error`,
		cp.DeviceID, cp.Resolution, cp.HomeID, cp.NextURL, ms(cp.LastPeriod), cp.BackfillDone,
		cp.UpdatedAt.UnixMilli(), nullText(cp.LastError))
	if err != nil {
		return fmt.Errorf("save checkpoint %q/%s: %w", cp.DeviceID, cp.Resolution, err)
	}
	return nil
}

// HistoryCheckpoint returns the stored progress of one (device, resolution)
// stream; false when there is none yet.
func (db *DB) HistoryCheckpoint(ctx context.Context, deviceID, resolution string) (model.HistoryCheckpoint, bool, error) {
	cp := model.HistoryCheckpoint{DeviceID: deviceID, Resolution: resolution}
	var (
		last, updated sql.NullInt64
		lastErr       sql.NullString
	)
	err := db.sql.QueryRowContext(ctx, `SELECT
    home_id,
    next_url,
    last_period,
    backfill_done,
    updated_at,
    last_error
FROM history_checkpoints
WHERE device_id = ?1 AND resolution = ?2`, deviceID, resolution).Scan(
		&cp.HomeID, &cp.NextURL, &last, &cp.BackfillDone, &updated, &lastErr)
	switch {
	case err == sql.ErrNoRows:
		return model.HistoryCheckpoint{}, false, nil
	case err != nil:
		return model.HistoryCheckpoint{}, false, fmt.Errorf("history checkpoint %q/%s: %w", deviceID, resolution, err)
	}
	cp.LastPeriod = fromMS(last)
	cp.UpdatedAt = fromMS(updated)
	cp.LastError = lastErr.String
	return cp, true, nil
}

// LatestHistoryPeriod returns the newest stored period start of one
// (device, resolution) stream; false when it has none.
func (db *DB) LatestHistoryPeriod(ctx context.Context, deviceID, resolution string) (time.Time, bool, error) {
	var v sql.NullInt64
	if err := db.sql.QueryRowContext(ctx, `SELECT max(period_start) FROM device_history
WHERE device_id = ?1 AND resolution = ?2`, deviceID, resolution).Scan(&v); err != nil {
		return time.Time{}, false, fmt.Errorf("latest history period %q/%s: %w", deviceID, resolution, err)
	}
	if !v.Valid {
		return time.Time{}, false, nil
	}
	return fromMS(v), true, nil
}
