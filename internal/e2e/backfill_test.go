package e2e

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/simulator"
)

// backfillDevices are the devices the heavy history tests sync: the whole
// fixture normally; under -race or -short, where SQLite is much slower, one
// Europe/Oslo and one Europe/London device plus the battery, whose energy
// series have holes (the window stays 400 days). CI runs -race, so the
// battery must be in this list.
func backfillDevices() []string {
	if raceEnabled || testing.Short() {
		return []string{"Stue", "Roof", "Battery"}
	}
	return nil
}

// keepNames filters an account's devices by name (all when names is empty).
func keepNames(devs []simulator.Device, names []string) []simulator.Device {
	if len(names) == 0 {
		return devs
	}
	var out []simulator.Device
	for _, d := range devs {
		if slices.Contains(names, d.Name) {
			out = append(out, d)
		}
	}
	return out
}

// TestBackfill400DaysExact: a first history run with BackfillDays = 400
// (capped by each device's retention) and resolutions hour and day stores
// exactly the simulator's series: every (period_start, metric, value,
// utc_offset_s) between the served effectiveStart and effectiveEnd, with
// no gap and no duplicate, fetched as one since request followed by its
// next links. In local time (history_hourly) each device's window has
// exactly one 23-hour day (spring forward) and one 25-hour day (fall back),
// every other whole day 24 hours; history_daily equals the day series and
// counts the hours of each local day.
func TestBackfill400DaysExact(t *testing.T) {
	started := time.Now()
	const days, pageSize = 400, 500
	names := backfillDevices()
	w := newWindows()
	e := newEnv(t, envConfig{
		sim:          simulator.Options{PageSize: pageSize},
		backfillDays: days,
		resolutions:  []string{"hour", "day"},
		wrap:         func(api jobs.API) jobs.API { return &hookAPI{API: api, devices: keepDevices(names...)} },
		progress:     w.progress,
	})
	e.mustRun(jobs.JobDevices, jobs.StatusOK)
	now := e.clk.Now()
	res := e.mustRun(jobs.JobHistory, jobs.StatusOK)
	e.checkIntegrity()

	devs := keepNames(historyDevices(e.sim.Account(), "hour"), names)
	if len(devs) < 2 {
		t.Fatalf("only %d devices to backfill", len(devs))
	}
	var rows, pages int
	zones := map[string]bool{}
	for _, d := range devs {
		zones[d.Zone] = true
		window := min(days, d.MaxRetentionDays)
		start, end, ok := w.window(d.ID, "hour")
		if !ok {
			t.Fatalf("no progress reported for %s/hour", d.Name)
		}
		// The window the server served is the one asked for: no gap at
		// either end.
		if want := floorHour(now.AddDate(0, 0, -window)); !start.Equal(want) {
			t.Errorf("%s: effectiveStart %s, want %s (%d days back)", d.Name, start, want, window)
		}
		if want := floorHour(now); !end.Equal(want) {
			t.Errorf("%s: effectiveEnd %s, want %s", d.Name, end, want)
		}
		hourRows := e.checkSeriesRows(d.ID, "hour", start, end)
		rows += len(hourRows)
		periods := distinctPeriods(hourRows)
		if want := int(end.Sub(start) / time.Hour); periods != want {
			t.Errorf("%s: %d hourly periods stored, want %d (one per hour of the window)", d.Name, periods, want)
		}
		pages += checkPaging(t, res.reqs, d, "hour", periods, pageSize)

		dstart, dend, ok := w.window(d.ID, "day")
		if !ok {
			t.Fatalf("no progress reported for %s/day", d.Name)
		}
		dayRows := e.checkSeriesRows(d.ID, "day", dstart, dend)
		rows += len(dayRows)
		pages += checkPaging(t, res.reqs, d, "day", distinctPeriods(dayRows), pageSize)
		checkLocalDays(e, d, start, end)
		checkDaily(e, d, dstart, dend, hourRows)
	}
	if len(zones) < 2 {
		t.Errorf("devices cover zones %v; want both fixture zones", slices.Sorted(maps.Keys(zones)))
	}
	if res.run.RowsWritten != rows {
		t.Errorf("run reports %d rows written, %d are stored", res.run.RowsWritten, rows)
	}
	writeSummary(t, "e2e backfill: %d devices x hour+day, %d-day window, %d rows equal the simulator's series (no gap, no duplicate), %d pages, DST 23h/25h days ok in %d zones, %.1fs",
		len(devs), days, rows, pages, len(zones), time.Since(started).Seconds())
}

// checkPaging checks that a stream was fetched as one since request and
// then next links only, one page per pageSize items, and returns the pages.
func checkPaging(t *testing.T, reqs []reqRecord, d simulator.Device, res string, items, pageSize int) int {
	t.Helper()
	var got []reqRecord
	for _, r := range reqs {
		if r.Endpoint == "history" && r.Query.Get("resolution") == res && containsSegment(r.Path, d.ID) {
			got = append(got, r)
		}
	}
	want := (items + pageSize - 1) / pageSize
	if len(got) != want {
		t.Errorf("%s/%s: %d history requests for %d items, want %d pages of %d", d.Name, res, len(got), items, want, pageSize)
	}
	for i, r := range got {
		since, cursor := r.Query.Has("since"), r.Query.Has("cursor")
		if (i == 0) != since || (i > 0) != cursor || r.Status != 200 {
			t.Errorf("%s/%s request %d: %s (status %d); want a since request first, then next links", d.Name, res, i+1, r.URL, r.Status)
		}
	}
	return len(got)
}

