package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/store"
)

// savePerHome saves b the way the pipelined cycle does: one transaction per
// home (its list, and the details of the devices it lists first), then the
// homes list with the run. It returns the run as stored.
func savePerHome(t *testing.T, db *store.DB, b model.InventoryBatch) model.Run {
	t.Helper()
	ctx := context.Background()
	run := devicesRun(b.ObservedAt)
	claimed := map[string]bool{}
	for i, h := range []string{"h1", "h2"} {
		part := model.InventoryBatch{ObservedAt: b.ObservedAt, Homes: b.Homes[i : i+1], HomeDevices: map[string][]model.Device{h: b.HomeDevices[h]}}
		for _, d := range b.HomeDevices[h] {
			for _, det := range b.Details {
				if det.ID == d.ID && !claimed[d.ID] {
					claimed[d.ID] = true
					part.Details = append(part.Details, det)
				}
			}
		}
		n, err := db.SaveHomeInventory(ctx, part)
		if err != nil {
			t.Fatalf("SaveHomeInventory %s: %v", h, err)
		}
		run.RowsWritten += n
	}
	saved, err := db.SaveInventory(ctx, run, model.InventoryBatch{ObservedAt: b.ObservedAt, Homes: b.Homes, GrantedScopes: b.GrantedScopes})
	if err != nil {
		t.Fatalf("SaveInventory: %v", err)
	}
	return saved
}

// TestSaveHomeInventoryMatchesOneBatch: saving a cycle home by home stores
// exactly what the single batch stores, counts every row once in the run,
// and an unchanged cycle saved home by home writes nothing but its run row.
func TestSaveHomeInventoryMatchesOneBatch(t *testing.T) {
	tables := []string{"homes", "devices", "home_devices", "device_snapshots", "capability_values", "capability_state", "category_access"}

	whole, _, _ := MustOpenDB(t)
	mustSave(t, whole, twoHomes(t0, 74))
	wantRows := count(t, whole, "SELECT rows_written FROM sync_runs")

	db, _, _ := MustOpenDB(t)
	run := savePerHome(t, db, twoHomes(t0, 74))
	if int64(run.RowsWritten) != wantRows || runRowsWritten(t, db, run.ID) != wantRows {
		t.Fatalf("rows written home by home = %d (stored %d), in one batch %d", run.RowsWritten, runRowsWritten(t, db, run.ID), wantRows)
	}
	for _, tb := range tables {
		if got, want := rowCount(t, db, tb), rowCount(t, whole, tb); got != want {
			t.Errorf("%s: %d rows home by home, %d in one batch", tb, got, want)
		}
	}
	if n := count(t, db, `SELECT count(*) FROM homes WHERE name = ''`); n != 0 {
		t.Fatalf("%d homes without their name after the closing transaction", n)
	}

	before := totalChanges(t, db)
	at := t0.Add(5 * time.Minute)
	run = savePerHome(t, db, twoHomes(at, 74))
	if run.RowsWritten != 0 {
		t.Fatalf("unchanged cycle home by home: rows written %d, want 0", run.RowsWritten)
	}
	if d := totalChanges(t, db) - before; d != 1 {
		t.Fatalf("unchanged cycle home by home changed %d rows, want 1 (its sync_runs row)", d)
	}

	// A home dropping the battery: its own transaction unlinks it, the
	// closing one marks it removed (no active home lists it).
	b := twoHomes(t0.Add(10*time.Minute), 74)
	b.HomeDevices["h1"] = b.HomeDevices["h1"][:1]
	savePerHome(t, db, b)
	if n := count(t, db, `SELECT count(*) FROM devices WHERE id = 'bat-1' AND removed_at IS NOT NULL`); n != 1 {
		t.Fatal("battery dropped by its only home not marked removed")
	}
}
