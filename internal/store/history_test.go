package store_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/store"
)

// hourPage builds n hourly items from start (in loc, so each carries the
// offset in force), with two metrics whose values encode the hour.
func hourPage(start time.Time, n int, loc *time.Location) model.HistoryPage {
	p := model.HistoryPage{EffectiveStart: start, EffectiveEnd: start.Add(time.Duration(n) * time.Hour)}
	for i := 0; i < n; i++ {
		at := start.Add(time.Duration(i) * time.Hour).In(loc)
		_, off := at.Zone()
		p.Items = append(p.Items, model.HistoryItem{Time: at, UTCOffsetSeconds: off, Metrics: map[string]float64{
			"energyFlow.gridImport": float64(i),
			"energyFlow.gridExport": float64(i) / 10,
		}})
	}
	return p
}

// historyDB has a device to attach history to.
func historyDB(t *testing.T) *store.DB {
	t.Helper()
	db, _, _ := MustOpenDB(t)
	mustSave(t, db, model.InventoryBatch{ObservedAt: t0, Homes: []model.Home{{ID: "h1", Name: "Huis"}},
		HomeDevices: map[string][]model.Device{"h1": {listItem("d1", "Battery")}}})
	return db
}

func TestSaveHistoryPageUpsertAndRevisions(t *testing.T) {
	ctx := context.Background()
	db := historyDB(t)
	start := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	page := hourPage(start, 24, time.UTC)

	res, err := db.SaveHistoryPage(ctx, "d1", "hour", page, model.HistoryCheckpoint{HomeID: "h1", NextURL: "https://data-api.tibber.com/next?cursor=a"})
	if err != nil {
		t.Fatal(err)
	}
	if res != (model.HistoryResult{Inserted: 48}) {
		t.Fatalf("first save = %+v, want 48 inserted", res)
	}
	// The same page again (the lookback window re-fetches it): nothing.
	before := totalChanges(t, db)
	res, err = db.SaveHistoryPage(ctx, "d1", "hour", page, model.HistoryCheckpoint{HomeID: "h1"})
	if err != nil {
		t.Fatal(err)
	}
	if res != (model.HistoryResult{}) {
		t.Fatalf("repeat save = %+v, want nothing", res)
	}
	if d := totalChanges(t, db) - before; d != 1 {
		t.Fatalf("repeat save changed %d rows, want 1 (the checkpoint)", d)
	}
	// A back-fill changes two values of one hour.
	page.Items[5].Metrics["energyFlow.gridImport"] = 99
	page.Items[5].Metrics["energyFlow.gridExport"] = 9.9
	res, err = db.SaveHistoryPage(ctx, "d1", "hour", page, model.HistoryCheckpoint{HomeID: "h1"})
	if err != nil {
		t.Fatal(err)
	}
	if res != (model.HistoryResult{Updated: 2}) {
		t.Fatalf("back-fill save = %+v, want 2 updated", res)
	}
	var value float64
	var revisions int
	if err := db.RawForTest().QueryRow(`SELECT value, revisions FROM device_history
WHERE device_id = 'd1' AND resolution = 'hour' AND period_start = ? AND metric = 'energyFlow.gridImport'`,
		start.Add(5*time.Hour).UnixMilli()).Scan(&value, &revisions); err != nil {
		t.Fatal(err)
	}
	if value != 99 || revisions != 1 {
		t.Fatalf("back-filled row = %v (revisions %d), want 99 (1)", value, revisions)
	}
	if got := rowCount(t, db, "device_history"); got != 48 {
		t.Fatalf("device_history rows = %d, want 48 (no duplicates)", got)
	}
	if got := count(t, db, "SELECT sum(revisions) FROM device_history"); got != 2 {
		t.Fatalf("total revisions = %d, want 2", got)
	}
}

