package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/store"
)

// releaseDB is a data.db written by the release before the compact history
// layout (schema version 2): two homes, three devices, 1,645 device_history
// rows of hour and day history across the October 2026 DST change, with
// holes, a value revised twice, checkpoints and runs. It was made with
// testdata/genfixture/main.go.txt run on that release's code.
const releaseDB = "testdata/release-0002.db"

const releaseRows = 1645

// compactVersion is the migration that brings the compact layout.
const compactVersion = 5

// copyRelease copies the release database into a fresh directory and
// applies the migrations before the compact layout, as the release before
// it would have: the results to keep are that schema's.
func copyRelease(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(releaseDB)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "data.db")
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := store.MigrateToForTest(context.Background(), path, compactVersion-1); err != nil {
		t.Fatalf("migrate the release database to version %d: %v", compactVersion-1, err)
	}
	return path
}

// analystQueries are the queries whose results must not change: the
// history views in full, and every SQL example of docs/schema.md.
func analystQueries(t *testing.T) []string {
	t.Helper()
	qs := []string{
		`SELECT device_id, resolution, period_start, utc_offset_s, metric, value, inserted_at, updated_at, revisions FROM device_history`,
		`SELECT * FROM history_hourly`,
		`SELECT * FROM history_daily`,
		`SELECT DISTINCT device_id, resolution, metric FROM device_history`,
		`SELECT count(*), sum(revisions), max(updated_at) FROM device_history`,
	}
	doc, err := os.ReadFile("../../docs/schema.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(string(doc), -1) {
		for _, stmt := range strings.Split(b[1], ";") {
			var lines []string
			for _, l := range strings.Split(stmt, "\n") {
				if !strings.HasPrefix(strings.TrimSpace(l), "--") {
					lines = append(lines, l)
				}
			}
			if q := strings.TrimSpace(strings.Join(lines, "\n")); q != "" {
				qs = append(qs, q)
			}
		}
	}
	return qs
}

// snapshot runs the analyst queries on a read-only connection to path and
// returns each result as sorted text rows.
func snapshot(t *testing.T, path string) map[string][]string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := map[string][]string{}
	for _, q := range analystQueries(t) {
		rows, err := db.Query(q)
		if err != nil {
			t.Fatalf("%v\n%s", err, q)
		}
		cols, _ := rows.Columns()
		var got []string
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				if b, ok := v.([]byte); ok {
					vals[i] = string(b)
				}
			}
			got = append(got, fmt.Sprintf("%q", vals))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		_ = rows.Close()
		slices.Sort(got)
		out[q] = got
	}
	return out
}

func compareSnapshots(t *testing.T, before, after map[string][]string) {
	t.Helper()
	for q, want := range before {
		got := after[q]
		if !slices.Equal(got, want) {
			n := min(len(got), len(want), 3)
			t.Errorf("results changed (%d rows before, %d after):\n%s\nbefore: %v\nafter:  %v", len(want), len(got), q, want[:n], got[:n])
		}
	}
}

func TestConvertReleaseDatabase(t *testing.T) {
	path := copyRelease(t)
	before := snapshot(t, path)
	if n := len(before[`SELECT device_id, resolution, period_start, utc_offset_s, metric, value, inserted_at, updated_at, revisions FROM device_history`]); n != releaseRows {
		t.Fatalf("release database has %d history rows, want %d", n, releaseRows)
	}
	var progress []store.ConvertProgress
	db, err := store.Open(context.Background(), path, store.Options{
		Clock: clock.NewFake(t0), ConvertBatch: 100,
		ConvertProgress: func(p store.ConvertProgress) { progress = append(progress, p) },
	})
	if err != nil {
		t.Fatalf("Open on the release database: %v", err)
	}
	defer db.Close()

	// One call before the first batch, one per batch of 100, one at the end.
	if want := 1 + (releaseRows+99)/100 + 1; len(progress) != want {
		t.Fatalf("%d progress calls, want %d: %+v", len(progress), want, progress)
	}
	for i, p := range progress {
		if p.Total != releaseRows || (i > 0 && p.Done < progress[i-1].Done) {
			t.Fatalf("progress %d = %+v (all: %+v)", i, p, progress)
		}
	}
	if last := progress[len(progress)-1]; !last.Finished || last.Done != releaseRows {
		t.Fatalf("last progress = %+v", last)
	}
	if n := count(t, db, `SELECT count(*) FROM sqlite_master WHERE name IN ('device_history_legacy', 'history_writes_convert')`); n != 0 {
		t.Fatalf("%d conversion leftovers in the schema", n)
	}
	if n := count(t, db, `SELECT max(version) FROM schema_migrations`); n != int64(store.SchemaVersion()) {
		t.Fatalf("schema version %d, want %d", n, store.SchemaVersion())
	}
	compareSnapshots(t, before, snapshot(t, path))
	// The pages the old layout used went back to the file system, and the
	// connection is back on its checked settings.
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if orig, _ := os.Stat(releaseDB); fi.Size() >= orig.Size() {
		t.Fatalf("data.db is %d bytes after the conversion, %d before: not compacted", fi.Size(), orig.Size())
	}
	if n := count(t, db, `PRAGMA freelist_count`); n != 0 {
		t.Fatalf("%d free pages after the conversion", n)
	}
	if n := count(t, db, `PRAGMA temp_store`); n != 2 {
		t.Fatalf("temp_store = %d after the conversion, want 2 (MEMORY)", n)
	}
	// The correction survived with its count and time.
	if n := count(t, db, `SELECT count(*) FROM history_revisions WHERE revisions = 2 AND previous_value IS NULL`); n != 1 {
		t.Fatalf("history_revisions rows with the release's correction = %d, want 1", n)
	}
	assertCountersExact(t, db)

	// A second open has nothing to convert.
	progress = nil
	_ = db.Close()
	db2, err := store.Open(context.Background(), path, store.Options{ConvertProgress: func(p store.ConvertProgress) { progress = append(progress, p) }})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if len(progress) != 0 {
		t.Fatalf("second open reported conversion progress %+v", progress)
	}
}

