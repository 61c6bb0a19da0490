package store_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/store"
)

// TestCountersStayExact: after inserts, upserts, corrections, removals and
// runs, every table's row count in Summary (kept by triggers) equals
// count(*), and so do the jobs' rows-written totals and sum(rows_written).
func TestCountersStayExact(t *testing.T) {
	ctx := context.Background()
	db, clk, _ := MustOpenDB(t)
	for i := range 3 {
		at := t0.Add(time.Duration(i) * 5 * time.Minute)
		clk.Set(at)
		mustSave(t, db, twoHomes(at, 70+float64(i)))
	}
	// A removed battery: deletes nothing, updates rows.
	b := twoHomes(t0.Add(time.Hour), 80)
	b.HomeDevices["h1"] = b.HomeDevices["h1"][:1]
	mustSave(t, db, b)
	start := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	for i := range 3 {
		// Overlapping pages whose values differ: inserts and corrections.
		page := hourPage(start.Add(time.Duration(i*12)*time.Hour), 24, time.UTC)
		if _, err := db.SaveHistoryPage(ctx, "bat-1", "hour", page, model.HistoryCheckpoint{HomeID: "h1"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.RecordRun(ctx, model.Run{Job: "history", StartedAt: t0, FinishedAt: t0, Status: "failed", Error: "x"}); err != nil {
		t.Fatal(err)
	}
	// Rows deleted behind the store's back (an analyst's mistake) are
	// counted too: the triggers fire for every writer.
	if _, err := db.RawForTest().Exec(`DELETE FROM capability_values WHERE id = (SELECT max(id) FROM capability_values WHERE id NOT IN (SELECT value_id FROM capability_state WHERE value_id IS NOT NULL))`); err != nil {
		t.Fatal(err)
	}
	assertCountersExact(t, db)

	sum, err := db.Summary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range sum.Jobs {
		want := count(t, db, `SELECT coalesce(sum(rows_written), 0) FROM sync_runs WHERE job = ?`, j.Job)
		if j.RowsWrittenTotal != want {
			t.Errorf("job %s: RowsWrittenTotal %d, sum(rows_written) %d", j.Job, j.RowsWrittenTotal, want)
		}
	}
	if sum.Tables["device_history"] != 96 || sum.Tables["history_revisions"] == 0 {
		t.Fatalf("history counts = %d values, %d revisions", sum.Tables["device_history"], sum.Tables["history_revisions"])
	}
}

// TestSummaryReadsCountersNotRows: the status surfaces read the counters,
// not the tables (a count that costs the same at 10 and 10 M rows): a
// counter changed by hand shows up as is.
func TestSummaryReadsCountersNotRows(t *testing.T) {
	ctx := context.Background()
	db, _, _ := MustOpenDB(t)
	mustSave(t, db, twoHomes(t0, 74))
	if _, err := db.RawForTest().Exec(`UPDATE counters SET value = value + 1000000 WHERE name = 'inserted:capability_values'`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.RawForTest().Exec(`UPDATE counters SET value = 4242 WHERE name = 'rows_written:devices'`); err != nil {
		t.Fatal(err)
	}
	sum, err := db.Summary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, real := sum.Tables["capability_values"], rowCount(t, db, "capability_values"); got != real+1000000 {
		t.Fatalf("capability_values = %d with %d rows: Summary counted the table instead of reading its counter", got, real)
	}
	for _, j := range sum.Jobs {
		if j.Job == "devices" && j.RowsWrittenTotal != 4242 {
			t.Fatalf("devices rows written = %d: Summary summed sync_runs instead of reading the counter", j.RowsWrittenTotal)
		}
	}
}

// TestCountersRepairedOnOpen: a table whose triggers or counters row went
// missing (dropped by hand, or a table added by a later migration) gets
// them back, counted once, when the writer opens the file.
func TestCountersRepairedOnOpen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "data.db")
	db, err := store.Open(ctx, path, store.Options{Clock: clock.NewFake(t0)})
	if err != nil {
		t.Fatal(err)
	}
	mustSave(t, db, twoHomes(t0, 74))
	for _, q := range []string{
		`DROP TRIGGER count_devices_insert`,
		`DELETE FROM counters WHERE name = 'deleted:homes'`,
		`CREATE TABLE extra (x INTEGER)`,
		`INSERT INTO extra VALUES (1), (2)`,
	} {
		if _, err := db.RawForTest().Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	_ = db.Close()
	db, err = store.Open(ctx, path, store.Options{Clock: clock.NewFake(t0)})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.RawForTest().Exec(`INSERT INTO extra VALUES (3)`); err != nil {
		t.Fatal(err)
	}
	if n := count(t, db, `SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name = 'count_devices_insert'`); n != 1 {
		t.Fatal("devices insert trigger not restored")
	}
	sum, err := db.Summary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Tables["extra"] != 3 {
		t.Fatalf("extra = %d rows, want 3", sum.Tables["extra"])
	}
	assertCountersExact(t, db)
}
