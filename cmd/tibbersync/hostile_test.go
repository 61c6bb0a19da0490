package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/simulator"
	"github.com/tibbersync/tibbersync/internal/store"
)

// TestStatusNeutralisesHostileText stores names, an email, a scope and a
// run error carrying terminal escapes and a bidi override exactly as Tibber
// sent them, then runs `status` and `status --json`: neither writes them
// raw, and the JSON still decodes to what was stored.
func TestStatusNeutralisesHostileText(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(state, 0o750); err != nil {
		t.Fatal(err)
	}
	name := "Pump" + simulator.HostileText
	db, err := store.Open(ctx, filepath.Join(state, "data.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	dev := model.Device{ID: "dev-1", Name: name, Brand: "B\x1b]8;;x\x07", Model: "M\u2066x\u2069", Capabilities: []model.Capability{}, Raw: json.RawMessage(`{"id":"dev-1"}`)}
	run := model.Run{Job: jobs.JobDevices, StartedAt: now, FinishedAt: now, Status: jobs.StatusPartial, Error: "device " + name + ": HTTP 503"}
	batch := model.InventoryBatch{ObservedAt: now, Homes: []model.Home{{ID: "home-1", Name: "Home" + simulator.HostileText}},
		HomeDevices: map[string][]model.Device{"home-1": {dev}}, Details: []model.Device{dev}}
	if _, err := db.SaveInventory(ctx, run, batch); err != nil {
		t.Fatal(err)
	}
	if err := db.SaveJobState(ctx, model.JobState{Job: jobs.JobDevices, LastRunAt: now, LastError: run.Error}); err != nil {
		t.Fatal(err)
	}
	if err := db.SetAuthStatus(ctx, model.AuthStatus{State: model.AuthOK, Email: "eve\u202emoc.x@\x1b[2J", GrantedScopes: []string{"openid", "x\x1b]0;t\x07"}}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte("[storage]\ndir = \""+state+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"status"}, {"status", "--json"}} {
		_, out, errOut := runCmd(t, ctx, nil, "", append([]string{"-c", cfg}, args...)...)
		all := out + errOut
		for _, bad := range []string{"\x1b]", "\x1b[2J", "\u202e", "\u2066", "\u009b", "\x07"} {
			if strings.Contains(all, bad) {
				t.Errorf("%v output contains raw %q:\n%q", args, bad, all)
			}
		}
		if !strings.Contains(out, "gpj.exe") || !strings.Contains(out, "eve") {
			t.Errorf("%v output lost the text:\n%s", args, out)
		}
		if len(args) == 2 {
			var rep statusReport
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("status --json is not JSON: %v\n%s", err, out)
			}
			found := false
			for _, d := range rep.Devices {
				found = found || d.Name == name
			}
			if !found {
				t.Errorf("status --json does not decode to the stored name %q: %+v", name, rep.Devices)
			}
		}
	}
}

// TestSetupOutputNeutralisesHostileText: the account email and scopes that
// `setup` prints come from Tibber; they reach the terminal escaped.
func TestSetupOutputNeutralisesHostileText(t *testing.T) {
	var b strings.Builder
	printAuthorized(&b, model.AuthStatus{State: model.AuthOK, Email: "eve\u202emoc.x@\x1b]0;t\x07", GrantedScopes: []string{"openid", "x\x1b[2J"}})
	out := b.String()
	for _, bad := range []string{"\x1b]", "\x1b[2J", "\u202e", "\x07"} {
		if strings.Contains(out, bad) {
			t.Errorf("setup output contains raw %q:\n%q", bad, out)
		}
	}
	if !strings.Contains(out, `eve\u202emoc.x@`) || !strings.Contains(out, `x\x1b[2J`) {
		t.Errorf("setup output lost the text:\n%s", out)
	}
	b.Reset()
	printAuthorized(&b, model.AuthStatus{State: model.AuthOK})
	if !strings.Contains(b.String(), "granted scopes: unknown") || strings.Contains(b.String(), "not granted") {
		t.Errorf("unknown scopes printed as %q", b.String())
	}
}
