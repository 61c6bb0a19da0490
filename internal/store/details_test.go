package store_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"testing"

	"github.com/tibbersync/tibbersync/internal/model"
)

// TestTibberDetailsColumns: attributes, capability descriptions and allowed
// values are stored as sent and follow changes; an identity-only entry
// (nil attributes) leaves them; SetAccount keeps userinfo sub and name.
func TestTibberDetailsColumns(t *testing.T) {
	db, _, _ := MustOpenDB(t)
	ctx := context.Background()
	b := twoHomes(t0, 50)
	b.Details[0].Capabilities = append(b.Details[0].Capabilities,
		model.Capability{ID: "charging.state", Description: "Charging \u202estate", Text: s("idle"), AvailableValues: []string{"idle", "charging"}})
	if _, err := db.SaveInventory(ctx, model.Run{Job: "devices", StartedAt: t0, FinishedAt: t0, Status: "ok"}, b); err != nil {
		t.Fatal(err)
	}
	read := func(capID string) (string, sql.NullString, string) {
		var desc string
		var vals sql.NullString
		var attrs string
		if err := db.RawForTest().QueryRow(`SELECT description, available_values FROM capability_state WHERE device_id = 'veh-1' AND capability_id = ?`, capID).Scan(&desc, &vals); err != nil {
			t.Fatal(err)
		}
		if err := db.RawForTest().QueryRow(`SELECT attributes FROM devices WHERE id = 'veh-1'`).Scan(&attrs); err != nil {
			t.Fatal(err)
		}
		return desc, vals, attrs
	}
	desc, vals, attrs := read("charging.state")
	if desc != "Charging \u202estate" || vals.String != `["idle","charging"]` {
		t.Fatalf("stored %q %q", desc, vals.String)
	}
	var got []json.RawMessage
	if err := json.Unmarshal([]byte(attrs), &got); err != nil || len(got) != 2 {
		t.Fatalf("attributes %q", attrs)
	}
	if _, vals, _ := read("storage.stateOfCharge"); vals.Valid {
		t.Errorf("a capability without availableValues stored %q, want NULL", vals.String)
	}
	// Changes follow; an identity-only detail (nil attributes) keeps them.
	b2 := twoHomes(t0.Add(60000), 51)
	b2.Details[0].Capabilities = append(b2.Details[0].Capabilities,
		model.Capability{ID: "charging.state", Description: "State", Text: s("idle"), AvailableValues: []string{"idle"}})
	b2.Details[0].Attributes = []json.RawMessage{json.RawMessage(`{"id":"isOnline","value":false}`)}
	if _, err := db.SaveInventory(ctx, model.Run{Job: "devices", StartedAt: t0, FinishedAt: t0, Status: "ok"}, b2); err != nil {
		t.Fatal(err)
	}
	if desc, vals, attrs := read("charging.state"); desc != "State" || vals.String != `["idle"]` || attrs != `[{"id":"isOnline","value":false}]` {
		t.Fatalf("after change: %q %q %q", desc, vals.String, attrs)
	}
	if err := db.SetAuthStatus(ctx, model.AuthStatus{State: model.AuthOK}); err != nil {
		t.Fatal(err)
	}
	if err := db.SetAccount(ctx, "user-42", "Ada \x1b[2J"); err != nil {
		t.Fatal(err)
	}
	var sub, name string
	if err := db.RawForTest().QueryRow(`SELECT user_sub, user_name FROM auth_status`).Scan(&sub, &name); err != nil || sub != "user-42" || name != "Ada \x1b[2J" {
		t.Fatalf("account %q %q %v", sub, name, err)
	}
	// A later state change keeps them.
	if err := db.SetAuthStatus(ctx, model.AuthStatus{State: model.AuthReauthRequired, Reason: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := db.RawForTest().QueryRow(`SELECT user_sub FROM auth_status`).Scan(&sub); err != nil || sub != "user-42" {
		t.Fatalf("sub after a state change %q %v", sub, err)
	}
}
