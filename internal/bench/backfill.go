package bench

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the raw insert loop uses the daemon's driver directly

	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/store"
	"github.com/tibbersync/tibbersync/internal/web"
)

// BackfillParams configures RunBackfill.
type BackfillParams struct {
	// SimURL is the simulator's base URL (no latency).
	SimURL string
	// Dir is a fresh state directory; RawDir another fresh directory for
	// the raw insert loop's database.
	Dir, RawDir string
	// DeviceIDs are the devices whose history is backfilled; the account's
	// other devices are left out of the history job.
	DeviceIDs []string
	// Resolution is the history resolution ("hour").
	Resolution string
	// BackfillDays is [history].backfill_days.
	BackfillDays int
	// PageSize is the simulator's history page size; the raw loop commits
	// the same number of periods per transaction.
	PageSize int
	// RateLimit is [tibber].requests_per_second.
	RateLimit float64
	// Raw runs the raw insert loop after the backfill.
	Raw bool
}

// BackfillResult is the outcome of RunBackfill.
type BackfillResult struct {
	// Devices is the number of devices whose history was synced.
	Devices int
	// Status and Requests are the history run as recorded.
	Status   string
	Requests int
	// Pages, Points (periods) and Rows (device_history rows, one per
	// period and metric) are what the history job fetched and stored.
	Pages, Points, Rows int
	// Wall is the wall time of Syncer.RunHistory.
	Wall time.Duration
	// Memory is VmRSS and VmHWM right after the backfill (before the raw loop).
	Memory Status
	// DBBytes is data.db plus its WAL after the backfill, once the store
	// is closed (the WAL checkpointed).
	DBBytes int64
	// RawRows and RawPages are what the raw loop inserted and committed;
	// RawWall is the time spent inserting and committing (reading the rows
	// back from data.db is not counted). Zero without BackfillParams.Raw.
	RawRows, RawPages int
	RawWall           time.Duration
	// StatusPage is the slowest of three renders of the status page (with
	// its history charts) right after the backfill; StatusPageBytes its size.
	StatusPage      time.Duration
	StatusPageBytes int
}

// onlyDevices is data.db with the history job's device list narrowed to
// the chosen devices; everything else goes to *store.DB unchanged.
type onlyDevices struct {
	*store.DB
	keep map[string]bool
}

// ActiveHomeDevices returns the stored devices that are in keep.
func (o onlyDevices) ActiveHomeDevices(ctx context.Context) (map[string][]model.Device, error) {
	all, err := o.DB.ActiveHomeDevices(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]model.Device, len(all))
	for home, devs := range all {
		for _, d := range devs {
			if o.keep[d.ID] {
				out[home] = append(out[home], d)
			}
		}
	}
	return out, nil
}