func TestSaveHistoryPageSkipsOutsideWindowAndInvalid(t *testing.T) {
	ctx := context.Background()
	db := historyDB(t)
	start := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	page := hourPage(start.Add(-2*time.Hour), 10, time.UTC) // items from 22:00 the day before
	page.EffectiveStart = start                             // first two are before the window
	page.EffectiveEnd = start.Add(6 * time.Hour)            // 06:00 and 07:00 are at/after the end
	page.Items = append(page.Items,
		model.HistoryItem{Time: start.Add(3 * time.Hour).Add(30 * time.Minute), Metrics: map[string]float64{"x": math.NaN()}},
		model.HistoryItem{Metrics: map[string]float64{"x": 1}}, // no time
	)
	res, err := db.SaveHistoryPage(ctx, "d1", "hour", page, model.HistoryCheckpoint{HomeID: "h1"})
	if err != nil {
		t.Fatal(err)
	}
	if res != (model.HistoryResult{Inserted: 12, Skipped: 6}) {
		t.Fatalf("save = %+v, want 12 inserted (6 hours x 2), 6 skipped", res)
	}
	if got := count(t, db, "SELECT count(*) FROM device_history WHERE period_start < ? OR period_start >= ?",
		start.UnixMilli(), start.Add(6*time.Hour).UnixMilli()); got != 0 {
		t.Fatalf("%d rows outside the window", got)
	}
}

func TestSaveHistoryPageCheckpoint(t *testing.T) {
	ctx := context.Background()
	db := historyDB(t)
	if _, ok, err := db.HistoryCheckpoint(ctx, "d1", "hour"); ok || err != nil {
		t.Fatalf("checkpoint before any page: ok=%v err=%v", ok, err)
	}
	start := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	cp := model.HistoryCheckpoint{HomeID: "h1", NextURL: "https://data-api.tibber.com/v1/x?cursor=1", LastError: "page 3: bad time"}
	if _, err := db.SaveHistoryPage(ctx, "d1", "hour", hourPage(start, 24, time.UTC), cp); err != nil {
		t.Fatal(err)
	}
	got, ok, err := db.HistoryCheckpoint(ctx, "d1", "hour")
	if err != nil || !ok {
		t.Fatalf("HistoryCheckpoint: ok=%v err=%v", ok, err)
	}
	want := model.HistoryCheckpoint{DeviceID: "d1", HomeID: "h1", Resolution: "hour", NextURL: cp.NextURL,
		LastPeriod: start.Add(23 * time.Hour), UpdatedAt: t0, LastError: cp.LastError}
	if got != want {
		t.Fatalf("checkpoint = %+v\nwant %+v", got, want)
	}
	// An older page (or a caller passing a stale LastPeriod) never moves it back.
	if _, err := db.SaveHistoryPage(ctx, "d1", "hour", hourPage(start.Add(-48*time.Hour), 5, time.UTC),
		model.HistoryCheckpoint{HomeID: "h1", BackfillDone: true}); err != nil {
		t.Fatal(err)
	}
	got, _, _ = db.HistoryCheckpoint(ctx, "d1", "hour")
	if !got.LastPeriod.Equal(start.Add(23*time.Hour)) || !got.BackfillDone || got.NextURL != "" || got.LastError != "" {
		t.Fatalf("checkpoint after older page = %+v", got)
	}
	latest, ok, err := db.LatestHistoryPeriod(ctx, "d1", "hour")
	if err != nil || !ok || !latest.Equal(start.Add(23*time.Hour)) {
		t.Fatalf("LatestHistoryPeriod = %v %v %v", latest, ok, err)
	}
	if _, ok, err := db.LatestHistoryPeriod(ctx, "d1", "day"); ok || err != nil {
		t.Fatalf("LatestHistoryPeriod(day) = ok %v, %v; want none", ok, err)
	}
}

// A failed page leaves neither rows nor checkpoint behind.
func TestSaveHistoryPageAtomic(t *testing.T) {
	ctx := context.Background()
	db := historyDB(t)
	page := hourPage(time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC), 3, time.UTC)
	if _, err := db.SaveHistoryPage(ctx, "unknown-device", "hour", page, model.HistoryCheckpoint{}); err == nil {
		t.Fatal("history for an unknown device accepted (foreign key)")
	}
	if got := rowCount(t, db, "device_history") + rowCount(t, db, "history_checkpoints"); got != 0 {
		t.Fatalf("%d rows left by a failed page", got)
	}
	if _, err := db.SaveHistoryPage(ctx, "d1", "fortnight", page, model.HistoryCheckpoint{}); err == nil {
		t.Fatal("unknown resolution accepted")
	}
}