// containsSegment reports whether the URL path has seg as one segment.
func containsSegment(path, seg string) bool {
	for len(path) > 0 {
		i := 0
		for i < len(path) && path[i] != '/' {
			i++
		}
		if path[:i] == seg {
			return true
		}
		if i == len(path) {
			break
		}
		path = path[i+1:]
	}
	return false
}

// checkLocalDays checks history_hourly: per local date the hours Go's zone
// database gives for the window, exactly one 23-hour and one 25-hour day
// among the whole days, the missing 02:00 on the spring day and a doubled
// 02:00 (two offsets) on the fall day.
func checkLocalDays(e *env, d simulator.Device, start, end time.Time) {
	e.t.Helper()
	loc, err := time.LoadLocation(d.Zone)
	if err != nil {
		e.t.Fatal(err)
	}
	want := map[string]int{}
	for h := start; h.Before(end); h = h.Add(time.Hour) {
		want[h.In(loc).Format(time.DateOnly)]++
	}
	got := map[string]int{}
	rows, err := e.ro.Query(`SELECT local_date, count(DISTINCT period_start) FROM history_hourly WHERE device_id = ? GROUP BY local_date`, d.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	for rows.Next() {
		var day string
		var n int
		if err := rows.Scan(&day, &n); err != nil {
			e.t.Fatal(err)
		}
		got[day] = n
	}
	rows.Close()
	if !maps.Equal(got, want) {
		e.t.Errorf("%s: hours per local date differ from the %s calendar (%d days stored, %d expected)", d.Name, d.Zone, len(got), len(want))
	}
	dates := slices.Sorted(maps.Keys(got))
	if len(dates) < 3 {
		e.t.Fatalf("%s: only %d local dates", d.Name, len(dates))
	}
	var short, long []string
	for _, day := range dates[1 : len(dates)-1] { // the first and last day are partial
		switch got[day] {
		case 23:
			short = append(short, day)
		case 25:
			long = append(long, day)
		case 24:
		default:
			e.t.Errorf("%s: whole local day %s has %d hours", d.Name, day, got[day])
		}
	}
	if len(short) != 1 || len(long) != 1 {
		e.t.Fatalf("%s: 23-hour days %v and 25-hour days %v, want exactly one each", d.Name, short, long)
	}
	hours := func(day string) []string {
		rows, err := e.ro.Query(`SELECT DISTINCT local_hour, utc_offset_s FROM history_hourly WHERE device_id = ? AND local_date = ? ORDER BY period_start`, d.ID, day)
		if err != nil {
			e.t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var h, off int
			if err := rows.Scan(&h, &off); err != nil {
				e.t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("%02d%+d", h, off/3600))
		}
		return out
	}
	// Spring: the local hour after the change is skipped; fall: repeated.
	spring, fall := hours(short[0]), hours(long[0])
	e.t.Logf("%s (%s): %d local dates, 23-hour day %s, 25-hour day %s", d.Name, d.Zone, len(dates), short[0], long[0])
	seen := map[string]int{}
	for _, h := range spring {
		seen[h[:2]]++
	}
	if len(seen) != 23 {
		e.t.Errorf("%s: spring day %s has local hours %v, want 23 distinct", d.Name, short[0], spring)
	}
	seen = map[string]int{}
	for _, h := range fall {
		seen[h[:2]]++
	}
	if len(seen) != 24 || len(fall) != 25 {
		e.t.Errorf("%s: fall day %s has local hours %v, want 24 distinct with one twice (two offsets)", d.Name, long[0], fall)
	}
}

// checkDaily compares history_daily with the simulator's day series (local
// date, metric, value, offset) and its hours column with the stored hourly
// rows.
func checkDaily(e *env, d simulator.Device, start, end time.Time, hourRows []histRow) {
	e.t.Helper()
	loc, err := time.LoadLocation(d.Zone)
	if err != nil {
		e.t.Fatal(err)
	}
	type dayRow struct {
		value  float64
		offset int
	}
	want := map[string]dayRow{}
	for _, p := range e.sim.HistorySeries(d.ID, "day", start, end) {
		for m, v := range p.Metrics {
			want[p.Period.In(loc).Format(time.DateOnly)+" "+m] = dayRow{v, p.OffsetSeconds}
		}
	}
	hourly := map[string]int{}
	for _, r := range hourRows {
		day := time.UnixMilli(r.PeriodMS + int64(r.Offset)*1000).UTC().Format(time.DateOnly)
		hourly[day+" "+r.Metric]++
	}
	rows, err := e.ro.Query(`SELECT local_date, metric, value, utc_offset_s, hours FROM history_daily WHERE device_id = ?`, d.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	got := map[string]dayRow{}
	bad := 0
	for rows.Next() {
		var day, metric string
		var r dayRow
		var hours int
		if err := rows.Scan(&day, &metric, &r.value, &r.offset, &hours); err != nil {
			e.t.Fatal(err)
		}
		got[day+" "+metric] = r
		if hours != hourly[day+" "+metric] && bad < 5 {
			bad++
			e.t.Errorf("%s: history_daily %s %s counts %d hours, history_hourly has %d", d.Name, day, metric, hours, hourly[day+" "+metric])
		}
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	if len(want) == 0 || !maps.Equal(got, want) {
		diff := 0
		for k, v := range want {
			if got[k] != v {
				diff++
			}
		}
		e.t.Errorf("%s: history_daily has %d rows, the day series %d; %d differ", d.Name, len(got), len(want), diff)
	}
}
