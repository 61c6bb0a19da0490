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
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		page := benchPage(i)
		tx, err := raw.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO device_history (device_id, resolution, period_start, utc_offset_s,
    metric, value, inserted_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			b.Fatal(err)
		}
		now := t0.UnixMilli()
		for _, it := range page.Items {
			for m, v := range it.Metrics {
				if _, err := stmt.ExecContext(ctx, "d1", "hour", it.Time.UnixMilli(), it.UTCOffsetSeconds, m, v, now, now); err != nil {
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
