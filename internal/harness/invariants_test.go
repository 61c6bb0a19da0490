package harness

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	_ "modernc.org/sqlite" // the parent reads data.db read-only, as an analyst would

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/tokenstore"
)

// openReadOnly opens data.db the way analysts do (R17): a file: URI with
// mode=ro. The writer is dead or idle when the harnesses call it.
func openReadOnly(path string) (*sql.DB, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		return nil, fmt.Errorf("open %s read-only: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// dataCheck is the result of checking data.db after a kill.
type dataCheck struct {
	integrityErrors int      // integrity_check or foreign_key_check findings
	problems        []string // every invariant violation, integrity ones included
	verified        map[string]int
}

func (c *dataCheck) fail(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

// checkDataDB checks data.db's crash invariants (documented in docs/ci.md):
//
//	D1 PRAGMA integrity_check is "ok" and foreign_key_check finds nothing.
//	D2 No inventory written outside its run: every time stamp a homes or
//	   devices run writes (snapshot and value observed_at, first_seen_at of
//	   homes, devices and links) lies within a homes or devices sync_runs
//	   row (started_at to finished_at; a row still open, or closed as
//	   interrupted after a kill, counts to its end). The row is written
//	   when the run starts; each home is then saved in its own transaction
//	   and the run's last transaction closes the row.
//	D3 No checkpoint ahead of its rows: a history checkpoint's last_period
//	   is never newer than the newest stored period of its stream.
//	D4 No duplicates: values and snapshots are stored on change only, so no
//	   two consecutive rows of one series are equal.
//	D5 Every acknowledged commit is present: each reported run row exists
//	   with its job, status and finish time; each device of a reported
//	   devices batch has a snapshot at or before it; each reported history
//	   page has every period it stored, and its checkpoint is at least as far.
func checkDataDB(ctx context.Context, path string, reports []commitReport) (*dataCheck, error) {
	db, err := openReadOnly(path)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	c := &dataCheck{verified: map[string]int{}}

	// D1
	rows, err := db.QueryContext(ctx, `PRAGMA integrity_check`)
	if err != nil {
		return nil, fmt.Errorf("integrity_check: %w", err)
	}
	var res []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			rows.Close()
			return nil, fmt.Errorf("integrity_check: %w", err)
		}
		res = append(res, s)
	}
	rows.Close()
	if len(res) != 1 || res[0] != "ok" {
		c.integrityErrors++
		c.fail("D1 integrity_check: %s", strings.Join(res, "; "))
	}
	var fk int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM pragma_foreign_key_check`).Scan(&fk); err != nil {
		return nil, fmt.Errorf("foreign_key_check: %w", err)
	}
	if fk != 0 {
		c.integrityErrors++
		c.fail("D1 foreign_key_check: %d violations", fk)
	}

	// D2
	var orphans int
	var example sql.NullInt64
	err = db.QueryRowContext(ctx, `
WITH stamps(t) AS (
    SELECT observed_at FROM device_snapshots
    UNION SELECT observed_at FROM capability_values
    UNION SELECT first_seen_at FROM homes
    UNION SELECT first_seen_at FROM devices
    UNION SELECT first_seen_at FROM home_devices
), orphan(t) AS (
    SELECT s.t FROM stamps AS s WHERE NOT EXISTS (
        SELECT 1 FROM sync_runs AS r
        WHERE r.job IN ('homes', 'devices') AND r.started_at <= s.t
          AND (r.finished_at IS NULL OR r.status = 'interrupted' OR s.t <= r.finished_at))
)
SELECT count(*), min(t) FROM orphan`).Scan(&orphans, &example)
	if err != nil {
		return nil, fmt.Errorf("check batches: %w", err)
	}
	if orphans > 0 {
		c.fail("D2 %d inventory time stamps outside every homes/devices run (e.g. %d): written without a run", orphans, example.Int64)
	}

	// D3
	var ahead int
	err = db.QueryRowContext(ctx, `
SELECT count(*) FROM history_checkpoints AS cp
WHERE cp.last_period IS NOT NULL
  AND cp.last_period > coalesce((SELECT max(h.period_start) FROM device_history AS h
                                 WHERE h.device_id = cp.device_id AND h.resolution = cp.resolution), -1)`).Scan(&ahead)
	if err != nil {
		return nil, fmt.Errorf("check checkpoints: %w", err)
	}
	if ahead > 0 {
		c.fail("D3 %d history checkpoints ahead of their rows", ahead)
	}

	// D4
	var dupValues, dupSnaps int
	err = db.QueryRowContext(ctx, `
SELECT count(*) FROM (
    SELECT value_num, value_text, unit, missing,
           lag(id) OVER w AS pid, lag(value_num) OVER w AS pn, lag(value_text) OVER w AS pt,
           lag(unit) OVER w AS pu, lag(missing) OVER w AS pm
    FROM capability_values
    WINDOW w AS (PARTITION BY device_id, capability_id ORDER BY observed_at, id))
WHERE pid IS NOT NULL AND value_num IS pn AND value_text IS pt AND unit IS pu AND missing IS pm`).Scan(&dupValues)
	if err != nil {
		return nil, fmt.Errorf("check duplicate values: %w", err)
	}
	err = db.QueryRowContext(ctx, `
SELECT count(*) FROM (
    SELECT hash, lag(hash) OVER (PARTITION BY device_id ORDER BY observed_at, id) AS prev
    FROM device_snapshots)
WHERE prev IS NOT NULL AND hash = prev`).Scan(&dupSnaps)
	if err != nil {
		return nil, fmt.Errorf("check duplicate snapshots: %w", err)
	}
	if dupValues > 0 || dupSnaps > 0 {
		c.fail("D4 duplicates: %d repeated capability values, %d repeated snapshots", dupValues, dupSnaps)
	}

	// D5
	for _, r := range reports {
		if err := checkReport(ctx, db, c, r); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func checkReport(ctx context.Context, db *sql.DB, c *dataCheck, r commitReport) error {
	switch r.Kind {
	case commitRun:
		var job, status string
		var finished int64
		err := db.QueryRowContext(ctx, `SELECT job, status, finished_at FROM sync_runs WHERE id = ?`, r.RunID).Scan(&job, &status, &finished)
		if err == sql.ErrNoRows {
			c.fail("D5 acknowledged %s run %d is missing", r.Job, r.RunID)
			return nil
		}
		if err != nil {
			return fmt.Errorf("check run %d: %w", r.RunID, err)
		}
		if job != r.Job || status != r.Status || finished != r.FinishedMS {
			c.fail("D5 run %d is %s/%s/%d, acknowledged as %s/%s/%d", r.RunID, job, status, finished, r.Job, r.Status, r.FinishedMS)
		}
		for _, d := range r.Devices {
			var n int
			if err := db.QueryRowContext(ctx, `SELECT count(*) FROM device_snapshots WHERE device_id = ? AND observed_at <= ?`, d, r.FinishedMS).Scan(&n); err != nil {
				return fmt.Errorf("check snapshots of %s: %w", d, err)
			}
			if n == 0 {
				c.fail("D5 devices run %d stored device %s, but it has no snapshot", r.RunID, d)
			}
		}
		c.verified[commitRun]++
	case commitPage:
		for _, p := range r.Periods {
			var n int
			if err := db.QueryRowContext(ctx, `SELECT count(*) FROM device_history WHERE device_id = ? AND resolution = ? AND period_start = ?`,
				r.Device, r.Resolution, p).Scan(&n); err != nil {
				return fmt.Errorf("check history of %s: %w", r.Device, err)
			}
			if n == 0 {
				c.fail("D5 acknowledged history page %s/%s lost period %d", r.Device, r.Resolution, p)
			}
		}
		if r.LastPeriodMS != 0 {
			var last sql.NullInt64
			err := db.QueryRowContext(ctx, `SELECT last_period FROM history_checkpoints WHERE device_id = ? AND resolution = ?`, r.Device, r.Resolution).Scan(&last)
			if err != nil && err != sql.ErrNoRows {
				return fmt.Errorf("check checkpoint of %s: %w", r.Device, err)
			}
			if !last.Valid || last.Int64 < r.LastPeriodMS {
				c.fail("D5 checkpoint %s/%s at %v, behind the acknowledged %d", r.Device, r.Resolution, last, r.LastPeriodMS)
			}
		}
		c.verified[commitPage]++
	}
	return nil
}

// tokenCheck is what tokens.db says after a kill.
type tokenCheck struct {
	generation int64
	state      model.AuthState
	inFlight   bool
	problems   []string
}

// checkTokens checks tokens.db's invariants (docs/ci.md):
//
//	T1 tokens.db holds the newest committed token: its generation is at
//	   least every generation a child acknowledged.
//	T2 Its refresh token is the one the simulator considers current, unless
//	   a refresh was in flight (the R7 marker is set): then the server may
//	   have rotated without the client learning the new token, which the
//	   next start resolves with its one retry.
//	T3 The state is ok.
//
// tokens.db must not be open in any process when this runs.
func checkTokens(ctx context.Context, dir, simCurrent string, reports []commitReport) (*tokenCheck, error) {
	ts, err := tokenstore.Open(ctx, dir, clock.Real{})
	if err != nil {
		return nil, err
	}
	g, err := ts.Grant(ctx)
	ts.Close()
	if err != nil {
		return nil, err
	}
	c := &tokenCheck{generation: g.Generation, state: g.State, inFlight: g.InFlight.Active()}
	var acked int64
	for _, r := range reports {
		if r.Kind == commitToken && r.Generation > acked {
			acked = r.Generation
		}
	}
	if g.Generation < acked {
		c.problems = append(c.problems, fmt.Sprintf("T1 tokens.db at generation %d, but generation %d was acknowledged", g.Generation, acked))
	}
	if g.Token.RefreshToken.Reveal() != simCurrent && !g.InFlight.Active() {
		c.problems = append(c.problems, "T2 the stored refresh token is not the server's current one and no refresh was in flight")
	}
	if g.State != model.AuthOK {
		c.problems = append(c.problems, fmt.Sprintf("T3 auth state %s (%s), want ok", g.State, g.Reason))
	}
	return c, nil
}
