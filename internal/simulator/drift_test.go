package simulator_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tibbersync/tibbersync/internal/simulator"
)

// TestDriftFault: a drift fault renames the endpoint's list member for
// Count responses, then the normal shape returns.
func TestDriftFault(t *testing.T) {
	e := newEnv(t, simulator.Options{Seed: 1})
	access, _ := e.login(defaultScopes...)
	e.sim.Faults().Add(simulator.Fault{Endpoint: "homes", Kind: simulator.KindDrift, Count: 2})
	for i := range 3 {
		var body map[string]json.RawMessage
		e.getJSON("/v1/homes", access, 200, &body)
		_, renamed := body["homesV2"]
		_, normal := body["homes"]
		if drifted := i < 2; renamed != drifted || normal == drifted {
			t.Fatalf("response %d: members %v, want drift=%v", i, keys(body), drifted)
		}
	}
	// Member selects another member; history defaults to "items".
	h, d := findDevice(t, e.sim, "battery")
	e.sim.Faults().Add(simulator.Fault{Endpoint: "history", Kind: simulator.KindDrift, Count: 1})
	var page map[string]json.RawMessage
	e.getJSON(devicePath(h.ID, d.ID)+"/history?resolution=hour&since=2026-01-01T00:00:00Z", access, 200, &page)
	if _, ok := page["itemsV2"]; !ok || page["items"] != nil {
		t.Fatalf("history page members %v, want itemsV2 instead of items", keys(page))
	}
	if !strings.Contains(simulator.Fault{Endpoint: "history", Kind: "drift", Member: "next"}.String(), "member=next") {
		t.Error("Fault.String lacks the member")
	}
}

func keys(m map[string]json.RawMessage) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestHostileNames: the hostile account serves names with escapes and a
// bidi override, byte for byte.
func TestHostileNames(t *testing.T) {
	e := newEnv(t, simulator.Options{Seed: 1, HostileNames: true})
	access, _ := e.login(defaultScopes...)
	var homes struct {
		Homes []struct{ ID, Name string } `json:"homes"`
	}
	e.getJSON("/v1/homes", access, 200, &homes)
	if len(homes.Homes) == 0 || !strings.HasSuffix(homes.Homes[0].Name, simulator.HostileText) {
		t.Fatalf("homes %+v lack the hostile text", homes.Homes)
	}
	for _, h := range e.sim.Account().Homes {
		for _, d := range h.Devices {
			if !strings.Contains(d.Name, "\x1b[2J") || !strings.Contains(d.Name, "\u202e") {
				t.Fatalf("device name %q is not hostile", d.Name)
			}
		}
	}
}
