package e2e

import (
	"database/sql"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/tibbersync/tibbersync/internal/jobs"
)

// TestTibberDetailsKept: what Tibber sends besides values is kept in
// data.db exactly as sent: every device's attributes, every capability's
// description and allowed values, and the account's userinfo sub and name;
// names with terminal escapes are stored unchanged (only displays
// neutralise them).
func TestTibberDetailsKept(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.mustRun(jobs.JobDevices, jobs.StatusOK)
	at := e.clk.Now()
	enums := 0
	for _, d := range uniqueDevices(e.sim.Account()) {
		want := e.sim.DeviceState(d.HomeID, d.Dev.ID, at)
		var attrs string
		if err := e.ro.QueryRow(`SELECT attributes FROM devices WHERE id = ?`, d.Dev.ID).Scan(&attrs); err != nil {
			t.Fatalf("device %s: %v", d.Dev.Name, err)
		}
		var got, sent []map[string]any
		if err := json.Unmarshal([]byte(attrs), &got); err != nil {
			t.Fatalf("device %s attributes %q: %v", d.Dev.Name, attrs, err)
		}
		b, _ := json.Marshal(want.Attributes)
		_ = json.Unmarshal(b, &sent)
		if len(sent) == 0 {
			sent = nil
		}
		if len(got) == 0 {
			got = nil
		}
		if !reflect.DeepEqual(got, sent) {
			t.Errorf("device %s attributes = %s, want %s", d.Dev.Name, attrs, b)
		}
		for _, c := range want.Capabilities {
			var desc string
			var values sql.NullString
			err := e.ro.QueryRow(`SELECT description, available_values FROM capability_state WHERE device_id = ? AND capability_id = ?`,
				d.Dev.ID, c.ID).Scan(&desc, &values)
			if err != nil {
				t.Errorf("device %s capability %s: %v", d.Dev.Name, c.ID, err)
				continue
			}
			if desc != c.Description {
				t.Errorf("device %s capability %s description %q, want %q", d.Dev.Name, c.ID, desc, c.Description)
			}
			switch {
			case c.AvailableValues == nil && values.Valid:
				t.Errorf("device %s capability %s available_values %q, want NULL", d.Dev.Name, c.ID, values.String)
			case c.AvailableValues != nil:
				enums++
				var vs []string
				if err := json.Unmarshal([]byte(values.String), &vs); err != nil || !reflect.DeepEqual(vs, c.AvailableValues) {
					t.Errorf("device %s capability %s available_values %q, want %q", d.Dev.Name, c.ID, values.String, c.AvailableValues)
				}
			}
		}
	}
	if enums == 0 {
		t.Error("the fixture served no enum capability; the test checks nothing about availableValues")
	}
	acct := e.sim.Account()
	var sub, name string
	if err := e.ro.QueryRow(`SELECT user_sub, user_name FROM auth_status WHERE id = 1`).Scan(&sub, &name); err != nil {
		t.Fatal(err)
	}
	if sub != acct.UserID || name != acct.Name || sub == "" {
		t.Errorf("auth_status user_sub %q user_name %q, want %q %q", sub, name, acct.UserID, acct.Name)
	}
}
