package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
)

// knownJobs are the jobs Summary always lists, in display order.
func knownJobs() []string { return []string{"homes", "devices", "history"} }

// Summary reads the state the status page, `status --json`, /readyz and
// /metrics show, in one read transaction. Token expiry fields come from the
// metadata the token source mirrors into auth_status (never the tokens).
func (db *DB) Summary(ctx context.Context) (model.Summary, error) {
	s := model.Summary{
		GeneratedAt: db.clock.Now().UTC(),
		Tables:      map[string]int64{},
		Categories:  map[model.Category]string{},
		Jobs:        []model.JobSummary{},
		Devices:     []model.DeviceSummary{},
	}
	tx, err := db.beginRead(ctx)
	if err != nil {
		return s, fmt.Errorf("summary: %w", err)
	}
	defer func() { _ = tx.Rollback() }()

	st, err := authStatus(ctx, tx)
	if err != nil {
		return s, fmt.Errorf("summary: %w", err)
	}
	s.Auth = model.AuthSummary{
		State:         st.State,
		Reason:        st.Reason,
		Since:         st.Since,
		GrantedScopes: st.GrantedScopes,
		Email:         st.Email,
		// Token metadata mirrored from tokens.db; refresh tokens live ~30 days.
		AccessExpiresAt: st.AccessExpiresAt,
		RefreshIssuedAt: st.RefreshIssuedAt,
	}
	if !st.RefreshIssuedAt.IsZero() {
		s.Auth.RefreshExpiresEst = st.RefreshIssuedAt.Add(model.RefreshLifetimeEstimate)
	}
	if s.Auth.GrantedScopes == nil {
		s.Auth.GrantedScopes = []string{}
	}
	if err := summaryCategories(ctx, tx, &s); err != nil {
		return s, fmt.Errorf("summary: %w", err)
	}
	if err := summaryJobs(ctx, tx, &s); err != nil {
		return s, fmt.Errorf("summary: %w", err)
	}
	if err := summaryTables(ctx, tx, &s); err != nil {
		return s, fmt.Errorf("summary: %w", err)
	}
	if err := summaryDevices(ctx, tx, &s); err != nil {
		return s, fmt.Errorf("summary: %w", err)
	}
	if s.DataDBBytes, err = fileSize(db.path); err != nil {
		return s, fmt.Errorf("summary: %w", err)
	}
	if s.WALBytes, err = fileSize(db.path + "-wal"); err != nil {
		return s, fmt.Errorf("summary: %w", err)
	}
	return s, nil
}

// fileSize is os.Stat's size, 0 for a file that does not exist (R18: the
// only os call this package makes on database files).
func fileSize(path string) (int64, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("stat %q: %w", path, err)
	}
	return fi.Size(), nil
}

// summaryCategories says which categories the token can see: from
// category_access (written by the devices job), else from the granted
// scopes recorded with the auth state. Missing scopes are those the granted
// scopes lack (when known) and those of categories category_access says are
// not granted (a 403 proved it, even when the granted scopes are unknown).
func summaryCategories(ctx context.Context, tx *sql.Tx, s *model.Summary) error {
	rows, err := tx.QueryContext(ctx, `SELECT category, granted FROM category_access ORDER BY category`)
	if err != nil {
		return fmt.Errorf("category access: %w", err)
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var c string
		var g bool
		if err := rows.Scan(&c, &g); err != nil {
			return fmt.Errorf("category access: %w", err)
		}
		s.Categories[model.Category(c)] = grantedWord(g)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("category access: %w", err)
	}
	granted := s.Auth.GrantedScopes
	missing := map[model.Category]bool{}
	if len(granted) > 0 {
		for _, c := range model.MissingCategories(granted) {
			missing[c] = true
		}
		if len(s.Categories) == 0 {
			for _, c := range model.AllCategories {
				s.Categories[c] = grantedWord(!missing[c])
			}
		}
	}
	// A category the API refused (403) is missing too, whether the granted
	// scopes are unknown or claim it.
	for c, v := range s.Categories {
		if v != grantedWord(true) {
			missing[c] = true
		}
	}
	for _, c := range model.AllCategories {
		if missing[c] {
			s.Auth.MissingScopes = append(s.Auth.MissingScopes, model.CategoryScopes[c])
		}
	}
	return nil
}

func grantedWord(g bool) string {
	if g {
		return "granted"
	}
	return "not granted"
}

