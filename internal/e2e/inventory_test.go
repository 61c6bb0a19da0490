package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/simulator"
)

// TestInventoryMatchesSimulator: after a homes and a devices run, data.db
// holds exactly what the simulator served: both homes, every device once
// with its identity and the hidden category derived from capabilities, the
// vehicle linked under both homes, each device's latest values with units,
// and a snapshot whose payload is the detail as served.
func TestInventoryMatchesSimulator(t *testing.T) {
	e := newEnv(t, envConfig{})
	homes := e.mustRun(jobs.JobHomes, jobs.StatusOK)
	if homes.run.RowsWritten == 0 {
		t.Errorf("homes run wrote no rows")
	}
	if n := e.count(`SELECT count(*) FROM device_snapshots`); n != 0 {
		t.Errorf("homes run wrote %d snapshots; it fetches no details", n)
	}
	at := e.clk.Now()
	dev := e.mustRun(jobs.JobDevices, jobs.StatusOK)
	e.checkIntegrity()
	e.checkInventory()

	acct := e.sim.Account()
	devs := uniqueDevices(acct)
	// Every device detail fetched once, even the vehicle listed twice.
	if got := countEndpoint(dev.reqs, "device"); got != len(devs) {
		t.Errorf("devices run made %d detail requests, want %d (one per device)", got, len(devs))
	}
	if dev.run.Requests != len(dev.reqs) {
		t.Errorf("run recorded %d requests, the simulator saw %d", dev.run.Requests, len(dev.reqs))
	}
	shared := 0
	for _, d := range devs {
		if len(d.Dev.HomeIDs) > 1 {
			shared++
			if n := e.count(`SELECT count(*) FROM home_devices WHERE device_id = ?`, d.Dev.ID); n != len(d.Dev.HomeIDs) {
				t.Errorf("device %s listed under %d homes has %d links", d.Dev.Name, len(d.Dev.HomeIDs), n)
			}
			if n := e.count(`SELECT count(*) FROM devices WHERE id = ?`, d.Dev.ID); n != 1 {
				t.Errorf("device %s stored %d times", d.Dev.Name, n)
			}
		}
		e.checkLatest(d.HomeID, d.Dev.ID, at)
		if n := e.snapshotCount(d.Dev.ID); n != 1 {
			t.Errorf("device %s has %d snapshots after one cycle, want 1", d.Dev.Name, n)
		}
		e.checkSnapshotPayload(d.HomeID, d.Dev.ID, at)
	}
	if shared == 0 {
		t.Fatalf("fixture has no device under several homes; the test would prove nothing")
	}
	// Every category of the fixture was derived, and all are granted.
	cats := map[string]bool{}
	for _, d := range devs {
		cats[d.Dev.Category] = true
	}
	for _, c := range model.AllCategories {
		if !cats[string(c)] {
			t.Errorf("fixture lacks category %s", c)
		}
	}
	if n := e.count(`SELECT count(*) FROM category_access WHERE granted = 1`); n != len(model.AllCategories) {
		t.Errorf("category_access grants %d categories, want %d", n, len(model.AllCategories))
	}
	// The values carry units: the view shows them.
	if n := e.count(`SELECT count(*) FROM latest_capabilities WHERE unit <> ''`); n == 0 {
		t.Errorf("no latest value has a unit")
	}
	// The devices run's sync_runs row matches what it returned.
	last := e.lastRun()
	if last.Job != jobs.JobDevices || last.Status != jobs.StatusOK || last.Requests != dev.run.Requests || last.Rows != dev.run.RowsWritten {
		t.Errorf("sync_runs row %+v does not match the run %+v", last, dev.run)
	}
}

// countEndpoint counts the logged requests to one endpoint.
func countEndpoint(reqs []reqRecord, endpoint string) int {
	n := 0
	for _, r := range reqs {
		if r.Endpoint == endpoint {
			n++
		}
	}
	return n
}

// servedChanges counts the capabilities whose value or unit differs between
// two served states of a device (present in one only counts too).
func servedChanges(a, b simulator.DeviceDetail) int {
	av := map[string]capRow{}
	for _, c := range a.Capabilities {
		r, _ := expectedCap(c)
		av[c.ID] = r
	}
	n := 0
	seen := map[string]bool{}
	for _, c := range b.Capabilities {
		seen[c.ID] = true
		r, _ := expectedCap(c)
		if old, ok := av[c.ID]; !ok || !eqCap(old, r) {
			n++
		}
	}
	for id := range av {
		if !seen[id] {
			n++
		}
	}
	return n
}

