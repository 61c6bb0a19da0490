package store

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"

	"github.com/tibbersync/tibbersync/internal/model"
)

// RecordRun writes a run that stored no batch (failed, skipped, or a
// history run whose pages were saved on their own) and returns its id.
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

func insertRun(ctx context.Context, tx *tx, run model.Run) (int64, error) {
	started := run.StartedAt
	if started.IsZero() {
		started = tx.now
	}
	finished := run.FinishedAt
	if finished.IsZero() {
		finished = tx.now
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO sync_runs (job, started_at, finished_at, status, error, requests, rows_written)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)`,
		run.Job, started.UnixMilli(), finished.UnixMilli(), run.Status, nullText(run.Error), run.Requests, run.RowsWritten)
	if err != nil {
		return 0, fmt.Errorf("insert %s run: %w", run.Job, err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("insert %s run: id: %w", run.Job, err)
	}
	return id, nil
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
