package jobs_test

import (
	"context"
	"database/sql"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/store"
	"github.com/tibbersync/tibbersync/internal/tibber"
)

// The concrete types meet the interfaces jobs declares without jobs knowing them.
var (
	_ jobs.Store    = (*store.DB)(nil)
	_ jobs.API      = (*tibber.Client)(nil)
	_ jobs.APIError = (*tibber.APIError)(nil)
)

// openStore opens a real data.db in a temporary directory.
func openStore(t *testing.T, clk clock.Clock, path string) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), path, store.Options{Clock: clk})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// queryInt runs a counting query on a read-only connection.
func queryInt(t *testing.T, path, query string, args ...any) int {
	t.Helper()
	ro, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	var n int
	if err := ro.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestWithRealStore runs the devices and history jobs against a real
// SQLite store: a vehicle under two homes is stored once with two links, a
// 404 leaves a partial run, and a history backfill interrupted by an outage
// resumes from its checkpoint without duplicates.
func TestWithRealStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data.db")
	clk := clock.NewFake(hnow)
	db := openStore(t, clk, path)

	car := model.Device{ID: "car", Name: "ID.7", Brand: "Volkswagen"}
	bat := model.Device{ID: "bat", Name: "Battery", Brand: "Homevolt",
		SupportedResolutions: []string{model.ResolutionHour, model.ResolutionDay}, MaxRetentionDays: 730}
	ser := newSeries("bat", 30, 100)
	api := historyAPI(ser)
	api.HomesFn = func(context.Context) ([]model.Home, error) {
		return []model.Home{{ID: "h1", Name: "Huis"}, {ID: "h2", Name: "Hytte"}}, nil
	}
	api.DevicesFn = func(_ context.Context, homeID string) ([]model.Device, error) {
		if homeID == "h1" {
			return []model.Device{car, bat, {ID: "gone", Name: "Old"}}, nil
		}
		return []model.Device{car}, nil
	}
	api.DeviceFn = func(_ context.Context, _, id string) (model.Device, error) {
		switch id {
		case "car":
			return detailOf(car), nil
		case "bat":
			return detailOf(bat), nil
		}
		return model.Device{}, &tibber.APIError{Status: http.StatusNotFound}
	}
	dayRejected := func(ctx context.Context, home, dev, res string, since time.Time) (model.HistoryPage, error) {
		if res == model.ResolutionDay {
			return model.HistoryPage{}, &tibber.APIError{Status: http.StatusBadRequest}
		}
		return ser.first(since), nil
	}
	api.HistoryFn = dayRejected
	s := &jobs.Syncer{API: api, Store: db, Clock: clk,
		HistoryResolutions: []string{model.ResolutionHour, model.ResolutionDay}, BackfillDays: 30}

	run, err := s.RunDevices(context.Background())
	if err != nil || run.Status != jobs.StatusPartial {
		t.Fatalf("devices run = %+v, err = %v", run, err)
	}
	if n := queryInt(t, path, `SELECT count(*) FROM devices WHERE id = 'car'`); n != 1 {
		t.Fatalf("car stored %d times, want 1", n)
	}
	if n := queryInt(t, path, `SELECT count(*) FROM home_devices WHERE device_id = 'car'`); n != 2 {
		t.Fatalf("car has %d home links, want 2", n)
	}
	if n := queryInt(t, path, `SELECT count(*) FROM sync_runs WHERE job = 'devices' AND status = 'partial' AND error LIKE '%gone%'`); n != 1 {
		t.Fatal("no partial devices run naming the missing device")
	}

	// History: the outage hits on the 4th link.
	serve := api.HistoryNextFn
	fail := true
	calls := 0
	api.HistoryNextFn = func(ctx context.Context, link string) (model.HistoryPage, error) {
		calls++
		if fail && calls == 4 {
			return model.HistoryPage{}, &tibber.APIError{Status: http.StatusServiceUnavailable}
		}
		return serve(ctx, link)
	}
	run, err = s.RunHistory(context.Background())
	if err != nil || run.Status != jobs.StatusPartial {
		t.Fatalf("first history run = %+v, err = %v", run, err)
	}
	if n := queryInt(t, path, `SELECT count(DISTINCT period_start) FROM device_history WHERE device_id = 'bat'`); n != 400 {
		t.Fatalf("%d periods after the outage, want the 4 committed pages (400)", n)
	}
	cp, ok, err := db.HistoryCheckpoint(context.Background(), "bat", model.ResolutionHour)
	if err != nil || !ok || cp.NextURL == "" || cp.BackfillDone {
		t.Fatalf("checkpoint = %+v, %v, %v; want a resume link", cp, ok, err)
	}

	fail = false
	clk.Advance(time.Hour)
	ser.end = ser.end.Add(time.Hour)
	run, err = s.RunHistory(context.Background())
	if err != nil || run.Status != jobs.StatusPartial { // the day stream is still rejected
		t.Fatalf("second history run = %+v, err = %v", run, err)
	}
	want := len(ser.times())
	if n := queryInt(t, path, `SELECT count(DISTINCT period_start) FROM device_history WHERE device_id = 'bat' AND resolution = 'hour'`); n != want {
		t.Fatalf("%d periods after resuming, want %d", n, want)
	}
	if n := queryInt(t, path, `SELECT count(*) FROM device_history WHERE device_id = 'bat'`); n != want {
		t.Fatalf("%d rows, want %d (one metric per period, no duplicates)", n, want)
	}
	if n := queryInt(t, path, `SELECT count(*) FROM sync_runs WHERE job = 'history' AND rows_written > 0`); n != 2 {
		t.Fatalf("%d history runs with rows written, want 2", n)
	}
	if cp, _, _ := db.HistoryCheckpoint(context.Background(), "bat", model.ResolutionDay); cp.LastError == "" {
		t.Fatalf("day checkpoint = %+v, want the 400 recorded", cp)
	}
}

