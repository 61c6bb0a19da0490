package simulator_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/simulator"
)

func heapAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func TestGeneratedAccountScalesLazily(t *testing.T) {
	before := heapAlloc()
	e := newEnv(t, simulator.Options{Homes: 1000, DevicesPerHome: 50, Seed: 3})
	if grew := int64(heapAlloc()) - int64(before); grew > 2<<20 {
		t.Fatalf("New with 1000×50 devices grew the heap by %d bytes: not lazy", grew)
	}
	tok, _ := e.login()
	var homes simulator.HomesResponse
	e.getJSON("/v1/homes", tok, 200, &homes)
	if len(homes.Homes) != 1000 {
		t.Fatalf("%d homes", len(homes.Homes))
	}
	seen := map[string]bool{}
	kinds := map[string]int{}
	for _, i := range []int{0, 1, 500, 999} {
		h := homes.Homes[i]
		var list simulator.DevicesResponse
		e.getJSON("/v1/homes/"+h.ID+"/devices", tok, 200, &list)
		if len(list.Devices) != 50 {
			t.Fatalf("home %d: %d devices", i, len(list.Devices))
		}
		for _, d := range list.Devices {
			if seen[d.ID] {
				t.Fatalf("duplicate device id %s", d.ID)
			}
			seen[d.ID] = true
		}
		last := list.Devices[49]
		var det simulator.DeviceDetail
		e.getJSON(devicePath(h.ID, last.ID), tok, 200, &det)
		if det.ID != last.ID || det.ExternalID != last.ExternalID || len(det.Capabilities) == 0 {
			t.Fatalf("detail %+v", det)
		}
		for _, d := range list.Devices {
			if len(d.SupportedHistory.Resolutions) > 0 {
				kinds["history"]++
				var p simulator.HistoryResponse
				e.getJSON(devicePath(h.ID, d.ID)+"/history?resolution="+d.SupportedHistory.Resolutions[0]+"&since=2026-09-13T00:00:00Z", tok, 200, &p)
				if len(p.Items) == 0 {
					t.Fatalf("no history items for %s", d.Info.Name)
				}
				break
			}
		}
		for _, d := range list.Devices {
			kinds[d.Info.Brand]++
		}
	}
	if len(kinds) < 6 {
		t.Fatalf("generated brands %v: want a mix", kinds)
	}
	// A device of home 0 is not found under home 1; unknown ids are 404.
	var list0 simulator.DevicesResponse
	e.getJSON("/v1/homes/"+homes.Homes[0].ID+"/devices", tok, 200, &list0)
	id := homes.Homes[0].ID
	other := id[:35] + "0"
	if id[35] == '0' {
		other = id[:35] + "1"
	}
	for _, path := range []string{
		devicePath(homes.Homes[1].ID, list0.Devices[0].ID),
		devicePath(id, "Zm9v"),
		"/v1/homes/" + other + "/devices",
	} {
		if st, _, _ := e.get(path, tok); st != 404 {
			t.Fatalf("GET %s: %d, want 404", path, st)
		}
	}
}

func TestGeneratedAccountGroundTruth(t *testing.T) {
	e := newEnv(t, simulator.Options{Homes: 3, DevicesPerHome: 12, Seed: 9})
	tok, _ := e.login()
	acct := e.sim.Account()
	if len(acct.Homes) != 3 {
		t.Fatalf("%d homes", len(acct.Homes))
	}
	for _, h := range acct.Homes {
		var list simulator.DevicesResponse
		e.getJSON("/v1/homes/"+h.ID+"/devices", tok, 200, &list)
		if len(list.Devices) != len(h.Devices) {
			t.Fatalf("home %s: %d listed, truth %d", h.Name, len(list.Devices), len(h.Devices))
		}
		for i, d := range list.Devices {
			g := h.Devices[i]
			if d.ID != g.ID || d.ExternalID != g.ExternalID || d.Info.Name != g.Name || d.Info.Brand != g.Brand ||
				len(d.SupportedHistory.Resolutions) != len(g.Resolutions) || d.SupportedHistory.MaxRetentionDays != g.MaxRetentionDays {
				t.Fatalf("listed %+v vs truth %+v", d, g)
			}
			if g.Zone != h.Zone || len(g.HomeIDs) != 1 || g.HomeIDs[0] != h.ID {
				t.Fatalf("truth %+v", g)
			}
		}
	}
	// Same seed, same account; another seed, another one.
	again := simulator.New(simulator.Options{Homes: 3, DevicesPerHome: 12, Seed: 9, Now: func() time.Time { return testStart }})
	other := simulator.New(simulator.Options{Homes: 3, DevicesPerHome: 12, Seed: 10, Now: func() time.Time { return testStart }})
	if again.Account().Homes[2].Devices[11].ID != acct.Homes[2].Devices[11].ID {
		t.Fatal("generated ids are not deterministic")
	}
	if other.Account().Homes[0].ID == acct.Homes[0].ID {
		t.Fatal("different seeds generate the same home id")
	}
}
