package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"slices"

	"github.com/tibbersync/tibbersync/internal/model"
)

// RecordRun writes a run that stored no batch (failed, skipped, or a
// history run whose pages were saved on their own) and returns its id. A run
// with an ID (written by StartRun) is finished in place.
func (db *DB) RecordRun(ctx context.Context, run model.Run) (int64, error) {
	tx, err := db.begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("record run: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	id, err := insertRun(ctx, tx, run)
	if err != nil {
		return 0, fmt.Errorf("record run: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("record run: commit: %w", err)
	}
	return id, nil
}

// insertRun writes run's row: it finishes the row StartRun wrote when run.ID
// is set (and that row exists), else it inserts one.
func insertRun(ctx context.Context, tx *tx, run model.Run) (int64, error) {
	started := run.StartedAt
	if started.IsZero() {
		started = tx.now
	}
	finished := run.FinishedAt
	if finished.IsZero() {
		finished = tx.now
	}
	var progress any
	if run.Progress != nil {
		b, err := json.Marshal(run.Progress)
		if err != nil {
			return 0, fmt.Errorf("%s run progress: %w", run.Job, err)
		}
		progress = string(b)
	}
	if run.ID != 0 {
		res, err := tx.ExecContext(ctx, `UPDATE sync_runs
SET finished_at = ?2, status = ?3, error = ?4, requests = ?5, rows_written = ?6, progress = coalesce(?8, progress)
WHERE id = ?1 AND job = ?7`,
			run.ID, finished.UnixMilli(), run.Status, nullText(run.Error), run.Requests, run.RowsWritten, run.Job, progress)
		if err != nil {
			return 0, fmt.Errorf("finish %s run %d: %w", run.Job, run.ID, err)
		}
		if n, err := res.RowsAffected(); err == nil && n == 1 {
			return run.ID, nil
		}
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO sync_runs (job, started_at, finished_at, status, error, requests, rows_written, progress)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)`,
		run.Job, started.UnixMilli(), finished.UnixMilli(), run.Status, nullText(run.Error), run.Requests, run.RowsWritten, progress)
	if err != nil {
		return 0, fmt.Errorf("insert %s run: %w", run.Job, err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("insert %s run: id: %w", run.Job, err)
	}
	return id, nil
}

// StartRun writes the row of a run that has just started, with status
// "running" and this process's id, and returns its id. RecordRun and
// SaveInventory finish it in place when given a run with that ID.
func (db *DB) StartRun(ctx context.Context, run model.Run) (int64, error) {
	tx, err := db.begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("start run: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	started := run.StartedAt
	if started.IsZero() {
		started = tx.now
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO sync_runs (job, started_at, status, pid)
VALUES (?1, ?2, 'running', ?3)`, run.Job, started.UnixMilli(), os.Getpid())
	if err != nil {
		return 0, fmt.Errorf("start %s run: %w", run.Job, err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("start %s run: id: %w", run.Job, err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("start %s run: commit: %w", run.Job, err)
	}
	return id, nil
}

// UpdateRunProgress records the progress of the running run id. A run that
// is no longer running is left alone.
func (db *DB) UpdateRunProgress(ctx context.Context, id int64, p model.RunProgress) error {
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("run progress: %w", err)
	}
	tx, err := db.begin(ctx)
	if err != nil {
		return fmt.Errorf("run progress: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `UPDATE sync_runs SET progress = ?2, requests = ?3, rows_written = ?4
WHERE id = ?1 AND status = 'running'`, id, string(b), p.Requests, p.RowsWritten); err != nil {
		return fmt.Errorf("run progress of run %d: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("run progress of run %d: commit: %w", id, err)
	}
	return nil
}

// InterruptedReason is the error text of a run closed by CloseStaleRuns.
const InterruptedReason = "interrupted: the process running it ended before the run finished (crash, kill or power loss)"

// CloseStaleRuns marks as interrupted every "running" row whose process is
// gone: its pid is unknown, is this process's own (a previous life with the
// same pid, as in a container) or alive says it no longer runs. It returns
// how many rows it closed. Call it at start-up, before starting runs.
func (db *DB) CloseStaleRuns(ctx context.Context, alive func(pid int) bool) (int, error) {
	tx, err := db.begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("close stale runs: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	rows, err := tx.QueryContext(ctx, `SELECT id, pid FROM sync_runs WHERE status = 'running'`)
	if err != nil {
		return 0, fmt.Errorf("close stale runs: %w", err)
	}
	var stale []int64
	own := os.Getpid()
	for rows.Next() {
		var id int64
		var pid sql.NullInt64
		if err := rows.Scan(&id, &pid); err != nil {
			_ = rows.Close()
			return 0, fmt.Errorf("close stale runs: %w", err)
		}
		if !pid.Valid || int(pid.Int64) == own || alive == nil || !alive(int(pid.Int64)) {
			stale = append(stale, id)
		}
	}
	_ = rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("close stale runs: %w", err)
	}
	for _, id := range stale {
		if _, err := tx.ExecContext(ctx, `UPDATE sync_runs
SET status = 'interrupted', finished_at = coalesce(finished_at, ?2), error = ?3
WHERE id = ?1`, id, tx.now.UnixMilli(), InterruptedReason); err != nil {
			return 0, fmt.Errorf("close stale run %d: %w", id, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("close stale runs: commit: %w", err)
	}
	return len(stale), nil
}

// JobState returns the persisted scheduling state of job; a job never saved
// has the zero state (with Job set).
func (db *DB) JobState(ctx context.Context, job string) (model.JobState, error) {
	s := model.JobState{Job: job}
	var (
		next, last, success, breaker sql.NullInt64
		lastErr                      sql.NullString
	)
	err := db.sql.QueryRowContext(ctx, `SELECT
    next_run_at,
    last_run_at,
    last_success_at,
    consecutive_failures,
    breaker_until,
    last_error
FROM job_state
WHERE job = ?1`, job).Scan(&next, &last, &success, &s.ConsecutiveFailures, &breaker, &lastErr)
	switch {
	case err == sql.ErrNoRows:
		return s, nil
	case err != nil:
		return model.JobState{}, fmt.Errorf("job state %q: %w", job, err)
	}
	s.NextRunAt = fromMS(next)
	s.LastRunAt = fromMS(last)
	s.LastSuccessAt = fromMS(success)
	s.BreakerUntil = fromMS(breaker)
	s.LastError = lastErr.String
	return s, nil
}

// SaveJobState upserts the scheduling state of s.Job.
func (db *DB) SaveJobState(ctx context.Context, s model.JobState) error {
	if s.Job == "" {
		return fmt.Errorf("save job state: empty job name")
	}
	tx, err := db.begin(ctx)
	if err != nil {
		return fmt.Errorf("save job state: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `INSERT INTO job_state (job, next_run_at, last_run_at, last_success_at,
    consecutive_failures, breaker_until, last_error, updated_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
ON CONFLICT (job) DO UPDATE SET
    next_run_at = excluded.next_run_at,
    last_run_at = excluded.last_run_at,
    last_success_at = excluded.last_success_at,
    consecutive_failures = excluded.consecutive_failures,
    breaker_until = excluded.breaker_until,
    last_error = excluded.last_error,
    updated_at = excluded.updated_at`,
		s.Job, ms(s.NextRunAt), ms(s.LastRunAt), ms(s.LastSuccessAt), s.ConsecutiveFailures,
		ms(s.BreakerUntil), nullText(s.LastError), tx.now.UnixMilli()); err != nil {
		return fmt.Errorf("save job state %q: %w", s.Job, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("save job state %q: commit: %w", s.Job, err)
	}
	return nil
}

// sortedKeys returns m's keys in order, so that batches write in a
// deterministic order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, cmp.Compare[string])
	return keys
}
