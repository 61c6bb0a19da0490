package simulator_test

import (
	"encoding/base64"
	"encoding/json"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/simulator"
)

func TestFixtureAccount(t *testing.T) {
	sim := simulator.New(simulator.Options{Now: newClock(testStart).Now})
	acct := sim.Account()
	if len(acct.Homes) != 2 {
		t.Fatalf("%d homes, want 2", len(acct.Homes))
	}
	zones := []string{acct.Homes[0].Zone, acct.Homes[1].Zone}
	if !slices.Equal(zones, []string{"Europe/Oslo", "Europe/London"}) {
		t.Fatalf("zones %v", zones)
	}
	categories := map[string]bool{}
	kinds := map[string]bool{}
	dashOrUnderscore := false
	idRE := regexp.MustCompile(`^[a-zà-ÿ-]+ [a-z]+ [a-z]+:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	for _, h := range acct.Homes {
		for _, d := range h.Devices {
			categories[d.Category] = true
			kinds[d.Kind] = true
			raw, err := base64.RawURLEncoding.DecodeString(d.ID)
			if err != nil {
				t.Fatalf("id %q is not unpadded base64url: %v", d.ID, err)
			}
			if !idRE.Match(raw) || !strings.HasPrefix(string(raw), strings.ToLower(d.Brand)+" ") {
				t.Fatalf("id of %s decodes to %q", d.Name, raw)
			}
			if strings.ContainsAny(d.ID, "-_") {
				dashOrUnderscore = true
			}
			if d.Zone != h.Zone && len(d.HomeIDs) == 1 {
				t.Fatalf("device %s zone %s in home zone %s", d.Name, d.Zone, h.Zone)
			}
			// The client classifies by capability ids: it must agree with the
			// hidden category.
			det := sim.DeviceState(h.ID, d.ID, testStart.Add(30*time.Minute))
			var ids []string
			for _, c := range det.Capabilities {
				ids = append(ids, c.ID)
			}
			if got := string(model.CategoryOf(ids)); got != d.Category {
				t.Fatalf("%s (%s): CategoryOf(capabilities)=%s, hidden category %s", d.Name, d.Kind, got, d.Category)
			}
		}
	}
	for _, c := range []string{"vehicle", "charger", "thermostat", "energy_system", "inverter"} {
		if !categories[c] {
			t.Errorf("no %s device in the fixture", c)
		}
	}
	for _, k := range []string{"vehicle", "charger", "thermostat", "heatpump", "battery", "inverter"} {
		if !kinds[k] {
			t.Errorf("no %s in the fixture", k)
		}
	}
	if !dashOrUnderscore {
		t.Error("no fixture device id contains - or _")
	}
	_, bat := findDevice(t, sim, "battery")
	if !slices.Equal(bat.Resolutions, []string{"quarterHour", "hour", "day", "month"}) {
		t.Errorf("battery resolutions %v", bat.Resolutions)
	}
	_, th := findDevice(t, sim, "thermostat")
	if !slices.Equal(th.Resolutions, []string{"hour", "day"}) {
		t.Errorf("thermostat resolutions %v", th.Resolutions)
	}
	_, ch := findDevice(t, sim, "charger")
	if len(ch.Resolutions) != 0 || ch.Brand != "Easee" {
		t.Errorf("charger %+v", ch)
	}
}

func TestHomesAndDevicesOverHTTP(t *testing.T) {
	e := newEnv(t, simulator.Options{})
	tok, _ := e.login()
	var homes simulator.HomesResponse
	e.getJSON("/v1/homes", tok, 200, &homes)
	acct := e.sim.Account()
	if len(homes.Homes) != 2 || homes.Homes[0].ID != acct.Homes[0].ID || homes.Homes[1].Name != acct.Homes[1].Name {
		t.Fatalf("homes %+v", homes)
	}
	// Raw shapes: homes carry only id and name; list items only identity.
	var raw map[string][]map[string]any
	e.getJSON("/v1/homes", tok, 200, &raw)
	for _, h := range raw["homes"] {
		if len(h) != 2 {
			t.Fatalf("home object %v has more than id and name", h)
		}
	}
	vehicleHomes := map[string][]string{}
	for _, h := range acct.Homes {
		var list map[string][]map[string]any
		e.getJSON("/v1/homes/"+h.ID+"/devices", tok, 200, &list)
		if len(list["devices"]) != len(h.Devices) {
			t.Fatalf("home %s: %d devices, want %d", h.Name, len(list["devices"]), len(h.Devices))
		}
		for i, d := range list["devices"] {
			keys := slices.Sorted(func(yield func(string) bool) {
				for k := range d {
					if !yield(k) {
						return
					}
				}
			})
			if !slices.Equal(keys, []string{"externalId", "id", "info", "supportedHistory"}) {
				t.Fatalf("list item keys %v", keys)
			}
			truth := h.Devices[i]
			if d["id"] != truth.ID || d["externalId"] != truth.ExternalID {
				t.Fatalf("list item %v vs %+v", d, truth)
			}
			sh := d["supportedHistory"].(map[string]any)
			if _, has := sh["maxRetentionDays"]; has != (len(truth.Resolutions) > 0) {
				t.Fatalf("maxRetentionDays presence wrong for %s: %v", truth.Name, sh)
			}
			if truth.Kind == "vehicle" {
				vehicleHomes[truth.ID] = append(vehicleHomes[truth.ID], h.ID)
			}
		}
	}
	both := false
	for _, hs := range vehicleHomes {
		if len(hs) == 2 {
			both = true
		}
	}
	if !both {
		t.Fatalf("no vehicle listed under both homes: %v", vehicleHomes)
	}

	// Unknown home and device: 404 problem+json; ForeignHome403 switches.
	st, h, b := e.get("/v1/homes/00000000-0000-4000-8000-000000000000/devices", tok)
	checkProblem(t, st, h, b, 404)
	st, h, b = e.get(devicePath(acct.Homes[0].ID, "bm9wZQ"), tok)
	checkProblem(t, st, h, b, 404)
	st, h, b = e.get("/v1/homes/"+acct.Homes[0].ID, tok)
	checkProblem(t, st, h, b, 404)
	// A device of the other home is not found under this one.
	_, inv := findDevice(t, e.sim, "inverter")
	st, h, b = e.get(devicePath(acct.Homes[0].ID, inv.ID), tok)
	checkProblem(t, st, h, b, 404)

	f := newEnv(t, simulator.Options{ForeignHome403: true, BareArrayHomes: true})
	tok2, _ := f.login()
	st, h, b = f.get("/v1/homes/00000000-0000-4000-8000-000000000000/devices", tok2)
	checkProblem(t, st, h, b, 403)
	var bare []simulator.HomeItem
	f.getJSON("/v1/homes", tok2, 200, &bare)
	if len(bare) != 2 {
		t.Fatalf("bare array homes %v", bare)
	}
}

func TestDevicePathEscaping(t *testing.T) {
	e := newEnv(t, simulator.Options{})
	tok, _ := e.login()
	for _, h := range e.sim.Account().Homes {
		for _, d := range h.Devices {
			if !strings.ContainsAny(d.ID, "-_") {
				continue
			}
			var det simulator.DeviceDetail
			e.getJSON(devicePath(h.ID, d.ID), tok, 200, &det)
			if det.ID != d.ID {
				t.Fatalf("detail id %q, want %q", det.ID, d.ID)
			}
			// Over-escaped segments decode to the same id.
			esc := strings.NewReplacer("-", "%2D", "_", "%5F").Replace(d.ID)
			e.getJSON("/v1/homes/"+h.ID+"/devices/"+esc, tok, 200, &det)
			if det.ID != d.ID {
				t.Fatalf("escaped path: id %q", det.ID)
			}
			return
		}
	}
	t.Fatal("no device id with - or _")
}

var lastSeenRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$`)

func TestDeviceDetailShape(t *testing.T) {
	e := newEnv(t, simulator.Options{})
	e.clock.Set(time.Date(2026, 9, 14, 10, 20, 0, 0, time.UTC))
	tok, _ := e.login()
	for _, h := range e.sim.Account().Homes {
		for _, d := range h.Devices {
			st, _, body := e.get(devicePath(h.ID, d.ID), tok)
			if st != 200 {
				t.Fatalf("%s: status %d", d.Name, st)
			}
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"id", "externalId", "info", "supportedHistory", "status", "attributes", "capabilities"} {
				if _, ok := m[k]; !ok {
					t.Fatalf("%s: detail lacks %s", d.Name, k)
				}
			}
			for _, k := range []string{"category", "type", "vendor", "$type"} {
				if _, ok := m[k]; ok {
					t.Fatalf("%s: detail has %s", d.Name, k)
				}
			}
			seen := m["status"].(map[string]any)["lastSeen"].(string)
			if !lastSeenRE.MatchString(seen) {
				t.Fatalf("lastSeen %q is not UTC with milliseconds", seen)
			}
			if ts, _ := time.Parse(time.RFC3339, seen); ts.After(e.clock.Now()) {
				t.Fatalf("lastSeen %s in the future", seen)
			}
			for _, c := range m["capabilities"].([]any) {
				cm := c.(map[string]any)
				switch v := cm["value"].(type) {
				case float64, string, nil:
				default:
					t.Fatalf("%s: capability %v has a %T value", d.Name, cm["id"], v)
				}
				if _, ok := cm["$type"]; ok {
					t.Fatalf("$type without EmitType")
				}
			}
			// The HTTP body is exactly DeviceState.
			want, _ := json.Marshal(e.sim.DeviceState(h.ID, d.ID, e.clock.Now()))
			if string(want) != string(body) {
				t.Fatalf("%s: body differs from DeviceState:\n%s\n%s", d.Name, body, want)
			}
		}
	}
	if det := e.sim.DeviceState("nope", "nope", testStart); det.ID != "" {
		t.Fatalf("DeviceState of unknown device: %+v", det)
	}
}