func summaryJobs(ctx context.Context, tx *sql.Tx, s *model.Summary) error {
	names := knownJobs()
	rows, err := tx.QueryContext(ctx, `SELECT job FROM job_state ORDER BY job`)
	if err != nil {
		return fmt.Errorf("jobs: %w", err)
	}
	for rows.Next() {
		var j string
		if err := rows.Scan(&j); err != nil {
			_ = rows.Close()
			return fmt.Errorf("jobs: %w", err)
		}
		if !contains(names, j) {
			names = append(names, j)
		}
	}
	_ = rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("jobs: %w", err)
	}
	for _, name := range names {
		j := model.JobSummary{Job: name}
		var (
			next, last, success, breaker sql.NullInt64
			lastErr                      sql.NullString
		)
		err := tx.QueryRowContext(ctx, `SELECT
    next_run_at,
    last_run_at,
    last_success_at,
    consecutive_failures,
    breaker_until,
    last_error
FROM job_state
WHERE job = ?1`, name).Scan(&next, &last, &success, &j.ConsecutiveFailures, &breaker, &lastErr)
		if err != nil && err != sql.ErrNoRows {
			return fmt.Errorf("job %s state: %w", name, err)
		}
		j.NextRunAt, j.LastRunAt, j.LastSuccessAt, j.BreakerUntil = fromMS(next), fromMS(last), fromMS(success), fromMS(breaker)
		j.LastError = lastErr.String

		var (
			started, finished sql.NullInt64
			status            string
			runErr, progress  sql.NullString
		)
		err = tx.QueryRowContext(ctx, `SELECT
    started_at,
    finished_at,
    status,
    error,
    requests,
    rows_written,
    progress
FROM sync_runs
WHERE job = ?1 AND status <> 'running'
ORDER BY started_at DESC, id DESC
LIMIT 1`, name).Scan(&started, &finished, &status, &runErr, &j.LastRequests, &j.LastRowsWritten, &progress)
		if progress.Valid && progress.String != "" {
			var p model.RunProgress
			if json.Unmarshal([]byte(progress.String), &p) == nil {
				j.LastProgress = &p
			}
		}
		switch {
		case err == sql.ErrNoRows:
		case err != nil:
			return fmt.Errorf("job %s last run: %w", name, err)
		default:
			j.LastStatus = status
			if j.LastRunAt.IsZero() {
				j.LastRunAt = fromMS(started)
			}
			if j.LastError == "" {
				j.LastError = runErr.String
			}
		}
		if err := summaryRunning(ctx, tx, &j); err != nil {
			return err
		}
		if j.RowsWrittenTotal, err = rowsWrittenTotal(ctx, tx, name); err != nil {
			return fmt.Errorf("job %s rows written: %w", name, err)
		}
		if j.LastSuccessAt.IsZero() {
			// The newest ok run, walking sync_runs_by_job backwards; a job
			// whose last success is unknown has few runs.
			var ok sql.NullInt64
			err := tx.QueryRowContext(ctx, `SELECT finished_at FROM sync_runs WHERE job = ?1 AND status IN ('ok', 'partial')
ORDER BY started_at DESC LIMIT 1`, name).Scan(&ok)
			if err != nil && err != sql.ErrNoRows {
				return fmt.Errorf("job %s last success: %w", name, err)
			}
			j.LastSuccessAt = fromMS(ok)
		}
		s.Jobs = append(s.Jobs, j)
	}
	return nil
}

