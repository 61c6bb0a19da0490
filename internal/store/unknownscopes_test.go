package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/model"
)

// TestUnknownScopesRecordOnlyWhatDevicesProve: when the token response named
// no scopes, a batch without GrantedScopes marks the categories of the
// devices it saw as granted and claims nothing about the others.
func TestUnknownScopesRecordOnlyWhatDevicesProve(t *testing.T) {
	db, _, _ := MustOpenDB(t)
	b := twoHomes(t0, 50)
	b.GrantedScopes = nil
	b.Details[0].Category = model.CategoryVehicle // as the tibber decoder derives it
	if _, err := db.SaveInventory(context.Background(), model.Run{Job: jobs.JobDevices, StartedAt: t0, FinishedAt: t0, Status: jobs.StatusOK}, b); err != nil {
		t.Fatal(err)
	}
	if got := count(t, db, "SELECT count(*) FROM category_access"); got != 1 {
		t.Fatalf("%d category_access rows, want 1 (the vehicle's)", got)
	}
	if got := count(t, db, "SELECT granted FROM category_access WHERE category = ?", string(model.CategoryVehicle)); got != 1 {
		t.Fatalf("vehicle granted = %d, want 1", got)
	}
}

// TestRefusedCategoryRecordedMissing: granted scopes unknown; a 403 to a
// stored vehicle's detail marks the vehicle scope not granted, and the
// summary lists it missing; a refused device never stored (category
// unknown) proves nothing; a success of the category marks it granted
// again; RecordCategoryAccess (the history job's path) does the same.
func TestRefusedCategoryRecordedMissing(t *testing.T) {
	db, _, _ := MustOpenDB(t)
	ctx := context.Background()
	vehicleScope := model.CategoryScopes[model.CategoryVehicle]
	run := model.Run{Job: jobs.JobDevices, StartedAt: t0, FinishedAt: t0, Status: jobs.StatusOK}
	missing := func() []string {
		t.Helper()
		s, err := db.Summary(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return s.Auth.MissingScopes
	}

	b := twoHomes(t0, 50)
	b.GrantedScopes = nil
	b.Details[0].Category = model.CategoryVehicle
	if _, err := db.SaveInventory(ctx, run, b); err != nil {
		t.Fatal(err)
	}
	if m := missing(); len(m) != 0 {
		t.Fatalf("missing %q after the vehicle was seen, want none", m)
	}

	refused := twoHomes(t0.Add(time.Hour), 50)
	refused.GrantedScopes, refused.Details = nil, nil
	refused.ScopeRefused = []string{b.Details[0].ID, "never-stored"}
	if _, err := db.SaveInventory(ctx, run, refused); err != nil {
		t.Fatal(err)
	}
	if m := missing(); len(m) != 1 || m[0] != vehicleScope {
		t.Errorf("missing %q after the vehicle's detail got 403, want [%s]", m, vehicleScope)
	}
	if got := count(t, db, "SELECT count(*) FROM category_access"); got != 1 {
		t.Errorf("%d category_access rows, want 1: a refused device of unknown category proves nothing", got)
	}

	if _, err := db.SaveInventory(ctx, run, b); err != nil {
		t.Fatal(err)
	}
	if m := missing(); len(m) != 0 {
		t.Errorf("missing %q after the vehicle's detail succeeded again, want none", m)
	}

	if err := db.RecordCategoryAccess(ctx, map[model.Category]bool{model.CategoryVehicle: false, model.CategoryUnknown: false}); err != nil {
		t.Fatal(err)
	}
	if m := missing(); len(m) != 1 || m[0] != vehicleScope {
		t.Errorf("missing %q after a 403 to the vehicle's history, want [%s]", m, vehicleScope)
	}
}
