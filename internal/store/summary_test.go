package store_test

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/store"

	"github.com/tibbersync/tibbersync/internal/model"
)

func TestSummary(t *testing.T) {
	ctx := context.Background()
	db, clk, _ := MustOpenDB(t)
	if err := db.SetAuthStatus(ctx, model.AuthStatus{State: model.AuthOK, Since: t0.Add(-time.Hour), Email: "a@example.org",
		GrantedScopes: allScopes}); err != nil {
		t.Fatal(err)
	}
	b := twoHomes(t0, 74)
	bat := listItem("bat-1", "Battery")
	bat.Capabilities = []model.Capability{numCap("storage.stateOfCharge", 54, "%"), numCap("storage.ratedCapacity", 13800, "Wh")}
	b.Details = append(b.Details, bat)
	mustSave(t, db, b)
	if _, err := db.RecordRun(ctx, model.Run{Job: "history", StartedAt: t0, FinishedAt: t0.Add(time.Second), Status: "failed",
		Error: "fetch history: 503", Requests: 4}); err != nil {
		t.Fatal(err)
	}
	if err := db.SaveJobState(ctx, model.JobState{Job: "devices", NextRunAt: t0.Add(5 * time.Minute), LastRunAt: t0, LastSuccessAt: t0}); err != nil {
		t.Fatal(err)
	}
	if err := db.SaveJobState(ctx, model.JobState{Job: "history", ConsecutiveFailures: 3, BreakerUntil: t0.Add(time.Hour), LastError: "fetch history: 503"}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)

	s, err := db.Summary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !s.GeneratedAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("GeneratedAt = %v", s.GeneratedAt)
	}
	if s.Auth.State != model.AuthOK || s.Auth.Email != "a@example.org" || !s.Auth.Since.Equal(t0.Add(-time.Hour)) ||
		!reflect.DeepEqual(s.Auth.GrantedScopes, allScopes) || !s.Auth.AccessExpiresAt.IsZero() {
		t.Errorf("Auth = %+v", s.Auth)
	}
	if want := []string{"data-api-chargers-read", "data-api-thermostats-read", "data-api-inverters-read"}; !reflect.DeepEqual(s.Auth.MissingScopes, want) {
		t.Errorf("MissingScopes = %v, want %v", s.Auth.MissingScopes, want)
	}
	if s.Categories[model.CategoryVehicle] != "granted" || s.Categories[model.CategoryCharger] != "not granted" || len(s.Categories) != 5 {
		t.Errorf("Categories = %v", s.Categories)
	}
	if len(s.Jobs) != 3 || s.Jobs[0].Job != "homes" || s.Jobs[1].Job != "devices" || s.Jobs[2].Job != "history" {
		t.Fatalf("Jobs = %+v", s.Jobs)
	}
	dev := s.Jobs[1]
	if dev.LastStatus != "ok" || dev.LastRequests != 3 || dev.LastRowsWritten == 0 || dev.RowsWrittenTotal != int64(dev.LastRowsWritten) ||
		!dev.NextRunAt.Equal(t0.Add(5*time.Minute)) || !dev.LastSuccessAt.Equal(t0) {
		t.Errorf("devices job = %+v", dev)
	}
	hist := s.Jobs[2]
	if hist.LastStatus != "failed" || hist.LastError != "fetch history: 503" || hist.ConsecutiveFailures != 3 ||
		!hist.BreakerUntil.Equal(t0.Add(time.Hour)) || !hist.LastSuccessAt.IsZero() || !hist.LastRunAt.Equal(t0) {
		t.Errorf("history job = %+v", hist)
	}
	if s.Jobs[0].LastStatus != "" || !s.Jobs[0].LastRunAt.IsZero() {
		t.Errorf("homes job never ran but = %+v", s.Jobs[0])
	}
	if s.Tables["homes"] != 2 || s.Tables["devices"] != 2 || s.Tables["sync_runs"] != 2 || s.Tables["schema_migrations"] != int64(store.SchemaVersion()) {
		t.Errorf("Tables = %v", s.Tables)
	}
	if _, ok := s.Tables["device_history"]; !ok {
		t.Error("empty tables must be listed too")
	}
	if s.DataDBBytes <= 0 || s.WALBytes <= 0 {
		t.Errorf("sizes = %d, %d", s.DataDBBytes, s.WALBytes)
	}
	if len(s.Devices) != 2 {
		t.Fatalf("Devices = %+v", s.Devices)
	}
	byID := map[string]model.DeviceSummary{}
	for _, d := range s.Devices {
		byID[d.ID] = d
	}
	v := byID["veh-1"]
	if v.Name != "ID.7" || v.Brand != "Volkswagen" || v.Category != model.CategoryVehicle || v.StateOfCharge == nil || *v.StateOfCharge != 74 ||
		!reflect.DeepEqual(v.Homes, []string{"Huis", "Hytte"}) || !v.LastSeen.Equal(vehicle(74).LastSeen) || v.Removed {
		t.Errorf("vehicle = %+v", v)
	}
	if b := byID["bat-1"]; b.StateOfCharge == nil || *b.StateOfCharge != 54 || !reflect.DeepEqual(b.Homes, []string{"Huis"}) {
		t.Errorf("battery = %+v", b)
	}
	// The JSON contract of `status --json` holds.
	if _, err := json.Marshal(s); err != nil {
		t.Fatal(err)
	}
}

