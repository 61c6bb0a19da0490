package store_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/store"
)

var _ jobs.Store = (*store.DB)(nil)

// t0 is the fake clock's start: a fixed UTC instant.
var t0 = time.Date(2026, 9, 14, 8, 0, 0, 0, time.UTC)

// MustOpenDB opens a writer on a fresh file with a fake clock.
func MustOpenDB(tb testing.TB) (*store.DB, *clock.Fake, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "data.db")
	clk := clock.NewFake(t0)
	db, err := store.Open(context.Background(), path, store.Options{Clock: clk})
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return db, clk, path
}

func count(tb testing.TB, db *store.DB, query string, args ...any) int64 {
	tb.Helper()
	var n int64
	if err := db.RawForTest().QueryRow(query, args...).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", query, err)
	}
	return n
}

func rowCount(tb testing.TB, db *store.DB, table string) int64 {
	tb.Helper()
	return count(tb, db, "SELECT count(*) FROM "+table)
}

// totalChanges is the rows the writer changed, less the row-count
// triggers' updates of counters (bookkeeping of those same writes).
func totalChanges(tb testing.TB, db *store.DB) int64 {
	tb.Helper()
	return count(tb, db, `SELECT total_changes() - (SELECT coalesce(sum(value), 0) FROM counters
WHERE (name GLOB 'inserted:*' AND name <> 'inserted:history_values') OR name GLOB 'deleted:*')`)
}

func f(v float64) *float64 { return &v }
func s(v string) *string   { return &v }

func numCap(id string, v float64, unit string) model.Capability {
	return model.Capability{ID: id, Num: f(v), Unit: unit}
}

func textCap(id, v string) model.Capability {
	return model.Capability{ID: id, Text: s(v)}
}

func nullCap(id, unit string) model.Capability {
	return model.Capability{ID: id, Unit: unit}
}

// vehicle is a detail as the tibber client returns it.
func vehicle(soc float64, extra ...model.Capability) model.Device {
	caps := append([]model.Capability{
		numCap("storage.stateOfCharge", soc, "%"),
		numCap("range.remaining", 356000, "m"),
		textCap("connector.status", "disconnected"),
		{ID: "charging.enabled", Num: f(1), Text: s("true")},
	}, extra...)
	raw, _ := json.Marshal(map[string]any{"id": "veh-1", "soc": soc})
	return model.Device{
		ID: "veh-1", ExternalID: "WVWZZZ1", Name: "ID.7", Brand: "Volkswagen", Model: "ID.7",
		LastSeen:     time.Date(2026, 9, 14, 7, 59, 0, 0, time.UTC),
		Attributes:   []json.RawMessage{json.RawMessage(`{"id":"vinNumber","value":"WVWZZZ1"}`), json.RawMessage(`{"value":true, "id":"isOnline"}`)},
		Capabilities: caps,
		Raw:          raw,
	}
}

// vehicleListItem is the list entry matching vehicle().
func vehicleListItem() model.Device {
	return model.Device{ID: "veh-1", ExternalID: "WVWZZZ1", Name: "ID.7", Brand: "Volkswagen", Model: "ID.7"}
}

func listItem(id, name string) model.Device {
	return model.Device{ID: id, ExternalID: "ext-" + id, Name: name, Brand: "Brand", Model: "M",
		SupportedResolutions: []string{"hour", "day"}, MaxRetentionDays: 730}
}

func devicesRun(at time.Time) model.Run {
	return model.Run{Job: "devices", StartedAt: at, FinishedAt: at.Add(2 * time.Second), Status: "ok", Requests: 3}
}

func mustSave(tb testing.TB, db *store.DB, b model.InventoryBatch) int64 {
	tb.Helper()
	saved, err := db.SaveInventory(context.Background(), devicesRun(b.ObservedAt), b)
	id := saved.ID
	if err != nil {
		tb.Fatalf("SaveInventory: %v", err)
	}
	return id
}

func runRowsWritten(tb testing.TB, db *store.DB, id int64) int64 {
	tb.Helper()
	return count(tb, db, "SELECT rows_written FROM sync_runs WHERE id = ?", id)
}

// openRaw opens a plain modernc connection pool on path with dsn options.
func openRaw(tb testing.TB, path, query string) *sql.DB {
	tb.Helper()
	c, err := sql.Open("sqlite", "file:"+path+"?"+query)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}