// RunBackfill authorizes, stores the account's homes and device lists
// (homes job), backfills p.BackfillDays of p.Resolution history of
// p.DeviceIDs through the history job and reads the process's peak RSS.
// With p.Raw it then inserts the same rows again with a plain INSERT loop
// into a fresh data.db (same schema, same connection settings, one
// transaction per page of p.PageSize periods): the raw rate of the same
// driver on the same rows.
func RunBackfill(ctx context.Context, p BackfillParams, log *slog.Logger) (BackfillResult, error) {
	var res BackfillResult
	if len(p.DeviceIDs) == 0 || p.PageSize <= 0 {
		return res, fmt.Errorf("backfill: no devices or no page size")
	}
	if p.Raw && p.RawDir == "" {
		return res, fmt.Errorf("backfill: raw loop without a directory")
	}
	st, err := OpenStack(ctx, StackConfig{
		Dir: p.Dir, SimURL: p.SimURL, RateLimit: p.RateLimit,
		HistoryResolutions: []string{p.Resolution}, BackfillDays: p.BackfillDays, Logger: log,
	})
	if err != nil {
		return res, fmt.Errorf("backfill: %w", err)
	}
	defer st.Close()
	if err := st.Authorize(ctx); err != nil {
		return res, fmt.Errorf("backfill: %w", err)
	}
	if run, err := st.Syncer.RunHomes(ctx); err != nil || run.Status != jobs.StatusOK {
		return res, fmt.Errorf("backfill: homes run %s: %s: %w", run.Status, run.Error, err)
	}
	keep := map[string]bool{}
	for _, id := range p.DeviceIDs {
		keep[id] = true
	}
	syncer := *st.Syncer
	syncer.Store = onlyDevices{DB: st.Data, keep: keep}
	devices := map[string]bool{}
	syncer.Progress = func(hp jobs.HistoryProgress) {
		if hp.Done {
			res.Pages += hp.Pages
			res.Points += hp.Points
			devices[hp.DeviceID] = true
		}
	}

	t0 := time.Now()
	run, runErr := syncer.RunHistory(ctx)
	res.Wall = time.Since(t0)
	res.Status, res.Requests, res.Rows, res.Devices = run.Status, run.Requests, run.RowsWritten, len(devices)
	if runErr != nil || run.Status == jobs.StatusFailed || run.Status == jobs.StatusSkipped {
		return res, fmt.Errorf("backfill: history run %s: %s: %w", run.Status, run.Error, runErr)
	}
	if res.Memory, err = ReadStatus(Self); err != nil {
		return res, fmt.Errorf("backfill: %w", err)
	}
	if res.StatusPage, res.StatusPageBytes, err = timeStatusPage(st.Data); err != nil {
		return res, fmt.Errorf("backfill: %w", err)
	}
	if err := st.Close(); err != nil {
		return res, fmt.Errorf("backfill: %w", err)
	}
	// After the close, which checkpoints the WAL into data.db.
	db, wal := st.FileSizes()
	res.DBBytes = db + wal
	if !p.Raw {
		return res, nil
	}
	res.RawRows, res.RawPages, res.RawWall, err = rawInsert(ctx, st.DataPath, filepath.Join(p.RawDir, "data.db"), p)
	if err != nil {
		return res, fmt.Errorf("backfill: raw inserts: %w", err)
	}
	return res, nil
}

// historyRow is one device_history row.
type historyRow struct {
	start  int64
	offset int
	metric string
	value  float64
}

// rawInsert copies the history rows of p.DeviceIDs from src into a fresh
// database at dst with plain INSERTs, one transaction per page of
// p.PageSize periods, and times the inserts and commits.
func rawInsert(ctx context.Context, src, dst string, p BackfillParams) (rows, pages int, wall time.Duration, err error) {
	// store.Open creates the file with the daemon's schema and checks the
	// connection settings; the loop then uses a plain database/sql handle
	// with the same DSN.
	created, err := store.Open(ctx, dst, store.Options{})
	if err != nil {
		return 0, 0, 0, err
	}
	if err := created.Close(); err != nil {
		return 0, 0, 0, err
	}
	dsn, err := store.BuildDSN(dst, false, "")
	if err != nil {
		return 0, 0, 0, err
	}
	out, err := sql.Open("sqlite", dsn)
	if err != nil {
		return 0, 0, 0, err
	}
	defer out.Close()
	out.SetMaxOpenConns(1)
	srcDSN, err := store.BuildDSN(src, true, "")
	if err != nil {
		return 0, 0, 0, err
	}
	in, err := sql.Open("sqlite", srcDSN)
	if err != nil {
		return 0, 0, 0, err
	}
	defer in.Close()

	ids := slices.Sorted(slices.Values(p.DeviceIDs))
	now := time.Now().UnixMilli()
	// The rows reference devices (foreign key), as in data.db.
	for _, id := range ids {
		if _, err := out.ExecContext(ctx, `INSERT INTO devices (id, first_seen_at, last_seen_at) VALUES (?1, ?2, ?2)`, id, now); err != nil {
			return 0, 0, 0, fmt.Errorf("insert device: %w", err)
		}
	}
	for _, id := range ids {
		hist, err := readHistory(ctx, in, id, p.Resolution)
		if err != nil {
			return rows, pages, wall, err
		}
		// One series per metric, created before the timed inserts (the
		// history job creates each once too).
		series := map[string]int64{}
		for _, r := range hist {
			if _, ok := series[r.metric]; ok {
				continue
			}
			res, err := out.ExecContext(ctx, `INSERT INTO history_series (device_id, resolution, metric) VALUES (?1, ?2, ?3)`, id, p.Resolution, r.metric)
			if err != nil {
				return rows, pages, wall, fmt.Errorf("insert series: %w", err)
			}
			if series[r.metric], err = res.LastInsertId(); err != nil {
				return rows, pages, wall, err
			}
		}
		t0 := time.Now()
		n, np, err := insertPages(ctx, out, series, hist, p.PageSize, now)
		wall += time.Since(t0)
		rows += n
		pages += np
		if err != nil {
			return rows, pages, wall, err
		}
	}
	return rows, pages, wall, nil
}