// summaryRunning fills in the run of j.Job in progress, if any: the newest
// "running" row (a crashed process's row is closed at the next start).
func summaryRunning(ctx context.Context, tx *sql.Tx, j *model.JobSummary) error {
	var (
		started  int64
		progress sql.NullString
		requests int
		rows     int
	)
	// Only the job's newest run can be in progress (a job never runs twice
	// at once, and a dead process's row is closed at the next start), so
	// this reads one index entry, not every run of the job.
	err := tx.QueryRowContext(ctx, `SELECT started_at, progress, requests, rows_written
FROM (SELECT started_at, progress, requests, rows_written, status
      FROM sync_runs WHERE job = ?1 ORDER BY started_at DESC, id DESC LIMIT 1)
WHERE status = 'running'`, j.Job).Scan(&started, &progress, &requests, &rows)
	switch {
	case err == sql.ErrNoRows:
		return nil
	case err != nil:
		return fmt.Errorf("job %s run in progress: %w", j.Job, err)
	}
	j.Running = true
	j.RunningSince = time.UnixMilli(started).UTC()
	p := model.RunProgress{Fraction: -1, Requests: requests, RowsWritten: rows}
	if progress.Valid && progress.String != "" {
		// Written by this program; a row it cannot read shows as unknown progress.
		_ = json.Unmarshal([]byte(progress.String), &p)
	}
	j.Progress = &p
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// summaryTables reports the rows of every table in the schema from the
// counters the write transactions keep (O(1) in the table sizes), plus
// device_history, the view over history_values. Only a table without a
// counter (a file opened read-only that no writer of this release has
// opened yet) is counted.
func summaryTables(ctx context.Context, tx *sql.Tx, s *model.Summary) error {
	rows, err := tx.QueryContext(ctx, `SELECT t.name, i.value - d.value FROM sqlite_master AS t
LEFT JOIN counters AS i ON i.name = 'inserted:' || t.name
LEFT JOIN counters AS d ON d.name = 'deleted:' || t.name
WHERE t.type = 'table' AND t.name NOT LIKE 'sqlite\_%' ESCAPE '\' ORDER BY t.name`)
	if err != nil && strings.Contains(err.Error(), "no such table: counters") {
		rows, err = tx.QueryContext(ctx, `SELECT name, NULL FROM sqlite_master
WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\' ORDER BY name`)
	}
	if err != nil {
		return fmt.Errorf("list tables: %w", err)
	}
	var uncounted []string
	for rows.Next() {
		var (
			n string
			c sql.NullInt64
		)
		if err := rows.Scan(&n, &c); err != nil {
			_ = rows.Close()
			return fmt.Errorf("list tables: %w", err)
		}
		if c.Valid {
			s.Tables[n] = c.Int64
		} else {
			uncounted = append(uncounted, n)
		}
	}
	_ = rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list tables: %w", err)
	}
	for _, n := range uncounted {
		var c int64
		// n comes from sqlite_master; quoting keeps any name a single identifier.
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM `+quoteIdent(n)).Scan(&c); err != nil {
			return fmt.Errorf("count %s: %w", n, err)
		}
		s.Tables[n] = c
	}
	if c, ok := s.Tables["history_values"]; ok {
		s.Tables["device_history"] = c
	}
	return nil
}

func summaryDevices(ctx context.Context, tx *sql.Tx, s *model.Summary) error {
	rows, err := tx.QueryContext(ctx, `SELECT
    d.id,
    d.name,
    d.brand,
    d.model,
    d.category,
    d.removed_at IS NOT NULL,
    d.last_seen,
    (SELECT c.value_num FROM capability_state AS c
      WHERE c.device_id = d.id AND c.capability_id = 'storage.stateOfCharge'
        AND c.value_id IS NOT NULL AND c.missing = 0)
FROM devices AS d
ORDER BY d.removed_at IS NOT NULL, d.category, d.name, d.id`)
	if err != nil {
		return fmt.Errorf("devices: %w", err)
	}
	defer func() { _ = rows.Close() }()
	index := map[string]int{}
	for rows.Next() {
		var (
			d        model.DeviceSummary
			category string
			lastSeen sql.NullInt64
			soc      sql.NullFloat64
		)
		if err := rows.Scan(&d.ID, &d.Name, &d.Brand, &d.Model, &category, &d.Removed, &lastSeen, &soc); err != nil {
			return fmt.Errorf("devices: %w", err)
		}
		d.Category = model.Category(category)
		d.LastSeen = fromMS(lastSeen)
		d.Homes = []string{}
		if soc.Valid {
			v := soc.Float64
			d.StateOfCharge = &v
		}
		index[d.ID] = len(s.Devices)
		s.Devices = append(s.Devices, d)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("devices: %w", err)
	}
	_ = rows.Close()

	links, err := tx.QueryContext(ctx, `SELECT hd.device_id, coalesce(nullif(h.name, ''), h.id)
FROM home_devices AS hd JOIN homes AS h ON h.id = hd.home_id
WHERE hd.removed_at IS NULL AND h.removed_at IS NULL
ORDER BY h.name, h.id`)
	if err != nil {
		return fmt.Errorf("device homes: %w", err)
	}
	defer func() { _ = links.Close() }()
	for links.Next() {
		var dev, home string
		if err := links.Scan(&dev, &home); err != nil {
			return fmt.Errorf("device homes: %w", err)
		}
		if i, ok := index[dev]; ok {
			s.Devices[i].Homes = append(s.Devices[i].Homes, home)
		}
	}
	return links.Err()
}

// CapabilitySeries returns, per device that has capabilityID, its numeric
// values since `since`, oldest first, for the status page's charts. Values
// are step-wise: each holds until the next point. The value in force at
// `since` (the last one recorded before it) is the first point, stamped
// `since`, so a value that never changed still draws a flat line. Missing
// readings and text values are left out.
func (db *DB) CapabilitySeries(ctx context.Context, capabilityID string, since time.Time) ([]model.Series, error) {
	tx, err := db.beginRead(ctx)
	if err != nil {
		return nil, fmt.Errorf("capability series: %w", err)
	}
	defer func() { _ = tx.Rollback() }()

	rows, err := tx.QueryContext(ctx, `SELECT d.id, d.name, s.unit
FROM capability_state AS s JOIN devices AS d ON d.id = s.device_id
WHERE s.capability_id = ?1 AND s.value_id IS NOT NULL
ORDER BY d.name, d.id`, capabilityID)
	if err != nil {
		return nil, fmt.Errorf("capability series: %w", err)
	}
	var out []model.Series
	for rows.Next() {
		sr := model.Series{CapabilityID: capabilityID, Points: []model.SeriesPoint{}}
		if err := rows.Scan(&sr.DeviceID, &sr.DeviceName, &sr.Unit); err != nil {
			_ = rows.Close()
			return nil, fmt.Errorf("capability series: %w", err)
		}
		out = append(out, sr)
	}
	_ = rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("capability series: %w", err)
	}

	sinceMS := since.UnixMilli()
	kept := out[:0]
	for _, sr := range out {
		var before sql.NullFloat64
		err := tx.QueryRowContext(ctx, `SELECT value_num FROM capability_values
WHERE device_id = ?1 AND capability_id = ?2 AND observed_at < ?3
ORDER BY observed_at DESC, id DESC LIMIT 1`, sr.DeviceID, capabilityID, sinceMS).Scan(&before)
		if err != nil && err != sql.ErrNoRows {
			return nil, fmt.Errorf("capability series %q: %w", sr.DeviceID, err)
		}
		if before.Valid {
			sr.Points = append(sr.Points, model.SeriesPoint{At: since.UTC(), Value: before.Float64})
		}
		pts, err := tx.QueryContext(ctx, `SELECT observed_at, value_num FROM capability_values
WHERE device_id = ?1 AND capability_id = ?2 AND observed_at >= ?3 AND value_num IS NOT NULL
ORDER BY observed_at, id`, sr.DeviceID, capabilityID, sinceMS)
		if err != nil {
			return nil, fmt.Errorf("capability series %q: %w", sr.DeviceID, err)
		}
		for pts.Next() {
			var at int64
			var v float64
			if err := pts.Scan(&at, &v); err != nil {
				_ = pts.Close()
				return nil, fmt.Errorf("capability series %q: %w", sr.DeviceID, err)
			}
			sr.Points = append(sr.Points, model.SeriesPoint{At: time.UnixMilli(at).UTC(), Value: v})
		}
		_ = pts.Close()
		if err := pts.Err(); err != nil {
			return nil, fmt.Errorf("capability series %q: %w", sr.DeviceID, err)
		}
		if len(sr.Points) > 0 {
			kept = append(kept, sr)
		}
	}
	return kept, nil
}

// rowsWrittenTotal is the sum of sync_runs.rows_written of job, from the
// counter the sync_runs triggers keep; summed only on a file without it.
func rowsWrittenTotal(ctx context.Context, tx *sql.Tx, job string) (int64, error) {
	var n sql.NullInt64
	err := tx.QueryRowContext(ctx, `SELECT value FROM counters WHERE name = 'rows_written:' || ?1`, job).Scan(&n)
	switch {
	case err == nil:
		return n.Int64, nil
	case err == sql.ErrNoRows:
		// No run of job was recorded since the counters exist: none at all.
		return 0, nil
	case strings.Contains(err.Error(), "no such table: counters"):
		err = tx.QueryRowContext(ctx, `SELECT coalesce(sum(rows_written), 0) FROM sync_runs WHERE job = ?1`, job).Scan(&n)
		return n.Int64, err
	}
	return 0, err
}
