package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
)

func TestDeviceStates(t *testing.T) {
	db, _, _ := MustOpenDB(t)
	ctx := context.Background()
	t0 := time.Date(2026, 9, 14, 8, 0, 0, 0, time.UTC)
	mustSave(t, db, twoHomes(t0, 80))
	t1 := t0.Add(5 * time.Minute)
	mustSave(t, db, twoHomes(t1, 81)) // the state of charge changes: a new snapshot at t1

	states, err := db.DeviceStates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != 2 || states[0].ID != "bat-1" || states[1].ID != "veh-1" {
		t.Fatalf("devices: %+v", states)
	}
	v := states[1]
	if v.Name != "ID.7" || v.Brand != "Volkswagen" || v.ExternalID != "WVWZZZ1" || v.Category != model.CategoryVehicle || v.Removed {
		t.Errorf("vehicle: %+v", v)
	}
	if !slices.Equal(v.Homes, []model.HomeRef{{ID: "h1", Name: "Huis"}, {ID: "h2", Name: "Hytte"}}) {
		t.Errorf("homes: %+v", v.Homes)
	}
	if !v.ObservedAt.Equal(t1) {
		t.Errorf("observed_at %v, want the newest snapshot %v", v.ObservedAt, t1)
	}
	byID := map[string]model.CapabilityState{}
	for _, c := range v.Capabilities {
		byID[c.ID] = c
	}
	if c := byID["storage.stateOfCharge"]; c.Num == nil || *c.Num != 81 || c.Unit != "%" || !c.ObservedAt.Equal(t1) {
		t.Errorf("soc: %+v", c)
	}
	if c := byID["range.remaining"]; c.Num == nil || *c.Num != 356000 || !c.ObservedAt.Equal(t0) {
		t.Errorf("range holds since t0: %+v", c)
	}
	if b, ok := byID["charging.enabled"].Bool(); !ok || !b {
		t.Errorf("boolean: %+v", byID["charging.enabled"])
	}
	if c := byID["connector.status"]; c.Text == nil || *c.Text != "disconnected" || c.Num != nil {
		t.Errorf("text: %+v", c)
	}
	// Exactly the rows of latest_capabilities.
	if n := count(t, db, `SELECT count(*) FROM latest_capabilities WHERE device_id = 'veh-1'`); int(n) != len(v.Capabilities) {
		t.Errorf("%d capabilities, latest_capabilities has %d", len(v.Capabilities), n)
	}

	// The battery disappears from the account: removed, no homes.
	b := twoHomes(t1.Add(time.Hour), 81)
	b.HomeDevices["h1"] = []model.Device{vehicleListItem()}
	if _, err := db.SaveInventory(ctx, model.Run{Job: "homes", StartedAt: t1, FinishedAt: t1, Status: "ok"}, b); err != nil {
		t.Fatal(err)
	}
	states, err = db.DeviceStates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !states[0].Removed || len(states[0].Homes) != 0 || states[1].Removed {
		t.Errorf("after removal: %+v", states)
	}
}