// TestUnchangedCyclesAddNoRows: two more devices cycles within the same
// 15-minute simulator state step add only their sync_runs rows (no
// snapshot, no capability value, no row touched at all); the first cycle
// after the state changed adds exactly one capability_values row per
// changed value and one snapshot per changed device.
func TestUnchangedCyclesAddNoRows(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.mustRun(jobs.JobDevices, jobs.StatusOK)
	t0 := e.clk.Now()
	for i, step := range []time.Duration{3 * time.Minute, 4 * time.Minute} {
		before := e.tableCounts()
		e.clk.Advance(step)
		if e.clk.Now().Truncate(15*time.Minute) != t0.Truncate(15*time.Minute) {
			t.Fatalf("cycle %d left the state step; the test's times are wrong", i+2)
		}
		res := e.mustRun(jobs.JobDevices, jobs.StatusOK)
		after := e.tableCounts()
		for tbl, n := range after {
			want := before[tbl]
			if tbl == "sync_runs" {
				want++
			}
			if n != want {
				t.Errorf("unchanged cycle %d: %s has %d rows, want %d", i+2, tbl, n, want)
			}
		}
		if res.run.RowsWritten != 0 {
			t.Errorf("unchanged cycle %d wrote %d rows, want 0", i+2, res.run.RowsWritten)
		}
		if last := e.lastRun(); last.Rows != 0 || last.Status != jobs.StatusOK {
			t.Errorf("unchanged cycle %d recorded %+v", i+2, last)
		}
	}

	// The next state step: rows for exactly what changed.
	t1 := e.clk.Now()
	e.clk.Set(t0.Truncate(15 * time.Minute).Add(15*time.Minute + 7*time.Minute + 30*time.Second))
	t2 := e.clk.Now()
	devs := uniqueDevices(e.sim.Account())
	valuesBefore := map[string]int{}
	snapsBefore := map[string]int{}
	for _, d := range devs {
		valuesBefore[d.Dev.ID] = e.count(`SELECT count(*) FROM capability_values WHERE device_id = ?`, d.Dev.ID)
		snapsBefore[d.Dev.ID] = e.snapshotCount(d.Dev.ID)
	}
	res := e.mustRun(jobs.JobDevices, jobs.StatusOK)
	totalChanged, changedDevices := 0, 0
	for _, d := range devs {
		changed := servedChanges(e.sim.DeviceState(d.HomeID, d.Dev.ID, t1), e.sim.DeviceState(d.HomeID, d.Dev.ID, t2))
		totalChanged += changed
		if got := e.count(`SELECT count(*) FROM capability_values WHERE device_id = ?`, d.Dev.ID) - valuesBefore[d.Dev.ID]; got != changed {
			t.Errorf("device %s: %d new capability values, %d served values changed", d.Dev.Name, got, changed)
		}
		wantSnaps := 0
		if changed > 0 {
			wantSnaps = 1
			changedDevices++
		}
		if got := e.snapshotCount(d.Dev.ID) - snapsBefore[d.Dev.ID]; got != wantSnaps {
			t.Errorf("device %s: %d new snapshots, want %d (%d values changed)", d.Dev.Name, got, wantSnaps, changed)
		}
		e.checkLatest(d.HomeID, d.Dev.ID, t2)
	}
	if totalChanged == 0 || changedDevices == len(devs) {
		t.Errorf("%d values changed on %d of %d devices: the step change should change some devices and leave the offline vehicle alone",
			totalChanged, changedDevices, len(devs))
	}
	t.Logf("state step change: %d values changed on %d of %d devices; the run wrote %d rows", totalChanged, changedDevices, len(devs), res.run.RowsWritten)
	if res.run.RowsWritten < totalChanged {
		t.Errorf("changed cycle wrote %d rows, fewer than the %d changed values", res.run.RowsWritten, totalChanged)
	}
	e.checkIntegrity()
}

