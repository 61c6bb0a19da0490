package e2e

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tibbersync/tibbersync/internal/simulator"
)

// This file compares data.db with the simulator's ground truth, read the
// way an analyst reads it: a separate read-only connection.

// count runs a counting query.
func (e *env) count(query string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.ro.QueryRow(query, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", query, err)
	}
	return n
}

// tableCounts counts the rows of the tables a run may write.
func (e *env) tableCounts() map[string]int {
	e.t.Helper()
	out := map[string]int{}
	for _, tbl := range []string{"homes", "devices", "home_devices", "device_snapshots", "capability_values",
		"capability_state", "device_history", "history_checkpoints", "sync_runs"} {
		out[tbl] = e.count("SELECT count(*) FROM " + tbl)
	}
	return out
}

// checkIntegrity asserts PRAGMA integrity_check = ok and an empty
// foreign_key_check.
func (e *env) checkIntegrity() {
	e.t.Helper()
	var res string
	if err := e.ro.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil {
		e.t.Fatalf("integrity_check: %v", err)
	}
	if res != "ok" {
		e.t.Errorf("integrity_check = %q, want ok", res)
	}
	rows, err := e.ro.Query("PRAGMA foreign_key_check")
	if err != nil {
		e.t.Fatalf("foreign_key_check: %v", err)
	}
	defer rows.Close()
	bad := 0
	for rows.Next() {
		bad++
	}
	if err := rows.Err(); err != nil {
		e.t.Fatalf("foreign_key_check: %v", err)
	}
	if bad > 0 {
		e.t.Errorf("foreign_key_check reports %d violations", bad)
	}
}

// storedRun is one sync_runs row.
type storedRun struct {
	ID       int64
	Job      string
	Status   string
	Error    string
	Requests int
	Rows     int
}

// lastRun returns the newest sync_runs row.
func (e *env) lastRun() storedRun {
	e.t.Helper()
	var r storedRun
	var msg sql.NullString
	err := e.ro.QueryRow(`SELECT id, job, status, error, requests, rows_written FROM sync_runs ORDER BY id DESC LIMIT 1`).
		Scan(&r.ID, &r.Job, &r.Status, &msg, &r.Requests, &r.Rows)
	if err != nil {
		e.t.Fatalf("last run: %v", err)
	}
	r.Error = msg.String
	return r
}

// uniqueDevices returns every device of the account once, with the first
// home that lists it.
func uniqueDevices(acct simulator.Account) []struct {
	HomeID string
	Dev    simulator.Device
} {
	var out []struct {
		HomeID string
		Dev    simulator.Device
	}
	seen := map[string]bool{}
	for _, h := range acct.Homes {
		for _, d := range h.Devices {
			if seen[d.ID] {
				continue
			}
			seen[d.ID] = true
			out = append(out, struct {
				HomeID string
				Dev    simulator.Device
			}{h.ID, d})
		}
	}
	return out
}