func TestHistoryHourlyAcrossDST(t *testing.T) {
	ctx := context.Background()
	oslo, err := time.LoadLocation("Europe/Oslo")
	if err != nil {
		t.Skipf("no tzdata: %v", err)
	}
	db := historyDB(t)
	cases := map[string]struct {
		day        time.Time
		rows       int
		hourRepeat int // a local hour seen twice (-1: none)
		hourGone   int // a local hour that does not exist (-1: none)
	}{
		"SpringForward": {time.Date(2026, 3, 29, 0, 0, 0, 0, oslo), 23, -1, 2},
		"FallBack":      {time.Date(2026, 10, 25, 0, 0, 0, 0, oslo), 25, 2, -1},
		"Normal":        {time.Date(2026, 6, 10, 0, 0, 0, 0, oslo), 24, -1, -1},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			next := time.Date(c.day.Year(), c.day.Month(), c.day.Day()+1, 0, 0, 0, 0, oslo)
			n := int(next.Sub(c.day) / time.Hour)
			// Include the hours just around the day so the date split is tested.
			page := hourPage(c.day.Add(-2*time.Hour), n+4, oslo)
			if _, err := db.SaveHistoryPage(ctx, "d1", "hour", page, model.HistoryCheckpoint{HomeID: "h1"}); err != nil {
				t.Fatal(err)
			}
			date := c.day.Format("2006-01-02")
			if got := count(t, db, "SELECT count(*) FROM history_hourly WHERE device_id = 'd1' AND metric = 'energyFlow.gridImport' AND local_date = ?", date); got != int64(c.rows) {
				t.Fatalf("history_hourly rows for %s = %d, want %d", date, got, c.rows)
			}
			hours := map[int]int{}
			rows, err := db.RawForTest().Query("SELECT local_hour, local_start FROM history_hourly WHERE device_id = 'd1' AND metric = 'energyFlow.gridImport' AND local_date = ? ORDER BY period_start", date)
			if err != nil {
				t.Fatal(err)
			}
			var first string
			for rows.Next() {
				var h int
				var ls string
				if err := rows.Scan(&h, &ls); err != nil {
					t.Fatal(err)
				}
				if first == "" {
					first = ls
				}
				hours[h]++
			}
			_ = rows.Close()
			if want := c.day.Format("2006-01-02T15:04:05-07:00"); first != want {
				t.Fatalf("first local_start = %s, want %s", first, want)
			}
			for h := 0; h < 24; h++ {
				want := 1
				switch h {
				case c.hourRepeat:
					want = 2
				case c.hourGone:
					want = 0
				}
				if hours[h] != want {
					t.Errorf("local hour %d appears %d times, want %d", h, hours[h], want)
				}
			}
		})
	}
}

func TestHistoryDailyView(t *testing.T) {
	ctx := context.Background()
	oslo, err := time.LoadLocation("Europe/Oslo")
	if err != nil {
		t.Skipf("no tzdata: %v", err)
	}
	db := historyDB(t)
	day := time.Date(2026, 10, 25, 0, 0, 0, 0, oslo)
	_, off := day.Zone()
	dayPage := model.HistoryPage{Items: []model.HistoryItem{{Time: day, UTCOffsetSeconds: off, Metrics: map[string]float64{"energyFlow.gridImport": 300}}}}
	if _, err := db.SaveHistoryPage(ctx, "d1", "day", dayPage, model.HistoryCheckpoint{HomeID: "h1"}); err != nil {
		t.Fatal(err)
	}
	var date string
	var value float64
	var hours int
	if err := db.RawForTest().QueryRow("SELECT local_date, value, hours FROM history_daily WHERE device_id = 'd1'").Scan(&date, &value, &hours); err != nil {
		t.Fatal(err)
	}
	if date != "2026-10-25" || value != 300 || hours != 0 {
		t.Fatalf("history_daily = %s %v %d, want 2026-10-25 300 0", date, value, hours)
	}
	if _, err := db.SaveHistoryPage(ctx, "d1", "hour", hourPage(day.Add(-3*time.Hour), 31, oslo), model.HistoryCheckpoint{HomeID: "h1"}); err != nil {
		t.Fatal(err)
	}
	if err := db.RawForTest().QueryRow("SELECT hours FROM history_daily WHERE device_id = 'd1'").Scan(&hours); err != nil {
		t.Fatal(err)
	}
	if hours != 25 {
		t.Fatalf("hours for the 25-hour day = %d, want 25", hours)
	}
	// The documented way to roll hourly up into days agrees.
	var n int
	if err := db.RawForTest().QueryRow(`SELECT count(*) FROM history_hourly
WHERE device_id = 'd1' AND metric = 'energyFlow.gridImport' AND local_date = '2026-10-25'`).Scan(&n); err != nil || n != 25 {
		t.Fatalf("hourly rows = %d, %v", n, err)
	}
}