// TestBadDeviceInput: device details with wrong types, missing members, no
// id, another device's id and a truncated body. The run never crashes,
// records what it skipped (partial, naming each device), stores every
// valid part (including the odd detail's well-formed capabilities, with a
// string where a number was expected kept as text) and stores nothing of
// the rejected details; the next clean cycle stores everything.
func TestBadDeviceInput(t *testing.T) {
	e := newEnv(t, envConfig{})
	acct := e.sim.Account()
	byName := map[string]struct {
		HomeID string
		Dev    simulator.Device
	}{}
	for _, d := range uniqueDevices(acct) {
		byName[d.Dev.Name] = d
	}
	stue, battery, roof, heatpump := byName["Stue"], byName["Battery"], byName["Roof"], byName["Heat pump"]
	e.fe.setRewrite(func(r *http.Request, status int, body []byte) []byte {
		if endpointName(r.URL) != "device" || status != http.StatusOK {
			return body
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Errorf("simulator sent invalid JSON: %v", err)
			return body
		}
		switch m["id"] {
		case stue.Dev.ID:
			delete(m, "externalId")
			m["info"] = "broken"
			caps, _ := m["capabilities"].([]any)
			for _, c := range caps {
				cm, _ := c.(map[string]any)
				switch cm["id"] {
				case "temp.setpoint":
					cm["value"] = "twenty-one"
				case "temp.comfort":
					cm["unit"] = 7
				}
			}
			m["capabilities"] = append(caps, 42, map[string]any{"value": 5, "unit": "W"}, nil,
				map[string]any{"id": "extra.flag", "description": "odd", "value": map[string]any{"on": true}})
		case battery.Dev.ID:
			delete(m, "id")
		case roof.Dev.ID:
			m["id"] = heatpump.Dev.ID
		case heatpump.Dev.ID:
			return body[:len(body)/2]
		}
		out, err := json.Marshal(m)
		if err != nil {
			t.Errorf("re-encode detail: %v", err)
			return body
		}
		return out
	})
	at := e.clk.Now()
	res := e.mustRun(jobs.JobDevices, jobs.StatusPartial)
	e.checkIntegrity()
	if !strings.Contains(res.run.Error, fmt.Sprintf("3 of %d device details skipped", len(byName))) {
		t.Errorf("run error %q does not count the 3 skipped details", res.run.Error)
	}
	for _, d := range []struct {
		HomeID string
		Dev    simulator.Device
	}{battery, roof, heatpump} {
		if !strings.Contains(res.run.Error, d.Dev.ID) {
			t.Errorf("run error %q does not name %s", res.run.Error, d.Dev.Name)
		}
		if n := e.snapshotCount(d.Dev.ID) + e.count(`SELECT count(*) FROM capability_values WHERE device_id = ?`, d.Dev.ID); n != 0 {
			t.Errorf("rejected detail of %s stored %d rows", d.Dev.Name, n)
		}
	}
	if n := e.count(`SELECT count(*) FROM capability_values WHERE capability_id = ''`); n != 0 {
		t.Errorf("%d capability values without id stored", n)
	}
	// The valid devices are stored as served.
	for name, d := range byName {
		switch name {
		case "Stue", "Battery", "Roof", "Heat pump":
			continue
		}
		e.checkLatest(d.HomeID, d.Dev.ID, at)
	}
	// The odd detail: identity from the list, the odd values as the rules say.
	e.checkInventory(battery.Dev.ID, roof.Dev.ID, heatpump.Dev.ID)
	odd := map[string]bool{"temp.setpoint": true, "temp.comfort": true, "extra.flag": true}
	e.checkLatestExcept(stue.HomeID, stue.Dev.ID, at, func(id string) bool { return odd[id] })
	got := e.latest(stue.Dev.ID)
	if c := got["temp.setpoint"]; c.Num != nil || c.Text == nil || *c.Text != "twenty-one" || c.Unit != "°C" {
		t.Errorf("temp.setpoint sent as a string: stored %v, want the text kept with its unit", c)
	}
	if c := got["temp.comfort"]; c.Num == nil || *c.Num != 22 || c.Unit != "" {
		t.Errorf("temp.comfort with a numeric unit: stored %v, want 22 and no unit", c)
	}
	if c := got["extra.flag"]; c.Text == nil || *c.Text != `{"on":true}` || c.Num != nil {
		t.Errorf("extra.flag with an object value: stored %v, want its JSON as text", c)
	}

	// A clean cycle stores everything; the capability that disappeared
	// keeps its last value for one cycle, then is recorded as missing.
	e.fe.setRewrite(nil)
	e.clk.Advance(time.Minute)
	e.mustRun(jobs.JobDevices, jobs.StatusOK)
	at = e.clk.Now()
	e.checkInventory()
	notFlag := func(id string) bool { return id == "extra.flag" }
	for _, d := range byName {
		e.checkLatestExcept(d.HomeID, d.Dev.ID, at, notFlag)
	}
	if c := e.latest(stue.Dev.ID)["extra.flag"]; c.Missing || c.Text == nil {
		t.Errorf("extra.flag after one cycle without it: %v, want the last value kept (one-cycle grace)", c)
	}
	e.clk.Advance(time.Minute)
	e.mustRun(jobs.JobDevices, jobs.StatusOK)
	if c := e.latest(stue.Dev.ID)["extra.flag"]; !c.Missing || c.Text != nil || c.Num != nil {
		t.Errorf("extra.flag after two cycles without it: %v, want recorded as missing", c)
	}
	e.checkIntegrity()
}