func TestDeviceDetailEmitTypeAndBoolValues(t *testing.T) {
	e := newEnv(t, simulator.Options{EmitType: true, BoolValues: true})
	tok, _ := e.login()
	h, d := findDevice(t, e.sim, "battery")
	var m map[string]any
	e.getJSON(devicePath(h.ID, d.ID), tok, 200, &m)
	hasBool := false
	for _, c := range m["capabilities"].([]any) {
		cm := c.(map[string]any)
		if cm["$type"] == nil || cm["$type"] == "" {
			t.Fatalf("capability %v lacks $type", cm)
		}
		if _, ok := cm["value"].(bool); ok {
			hasBool = true
		}
	}
	for _, a := range m["attributes"].([]any) {
		if a.(map[string]any)["$type"] == nil {
			t.Fatalf("attribute %v lacks $type", a)
		}
	}
	if !hasBool {
		t.Fatal("BoolValues added no boolean capability")
	}
}

func TestDeviceStateDeterminismAndStability(t *testing.T) {
	a := simulator.New(simulator.Options{Seed: 7, Now: newClock(testStart).Now})
	b := simulator.New(simulator.Options{Seed: 7, Now: newClock(testStart).Now})
	c := simulator.New(simulator.Options{Seed: 8, Now: newClock(testStart).Now})
	h, bat := findDevice(t, a, "battery")
	differs := false
	for i := range 96 {
		at := testStart.Add(time.Duration(i) * 15 * time.Minute)
		da, db, dc := a.DeviceState(h.ID, bat.ID, at), b.DeviceState(h.ID, bat.ID, at), c.DeviceState(h.ID, bat.ID, at)
		if !reflect.DeepEqual(da, db) {
			t.Fatalf("same seed, different state at %s", at)
		}
		if !reflect.DeepEqual(da.Capabilities, dc.Capabilities) {
			differs = true
		}
	}
	if !differs {
		t.Fatal("different seeds give identical state")
	}
	// Two polls five minutes apart inside one quarter hour (away from the
	// hour boundary) see the same state.
	for _, kind := range []string{"vehicle", "charger", "thermostat", "heatpump", "battery", "inverter"} {
		h, d := findDevice(t, a, kind)
		t0 := time.Date(2026, 9, 14, 10, 16, 0, 0, time.UTC)
		if x, y := a.DeviceState(h.ID, d.ID, t0), a.DeviceState(h.ID, d.ID, t0.Add(5*time.Minute)); !reflect.DeepEqual(x, y) {
			t.Fatalf("%s changed within a quarter hour", kind)
		}
	}
	// Over a day the vehicle drives, plugs in and charges.
	hv, veh := findDevice(t, a, "vehicle")
	socs := map[float64]bool{}
	statuses := map[string]bool{}
	day := time.Date(2026, 9, 14, 0, 0, 0, 0, time.UTC)
	for i := range 96 * 2 {
		det := a.DeviceState(hv.ID, veh.ID, day.Add(time.Duration(i)*15*time.Minute))
		soc, _ := det.Capability("storage.stateOfCharge")
		socs[toFloat(soc.Value)] = true
		cs, _ := det.Capability("charging.status")
		statuses[cs.Value.(string)] = true
	}
	if len(socs) < 5 || !statuses["charging"] || !statuses["idle"] {
		t.Fatalf("vehicle over two days: %d distinct SoC values, statuses %v", len(socs), statuses)
	}
}

