package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"log/slog"
	"time"
)

// legacyHistoryTable is where migration 0005 put the rows of the old
// device_history table until they are converted.
const legacyHistoryTable = "device_history_legacy"

// DefaultConvertBatch is how many legacy history rows one conversion
// transaction moves.
const DefaultConvertBatch = 20000

// ConvertProgress reports the one-off history conversion: done of total
// legacy rows moved so far (total is counted once, when the conversion
// starts or resumes, and counts the rows still to move then).
type ConvertProgress struct {
	Done, Total int64
	// Finished is set on the last call, after the legacy table is gone.
	Finished bool
}

// convertLegacyHistory moves the rows of device_history_legacy into the
// compact layout (history_series, history_writes, history_values,
// history_revisions), batch rows per BEGIN IMMEDIATE transaction: each
// batch inserts the first batch rows (in primary-key order) into the new
// tables and deletes them from the legacy table in the same transaction,
// so a kill at any point loses nothing and the next Open resumes where
// the last committed batch ended. The freed pages are reused by the new
// tables, so the file does not grow. The legacy table is dropped once it
// is empty.
func (db *DB) convertLegacyHistory(ctx context.Context, batch int, progress func(ConvertProgress)) error {
	var n int
	if err := db.sql.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1`,
		legacyHistoryTable).Scan(&n); err != nil {
		return fmt.Errorf("convert history: %w", err)
	}
	if n == 0 {
		return nil
	}
	if batch <= 0 {
		batch = DefaultConvertBatch
	}
	if progress == nil {
		progress = func(ConvertProgress) {}
	}
	var p ConvertProgress
	if err := db.sql.QueryRowContext(ctx, `SELECT count(*) FROM device_history_legacy`).Scan(&p.Total); err != nil {
		return fmt.Errorf("convert history: count: %w", err)
	}
	var odd int64
	if err := db.sql.QueryRowContext(ctx, `SELECT count(*) FROM device_history_legacy WHERE period_start % 1000 <> 0`).Scan(&odd); err != nil {
		return fmt.Errorf("convert history: check: %w", err)
	}
	if odd > 0 {
		return fmt.Errorf("convert history: %d device_history rows have a period_start that is not a whole second; nothing was converted, data.db is unchanged (report this)", odd)
	}
	if p.Total == 0 {
		// A new file, or one with no history: nothing to move or compact.
		if _, err := db.sql.ExecContext(ctx, `DROP TABLE device_history_legacy`); err != nil {
			return fmt.Errorf("convert history: %w", err)
		}
		_, err := db.sql.ExecContext(ctx, `DELETE FROM counters WHERE name IN ('inserted:device_history_legacy', 'deleted:device_history_legacy')`)
		return err
	}
	db.log.Info("converting history to the compact layout", "rows", p.Total, "batch", batch)
	// Finds the history_writes row of a legacy inserted_at; dropped again
	// when the conversion ends.
	if _, err := db.sql.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS history_writes_convert ON history_writes (written_at)`); err != nil {
		return fmt.Errorf("convert history: %w", err)
	}
	progress(p)
	for {
		moved, err := db.convertBatch(ctx, batch)
		if err != nil {
			return fmt.Errorf("convert history after %d of %d rows (the next start resumes): %w", p.Done, p.Total, err)
		}
		if moved == 0 {
			break
		}
		p.Done += moved
		progress(p)
	}
	tx, err := db.begin(ctx)
	if err != nil {
		return fmt.Errorf("convert history: finish: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	for _, q := range []string{
		`DROP TABLE device_history_legacy`,
		`DROP INDEX IF EXISTS history_writes_convert`,
		`DELETE FROM counters WHERE name IN ('inserted:device_history_legacy', 'deleted:device_history_legacy')`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("convert history: finish: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("convert history: finish: commit: %w", err)
	}
	db.log.Info("history converted to the compact layout", "rows", p.Done)
	if err := db.compactAfterConversion(ctx); err != nil {
		// The conversion is committed; only the file stays large.
		db.log.Warn("compact data.db after the history conversion", "err", err)
	}
	p.Finished = true
	progress(p)
	return nil
}

// compactAfterConversion gives the pages the old layout freed back to the
// file system (VACUUM) when they are more than a quarter of the file: the
// converted history needs about a fifth of the space. VACUUM rebuilds the
// file through a temporary copy; for this one statement the temporary copy
// goes to a file instead of memory (temp_store), so the daemon's memory
// stays small. A kill during VACUUM leaves the uncompacted file, which
// works the same.
func (db *DB) compactAfterConversion(ctx context.Context) error {
	var pages, free int64
	if err := db.sql.QueryRowContext(ctx, `SELECT (SELECT page_count FROM pragma_page_count), (SELECT freelist_count FROM pragma_freelist_count)`).Scan(&pages, &free); err != nil {
		return err
	}
	if free*4 <= pages {
		return nil
	}
	db.log.Info("compacting data.db after the history conversion", "pages", pages, "free_pages", free)
	conn, err := db.sql.Conn(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	if _, err := conn.ExecContext(ctx, `PRAGMA temp_store = FILE`); err != nil {
		return err
	}
	_, vacErr := conn.ExecContext(ctx, `VACUUM`)
	// Back to the checked setting (R13) whatever VACUUM did.
	if _, err := conn.ExecContext(context.WithoutCancel(ctx), `PRAGMA temp_store = MEMORY`); err != nil {
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		return fmt.Errorf("restore temp_store: %w", err)
	}
	if vacErr != nil {
		return fmt.Errorf("vacuum: %w", vacErr)
	}
	// In WAL mode the rebuilt file is in the WAL until a checkpoint copies
	// it back and truncates data.db.
	if _, err := conn.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		return fmt.Errorf("checkpoint after vacuum: %w", err)
	}
	var after int64
	if err := conn.QueryRowContext(ctx, `PRAGMA page_count`).Scan(&after); err == nil {
		db.log.Info("data.db compacted", "pages_before", pages, "pages_after", after)
	}
	return nil
}

// convertBatch moves the first batch legacy rows in one transaction and
// returns how many it moved (0 when the legacy table is empty).
func (db *DB) convertBatch(ctx context.Context, batch int) (int64, error) {
	tx, err := db.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback() }()

	// The batch is every row up to and including the batch-th key.
	var (
		dev, res, metric string
		start            int64
		bounded          = true
	)
	err = tx.QueryRowContext(ctx, `SELECT device_id, resolution, period_start, metric FROM device_history_legacy
ORDER BY device_id, resolution, period_start, metric LIMIT 1 OFFSET ?1`, batch-1).Scan(&dev, &res, &start, &metric)
	switch {
	case err == sql.ErrNoRows:
		bounded = false
	case err != nil:
		return 0, fmt.Errorf("find batch: %w", err)
	}
	where := `WHERE (l.device_id, l.resolution, l.period_start, l.metric) <= (?1, ?2, ?3, ?4)`
	args := []any{dev, res, start, metric}
	if !bounded {
		where, args = `WHERE 1`, nil
	}
	steps := []struct{ what, sql string }{
		{"series", `INSERT INTO history_series (device_id, resolution, metric)
SELECT DISTINCT l.device_id, l.resolution, l.metric FROM device_history_legacy AS l ` + where + `
ON CONFLICT (device_id, resolution, metric) DO NOTHING`},
		{"writes", `INSERT INTO history_writes (written_at)
SELECT DISTINCT l.inserted_at FROM device_history_legacy AS l ` + where + `
  AND NOT EXISTS (SELECT 1 FROM history_writes AS w WHERE w.written_at = l.inserted_at)`},
		{"values", `INSERT INTO history_values (series_id, period_s, utc_offset_s, value, write_id)
SELECT s.id, l.period_start / 1000, l.utc_offset_s, l.value,
       (SELECT min(w.id) FROM history_writes AS w WHERE w.written_at = l.inserted_at)
FROM device_history_legacy AS l
JOIN history_series AS s ON s.device_id = l.device_id AND s.resolution = l.resolution AND s.metric = l.metric ` + where},
		{"revisions", `INSERT INTO history_revisions (series_id, period_s, revisions, updated_at, previous_value)
SELECT s.id, l.period_start / 1000, l.revisions, l.updated_at, NULL
FROM device_history_legacy AS l
JOIN history_series AS s ON s.device_id = l.device_id AND s.resolution = l.resolution AND s.metric = l.metric ` + where + `
  AND l.revisions > 0`},
	}
	for _, s := range steps {
		if _, err := tx.ExecContext(ctx, s.sql, args...); err != nil {
			return 0, fmt.Errorf("copy %s: %w", s.what, err)
		}
	}
	r, err := tx.ExecContext(ctx, `DELETE FROM device_history_legacy AS l `+where, args...)
	if err != nil {
		return 0, fmt.Errorf("delete moved rows: %w", err)
	}
	moved, err := r.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("delete moved rows: %w", err)
	}
	// Every moved row is one history value.
	if err := addInserted(ctx, tx, "history_values", moved); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}
	return moved, nil
}

// LogProgress returns a progress function that logs the conversion at
// info level: the first and last calls, and at most one line every five
// seconds in between (on a terminal the daemon's log is the terminal).
func LogProgress(log *slog.Logger, now func() time.Time) func(ConvertProgress) {
	var last time.Time
	return func(p ConvertProgress) {
		t := now()
		if !p.Finished && p.Done != 0 && t.Sub(last) < 5*time.Second {
			return
		}
		last = t
		if p.Finished {
			return // convertLegacyHistory logs the end itself
		}
		pct := 100.0
		if p.Total > 0 {
			pct = float64(p.Done) * 100 / float64(p.Total)
		}
		log.Info(fmt.Sprintf("converting history to the compact layout: %d of %d values (%.0f%%)", p.Done, p.Total, pct))
	}
}
