package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/simulator"
)

// storedCell is one device_history row with its bookkeeping columns.
type storedCell struct {
	Value              float64
	Revisions          int
	InsertedAt, Update int64
}

// cell reads one device_history row; ok is false when there is none.
func (e *env) cell(deviceID, res string, period time.Time, metric string) (storedCell, bool) {
	e.t.Helper()
	var c storedCell
	err := e.ro.QueryRow(`SELECT value, revisions, inserted_at, updated_at FROM device_history
WHERE device_id = ? AND resolution = ? AND period_start = ? AND metric = ?`, deviceID, res, period.UnixMilli(), metric).
		Scan(&c.Value, &c.Revisions, &c.InsertedAt, &c.Update)
	if err == sql.ErrNoRows {
		return c, false
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return c, true
}

// deviceNamed returns the fixture device with the given name.
func deviceNamed(t *testing.T, acct simulator.Account, name string) simulator.Device {
	t.Helper()
	for _, h := range acct.Homes {
		for _, d := range h.Devices {
			if d.Name == name {
				return d
			}
		}
	}
	t.Fatalf("fixture has no device %q", name)
	return simulator.Device{}
}

// TestLookbackCorrection: after a complete sync, the simulator corrects a
// value 24 hours back (inside the 48-hour lookback), one 60 hours back
// (outside it) and fills a hole inside it (or, when the window has none,
// adds a metric to its newest period). One hour later the incremental
// run updates the corrected row (new value, revisions = 1, updated_at = the
// run's time, inserted_at unchanged), inserts the filled hole and the new
// hour, and leaves every other row untouched, including the correction
// older than the lookback, which is not picked up (documented: only the
// lookback window is re-fetched).
func TestLookbackCorrection(t *testing.T) {
	w := newWindows()
	e := newEnv(t, envConfig{backfillDays: 4, resolutions: []string{"hour"}, progress: w.progress})
	e.mustRun(jobs.JobDevices, jobs.StatusOK)
	e.mustRun(jobs.JobHistory, jobs.StatusOK)
	battery := deviceNamed(t, e.sim.Account(), "Battery")
	const metric = "storage.stateOfCharge"
	now := e.clk.Now()
	inside, outside := floorHour(now).Add(-24*time.Hour), floorHour(now).Add(-60*time.Hour)
	in0, ok1 := e.cell(battery.ID, "hour", inside, metric)
	out0, ok2 := e.cell(battery.ID, "hour", outside, metric)
	if !ok1 || !ok2 {
		t.Fatalf("rows to correct not stored (inside %v, outside %v)", ok1, ok2)
	}
	// A period inside the lookback where the battery's series has a hole
	// (its energy metrics are missing for about 4 % of the hours); without
	// one, a metric the battery never reported fills the newest period.
	holeMetric := "energyFlow.gridImport"
	var hole time.Time
	for p := floorHour(now).Add(-47 * time.Hour); p.Before(floorHour(now)); p = p.Add(time.Hour) {
		if _, ok := e.cell(battery.ID, "hour", p, holeMetric); !ok {
			hole = p
			break
		}
	}
	if hole.IsZero() {
		hole, holeMetric = floorHour(now).Add(-time.Hour), "energyFlow.backfilled"
	}
	e.sim.SetHistoryCorrection(battery.ID, "hour", inside, metric, in0.Value+11.5)
	e.sim.SetHistoryCorrection(battery.ID, "hour", outside, metric, out0.Value+7.25)
	e.sim.SetHistoryCorrection(battery.ID, "hour", hole, holeMetric, 123.4)
	before := e.count(`SELECT count(*) FROM device_history`)

	e.clk.Advance(time.Hour)
	runAt := e.clk.Now()
	res := e.mustRun(jobs.JobHistory, jobs.StatusOK)
	e.checkIntegrity()

	got, _ := e.cell(battery.ID, "hour", inside, metric)
	if got.Value != in0.Value+11.5 || got.Revisions != 1 || got.Update != runAt.UnixMilli() || got.InsertedAt != in0.InsertedAt {
		t.Errorf("corrected row inside the lookback: %+v, want value %v, revisions 1, updated_at %d, inserted_at %d",
			got, in0.Value+11.5, runAt.UnixMilli(), in0.InsertedAt)
	}
	if got, _ := e.cell(battery.ID, "hour", outside, metric); got != out0 {
		t.Errorf("row older than the lookback changed: %+v, want %+v (not re-fetched)", got, out0)
	}
	c, ok := e.cell(battery.ID, "hour", hole, holeMetric)
	if !ok || c.Value != 123.4 || c.Revisions != 0 || c.InsertedAt != runAt.UnixMilli() {
		t.Errorf("filled hole %s at %s: %+v (stored %v), want 123.4 inserted now", holeMetric, hole.UTC(), c, ok)
	}
	t.Logf("corrected %s at %s (-24h) and %s (-60h), filled %s at %s", metric, inside.UTC().Format(time.RFC3339),
		outside.UTC().Format(time.RFC3339), holeMetric, hole.UTC().Format(time.RFC3339))
	inserted := 1
	if n := e.count(`SELECT count(*) FROM device_history WHERE revisions <> 0`); n != 1 {
		t.Errorf("%d rows have revisions, want only the corrected one", n)
	}
	newHour := e.count(`SELECT count(*) FROM device_history WHERE period_start = ?`, floorHour(now).UnixMilli())
	if newHour == 0 {
		t.Errorf("the hour completed since the last run was not stored")
	}
	inserted += newHour
	if after := e.count(`SELECT count(*) FROM device_history`); after != before+inserted {
		t.Errorf("%d rows after the run, want %d + %d inserted", after, before, inserted)
	}
	if res.run.RowsWritten != inserted+1 {
		t.Errorf("run wrote %d rows, want %d inserted + 1 updated", res.run.RowsWritten, inserted)
	}
	// Everything else equals the simulator, which now serves the old
	// correction too: the stored row keeps the value it had.
	for _, d := range historyDevices(e.sim.Account(), "hour") {
		start, end, _ := w.window(d.ID, "hour")
		want := seriesRows(e.sim.HistorySeries(d.ID, "hour", start, end))
		for i, r := range want {
			if d.ID == battery.ID && r.PeriodMS == outside.UnixMilli() && r.Metric == metric {
				want[i].Value = out0.Value
			}
		}
		if diff := diffRows(e.storedHistory(d.ID, "hour"), want); diff != "" {
			t.Errorf("%s: %s", d.Name, diff)
		}
	}
}

// historyRequests returns the history requests of one stream in a log.
func historyRequests(reqs []reqRecord, deviceID, res string) []reqRecord {
	var out []reqRecord
	for _, r := range reqs {
		if r.Endpoint == "history" && containsSegment(r.Path, deviceID) && r.Query.Get("resolution") == res {
			out = append(out, r)
		}
	}
	return out
}

// badHistoryEnv is the environment of the bad-input subtests: Stue
// (Europe/Oslo, synced first) and Roof (Europe/London), five days of
// hourly history in pages of 24.
func badHistoryEnv(t *testing.T, hook *hookAPI, resolutions ...string) (*env, *windows, simulator.Device, simulator.Device) {
	t.Helper()
	if len(resolutions) == 0 {
		resolutions = []string{"hour"}
	}
	w := newWindows()
	if hook.devices == nil {
		hook.devices = keepDevices("Stue", "Roof")
	}
	e := newEnv(t, envConfig{
		sim:          simulator.Options{PageSize: 24},
		backfillDays: 5,
		resolutions:  resolutions,
		wrap:         func(api jobs.API) jobs.API { hook.API = api; return hook },
		progress:     w.progress,
	})
	e.mustRun(jobs.JobDevices, jobs.StatusOK)
	acct := e.sim.Account()
	return e, w, deviceNamed(t, acct, "Stue"), deviceNamed(t, acct, "Roof")
}

// checkStreamExact compares a stream with the simulator's series in its
// recorded window.
func checkStreamExact(e *env, w *windows, d simulator.Device, res string) {
	e.t.Helper()
	start, end, ok := w.window(d.ID, res)
	if !ok {
		e.t.Errorf("%s/%s was not synced", d.Name, res)
		return
	}
	e.checkSeries(d.ID, res, start, end)
}

// TestBadHistoryInput: pages the job must survive. Each case stores what
// is valid, records the problem in the run (partial) and in the stream's
// checkpoint, stops the bad stream while the others complete, terminates
// within its deadline, and (where the input was transient) a later run
// completes the series exactly.
func TestBadHistoryInput(t *testing.T) {
	t.Run("malformed-page", func(t *testing.T) {
		var stueID string
		var e *env
		hook := &hookAPI{}
		hook.before = func(_ context.Context, c historyCall) {
			if c.N == 3 && c.DeviceID == stueID {
				e.sim.Faults().Add(simulator.Fault{Endpoint: "history", Kind: simulator.KindMalformedJSON, Count: 1})
			}
		}
		var links sync.Map // call number → link followed
		hook.after = func(_ context.Context, c historyCall, p model.HistoryPage, err error) (model.HistoryPage, error) {
			links.Store(c.N, c.Link)
			return p, err
		}
		var w *windows
		var stue, roof simulator.Device
		e, w, stue, roof = badHistoryEnv(t, hook)
		stueID = stue.ID
		res := e.mustRun(jobs.JobHistory, jobs.StatusPartial)
		e.checkIntegrity()
		reqs := historyRequests(res.reqs, stue.ID, "hour")
		if len(reqs) != 3 {
			t.Fatalf("%d requests for the stream with the malformed page 3, want 3 (no retry, no further page)", len(reqs))
		}
		bad, _ := links.Load(3)
		cp, _ := e.checkpointOf(stue.ID, "hour")
		if cp.NextURL != bad || cp.Done || !strings.Contains(cp.LastError, "page 3") {
			t.Errorf("checkpoint %+v, want the malformed page's link kept for the next run and its problem recorded", cp)
		}
		if !strings.Contains(res.run.Error, stue.ID+"/hour: page 3") {
			t.Errorf("run error %q does not name the stream's page 3", res.run.Error)
		}
		// Pages 1 and 2 are stored, exactly.
		start, _, _ := w.window(stue.ID, "hour")
		want := seriesRows(e.sim.HistorySeries(stue.ID, "hour", start, start.Add(48*time.Hour)))
		if diff := diffRows(e.storedHistory(stue.ID, "hour"), want); diff != "" {
			t.Errorf("stream before the malformed page: %s", diff)
		}
		checkStreamExact(e, w, roof, "hour")

		res = e.mustRun(jobs.JobHistory, jobs.StatusOK)
		if first, ok := firstHistoryRequest(res.reqs, stue.ID); !ok || e.srv.URL+first.URL != bad {
			t.Errorf("the next run did not resume at the malformed page's link")
		}
		checkStreamExact(e, w, stue, "hour")
		checkStreamExact(e, w, roof, "hour")
	})

	t.Run("next-link-loop", func(t *testing.T) {
		var stueID string
		hook := &hookAPI{}
		var links sync.Map
		hook.after = func(_ context.Context, c historyCall, p model.HistoryPage, err error) (model.HistoryPage, error) {
			links.Store(c.N, c.Link)
			if c.N == 3 && c.DeviceID == stueID && err == nil {
				earlier, _ := links.Load(2)
				p.Next = earlier.(string)
			}
			return p, err
		}
		e, w, stue, roof := badHistoryEnv(t, hook)
		stueID = stue.ID
		res := e.mustRun(jobs.JobHistory, jobs.StatusPartial)
		e.checkIntegrity()
		if n := len(historyRequests(res.reqs, stue.ID, "hour")); n != 3 {
			t.Errorf("%d requests for the looping stream, want 3 (the loop is not followed)", n)
		}
		cp, _ := e.checkpointOf(stue.ID, "hour")
		if cp.NextURL != "" || cp.Done || !strings.Contains(cp.LastError, "loops") {
			t.Errorf("checkpoint %+v, want the looping link dropped and the loop recorded", cp)
		}
		if !strings.Contains(res.run.Error, "loops back") {
			t.Errorf("run error %q does not report the loop", res.run.Error)
		}
		// Pages 1 to 3 are stored, exactly.
		start, _, _ := w.window(stue.ID, "hour")
		want := seriesRows(e.sim.HistorySeries(stue.ID, "hour", start, start.Add(72*time.Hour)))
		if diff := diffRows(e.storedHistory(stue.ID, "hour"), want); diff != "" {
			t.Errorf("stream up to the looping page: %s", diff)
		}
		checkStreamExact(e, w, roof, "hour")

		// The next run starts again from the last stored period.
		res = e.mustRun(jobs.JobHistory, jobs.StatusOK)
		if first, ok := firstHistoryRequest(res.reqs, stue.ID); !ok || !first.Query.Has("since") {
			t.Errorf("after a loop the next run must ask with since, not follow a stored link")
		}
		checkStreamExact(e, w, stue, "hour")
	})

	t.Run("items-outside-window", func(t *testing.T) {
		var stueID string
		hook := &hookAPI{}
		var added []time.Time
		hook.after = func(_ context.Context, c historyCall, p model.HistoryPage, err error) (model.HistoryPage, error) {
			if c.N != 1 || c.DeviceID != stueID || err != nil {
				return p, err
			}
			off := func(t time.Time) model.HistoryItem {
				_, o := t.Zone()
				return model.HistoryItem{Time: t, UTCOffsetSeconds: o, Metrics: map[string]float64{"temp.average": 99, "temp.setpoint": 99}}
			}
			added = []time.Time{p.EffectiveStart.Add(-time.Hour), p.EffectiveEnd, p.EffectiveEnd.Add(24 * time.Hour)}
			for _, at := range added {
				p.Items = append(p.Items, off(at))
			}
			return p, err
		}
		e, w, stue, roof := badHistoryEnv(t, hook)
		stueID = stue.ID
		res := e.mustRun(jobs.JobHistory, jobs.StatusPartial)
		e.checkIntegrity()
		if len(added) != 3 {
			t.Fatalf("hook added %d items", len(added))
		}
		for _, at := range added {
			if n := e.count(`SELECT count(*) FROM device_history WHERE device_id = ? AND period_start = ?`, stue.ID, at.UnixMilli()); n != 0 {
				t.Errorf("item at %s outside the served window stored (%d rows)", at.UTC(), n)
			}
		}
		if !strings.Contains(res.run.Error, "3 items skipped (outside the served window") {
			t.Errorf("run error %q does not report the 3 skipped items", res.run.Error)
		}
		cp, _ := e.checkpointOf(stue.ID, "hour")
		_, end, _ := w.window(stue.ID, "hour")
		if !time.UnixMilli(cp.LastPeriod).Before(end) || !cp.Done {
			t.Errorf("checkpoint %+v: the out-of-window items moved it to or past the window end %s", cp, end.UTC())
		}
		checkStreamExact(e, w, stue, "hour")
		checkStreamExact(e, w, roof, "hour")
	})

	t.Run("non-numeric-values", func(t *testing.T) {
		hook := &hookAPI{}
		e, w, stue, roof := badHistoryEnv(t, hook)
		type cellKey struct {
			period int64
			metric string // "" for the whole item
		}
		var mu sync.Mutex
		var dropped []cellKey
		e.fe.setRewrite(func(r *http.Request, status int, body []byte) []byte {
			if endpointName(r.URL) != "history" || !containsSegment(r.URL.Path, stue.ID) || !r.URL.Query().Has("since") || status != 200 {
				return body
			}
			var page map[string]any
			if err := json.Unmarshal(body, &page); err != nil {
				t.Errorf("simulator page is not JSON: %v", err)
				return body
			}
			items, _ := page["items"].([]any)
			if len(items) < 10 {
				t.Errorf("first page has %d items", len(items))
				return body
			}
			periodOf := func(i int) int64 {
				it := items[i].(map[string]any)
				s, _ := it["time"].(string)
				tm, err := time.Parse(time.RFC3339, s)
				if err != nil {
					t.Errorf("simulator item time %q: %v", s, err)
				}
				return tm.UnixMilli()
			}
			data := func(i int) map[string]any {
				return items[i].(map[string]any)["data"].(map[string]any)["temp"].(map[string]any)
			}
			mu.Lock()
			defer mu.Unlock()
			dropped = []cellKey{{periodOf(2), "temp.average"}, {periodOf(4), "temp.setpoint"}, {periodOf(6), ""}, {periodOf(8), ""}}
			data(2)["average"] = "n/a"
			data(4)["setpoint"] = true
			items[6].(map[string]any)["time"] = "yesterday"
			items[8].(map[string]any)["data"] = "oops"
			out, err := json.Marshal(page)
			if err != nil {
				t.Errorf("re-encode page: %v", err)
				return body
			}
			return out
		})
		res := e.mustRun(jobs.JobHistory, jobs.StatusPartial)
		e.fe.setRewrite(nil)
		e.checkIntegrity()
		if want := stue.ID + "/hour page 1: 4 invalid items skipped"; !strings.Contains(res.run.Error, want) {
			t.Errorf("run error %q does not say %q", res.run.Error, want)
		}
		checkWithout := func() {
			t.Helper()
			start, end, _ := w.window(stue.ID, "hour")
			var want []histRow
			mu.Lock()
			for _, r := range seriesRows(e.sim.HistorySeries(stue.ID, "hour", start, end)) {
				if !slices.Contains(dropped, cellKey{r.PeriodMS, r.Metric}) && !slices.Contains(dropped, cellKey{r.PeriodMS, ""}) {
					want = append(want, r)
				}
			}
			mu.Unlock()
			if diff := diffRows(e.storedHistory(stue.ID, "hour"), want); diff != "" {
				t.Errorf("stream with invalid values: %s", diff)
			}
		}
		checkWithout()
		checkStreamExact(e, w, roof, "hour")
		// The bad values are older than the lookback: a later run does
		// not fetch them again, and they stay missing.
		e.clk.Advance(time.Hour)
		e.mustRun(jobs.JobHistory, jobs.StatusOK)
		checkWithout()
	})

	t.Run("resolution-rejected", func(t *testing.T) {
		// The device claims quarterHour in its list item and detail; the
		// server, which does not support it, answers 400.
		addQH := func(d model.Device) model.Device {
			if d.Name == "Stue" && !slices.Contains(d.SupportedResolutions, model.ResolutionQuarterHour) {
				d.SupportedResolutions = append(slices.Clone(d.SupportedResolutions), model.ResolutionQuarterHour)
			}
			return d
		}
		hook := &hookAPI{
			device: func(_ string, d model.Device) model.Device { return addQH(d) },
			devices: func(homeID string, list []model.Device) []model.Device {
				out := keepDevices("Stue", "Roof")(homeID, list)
				for i := range out {
					out[i] = addQH(out[i])
				}
				return out
			},
		}
		e, w, stue, roof := badHistoryEnv(t, hook, "hour", "quarterHour")
		if n := e.count(`SELECT count(*) FROM devices WHERE id = ? AND supported_resolutions LIKE '%quarterHour%'`, stue.ID); n != 1 {
			t.Fatalf("the stored device does not claim quarterHour")
		}
		for range 2 {
			res := e.mustRun(jobs.JobHistory, jobs.StatusPartial)
			reqs := historyRequests(res.reqs, stue.ID, "quarterHour")
			if len(reqs) != 1 || reqs[0].Status != 400 {
				t.Errorf("quarterHour requests %+v, want exactly one answered 400 (no retry)", reqs)
			}
			if !strings.Contains(res.run.Error, "resolution quarterHour rejected") {
				t.Errorf("run error %q does not report the rejected resolution", res.run.Error)
			}
			cp, ok := e.checkpointOf(stue.ID, "quarterHour")
			if !ok || !strings.Contains(cp.LastError, "rejected") || cp.NextURL != "" {
				t.Errorf("quarterHour checkpoint %+v (found %v), want the rejection recorded", cp, ok)
			}
			if n := e.count(`SELECT count(*) FROM device_history WHERE resolution = 'quarterHour'`); n != 0 {
				t.Errorf("%d quarterHour rows stored", n)
			}
			checkStreamExact(e, w, stue, "hour")
			checkStreamExact(e, w, roof, "hour")
			e.checkIntegrity()
			e.clk.Advance(time.Hour)
		}
	})
}