// readHistory reads one device's rows in period order.
func readHistory(ctx context.Context, db *sql.DB, deviceID, resolution string) ([]historyRow, error) {
	rs, err := db.QueryContext(ctx, `SELECT period_start, utc_offset_s, metric, value FROM device_history
WHERE device_id = ?1 AND resolution = ?2 ORDER BY period_start, metric`, deviceID, resolution)
	if err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	defer rs.Close()
	var out []historyRow
	for rs.Next() {
		var r historyRow
		if err := rs.Scan(&r.start, &r.offset, &r.metric, &r.value); err != nil {
			return nil, fmt.Errorf("read history: %w", err)
		}
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	return out, nil
}

// insertPages inserts rows (in period order) in transactions of pageSize
// periods each.
func insertPages(ctx context.Context, db *sql.DB, series map[string]int64, rows []historyRow, pageSize int, now int64) (inserted, pages int, err error) {
	for i := 0; i < len(rows); {
		// One page: the rows of the next pageSize distinct periods.
		j, periods := i, 0
		for j < len(rows) {
			if j == i || rows[j].start != rows[j-1].start {
				if periods == pageSize {
					break
				}
				periods++
			}
			j++
		}
		if err := insertPage(ctx, db, series, rows[i:j], now); err != nil {
			return inserted, pages, err
		}
		inserted += j - i
		pages++
		i = j
	}
	return inserted, pages, nil
}

func insertPage(ctx context.Context, db *sql.DB, series map[string]int64, rows []historyRow, now int64) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("insert page: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	// The page's write row, then its values in the compact layout.
	res, err := tx.ExecContext(ctx, `INSERT INTO history_writes (written_at) VALUES (?1)`, now)
	if err != nil {
		return fmt.Errorf("insert page: %w", err)
	}
	write, err := res.LastInsertId()
	if err != nil {
		return fmt.Errorf("insert page: %w", err)
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO history_values (series_id, period_s, utc_offset_s, value, write_id)
VALUES (?1, ?2, ?3, ?4, ?5)`)
	if err != nil {
		return fmt.Errorf("insert page: prepare: %w", err)
	}
	defer stmt.Close()
	for _, r := range rows {
		if _, err := stmt.ExecContext(ctx, series[r.metric], r.start/1000, r.offset, r.value, write); err != nil {
			return fmt.Errorf("insert page: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("insert page: commit: %w", err)
	}
	return nil
}

// timeStatusPage renders the status page (summary, current readings and the
// 7-day hourly and 30-day daily history charts) three times on the
// backfilled data.db and returns the slowest render and the page size. The
// page reads only the chart windows, so it stays fast however long the
// stored history is.
func timeStatusPage(data *store.DB) (time.Duration, int, error) {
	srv, err := web.New(web.Options{Listen: "127.0.0.1:8765", Status: data}) // never opened: served through Handler
	if err != nil {
		return 0, 0, fmt.Errorf("status page: %w", err)
	}
	var worst time.Duration
	size := 0
	for range 3 {
		req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8765/", nil)
		rec := httptest.NewRecorder()
		t0 := time.Now()
		srv.Handler().ServeHTTP(rec, req)
		worst = max(worst, time.Since(t0))
		if rec.Code != http.StatusOK {
			return 0, 0, fmt.Errorf("status page: %d: %.200s", rec.Code, rec.Body.String())
		}
		if !strings.Contains(rec.Body.String(), `data-source="history"`) {
			return 0, 0, fmt.Errorf("status page after the backfill has no history chart")
		}
		size = rec.Body.Len()
	}
	return worst, size, nil
}