// TestConvertResumesAfterKill stops the conversion after three committed
// batches (as a kill would: the open fails, the file keeps what was
// committed), checks that no row is lost or doubled in between, and lets
// the next open finish it with the same results.
func TestConvertResumesAfterKill(t *testing.T) {
	path := copyRelease(t)
	before := snapshot(t, path)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	batches := 0
	_, err := store.Open(ctx, path, store.Options{
		Clock: clock.NewFake(t0), ConvertBatch: 150,
		ConvertProgress: func(p store.ConvertProgress) {
			if p.Done > 0 {
				batches++
			}
			if batches == 3 {
				cancel()
			}
		},
	})
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("Open with the conversion stopped: err = %v, want context.Canceled", err)
	}
	raw, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	var legacy, moved int64
	if err := raw.QueryRow(`SELECT (SELECT count(*) FROM device_history_legacy), (SELECT count(*) FROM history_values)`).Scan(&legacy, &moved); err != nil {
		t.Fatal(err)
	}
	_ = raw.Close()
	if moved != 450 || legacy+moved != releaseRows {
		t.Fatalf("after the stop: %d rows converted, %d left, want 450 and %d", moved, legacy, releaseRows-450)
	}

	var resumed []store.ConvertProgress
	db, err := store.Open(context.Background(), path, store.Options{
		Clock: clock.NewFake(t0), ConvertBatch: 150,
		ConvertProgress: func(p store.ConvertProgress) { resumed = append(resumed, p) },
	})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer db.Close()
	if len(resumed) == 0 || resumed[0].Total != releaseRows-450 || !resumed[len(resumed)-1].Finished {
		t.Fatalf("resumed progress = %+v", resumed)
	}
	compareSnapshots(t, before, snapshot(t, path))
	assertCountersExact(t, db)
}

// TestLogProgress logs the first line and at most one every five seconds
// in between; the end is logged by the conversion itself.
func TestLogProgress(t *testing.T) {
	clk := clock.NewFake(t0)
	var b strings.Builder
	p := store.LogProgress(slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == slog.LevelKey {
				return slog.Attr{}
			}
			return a
		},
	})), clk.Now)
	p(store.ConvertProgress{Total: 1000})
	p(store.ConvertProgress{Done: 100, Total: 1000}) // within five seconds: dropped
	clk.Advance(4 * time.Second)
	p(store.ConvertProgress{Done: 200, Total: 1000}) // still within: dropped
	clk.Advance(2 * time.Second)
	p(store.ConvertProgress{Done: 300, Total: 1000})
	p(store.ConvertProgress{Done: 1000, Total: 1000, Finished: true})
	want := "msg=\"converting history to the compact layout: 0 of 1000 values (0%)\"\n" +
		"msg=\"converting history to the compact layout: 300 of 1000 values (30%)\"\n"
	if b.String() != want {
		t.Fatalf("progress lines:\n%s\nwant:\n%s", b.String(), want)
	}
}

// assertCountersExact compares every table's row count in Summary (read
// from counters) with count(*).
func assertCountersExact(t *testing.T, db *store.DB) {
	t.Helper()
	sum, err := db.Summary(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rows, err := db.RawForTest().Query(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\'`)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	_ = rows.Close()
	for _, n := range names {
		if got, want := sum.Tables[n], rowCount(t, db, `"`+n+`"`); got != want {
			t.Errorf("Summary.Tables[%s] = %d, count(*) = %d", n, got, want)
		}
	}
	if got, want := sum.Tables["device_history"], rowCount(t, db, "device_history"); got != want {
		t.Errorf("Summary.Tables[device_history] = %d, count(*) = %d", got, want)
	}
}

// TestNewFileHasNothingToConvert: a new data.db goes straight to the
// compact layout, without conversion progress or compaction.
func TestNewFileHasNothingToConvert(t *testing.T) {
	var progress []store.ConvertProgress
	path := filepath.Join(t.TempDir(), "data.db")
	db, err := store.Open(context.Background(), path, store.Options{
		Clock:           clock.NewFake(t0),
		ConvertProgress: func(p store.ConvertProgress) { progress = append(progress, p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if len(progress) != 0 {
		t.Fatalf("new file reported conversion progress %+v", progress)
	}
	if n := count(t, db, `SELECT count(*) FROM sqlite_master WHERE name = 'device_history_legacy'`); n != 0 {
		t.Fatal("legacy table left in a new file")
	}
}