func TestSummaryEmptyDatabase(t *testing.T) {
	db, _, _ := MustOpenDB(t)
	s, err := db.Summary(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Auth.State != model.AuthSetupRequired || len(s.Jobs) != 3 || len(s.Devices) != 0 || len(s.Categories) != 0 || s.Auth.MissingScopes != nil {
		t.Fatalf("empty summary = %+v", s)
	}
}

func TestCapabilitySeries(t *testing.T) {
	ctx := context.Background()
	db, _, _ := MustOpenDB(t)
	for i, soc := range []float64{74, 75, 76} {
		mustSave(t, db, twoHomes(t0.Add(time.Duration(i)*10*time.Minute), soc))
	}
	since := t0.Add(15 * time.Minute)
	series, err := db.CapabilitySeries(ctx, "storage.stateOfCharge", since)
	if err != nil {
		t.Fatal(err)
	}
	if len(series) != 1 {
		t.Fatalf("series = %+v", series)
	}
	sr := series[0]
	want := []model.SeriesPoint{{At: since, Value: 75}, {At: t0.Add(20 * time.Minute), Value: 76}}
	if sr.DeviceID != "veh-1" || sr.DeviceName != "ID.7" || sr.Unit != "%" || sr.CapabilityID != "storage.stateOfCharge" || !reflect.DeepEqual(sr.Points, want) {
		t.Fatalf("series = %+v, want points %+v", sr, want)
	}
	// A value that has not changed since long before still draws.
	flat, err := db.CapabilitySeries(ctx, "range.remaining", t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(flat) != 1 || len(flat[0].Points) != 1 || flat[0].Points[0].Value != 356000 || !flat[0].Points[0].At.Equal(t0.Add(time.Hour)) {
		t.Fatalf("flat series = %+v", flat)
	}
	// Text capabilities have no points.
	if txt, err := db.CapabilitySeries(ctx, "connector.status", t0.Add(-time.Hour)); err != nil || len(txt) != 0 {
		t.Fatalf("text series = %+v, %v", txt, err)
	}
}

func TestSyncHealthAndOverviewViews(t *testing.T) {
	ctx := context.Background()
	db, _, _ := MustOpenDB(t)
	now := time.Now().UTC() // sync_health counts against SQLite's 'now'
	mustSave(t, db, twoHomes(now.Add(-2*time.Hour), 74))
	for i, st := range []string{"ok", "failed", "failed"} {
		if _, err := db.RecordRun(ctx, model.Run{Job: "history", StartedAt: now.Add(time.Duration(i-3) * time.Hour),
			FinishedAt: now.Add(time.Duration(i-3)*time.Hour + time.Minute), Status: st}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.RecordRun(ctx, model.Run{Job: "history", StartedAt: now.Add(-30 * time.Hour), Status: "failed"}); err != nil {
		t.Fatal(err)
	}
	if err := db.SaveJobState(ctx, model.JobState{Job: "history", ConsecutiveFailures: 2, NextRunAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	var (
		status, lastSuccess, next string
		runs, failures, consec    int
	)
	if err := db.RawForTest().QueryRow(`SELECT last_status, last_success_at, runs_24h, failures_24h, consecutive_failures, next_run_at
FROM sync_health WHERE job = 'history'`).Scan(&status, &lastSuccess, &runs, &failures, &consec, &next); err != nil {
		t.Fatal(err)
	}
	if status != "failed" || runs != 3 || failures != 2 || consec != 2 || next != now.Add(time.Hour).Format("2006-01-02T15:04:05.000Z") ||
		lastSuccess != now.Add(-3*time.Hour+time.Minute).Format("2006-01-02T15:04:05.000Z") {
		t.Fatalf("sync_health history = %s %s runs=%d failures=%d consec=%d next=%s", status, lastSuccess, runs, failures, consec, next)
	}
	if got := count(t, db, "SELECT count(*) FROM sync_health"); got != 3 {
		t.Fatalf("sync_health rows = %d, want 3", got)
	}
	var homes, category string
	var soc float64
	var snaps int
	if err := db.RawForTest().QueryRow("SELECT homes, category, state_of_charge, snapshot_count FROM device_overview WHERE device_id = 'veh-1'").
		Scan(&homes, &category, &soc, &snaps); err != nil {
		t.Fatal(err)
	}
	if (homes != "Huis, Hytte" && homes != "Hytte, Huis") || category != "vehicle" || soc != 74 || snaps != 1 {
		t.Fatalf("device_overview = %s %s %v %d", homes, category, soc, snaps)
	}
}

func TestSummaryTokenTimesFromAuthStatus(t *testing.T) {
	db, _, _ := MustOpenDB(t)
	ctx := context.Background()
	issued := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	exp := time.Date(2026, 11, 28, 13, 0, 0, 0, time.UTC)
	if err := db.SetAuthStatus(ctx, model.AuthStatus{State: model.AuthOK, AccessExpiresAt: exp, RefreshIssuedAt: issued}); err != nil {
		t.Fatal(err)
	}
	st, err := db.AuthStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.AccessExpiresAt.Equal(exp) || !st.RefreshIssuedAt.Equal(issued) {
		t.Fatalf("AuthStatus token times = %v, %v; want %v, %v", st.AccessExpiresAt, st.RefreshIssuedAt, exp, issued)
	}
	s, err := db.Summary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Auth.AccessExpiresAt.Equal(exp) || !s.Auth.RefreshExpiresEst.Equal(issued.Add(model.RefreshLifetimeEstimate)) {
		t.Fatalf("Summary auth = %+v", s.Auth)
	}
}