func toFloat(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case int64:
		return float64(x)
	case int:
		return float64(x)
	}
	return -1
}

func TestEnergyFlowBoundaryGap(t *testing.T) {
	sim := simulator.New(simulator.Options{Now: newClock(testStart).Now})
	h, bat := findDevice(t, sim, "battery")
	hasReading := func(det simulator.DeviceDetail, id string) bool {
		c, ok := det.Capability(id)
		return ok && c.Value != nil
	}
	sawNull, sawMissing := false, false
	for hr := range 48 {
		boundary := time.Date(2026, 9, 14, 0, 0, 0, 0, time.UTC).Add(time.Duration(hr) * time.Hour)
		in := sim.DeviceState(h.ID, bat.ID, boundary.Add(30*time.Second))
		if hasReading(in, "energyFlow.hour.grid.imported") {
			t.Fatalf("energyFlow.hour present 30s after %s", boundary)
		}
		if c, ok := in.Capability("energyFlow.hour.grid.imported"); ok && c.Value == nil {
			sawNull = true
		} else if !ok {
			sawMissing = true
		}
		after := sim.DeviceState(h.ID, bat.ID, boundary.Add(time.Minute))
		c, ok := after.Capability("energyFlow.hour.grid.imported")
		if !ok || toFloat(c.Value) != 0 {
			t.Fatalf("energyFlow.hour.grid.imported at %s+1m = %v, want a reset 0", boundary, c.Value)
		}
	}
	if !sawNull || !sawMissing {
		t.Fatalf("boundary gap shows null=%t missing=%t, want both forms", sawNull, sawMissing)
	}
	nogap := simulator.New(simulator.Options{NoBoundaryGap: true, Now: newClock(testStart).Now})
	at := time.Date(2026, 9, 14, 11, 0, 30, 0, time.UTC)
	if !hasReading(nogap.DeviceState(h.ID, bat.ID, at), "energyFlow.hour.grid.imported") {
		t.Fatal("NoBoundaryGap still hides the running total")
	}

	// The running hour total equals the completed quarter hours of history.
	clock := newClock(time.Date(2026, 9, 14, 12, 0, 0, 0, time.UTC))
	s2 := simulator.New(simulator.Options{NoBoundaryGap: true, Now: clock.Now})
	hourStart := time.Date(2026, 9, 14, 11, 0, 0, 0, time.UTC)
	det := s2.DeviceState(h.ID, bat.ID, hourStart.Add(50*time.Minute))
	qs := s2.HistorySeries(bat.ID, "quarterHour", hourStart, hourStart.Add(45*time.Minute))
	if len(qs) != 3 {
		t.Fatalf("%d quarter hours", len(qs))
	}
	if _, present := qs[0].Metrics["energyFlow.gridImport"]; !present {
		t.Skip("hour falls on a hole in the history; pick another seed")
	}
	sum := 0.0
	for _, q := range qs {
		sum += q.Metrics["energyFlow.gridImport"]
	}
	c, _ := det.Capability("energyFlow.hour.grid.imported")
	if diff := toFloat(c.Value) - sum; diff > 0.05 || diff < -0.05 {
		t.Fatalf("energyFlow.hour.grid.imported=%v, sum of quarters %v", c.Value, sum)
	}
}