// checkInventory compares homes, devices and home_devices with the
// simulator's account: every home, every device once with its identity and
// hidden category, and one link per (home, device) listing. Devices named
// in undetailed never had a detail stored, so their category is unknown.
func (e *env) checkInventory(undetailed ...string) {
	e.t.Helper()
	acct := e.sim.Account()

	want := map[string]string{}
	for _, h := range acct.Homes {
		want[h.ID] = h.Name
	}
	got := map[string]string{}
	rows, err := e.ro.Query(`SELECT id, name FROM homes WHERE removed_at IS NULL`)
	if err != nil {
		e.t.Fatal(err)
	}
	for rows.Next() {
		var id, name string
		if err := rows.Scan(&id, &name); err != nil {
			e.t.Fatal(err)
		}
		got[id] = name
	}
	rows.Close()
	if !reflect.DeepEqual(got, want) {
		e.t.Errorf("homes = %v, want %v", got, want)
	}

	type devRow struct {
		ExternalID, Name, Brand, Model, Category, Resolutions string
		Retention                                             int
	}
	wantDev := map[string]devRow{}
	wantLinks := map[string]bool{}
	for _, h := range acct.Homes {
		for _, d := range h.Devices {
			res, _ := json.Marshal(d.Resolutions)
			cat := d.Category
			if slices.Contains(undetailed, d.ID) {
				cat = "unknown"
			}
			wantDev[d.ID] = devRow{d.ExternalID, d.Name, d.Brand, d.Model, cat, string(res), d.MaxRetentionDays}
			wantLinks[h.ID+"/"+d.ID] = true
		}
	}
	gotDev := map[string]devRow{}
	rows, err = e.ro.Query(`SELECT id, external_id, name, brand, model, category, supported_resolutions, max_retention_days
FROM devices WHERE removed_at IS NULL`)
	if err != nil {
		e.t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var r devRow
		if err := rows.Scan(&id, &r.ExternalID, &r.Name, &r.Brand, &r.Model, &r.Category, &r.Resolutions, &r.Retention); err != nil {
			e.t.Fatal(err)
		}
		gotDev[id] = r
	}
	rows.Close()
	for id, w := range wantDev {
		g, ok := gotDev[id]
		switch {
		case !ok:
			e.t.Errorf("device %s (%s) not stored", id, w.Name)
		case g != w:
			e.t.Errorf("device %s:\n got %+v\nwant %+v", id, g, w)
		}
	}
	for id := range gotDev {
		if _, ok := wantDev[id]; !ok {
			e.t.Errorf("stored device %s is not in the account", id)
		}
	}
	gotLinks := map[string]bool{}
	rows, err = e.ro.Query(`SELECT home_id, device_id FROM home_devices WHERE removed_at IS NULL`)
	if err != nil {
		e.t.Fatal(err)
	}
	for rows.Next() {
		var h, d string
		if err := rows.Scan(&h, &d); err != nil {
			e.t.Fatal(err)
		}
		gotLinks[h+"/"+d] = true
	}
	rows.Close()
	if !reflect.DeepEqual(gotLinks, wantLinks) {
		e.t.Errorf("home_devices links = %v, want %v", slices.Sorted(mapKeys(gotLinks)), slices.Sorted(mapKeys(wantLinks)))
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// capRow is one latest_capabilities row.
type capRow struct {
	Num     *float64
	Text    *string
	Unit    string
	Missing bool
}

func (c capRow) String() string {
	var v string
	switch {
	case c.Num != nil && c.Text != nil:
		v = fmt.Sprintf("%g/%q", *c.Num, *c.Text)
	case c.Num != nil:
		v = fmt.Sprintf("%g", *c.Num)
	case c.Text != nil:
		v = fmt.Sprintf("%q", *c.Text)
	default:
		v = "null"
	}
	if c.Missing {
		v += " (missing)"
	}
	return v + " " + c.Unit
}

// latest reads latest_capabilities of one device.
func (e *env) latest(deviceID string) map[string]capRow {
	e.t.Helper()
	rows, err := e.ro.Query(`SELECT capability_id, value_num, value_text, unit, missing
FROM latest_capabilities WHERE device_id = ?`, deviceID)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]capRow{}
	for rows.Next() {
		var id string
		var num sql.NullFloat64
		var text sql.NullString
		var r capRow
		if err := rows.Scan(&id, &num, &text, &r.Unit, &r.Missing); err != nil {
			e.t.Fatal(err)
		}
		if num.Valid {
			r.Num = &num.Float64
		}
		if text.Valid {
			r.Text = &text.String
		}
		out[id] = r
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// expectedCap is what latest_capabilities must show for a served
// capability; ok is false for a null value (no reading).
func expectedCap(c simulator.Capability) (capRow, bool) {
	r := capRow{}
	if c.Unit != nil {
		r.Unit = *c.Unit
	}
	switch v := c.Value.(type) {
	case nil:
		return r, false
	case float64:
		r.Num = &v
	case int64:
		f := float64(v)
		r.Num = &f
	case int:
		f := float64(v)
		r.Num = &f
	case string:
		r.Text = &v
	case bool:
		f, s := 0.0, "false"
		if v {
			f, s = 1, "true"
		}
		r.Num, r.Text = &f, &s
	default:
		panic(fmt.Sprintf("unexpected capability value type %T", v))
	}
	return r, true
}

func eqCap(a, b capRow) bool {
	eqF := func(x, y *float64) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	eqS := func(x, y *string) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	return eqF(a.Num, b.Num) && eqS(a.Text, b.Text) && a.Unit == b.Unit && a.Missing == b.Missing
}

// checkLatest compares latest_capabilities of a device with the state the
// simulator serves at time at: the same capability ids, values and units.
// Capabilities served as null must not show a reading of their own.
func (e *env) checkLatest(homeID, deviceID string, at time.Time) {
	e.t.Helper()
	e.checkLatestExcept(homeID, deviceID, at, nil)
}

// checkLatestExcept is checkLatest with the capability ids for which skip
// returns true left out on both sides.
func (e *env) checkLatestExcept(homeID, deviceID string, at time.Time, skip func(id string) bool) {
	e.t.Helper()
	if skip == nil {
		skip = func(string) bool { return false }
	}
	ds := e.sim.DeviceState(homeID, deviceID, at)
	if ds.ID == "" {
		e.t.Fatalf("simulator has no device %s under home %s", deviceID, homeID)
	}
	got := e.latest(deviceID)
	served := map[string]bool{}
	for _, c := range ds.Capabilities {
		if skip(c.ID) {
			continue
		}
		served[c.ID] = true
		want, ok := expectedCap(c)
		g, stored := got[c.ID]
		switch {
		case !ok:
			// A null on its first appearance is only marked pending.
			if stored && !g.Missing && g.Num == nil && g.Text == nil {
				e.t.Errorf("device %s capability %s: null stored as a reading", ds.Info.Name, c.ID)
			}
		case !stored:
			e.t.Errorf("device %s capability %s: not in latest_capabilities (served %v)", ds.Info.Name, c.ID, c.Value)
		case !eqCap(g, want):
			e.t.Errorf("device %s capability %s: latest %v, served %v", ds.Info.Name, c.ID, g, want)
		}
	}
	for id := range got {
		if !served[id] && !skip(id) {
			e.t.Errorf("device %s: latest_capabilities has %s, which the simulator does not serve", ds.Info.Name, id)
		}
	}
}

// snapshotCount returns the device_snapshots rows of a device.
func (e *env) snapshotCount(deviceID string) int {
	return e.count(`SELECT count(*) FROM device_snapshots WHERE device_id = ?`, deviceID)
}

// checkSnapshotPayload compares the newest snapshot of a device with the
// detail the simulator serves at time at, member by member.
func (e *env) checkSnapshotPayload(homeID, deviceID string, at time.Time) {
	e.t.Helper()
	var payload string
	if err := e.ro.QueryRow(`SELECT payload FROM device_snapshots WHERE device_id = ? ORDER BY observed_at DESC, id DESC LIMIT 1`,
		deviceID).Scan(&payload); err != nil {
		e.t.Fatalf("snapshot of %s: %v", deviceID, err)
	}
	var got, want any
	if err := json.Unmarshal([]byte(payload), &got); err != nil {
		e.t.Fatalf("snapshot of %s is not JSON: %v", deviceID, err)
	}
	b, err := json.Marshal(e.sim.DeviceState(homeID, deviceID, at))
	if err != nil {
		e.t.Fatal(err)
	}
	if err := json.Unmarshal(b, &want); err != nil {
		e.t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		e.t.Errorf("snapshot payload of %s differs from the served detail:\n got %s\nwant %s", deviceID, payload, b)
	}
}

// histRow is one device_history row as compared with the series.
type histRow struct {
	PeriodMS int64
	Metric   string
	Value    float64
	Offset   int
}

func (h histRow) String() string {
	return fmt.Sprintf("%s %s=%v (offset %d)", time.UnixMilli(h.PeriodMS).UTC().Format(time.RFC3339), h.Metric, h.Value, h.Offset)
}

// storedHistory reads device_history of one stream, ordered.
func (e *env) storedHistory(deviceID, res string) []histRow {
	e.t.Helper()
	rows, err := e.ro.Query(`SELECT period_start, metric, value, utc_offset_s FROM device_history
WHERE device_id = ? AND resolution = ? ORDER BY period_start, metric`, deviceID, res)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []histRow
	for rows.Next() {
		var r histRow
		if err := rows.Scan(&r.PeriodMS, &r.Metric, &r.Value, &r.Offset); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// seriesRows flattens simulator points into rows, ordered like storedHistory.
func seriesRows(pts []simulator.HistoryPoint) []histRow {
	var out []histRow
	for _, p := range pts {
		for m, v := range p.Metrics {
			out = append(out, histRow{PeriodMS: p.Time.UnixMilli(), Metric: m, Value: v, Offset: p.OffsetSeconds})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].PeriodMS != out[j].PeriodMS {
			return out[i].PeriodMS < out[j].PeriodMS
		}
		return out[i].Metric < out[j].Metric
	})
	return out
}

// diffRows describes how got differs from want (at most a few lines); ""
// when they are equal.
func diffRows(got, want []histRow) string {
	key := func(r histRow) string { return fmt.Sprintf("%d/%s", r.PeriodMS, r.Metric) }
	w := make(map[string]histRow, len(want))
	for _, r := range want {
		w[key(r)] = r
	}
	var lines []string
	seen := make(map[string]bool, len(got))
	extra, missing, wrong := 0, 0, 0
	for _, r := range got {
		k := key(r)
		seen[k] = true
		x, ok := w[k]
		switch {
		case !ok:
			extra++
			if len(lines) < 6 {
				lines = append(lines, "extra   "+r.String())
			}
		case x != r:
			wrong++
			if len(lines) < 6 {
				lines = append(lines, fmt.Sprintf("differs %v, want %v", r, x))
			}
		}
	}
	for _, r := range want {
		if !seen[key(r)] {
			missing++
			if len(lines) < 6 {
				lines = append(lines, "missing "+r.String())
			}
		}
	}
	if extra+missing+wrong == 0 && len(got) == len(want) {
		return ""
	}
	return fmt.Sprintf("%d rows, want %d: %d extra, %d missing, %d differ\n  %s",
		len(got), len(want), extra, missing, wrong, strings.Join(lines, "\n  "))
}

// checkSeries compares one stored stream with the simulator's series for
// periods in [from, to) and returns the number of rows compared.
func (e *env) checkSeries(deviceID, res string, from, to time.Time) int {
	e.t.Helper()
	return len(e.checkSeriesRows(deviceID, res, from, to))
}

// checkSeriesRows is checkSeries returning the stored rows it compared.
func (e *env) checkSeriesRows(deviceID, res string, from, to time.Time) []histRow {
	e.t.Helper()
	want := seriesRows(e.sim.HistorySeries(deviceID, res, from, to))
	got := e.storedHistory(deviceID, res)
	if d := diffRows(got, want); d != "" {
		e.t.Errorf("history %s/%s vs simulator [%s, %s): %s", deviceID, res,
			from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339), d)
	}
	return got
}

// distinctPeriods counts the distinct period starts of rows.
func distinctPeriods(rows []histRow) int {
	n := 0
	for i, r := range rows {
		if i == 0 || r.PeriodMS != rows[i-1].PeriodMS {
			n++
		}
	}
	return n
}

// checkpoint is one history_checkpoints row.
type checkpoint struct {
	NextURL    string
	LastPeriod int64
	Done       bool
	LastError  string
}

// checkpointOf reads the checkpoint of a stream; ok is false when none.
func (e *env) checkpointOf(deviceID, res string) (checkpoint, bool) {
	e.t.Helper()
	var cp checkpoint
	var last sql.NullInt64
	var msg sql.NullString
	err := e.ro.QueryRow(`SELECT next_url, last_period, backfill_done, last_error FROM history_checkpoints
WHERE device_id = ? AND resolution = ?`, deviceID, res).Scan(&cp.NextURL, &last, &cp.Done, &msg)
	if err == sql.ErrNoRows {
		return cp, false
	}
	if err != nil {
		e.t.Fatal(err)
	}
	cp.LastPeriod, cp.LastError = last.Int64, msg.String
	return cp, true
}

// historyDevices returns the account's devices that support res, each once,
// in the order the syncer visits them (home id, then device id).
func historyDevices(acct simulator.Account, res string) []simulator.Device {
	seen := map[string]bool{}
	var out []simulator.Device
	homes := slices.Clone(acct.Homes)
	sort.Slice(homes, func(i, j int) bool { return homes[i].ID < homes[j].ID })
	for _, h := range homes {
		devs := slices.Clone(h.Devices)
		sort.Slice(devs, func(i, j int) bool { return devs[i].ID < devs[j].ID })
		for _, d := range devs {
			if seen[d.ID] || !slices.Contains(d.Resolutions, res) {
				continue
			}
			seen[d.ID] = true
			out = append(out, d)
		}
	}
	return out
}

// floorHour truncates t to the hour (all fixture zones have whole-hour offsets).
func floorHour(t time.Time) time.Time { return t.Truncate(time.Hour) }