// TestSchedulerStateSurvivesReopen persists the schedule and breaker in a
// real store, reopens it, and checks a new scheduler neither runs early nor
// forgets the open breaker.
func TestSchedulerStateSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data.db")
	clk := clock.NewFake(base)
	r := &fakeRunner{RunFn: func(ctx context.Context, job string) (model.Run, error) {
		return model.Run{Job: job, Status: jobs.StatusFailed, Error: "429"},
			&tibber.APIError{Status: http.StatusTooManyRequests, RetryAfter: 30 * time.Minute}
	}}
	jobList := []jobs.Job{{Name: "devices", Spec: "*/5 * * * *"}}

	db, err := store.Open(context.Background(), path, store.Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	a := &jobs.Scheduler{Jobs: jobList, Runner: r, Store: db, Clock: clk, Jitter: 10 * time.Second}
	a.RunDue(context.Background()) // never run: due within the jitter
	clk.Advance(10 * time.Second)
	if got := tick(t, a); len(got) != 1 {
		t.Fatalf("first run not started: %v", got)
	}
	want := a.NextRuns()["devices"]
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	clk.Advance(10 * time.Minute)
	db2 := openStore(t, clk, path)
	b := &jobs.Scheduler{Jobs: jobList, Runner: r, Store: db2, Clock: clk, Jitter: 10 * time.Second}
	if got := tickFor(t, b, clk, 19*time.Minute); got != 0 {
		t.Fatalf("%d runs while the persisted Retry-After breaker is open", got)
	}
	if got := b.NextRuns()["devices"]; got.Sub(want).Abs() > time.Millisecond {
		t.Fatalf("NextRuns after reopen = %v, want %v", got, want)
	}
	if got := tickFor(t, b, clk, 2*time.Minute); got != 1 {
		t.Fatalf("%d runs after the breaker closed, want one probe", got)
	}
	st, err := db2.JobState(context.Background(), "devices")
	if err != nil || st.ConsecutiveFailures != 2 {
		t.Fatalf("state = %+v, err = %v; want 2 failures persisted", st, err)
	}
}