// TestBoundaryNullAndVanish: just after a period boundary the battery's
// running energyFlow totals are null or missing for the simulator's
// BoundaryGap: at local midnight the hour and the day totals (12
// capabilities), an hour later the hour totals (6). The test picks a night
// where one boundary blanks them as null and the other makes them vanish,
// and runs cycles at hh:mm-7:30, +0:30, +2:00 and +3:30 around each: a
// first blank cycle records nothing and keeps the last value visible, a
// second consecutive one records a missing row (value NULL, unit kept),
// and the returning value is recorded again. Every run is ok and the rest
// of each state is stored as served.
func TestBoundaryNullAndVanish(t *testing.T) {
	const gap = 3 * time.Minute
	oslo, err := time.LoadLocation("Europe/Oslo")
	if err != nil {
		t.Fatal(err)
	}
	probe := simulator.New(simulator.Options{Seed: 7, BoundaryGap: gap})
	var homeID, batteryID string
	for _, d := range uniqueDevices(probe.Account()) {
		if d.Dev.Kind == "battery" {
			homeID, batteryID = d.HomeID, d.Dev.ID
		}
	}
	if batteryID == "" {
		t.Fatal("fixture has no battery")
	}
	blank := func(ds simulator.DeviceDetail, id string) string {
		c, ok := ds.Capability(id)
		switch {
		case !ok:
			return "vanished"
		case c.Value == nil:
			return "null"
		}
		return "present"
	}
	// A midnight whose blank kind differs from the next hour's.
	var midnight time.Time
	base := baseTime.In(oslo)
	for i := 1; i <= 60 && midnight.IsZero(); i++ {
		m := time.Date(base.Year(), base.Month(), base.Day()+i, 0, 0, 0, 0, oslo)
		k0 := blank(probe.DeviceState(homeID, batteryID, m.Add(30*time.Second)), "energyFlow.day.grid.imported")
		k1 := blank(probe.DeviceState(homeID, batteryID, m.Add(time.Hour+30*time.Second)), "energyFlow.hour.grid.imported")
		if k0 != "present" && k1 != "present" && k0 != k1 {
			midnight = m
		}
	}
	probe.Close()
	if midnight.IsZero() {
		t.Fatal("no night within 60 days whose midnight and 01:00 blanks differ")
	}

	e := newEnv(t, envConfig{sim: simulator.Options{BoundaryGap: gap}, start: midnight.Add(-7*time.Minute - 30*time.Second)})
	e.mustRun(jobs.JobDevices, jobs.StatusOK)
	e.checkLatest(homeID, batteryID, e.clk.Now())

	seen := map[string]bool{}
	for _, b := range []struct {
		at     time.Time
		prefix []string // the capability groups that blank
	}{
		{midnight, []string{"energyFlow.hour.", "energyFlow.day."}},
		{midnight.Add(time.Hour), []string{"energyFlow.hour."}},
	} {
		blanked := func(id string) bool {
			for _, p := range b.prefix {
				if strings.HasPrefix(id, p) {
					return true
				}
			}
			return false
		}
		values := func() int {
			n := 0
			for _, p := range b.prefix {
				n += e.count(`SELECT count(*) FROM capability_values WHERE device_id = ? AND capability_id LIKE ?`, batteryID, p+"%")
			}
			return n
		}
		checkOthers := func() {
			t.Helper()
			for _, d := range uniqueDevices(e.sim.Account()) {
				e.checkLatestExcept(d.HomeID, d.Dev.ID, e.clk.Now(), blanked)
			}
		}
		label := b.at.In(oslo).Format("15:04")

		// Before the boundary: a normal cycle (the first one ran above).
		if !e.clk.Now().Equal(b.at.Add(-7*time.Minute - 30*time.Second)) {
			e.clk.Set(b.at.Add(-7*time.Minute - 30*time.Second))
			e.mustRun(jobs.JobDevices, jobs.StatusOK)
			e.checkLatest(homeID, batteryID, e.clk.Now())
		}
		served := e.sim.DeviceState(homeID, batteryID, e.clk.Now())
		var ids []string
		for _, c := range served.Capabilities {
			if blanked(c.ID) {
				ids = append(ids, c.ID)
			}
		}
		if len(ids) != 6*len(b.prefix) {
			t.Fatalf("%s: battery serves %d capabilities of %v before the boundary, want %d", label, len(ids), b.prefix, 6*len(b.prefix))
		}
		n0 := values()

		// +0:30: blank for the first time. Nothing recorded, last values kept.
		e.clk.Set(b.at.Add(30 * time.Second))
		ds := e.sim.DeviceState(homeID, batteryID, e.clk.Now())
		kinds := map[string]int{}
		for _, id := range ids {
			kinds[blank(ds, id)]++
		}
		if len(kinds) != 1 || kinds["present"] != 0 {
			t.Fatalf("%s+0:30: the capabilities are %v, want all null or all vanished", label, kinds)
		}
		for k := range kinds {
			seen[k] = true
		}
		e.mustRun(jobs.JobDevices, jobs.StatusOK)
		if n := values(); n != n0 {
			t.Errorf("%s: first blank cycle recorded %d values, want none", label, n-n0)
		}
		latest := e.latest(batteryID)
		for _, id := range ids {
			want, _ := expectedCap(mustCap(t, served, id))
			if got := latest[id]; !eqCap(got, want) {
				t.Errorf("%s: %s after one blank cycle: %v, want the last value %v", label, id, got, want)
			}
		}
		if n := e.count(`SELECT count(*) FROM capability_state WHERE device_id = ? AND missing_since IS NOT NULL`, batteryID); n != len(ids) {
			t.Errorf("%s: %d capabilities marked pending, want %d", label, n, len(ids))
		}
		checkOthers()

		// +2:00: blank again. One missing row each, unit kept.
		e.clk.Set(b.at.Add(2 * time.Minute))
		e.mustRun(jobs.JobDevices, jobs.StatusOK)
		if n := values(); n != n0+len(ids) {
			t.Errorf("%s: second blank cycle recorded %d values, want %d", label, n-n0, len(ids))
		}
		latest = e.latest(batteryID)
		for _, id := range ids {
			if got := latest[id]; !got.Missing || got.Num != nil || got.Text != nil || got.Unit != "Wh" {
				t.Errorf("%s: %s after two blank cycles: %v, want missing with unit Wh", label, id, got)
			}
		}
		checkOthers()

		// +3:30: back. New values recorded, nothing pending.
		e.clk.Set(b.at.Add(3*time.Minute + 30*time.Second))
		e.mustRun(jobs.JobDevices, jobs.StatusOK)
		if n := values(); n != n0+2*len(ids) {
			t.Errorf("%s: returning values recorded %d values, want %d", label, n-n0-len(ids), len(ids))
		}
		e.checkLatest(homeID, batteryID, e.clk.Now())
		if n := e.count(`SELECT count(*) FROM capability_state WHERE device_id = ? AND missing_since IS NOT NULL`, batteryID); n != 0 {
			t.Errorf("%s: %d capabilities still pending after the values came back", label, n)
		}
		checkOthers()
	}
	t.Logf("night of %s: blank kinds %v", midnight.Format("2006-01-02"), slices.Sorted(maps.Keys(seen)))
	if !seen["null"] || !seen["vanished"] {
		t.Errorf("blank kinds covered: %v, want both null and vanished", seen)
	}
	if n := e.count(`SELECT count(*) FROM sync_runs WHERE status <> 'ok'`); n != 0 {
		t.Errorf("%d runs around the boundaries were not ok", n)
	}
	e.checkIntegrity()
}

func mustCap(t *testing.T, ds simulator.DeviceDetail, id string) simulator.Capability {
	t.Helper()
	c, ok := ds.Capability(id)
	if !ok {
		t.Fatalf("device %s serves no %s", ds.Info.Name, id)
	}
	return c
}
