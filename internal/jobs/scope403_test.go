package jobs_test

import (
	"context"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/store"
	"github.com/tibbersync/tibbersync/internal/tibber"
)

var _ jobs.CategoryAccessRecorder = (*store.DB)(nil)

// TestForbiddenMarksCategoryScopeMissing: the token response named no
// scopes (unknown), so only API answers tell which categories are visible.
// A 403 to a thermostat's history (and later to its detail) records the
// thermostat scope as not granted, so the summary lists it as missing,
// while the battery's history syncs on as before; a later detail success
// marks the category granted again.
func TestForbiddenMarksCategoryScopeMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data.db")
	clk := clock.NewFake(hnow)
	db := openStore(t, clk, path)
	ctx := context.Background()
	thermoScope := model.CategoryScopes[model.CategoryThermostat]

	thermo := model.Device{ID: "thermo", Name: "Hall", SupportedResolutions: []string{model.ResolutionHour}, MaxRetentionDays: 30}
	bat := model.Device{ID: "bat", Name: "Battery", SupportedResolutions: []string{model.ResolutionHour}, MaxRetentionDays: 730}
	ser := newSeries("bat", 30, 100)
	api := historyAPI(ser)
	forbidden := &tibber.APIError{Status: http.StatusForbidden, Endpoint: "GET /v1/homes/h1/devices/thermo"}
	refuseThermo := false
	api.HomesFn = func(context.Context) ([]model.Home, error) { return []model.Home{{ID: "h1", Name: "Huis"}}, nil }
	api.DevicesFn = func(context.Context, string) ([]model.Device, error) { return []model.Device{thermo, bat}, nil }
	api.DeviceFn = func(_ context.Context, _, id string) (model.Device, error) {
		switch id {
		case "thermo":
			if refuseThermo {
				return model.Device{}, forbidden
			}
			d := thermo
			d.Category = model.CategoryThermostat
			return d, nil
		default:
			d := bat
			d.Category = model.CategoryEnergySystem
			return d, nil
		}
	}
	batHistory := api.HistoryFn
	api.HistoryFn = func(ctx context.Context, home, dev, res string, since time.Time) (model.HistoryPage, error) {
		if dev == "thermo" {
			return model.HistoryPage{}, forbidden
		}
		return batHistory(ctx, home, dev, res, since)
	}
	s := &jobs.Syncer{API: api, Store: db, Clock: clk, HistoryResolutions: []string{model.ResolutionHour}, BackfillDays: 30}

	missing := func() []string {
		t.Helper()
		sum, err := db.Summary(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(sum.Auth.GrantedScopes) != 0 {
			t.Fatalf("granted scopes %q, want unknown", sum.Auth.GrantedScopes)
		}
		return sum.Auth.MissingScopes
	}
	if r, err := s.RunDevices(ctx); err != nil || r.Status != jobs.StatusOK {
		t.Fatalf("devices run: %s %v", r.Status, err)
	}
	if m := missing(); len(m) != 0 {
		t.Fatalf("missing scopes %q after both categories were seen, want none", m)
	}

	r, err := s.RunHistory(ctx)
	if r.Status != jobs.StatusPartial {
		t.Fatalf("history run: %s %q %v, want partial (the battery synced)", r.Status, r.Error, err)
	}
	if got := queryInt(t, path, `SELECT count(*) FROM history_checkpoints WHERE device_id = 'bat' AND backfill_done = 1`); got != 1 {
		t.Errorf("battery backfill not done after the thermostat's 403 (%d)", got)
	}
	if m := missing(); !slices.Equal(m, []string{thermoScope}) {
		t.Errorf("missing scopes after a 403 to the thermostat's history = %q, want [%s]", m, thermoScope)
	}
	if g := queryInt(t, path, `SELECT granted FROM category_access WHERE category = 'energy_system'`); g != 1 {
		t.Errorf("energy_system granted = %d after its history synced, want 1", g)
	}

	// The detail refused too: still missing after a devices run.
	refuseThermo = true
	if r, _ := s.RunDevices(ctx); r.Status != jobs.StatusPartial {
		t.Fatalf("devices run with the thermostat refused: %s %q", r.Status, r.Error)
	}
	if m := missing(); !slices.Equal(m, []string{thermoScope}) {
		t.Errorf("missing scopes after a 403 to the thermostat's detail = %q, want [%s]", m, thermoScope)
	}

	// Consent given again: the detail succeeds and the scope counts as granted.
	refuseThermo = false
	if r, err := s.RunDevices(ctx); err != nil || r.Status != jobs.StatusOK {
		t.Fatalf("devices run: %s %v", r.Status, err)
	}
	if m := missing(); len(m) != 0 {
		t.Errorf("missing scopes %q after the thermostat's detail succeeded again, want none", m)
	}
}
