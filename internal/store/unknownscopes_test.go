package store_test

import (
	"context"
	"testing"

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
