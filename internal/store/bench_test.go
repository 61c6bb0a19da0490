package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
)

const benchPageItems = 500

// benchPage is page i of a history stream: 500 hours, 2 metrics each, no
// overlap with other pages.
func benchPage(i int) model.HistoryPage {
	return hourPage(t0.Add(time.Duration(i*benchPageItems)*time.Hour), benchPageItems, time.UTC)
}

// BenchmarkSaveHistoryPage stores new pages through the store (upsert
// logic, window check, checkpoint). Compare with BenchmarkRawInsert: the
// target is at least half its speed.
func BenchmarkSaveHistoryPage(b *testing.B) {
	ctx := context.Background()
	db, _, _ := MustOpenDB(b)
	mustSave(b, db, model.InventoryBatch{ObservedAt: t0, HomeDevices: map[string][]model.Device{"h1": {listItem("d1", "Battery")}}})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := db.SaveHistoryPage(ctx, "d1", "hour", benchPage(i), model.HistoryCheckpoint{HomeID: "h1"}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*benchPageItems*2)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkRawInsert is the baseline: the same rows, the same driver and
// settings, a plain prepared INSERT in one transaction per page.
func BenchmarkRawInsert(b *testing.B) {
	ctx := context.Background()
	db, _, _ := MustOpenDB(b)
	mustSave(b, db, model.InventoryBatch{ObservedAt: t0, HomeDevices: map[string][]model.Device{"h1": {listItem("d1", "Battery")}}})
	raw := db.RawForTest()
	series := map[string]int64{}
	for m := range benchPage(0).Items[0].Metrics {
		r, err := raw.ExecContext(ctx, `INSERT INTO history_series (device_id, resolution, metric) VALUES ('d1', 'hour', ?)`, m)
		if err != nil {
			b.Fatal(err)
		}
		series[m], _ = r.LastInsertId()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		page := benchPage(i)
		tx, err := raw.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		now := t0.UnixMilli()
		r, err := tx.ExecContext(ctx, `INSERT INTO history_writes (written_at) VALUES (?)`, now)
		if err != nil {
			b.Fatal(err)
		}
		write, _ := r.LastInsertId()
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO history_values (series_id, period_s, utc_offset_s, value, write_id)
VALUES (?, ?, ?, ?, ?)`)
		if err != nil {
			b.Fatal(err)
		}
		for _, it := range page.Items {
			for m, v := range it.Metrics {
				if _, err := stmt.ExecContext(ctx, series[m], it.Time.Unix(), it.UTCOffsetSeconds, v, write); err != nil {
					b.Fatal(err)
				}
			}
		}
		_ = stmt.Close()
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*benchPageItems*2)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkSaveInventoryUnchanged is one devices poll where nothing changed
// (the common case, every 5 minutes for months).
func BenchmarkSaveInventoryUnchanged(b *testing.B) {
	ctx := context.Background()
	db, _, _ := MustOpenDB(b)
	mustSave(b, db, twoHomes(t0, 74))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		at := t0.Add(time.Duration(i%10) * time.Minute) // within SeenRefresh: nothing to rewrite
		if _, err := db.SaveInventory(ctx, devicesRun(at), twoHomes(at, 74)); err != nil {
			b.Fatal(err)
		}
	}
}
