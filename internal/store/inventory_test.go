package store_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"math"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/store"
)

var allScopes = []string{"openid", "data-api-homes-read", "data-api-vehicles-read", "data-api-energy-systems-read"}

// twoHomes is the fixture account: a vehicle listed under both homes, a
// battery under the first.
func twoHomes(at time.Time, soc float64) model.InventoryBatch {
	v := vehicle(soc)
	return model.InventoryBatch{
		ObservedAt: at,
		Homes:      []model.Home{{ID: "h1", Name: "Huis"}, {ID: "h2", Name: "Hytte"}},
		HomeDevices: map[string][]model.Device{
			"h1": {vehicleListItem(), listItem("bat-1", "Battery")},
			"h2": {vehicleListItem()},
		},
		Details:       []model.Device{v},
		GrantedScopes: allScopes,
	}
}

type capRow struct {
	Num     sql.NullFloat64
	Text    sql.NullString
	Unit    string
	Missing bool
}

func capValues(t *testing.T, db *store.DB, device, capID string) []capRow {
	t.Helper()
	rows, err := db.RawForTest().Query(`SELECT value_num, value_text, unit, missing FROM capability_values
WHERE device_id = ? AND capability_id = ? ORDER BY id`, device, capID)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rows.Close() }()
	var out []capRow
	for rows.Next() {
		var r capRow
		if err := rows.Scan(&r.Num, &r.Text, &r.Unit, &r.Missing); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func TestSaveInventoryStoresWhatItGot(t *testing.T) {
	ctx := context.Background()
	db, _, _ := MustOpenDB(t)
	b := twoHomes(t0, 74)
	// The battery's detail comes too, with a category to derive.
	bat := listItem("bat-1", "Battery")
	bat.Capabilities = []model.Capability{numCap("storage.stateOfCharge", 54, "%"), numCap("storage.ratedCapacity", 13800, "Wh")}
	bat.Raw = json.RawMessage(`{"id":"bat-1"}`)
	b.Details = append(b.Details, bat)
	id := mustSave(t, db, b)

	var name string
	var first, last int64
	var removed sql.NullInt64
	if err := db.RawForTest().QueryRow("SELECT name, first_seen_at, last_seen_at, removed_at FROM homes WHERE id = 'h2'").Scan(&name, &first, &last, &removed); err != nil {
		t.Fatal(err)
	}
	if name != "Hytte" || first != t0.UnixMilli() || last != t0.UnixMilli() || removed.Valid {
		t.Fatalf("home h2 = %q %d %d %v", name, first, last, removed)
	}

	// The vehicle: one device row, two links.
	if got := rowCount(t, db, "devices"); got != 2 {
		t.Fatalf("devices = %d, want 2 (the vehicle once)", got)
	}
	if got := count(t, db, "SELECT count(*) FROM home_devices WHERE device_id = 'veh-1' AND removed_at IS NULL"); got != 2 {
		t.Fatalf("vehicle links = %d, want 2", got)
	}
	var ext, brand, mdl, category, res string
	var retention int64
	var lastSeen sql.NullInt64
	if err := db.RawForTest().QueryRow(`SELECT external_id, brand, model, category, supported_resolutions, max_retention_days, last_seen
FROM devices WHERE id = 'veh-1'`).Scan(&ext, &brand, &mdl, &category, &res, &retention, &lastSeen); err != nil {
		t.Fatal(err)
	}
	v := vehicle(74)
	if ext != v.ExternalID || brand != v.Brand || mdl != v.Model || category != "vehicle" || res != "[]" || retention != 0 ||
		lastSeen.Int64 != v.LastSeen.UnixMilli() {
		t.Fatalf("vehicle row = %s %s %s %s %s %d %v", ext, brand, mdl, category, res, retention, lastSeen)
	}
	if err := db.RawForTest().QueryRow("SELECT category, supported_resolutions FROM devices WHERE id = 'bat-1'").Scan(&category, &res); err != nil {
		t.Fatal(err)
	}
	if category != "energy_system" || res != `["hour","day"]` {
		t.Fatalf("battery = %s %s", category, res)
	}

	// One value row per capability, typed; booleans as 0/1 + "true"/"false".
	if got := capValues(t, db, "veh-1", "storage.stateOfCharge"); len(got) != 1 || got[0].Num.Float64 != 74 || got[0].Unit != "%" || got[0].Text.Valid {
		t.Fatalf("soc rows = %+v", got)
	}
	if got := capValues(t, db, "veh-1", "connector.status"); len(got) != 1 || got[0].Text.String != "disconnected" || got[0].Num.Valid {
		t.Fatalf("connector rows = %+v", got)
	}
	if got := capValues(t, db, "veh-1", "charging.enabled"); len(got) != 1 || got[0].Num.Float64 != 1 || got[0].Text.String != "true" {
		t.Fatalf("boolean rows = %+v", got)
	}
	if got := rowCount(t, db, "capability_values"); got != 6 {
		t.Fatalf("capability_values = %d, want 6", got)
	}
	var payload string
	if err := db.RawForTest().QueryRow("SELECT payload FROM device_snapshots WHERE device_id = 'veh-1'").Scan(&payload); err != nil {
		t.Fatal(err)
	}
	if payload != string(v.Raw) {
		t.Fatalf("snapshot payload = %s, want the raw detail %s", payload, v.Raw)
	}
	if got := count(t, db, "SELECT count(*) FROM category_access WHERE granted = 1"); got != 2 {
		t.Fatalf("granted categories = %d, want 2 (vehicles, energy systems)", got)
	}
	if got := count(t, db, "SELECT granted FROM category_access WHERE category = 'charger'"); got != 0 {
		t.Fatal("chargers recorded as granted")
	}
	// RowsWritten counts the data rows, not the run row.
	var runRow struct {
		job, status string
		reqs, rows  int64
		start, end  int64
		errText     sql.NullString
	}
	if err := db.RawForTest().QueryRow("SELECT job, status, requests, rows_written, started_at, finished_at, error FROM sync_runs WHERE id = ?", id).
		Scan(&runRow.job, &runRow.status, &runRow.reqs, &runRow.rows, &runRow.start, &runRow.end, &runRow.errText); err != nil {
		t.Fatal(err)
	}
	wantRows := rowCount(t, db, "homes") + rowCount(t, db, "devices") + rowCount(t, db, "home_devices") +
		rowCount(t, db, "capability_values") + rowCount(t, db, "capability_state") + rowCount(t, db, "device_snapshots") +
		rowCount(t, db, "category_access") +
		2 // the details then set category and last_seen of the two listed devices
	if runRow.job != "devices" || runRow.status != "ok" || runRow.reqs != 3 || runRow.rows != wantRows ||
		runRow.start != t0.UnixMilli() || runRow.end != t0.Add(2*time.Second).UnixMilli() || runRow.errText.Valid {
		t.Fatalf("run row = %+v, want rows_written %d", runRow, wantRows)
	}

	got, err := db.ActiveHomeDevices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(got["h1"]) != 2 || len(got["h2"]) != 1 || got["h2"][0].ID != "veh-1" {
		t.Fatalf("ActiveHomeDevices = %+v", got)
	}
	for _, d := range got["h1"] {
		if d.ID == "bat-1" && (!reflect.DeepEqual(d.SupportedResolutions, []string{"hour", "day"}) || d.MaxRetentionDays != 730 ||
			d.Category != model.CategoryEnergySystem || d.Name != "Battery" || d.ExternalID != "ext-bat-1") {
			t.Fatalf("battery identity = %+v", d)
		}
	}
}

func TestSaveInventoryUnchangedCycleWritesOnlyTheRun(t *testing.T) {
	db, clk, path := MustOpenDB(t)
	mustSave(t, db, twoHomes(t0, 74))
	tables := []string{"homes", "devices", "home_devices", "device_snapshots", "capability_values", "capability_state", "category_access"}
	counts := map[string]int64{}
	for _, tb := range tables {
		counts[tb] = rowCount(t, db, tb)
	}
	if _, err := db.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := totalChanges(t, db)
	clk.Advance(5 * time.Minute)
	id := mustSave(t, db, twoHomes(t0.Add(5*time.Minute), 74))
	if d := totalChanges(t, db) - before; d != 1 {
		t.Fatalf("unchanged cycle changed %d rows, want 1 (its sync_runs row)", d)
	}
	if got := runRowsWritten(t, db, id); got != 0 {
		t.Fatalf("rows_written = %d, want 0", got)
	}
	for _, tb := range tables {
		if got := rowCount(t, db, tb); got != counts[tb] {
			t.Errorf("%s: %d rows, want %d", tb, got, counts[tb])
		}
	}
	// What reaches the disk: the WAL was empty after the checkpoint, so its
	// size now is the whole write of the cycle.
	fi, err := os.Stat(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	const frame = 4096 + 24
	pages := (fi.Size() - 32) / frame
	if pages > 3 {
		t.Fatalf("unchanged cycle wrote %d pages (%d bytes of WAL), want at most 3", pages, fi.Size())
	}
	t.Logf("unchanged cycle: %d WAL pages", pages)
}

func TestSaveInventoryLastSeenRefresh(t *testing.T) {
	db, _, _ := MustOpenDB(t)
	mustSave(t, db, twoHomes(t0, 74))
	mustSave(t, db, twoHomes(t0.Add(30*time.Minute), 74))
	if got := count(t, db, "SELECT last_seen_at FROM homes WHERE id = 'h1'"); got != t0.UnixMilli() {
		t.Fatalf("last_seen_at rewritten after 30 min: %d", got)
	}
	id := mustSave(t, db, twoHomes(t0.Add(61*time.Minute), 74))
	want := t0.Add(61 * time.Minute).UnixMilli()
	for _, q := range []string{
		"SELECT min(last_seen_at) FROM homes",
		"SELECT min(last_seen_at) FROM devices",
		"SELECT min(last_seen_at) FROM home_devices",
	} {
		if got := count(t, db, q); got != want {
			t.Errorf("%s = %d, want %d", q, got, want)
		}
	}
	if got := runRowsWritten(t, db, id); got != 2+2+3 {
		t.Fatalf("rows_written = %d, want 7 (2 homes, 2 devices, 3 links)", got)
	}
	if got := count(t, db, "SELECT first_seen_at FROM devices WHERE id = 'veh-1'"); got != t0.UnixMilli() {
		t.Fatalf("first_seen_at moved: %d", got)
	}
}

func TestSaveInventoryChangedCapability(t *testing.T) {
	db, _, _ := MustOpenDB(t)
	mustSave(t, db, twoHomes(t0, 74))
	values, snaps := rowCount(t, db, "capability_values"), rowCount(t, db, "device_snapshots")
	id := mustSave(t, db, twoHomes(t0.Add(5*time.Minute), 75))
	if got := rowCount(t, db, "capability_values") - values; got != 1 {
		t.Fatalf("new value rows = %d, want exactly 1", got)
	}
	if got := rowCount(t, db, "device_snapshots") - snaps; got != 1 {
		t.Fatalf("new snapshots = %d, want 1", got)
	}
	if got := runRowsWritten(t, db, id); got != 3 {
		t.Fatalf("rows_written = %d, want 3 (value, state, snapshot)", got)
	}
	var num float64
	var at string
	if err := db.RawForTest().QueryRow(`SELECT value_num, observed_at FROM latest_capabilities
WHERE device_id = 'veh-1' AND capability_id = 'storage.stateOfCharge'`).Scan(&num, &at); err != nil {
		t.Fatal(err)
	}
	if num != 75 || at != "2026-09-14T08:05:00.000Z" {
		t.Fatalf("latest soc = %v at %s", num, at)
	}
}

func TestSaveInventoryLastSeenAloneIsNoSnapshot(t *testing.T) {
	db, _, _ := MustOpenDB(t)
	mustSave(t, db, twoHomes(t0, 74))
	b := twoHomes(t0.Add(5*time.Minute), 74)
	b.Details[0].LastSeen = t0.Add(4 * time.Minute)
	b.Details[0].Raw = json.RawMessage(`{"id":"veh-1","status":{"lastSeen":"later"}}`)
	// Attribute order and key order differ; the content does not.
	b.Details[0].Attributes = []json.RawMessage{json.RawMessage(`{"id":"isOnline","value":true}`), json.RawMessage(` {"value":"WVWZZZ1","id":"vinNumber"}`)}
	snaps := rowCount(t, db, "device_snapshots")
	mustSave(t, db, b)
	if got := rowCount(t, db, "device_snapshots"); got != snaps {
		t.Fatalf("snapshots %d -> %d for a lastSeen-only change", snaps, got)
	}
	if got := count(t, db, "SELECT last_seen FROM devices WHERE id = 'veh-1'"); got != t0.Add(4*time.Minute).UnixMilli() {
		t.Fatalf("devices.last_seen = %d, not updated", got)
	}
	// An attribute that really changed is a new state.
	b = twoHomes(t0.Add(10*time.Minute), 74)
	b.Details[0].Attributes = []json.RawMessage{json.RawMessage(`{"id":"isOnline","value":false}`)}
	mustSave(t, db, b)
	if got := rowCount(t, db, "device_snapshots"); got != snaps+1 {
		t.Fatalf("snapshots = %d after an attribute change, want %d", got, snaps+1)
	}
}

func TestSaveInventoryMissingValueGrace(t *testing.T) {
	db, _, _ := MustOpenDB(t)
	const capID = "energyFlow.hour.grid.imported"
	cycle := func(i int, c model.Capability) int64 {
		b := twoHomes(t0.Add(time.Duration(i)*5*time.Minute), 74)
		b.Details[0].Capabilities = append(b.Details[0].Capabilities, c)
		return mustSave(t, db, b)
	}
	drop := func(i int) int64 { // the capability vanishes from the payload
		return mustSave(t, db, twoHomes(t0.Add(time.Duration(i)*5*time.Minute), 74))
	}
	cycle(0, numCap(capID, 812, "Wh"))
	values, snaps := rowCount(t, db, "capability_values"), rowCount(t, db, "device_snapshots")

	// Null for one cycle, back unchanged: nothing recorded.
	cycle(1, nullCap(capID, "Wh"))
	id := cycle(2, numCap(capID, 812, "Wh"))
	if got := rowCount(t, db, "capability_values"); got != values {
		t.Fatalf("value rows %d -> %d for a one-cycle null", values, got)
	}
	if got := rowCount(t, db, "device_snapshots"); got != snaps {
		t.Fatalf("snapshots %d -> %d for a one-cycle null", snaps, got)
	}
	if got := count(t, db, "SELECT count(*) FROM capability_state WHERE missing_since IS NOT NULL"); got != 0 {
		t.Fatalf("%d pending markers left after the value came back", got)
	}
	if got := runRowsWritten(t, db, id); got != 1 {
		t.Fatalf("rows_written when clearing the marker = %d, want 1", got)
	}

	// Absent for one cycle, back with a new value: one value row (the new value).
	drop(3)
	cycle(4, numCap(capID, 0, "Wh"))
	if got := capValues(t, db, "veh-1", capID); len(got) != 2 || got[1].Num.Float64 != 0 || got[1].Missing {
		t.Fatalf("rows after absent-then-new = %+v", got)
	}

	// Null for two cycles: exactly one missing row; a third changes nothing.
	cycle(5, nullCap(capID, "Wh"))
	cycle(6, nullCap(capID, "Wh"))
	drop(7)
	got := capValues(t, db, "veh-1", capID)
	if len(got) != 3 || !got[2].Missing || got[2].Num.Valid || got[2].Text.Valid || got[2].Unit != "Wh" {
		t.Fatalf("rows after two null cycles = %+v, want a third, missing row", got)
	}
	var vn sql.NullFloat64
	var missing bool
	if err := db.RawForTest().QueryRow(`SELECT value_num, missing FROM latest_capabilities
WHERE device_id = 'veh-1' AND capability_id = ?`, capID).Scan(&vn, &missing); err != nil {
		t.Fatal(err)
	}
	if vn.Valid || !missing {
		t.Fatalf("latest_capabilities for a missing value = %v missing=%v, want NULL, 1", vn, missing)
	}
	// Back: one value row.
	cycle(8, numCap(capID, 5, "Wh"))
	if got := capValues(t, db, "veh-1", capID); len(got) != 4 || got[3].Num.Float64 != 5 {
		t.Fatalf("rows after return = %+v", got)
	}
	// Never a zero for a missing reading.
	if got := count(t, db, "SELECT count(*) FROM capability_values WHERE missing = 1 AND value_num IS NOT NULL"); got != 0 {
		t.Fatal("a missing row carries a number")
	}
}

func TestSaveInventoryRemovals(t *testing.T) {
	ctx := context.Background()
	db, _, _ := MustOpenDB(t)
	mustSave(t, db, twoHomes(t0, 74))

	// h2 disappears from the homes list: marked removed, its link too; the
	// vehicle stays (still listed by h1).
	b := twoHomes(t0.Add(time.Hour), 74)
	b.Homes = b.Homes[:1]
	delete(b.HomeDevices, "h2")
	mustSave(t, db, b)
	if got := count(t, db, "SELECT count(*) FROM homes WHERE removed_at IS NOT NULL"); got != 1 {
		t.Fatalf("removed homes = %d, want 1", got)
	}
	if got := rowCount(t, db, "homes"); got != 2 {
		t.Fatalf("homes = %d: a removed home was deleted", got)
	}
	if got := count(t, db, "SELECT count(*) FROM home_devices WHERE home_id = 'h2' AND removed_at IS NOT NULL"); got != 1 {
		t.Fatal("link of the removed home still active")
	}
	if got := count(t, db, "SELECT count(*) FROM devices WHERE removed_at IS NOT NULL"); got != 0 {
		t.Fatal("a device still listed by h1 was marked removed")
	}

	// The battery disappears from h1's list: link and device removed, kept.
	b = twoHomes(t0.Add(2*time.Hour), 74)
	b.Homes = b.Homes[:1]
	b.HomeDevices = map[string][]model.Device{"h1": {vehicleListItem()}}
	mustSave(t, db, b)
	if got := count(t, db, "SELECT removed_at FROM devices WHERE id = 'bat-1'"); got != t0.Add(2*time.Hour).UnixMilli() {
		t.Fatalf("battery removed_at = %d", got)
	}
	active, err := db.ActiveHomeDevices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(active) != 1 || len(active["h1"]) != 1 || active["h1"][0].ID != "veh-1" {
		t.Fatalf("ActiveHomeDevices = %+v", active)
	}
	var overview struct {
		removed bool
		homes   sql.NullString
		snaps   int
	}
	if err := db.RawForTest().QueryRow("SELECT removed, homes, snapshot_count FROM device_overview WHERE device_id = 'bat-1'").
		Scan(&overview.removed, &overview.homes, &overview.snaps); err != nil {
		t.Fatal(err)
	}
	if !overview.removed || overview.homes.Valid {
		t.Fatalf("device_overview for the removed battery = %+v", overview)
	}

	// A devices-only cycle (Homes nil) does not touch the homes, and a list
	// that failed (home absent from HomeDevices) leaves its links alone.
	mustSave(t, db, model.InventoryBatch{ObservedAt: t0.Add(3 * time.Hour), HomeDevices: map[string][]model.Device{}})
	if got := count(t, db, "SELECT count(*) FROM homes WHERE removed_at IS NULL"); got != 1 {
		t.Fatal("a homes-less batch changed the homes")
	}

	// Everything comes back.
	mustSave(t, db, twoHomes(t0.Add(4*time.Hour), 74))
	if got := count(t, db, "SELECT count(*) FROM homes WHERE removed_at IS NOT NULL") +
		count(t, db, "SELECT count(*) FROM devices WHERE removed_at IS NOT NULL") +
		count(t, db, "SELECT count(*) FROM home_devices WHERE removed_at IS NOT NULL"); got != 0 {
		t.Fatalf("%d rows still marked removed after they came back", got)
	}
	if got := rowCount(t, db, "home_devices"); got != 3 {
		t.Fatalf("links = %d, want 3 (revived, not duplicated)", got)
	}
}

// The devices job may run before the homes job ever stored a home.
func TestSaveInventoryDevicesBeforeHomes(t *testing.T) {
	db, _, _ := MustOpenDB(t)
	mustSave(t, db, model.InventoryBatch{ObservedAt: t0, HomeDevices: map[string][]model.Device{"h9": {listItem("d9", "Charger")}}})
	if got := count(t, db, "SELECT count(*) FROM home_devices WHERE home_id = 'h9' AND device_id = 'd9' AND removed_at IS NULL"); got != 1 {
		t.Fatal("link not stored")
	}
	mustSave(t, db, model.InventoryBatch{ObservedAt: t0.Add(time.Minute), Homes: []model.Home{{ID: "h9", Name: "Named later"}}})
	if got := count(t, db, "SELECT count(*) FROM homes WHERE id = 'h9' AND name = 'Named later'"); got != 1 {
		t.Fatal("home name not filled in")
	}
}

// Re-running a batch (a crash after the API calls, R14) is harmless.
func TestSaveInventoryIdempotent(t *testing.T) {
	db, _, _ := MustOpenDB(t)
	b := twoHomes(t0, 74)
	mustSave(t, db, b)
	counts := map[string]int64{}
	for _, tb := range []string{"homes", "devices", "home_devices", "device_snapshots", "capability_values"} {
		counts[tb] = rowCount(t, db, tb)
	}
	mustSave(t, db, b)
	for tb, n := range counts {
		if got := rowCount(t, db, tb); got != n {
			t.Errorf("%s: %d rows after a re-run, want %d", tb, got, n)
		}
	}
}

// A detail whose identity disagrees with its list item neither overwrites
// the list's identity nor makes the row flip between the two every cycle.
func TestSaveInventoryDetailDisagreeingWithList(t *testing.T) {
	db, _, _ := MustOpenDB(t)
	b := twoHomes(t0, 74)
	b.HomeDevices["h1"][0].Name = "My car"
	b.HomeDevices["h2"][0].Name = "My car"
	mustSave(t, db, b)
	before := totalChanges(t, db)
	b = twoHomes(t0.Add(5*time.Minute), 74)
	b.HomeDevices["h1"][0].Name = "My car"
	b.HomeDevices["h2"][0].Name = "My car"
	id := mustSave(t, db, b)
	if got := runRowsWritten(t, db, id); got != 0 {
		t.Fatalf("rows_written = %d, want 0 (changed %d)", got, totalChanges(t, db)-before)
	}
	var name string
	if err := db.RawForTest().QueryRow("SELECT name FROM devices WHERE id = 'veh-1'").Scan(&name); err != nil || name != "My car" {
		t.Fatalf("name = %q, %v; want the list's", name, err)
	}
}

// TestSaveInventoryNegativeZeroIsNoChange: a reading of -0 (Tibber's JSON
// may say "-0") comes back from SQLite as 0; the next identical poll must
// not count that as a change.
func TestSaveInventoryNegativeZeroIsNoChange(t *testing.T) {
	db, clk, _ := MustOpenDB(t)
	negZero := math.Copysign(0, -1)
	mustSave(t, db, twoHomes(t0, negZero))
	snaps, values := rowCount(t, db, "device_snapshots"), rowCount(t, db, "capability_values")
	clk.Advance(5 * time.Minute)
	id := mustSave(t, db, twoHomes(t0.Add(5*time.Minute), negZero))
	if got := runRowsWritten(t, db, id); got != 0 {
		t.Fatalf("rows_written = %d for an unchanged -0 reading, want 0", got)
	}
	if got := rowCount(t, db, "device_snapshots"); got != snaps {
		t.Errorf("device_snapshots %d → %d for an unchanged -0 reading", snaps, got)
	}
	if got := rowCount(t, db, "capability_values"); got != values {
		t.Errorf("capability_values %d → %d for an unchanged -0 reading", values, got)
	}
}
