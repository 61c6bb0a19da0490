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
// Each (period, metric) is inserted once into history_values; a later page
// that brings a different value (Tibber back-fills) updates it, records the
// correction in history_revisions and counts as Updated; the same value
// again writes nothing. Items whose period does not start on a whole second
// are skipped. cp.LastPeriod is
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

	w, err := newHistoryWriter(ctx, tx, deviceID, resolution)
	if err != nil {
		return res, fmt.Errorf("save history page: %w", err)
	}
	defer w.close()

	var newest time.Time
	for _, it := range page.Items {
		if !inWindow(it.Time, page.EffectiveStart, page.EffectiveEnd) || it.Time.Nanosecond() != 0 {
			// Periods start on whole seconds; anything else is not a period.
			res.Skipped++
			continue
		}
		stored := 0
		for metric, v := range it.Metrics {
			if metric == "" || math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			change, err := w.put(ctx, metric, it.Time.Unix(), it.UTCOffsetSeconds, v)
			if err != nil {
				return res, fmt.Errorf("save history page: %s at %s: %w", metric, it.Time.Format(time.RFC3339), err)
			}
			switch change {
			case inserted:
				res.Inserted++
			case updated:
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
	if err := w.finish(ctx); err != nil {
		return res, fmt.Errorf("save history page: %w", err)
	}
	if err := addInserted(ctx, tx, "history_values", int64(res.Inserted)); err != nil {
		return res, fmt.Errorf("save history page: %w", err)
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
	if err := db.sql.QueryRowContext(ctx, `SELECT max(v.period_s) FROM history_series AS s
JOIN history_values AS v ON v.series_id = s.id
WHERE s.device_id = ?1 AND s.resolution = ?2`, deviceID, resolution).Scan(&v); err != nil {
		return time.Time{}, false, fmt.Errorf("latest history period %q/%s: %w", deviceID, resolution, err)
	}
	if !v.Valid {
		return time.Time{}, false, nil
	}
	return time.Unix(v.Int64, 0).UTC(), true, nil
}

// change is what writing one history value did.
type change int

const (
	unchanged change = iota
	inserted
	updated
)

// historyWriter writes the values of one (device, resolution) stream
// within one transaction: it finds or creates each metric's series once,
// and stamps new values with the transaction's history_writes row, which
// it creates only when the transaction stored a new value.
type historyWriter struct {
	tx                                         *tx
	device, res                                string
	series                                     map[string]int64
	writeID                                    int64
	wrote                                      bool
	findSeries, addSeries, ins, read, upd, rev *sql.Stmt
}

func newHistoryWriter(ctx context.Context, t *tx, deviceID, resolution string) (*historyWriter, error) {
	w := &historyWriter{tx: t, device: deviceID, res: resolution, series: map[string]int64{}}
	// The id the write row will get if this transaction stores a value:
	// ids only grow, and this is the only writer (BEGIN IMMEDIATE).
	if err := t.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) + 1 FROM history_writes`).Scan(&w.writeID); err != nil {
		return nil, fmt.Errorf("next write id: %w", err)
	}
	for _, p := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&w.findSeries, `SELECT id FROM history_series WHERE device_id = ?1 AND resolution = ?2 AND metric = ?3`},
		{&w.addSeries, `INSERT INTO history_series (device_id, resolution, metric) VALUES (?1, ?2, ?3)`},
		{&w.ins, `INSERT INTO history_values (series_id, period_s, utc_offset_s, value, write_id)
VALUES (?1, ?2, ?3, ?4, ?5)
ON CONFLICT (series_id, period_s) DO NOTHING`},
		{&w.read, `SELECT value, utc_offset_s FROM history_values WHERE series_id = ?1 AND period_s = ?2`},
		{&w.upd, `UPDATE history_values SET value = ?3, utc_offset_s = ?4 WHERE series_id = ?1 AND period_s = ?2`},
		{&w.rev, `INSERT INTO history_revisions (series_id, period_s, revisions, updated_at, previous_value)
VALUES (?1, ?2, 1, ?3, ?4)
ON CONFLICT (series_id, period_s) DO UPDATE SET
    revisions = revisions + 1,
    updated_at = excluded.updated_at,
    previous_value = excluded.previous_value`},
	} {
		st, err := t.PrepareContext(ctx, p.sql)
		if err != nil {
			w.close()
			return nil, fmt.Errorf("prepare: %w", err)
		}
		*p.dst = st
	}
	return w, nil
}

func (w *historyWriter) close() {
	for _, st := range []*sql.Stmt{w.findSeries, w.addSeries, w.ins, w.read, w.upd, w.rev} {
		if st != nil {
			_ = st.Close()
		}
	}
}

// seriesID finds or creates the series of metric.
func (w *historyWriter) seriesID(ctx context.Context, metric string) (int64, error) {
	if id, ok := w.series[metric]; ok {
		return id, nil
	}
	var id int64
	err := w.findSeries.QueryRowContext(ctx, w.device, w.res, metric).Scan(&id)
	if err == sql.ErrNoRows {
		r, ierr := w.addSeries.ExecContext(ctx, w.device, w.res, metric)
		if ierr != nil {
			return 0, fmt.Errorf("add series: %w", ierr)
		}
		id, err = r.LastInsertId()
	}
	if err != nil {
		return 0, fmt.Errorf("find series: %w", err)
	}
	w.series[metric] = id
	return id, nil
}

// put stores one value: inserted when new, updated (and a revision
// recorded) when Tibber changed it, nothing when it is the same (0 and -0
// are the same).
func (w *historyWriter) put(ctx context.Context, metric string, periodS int64, offset int, v float64) (change, error) {
	sid, err := w.seriesID(ctx, metric)
	if err != nil {
		return unchanged, err
	}
	r, err := w.ins.ExecContext(ctx, sid, periodS, offset, v, w.writeID)
	if err != nil {
		return unchanged, fmt.Errorf("insert: %w", err)
	}
	if n, _ := r.RowsAffected(); n > 0 {
		w.wrote = true
		return inserted, nil
	}
	var (
		old       float64
		oldOffset int
	)
	if err := w.read.QueryRowContext(ctx, sid, periodS).Scan(&old, &oldOffset); err != nil {
		return unchanged, fmt.Errorf("read stored value: %w", err)
	}
	if old == v && oldOffset == offset {
		return unchanged, nil
	}
	if _, err := w.upd.ExecContext(ctx, sid, periodS, v, offset); err != nil {
		return unchanged, fmt.Errorf("update: %w", err)
	}
	if _, err := w.rev.ExecContext(ctx, sid, periodS, w.tx.now.UnixMilli(), old); err != nil {
		return unchanged, fmt.Errorf("record revision: %w", err)
	}
	return updated, nil
}

// finish creates the write row the new values point at, if there are any.
func (w *historyWriter) finish(ctx context.Context) error {
	if !w.wrote {
		return nil
	}
	if _, err := w.tx.ExecContext(ctx, `INSERT INTO history_writes (id, written_at) VALUES (?1, ?2)`,
		w.writeID, w.tx.now.UnixMilli()); err != nil {
		return fmt.Errorf("record write: %w", err)
	}
	return nil
}
