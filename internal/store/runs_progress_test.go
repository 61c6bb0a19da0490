package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
)

// TestRunInProgressIsVisible: a started run shows as running with its
// progress in the summary and in sync_health, while the last finished run
// keeps its status; finishing it updates the same row.
func TestRunInProgressIsVisible(t *testing.T) {
	ctx := context.Background()
	db, clk, _ := MustOpenDB(t)
	if _, err := db.RecordRun(ctx, model.Run{Job: "history", StartedAt: t0.Add(-time.Hour), FinishedAt: t0.Add(-59 * time.Minute), Status: "failed", Error: "stopped: context canceled"}); err != nil {
		t.Fatal(err)
	}
	id, err := db.StartRun(ctx, model.Run{Job: "history", StartedAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	p := model.RunProgress{StreamsDone: 2, StreamsTotal: 5, Pages: 40, Points: 1900, Requests: 41, RowsWritten: 3800,
		Current: "Home battery, hour", Fraction: 0.5, ETA: t0.Add(10 * time.Minute), UpdatedAt: t0.Add(5 * time.Minute)}
	if err := db.UpdateRunProgress(ctx, id, p); err != nil {
		t.Fatal(err)
	}
	clk.Advance(5 * time.Minute)
	sum, err := db.Summary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var h model.JobSummary
	for _, j := range sum.Jobs {
		if j.Job == "history" {
			h = j
		}
	}
	if !h.Running || !h.RunningSince.Equal(t0) || h.Progress == nil || *h.Progress != p {
		t.Fatalf("history summary: running %v since %v progress %+v, want running since %v with %+v", h.Running, h.RunningSince, h.Progress, t0, p)
	}
	if h.LastStatus != "failed" {
		t.Errorf("last finished status %q, want failed (the running row is not a result)", h.LastStatus)
	}
	var running int
	var prog string
	if err := db.RawForTest().QueryRowContext(ctx, `SELECT running, progress FROM sync_health WHERE job = 'history'`).Scan(&running, &prog); err != nil {
		t.Fatal(err)
	}
	if running != 1 || prog == "" {
		t.Fatalf("sync_health running=%d progress=%q", running, prog)
	}

	// Finishing updates the same row.
	got, err := db.RecordRun(ctx, model.Run{ID: id, Job: "history", StartedAt: t0, FinishedAt: t0.Add(9 * time.Minute), Status: "ok", Requests: 90, RowsWritten: 9000})
	if err != nil || got != id {
		t.Fatalf("finish: id %d err %v, want %d", got, err, id)
	}
	sum, err = db.Summary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range sum.Jobs {
		if j.Job == "history" && (j.Running || j.LastStatus != "ok" || j.LastRowsWritten != 9000) {
			t.Fatalf("after finish: %+v", j)
		}
	}
	var n int
	if err := db.RawForTest().QueryRowContext(ctx, `SELECT count(*) FROM sync_runs WHERE job = 'history'`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("history rows %d (%v), want 2", n, err)
	}
}

// TestCloseStaleRuns: a running row of a dead process (or of this pid, a
// previous life in a container) becomes interrupted; a live process's row
// stays running.
func TestCloseStaleRuns(t *testing.T) {
	ctx := context.Background()
	db, _, _ := MustOpenDB(t)
	own, err := db.StartRun(ctx, model.Run{Job: "history", StartedAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	raw := db.RawForTest()
	if _, err := raw.ExecContext(ctx, `INSERT INTO sync_runs (job, started_at, status, pid) VALUES ('devices', ?1, 'running', 999999), ('homes', ?1, 'running', 4242)`, t0.UnixMilli()); err != nil {
		t.Fatal(err)
	}
	n, err := db.CloseStaleRuns(ctx, func(pid int) bool { return pid == 4242 })
	if err != nil || n != 2 {
		t.Fatalf("closed %d (%v), want 2", n, err)
	}
	rows, err := raw.QueryContext(ctx, `SELECT id, job, status, coalesce(error, ''), finished_at IS NOT NULL FROM sync_runs ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	want := map[string]string{"history": "interrupted", "devices": "interrupted", "homes": "running"}
	for rows.Next() {
		var id int64
		var job, status, msg string
		var finished bool
		if err := rows.Scan(&id, &job, &status, &msg, &finished); err != nil {
			t.Fatal(err)
		}
		if status != want[job] {
			t.Errorf("%s (id %d, own %d): %s, want %s", job, id, own, status, want[job])
		}
		if status == "interrupted" && (!finished || msg == "") {
			t.Errorf("%s closed without finished_at or reason", job)
		}
	}
}

// TestHistorySeriesReadsTheWindow: only the main metrics, only the window,
// with names and offsets.
func TestHistorySeriesReadsTheWindow(t *testing.T) {
	ctx := context.Background()
	db, _, _ := MustOpenDB(t)
	mustSave(t, db, model.InventoryBatch{ObservedAt: t0, HomeDevices: map[string][]model.Device{"h1": {listItem("d1", "Battery")}}})
	osl, _ := time.LoadLocation("Europe/Oslo")
	page := hourPage(t0.Add(-48*time.Hour), 48, osl)
	if _, err := db.SaveHistoryPage(ctx, "d1", "hour", page, model.HistoryCheckpoint{HomeID: "h1"}); err != nil {
		t.Fatal(err)
	}
	from, to := t0.Add(-10*time.Hour), t0.Add(-2*time.Hour)
	series, err := db.HistorySeries(ctx, "hour", from, to)
	if err != nil {
		t.Fatal(err)
	}
	if len(series) == 0 {
		t.Fatal("no series")
	}
	for _, s := range series {
		if s.DeviceName != "Battery" || s.Resolution != "hour" {
			t.Errorf("series %+v lacks name or resolution", s.Metric)
		}
		if len(s.Points) != 8 {
			t.Errorf("%s: %d points, want 8 (the window only)", s.Metric, len(s.Points))
		}
		for _, p := range s.Points {
			if p.Start.Before(from) || !p.Start.Before(to) {
				t.Errorf("%s: point %v outside [%v, %v)", s.Metric, p.Start, from, to)
			}
		}
	}
	// The query walks the primary key, never the whole table.
	var plan string
	rows, err := db.RawForTest().QueryContext(ctx, `EXPLAIN QUERY PLAN SELECT metric, period_start, utc_offset_s, value FROM device_history
WHERE device_id = 'd1' AND resolution = 'hour' AND period_start >= 0 AND period_start < 1 ORDER BY period_start`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var a, b, c int
		var d string
		if err := rows.Scan(&a, &b, &c, &d); err != nil {
			t.Fatal(err)
		}
		plan += d + "\n"
	}
	rows.Close()
	if !strings.Contains(plan, "SEARCH") || strings.Contains(plan, "SCAN device_history") {
		t.Fatalf("history window query plan:\n%s", plan)
	}
}
