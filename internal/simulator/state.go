package simulator

import (
	"math"
	"time"
)

// stateStep is the quantum of device state: values change at most once per
// step (plus the BoundaryGap around period boundaries).
const stateStep = 15 * time.Minute

// capBuilder collects capabilities in order.
type capBuilder struct {
	list     []Capability
	emitType bool
}

func strPtr(s string) *string { return &s }

func (b *capBuilder) add(c Capability, typ string) {
	if b.emitType {
		c.Type = typ
	}
	b.list = append(b.list, c)
}

// num adds a numeric capability; integer values are sent without a fraction.
func (b *capBuilder) num(id, desc string, v float64, unit string, integer bool) {
	if integer {
		b.add(Capability{ID: id, Description: desc, Value: int64(math.Round(v)), Unit: strPtr(unit)}, "IntegerCapability")
		return
	}
	b.add(Capability{ID: id, Description: desc, Value: v, Unit: strPtr(unit)}, "FloatingPointCapability")
}

// null adds a numeric capability whose value is momentarily null.
func (b *capBuilder) null(id, desc, unit string) {
	b.add(Capability{ID: id, Description: desc, Value: nil, Unit: strPtr(unit)}, "FloatingPointCapability")
}

func (b *capBuilder) enum(id, desc, v string, values ...string) {
	b.add(Capability{ID: id, Description: desc, Value: v, AvailableValues: values}, "EnumCapability")
}

// deviceDetail computes what the detail endpoint returns for d at time at.
func (s *Simulator) deviceDetail(d *device, at time.Time) DeviceDetail {
	q := at.Truncate(stateStep)
	b := &capBuilder{emitType: s.opts.EmitType}
	online := true
	for _, a := range d.attributes {
		if a.ID == "isOnline" {
			if v, ok := a.Value.(bool); ok {
				online = v
			}
		}
	}
	if !online {
		// An offline device reports the state it had when last heard from.
		q = q.Truncate(24 * time.Hour).Add(-36 * time.Hour)
	}
	li := localOf(q, d.loc)
	noise := func(i uint64) float64 { return unit(mix(d.key, saltNoise, uint64(q.Unix()), 1000+i)) }
	switch d.kind {
	case kindVehicle:
		soc, connected, charging := driveCycle(d.key, q, d.loc, true)
		b.num("storage.stateOfCharge", "state of charge", soc, "%", true)
		b.num("storage.targetStateOfCharge", "target state of charge", vehicleTarget, "%", true)
		b.num("range.remaining", "estimated remaining driving range", soc*4300, "m", true)
		b.enum("connector.status", "vehicle plug status", onOffWord(connected, "connected", "disconnected"), "connected", "disconnected", "unknown")
		b.enum("charging.status", "vehicle charging status", onOffWord(charging, "charging", "idle"), "charging", "idle", "unknown")
	case kindCharger:
		_, connected, charging := driveCycle(d.key, q, d.loc, false)
		b.enum("connector.status", "cable status", onOffWord(connected, "connected", "disconnected"), "connected", "disconnected", "unknown")
		b.enum("charging.status", "charging status", onOffWord(charging, "charging", "idle"), "charging", "idle", "unknown")
		b.num("charging.current.max", "maximum charging current", 32, "A", true)
		b.num("charging.current.offlineFallback", "offline fallback current", 6, "A", true)
		b.num("grid.phaseCount", "number of phases", 3, "", true)
		b.num("cellular.rssi", "signal strength", -55-30*unit(mix(d.key, saltRSSI, uint64(q.Unix()))), "dBm", true)
	case kindThermostat, kindHeatPump:
		hour := baseValues(d, q.Truncate(time.Hour))
		sp := setpoint(d, li)
		cur := round(hour[0]+0.4*(noise(1)-0.5), 1)
		b.num("temp.setpoint", "target temperature", sp, "°C", false)
		b.num("temp.current", "current temperature", cur, "°C", false)
		if d.kind == kindThermostat {
			b.num("temp.comfort", "comfort temperature", 22, "°C", false)
			b.enum("onOff", "heater on or off", onOffWord(cur < sp, "on", "off"), "on", "off")
		} else {
			b.num("temp.outdoor", "outdoor temperature", round(8+10*li.season+6*(noise(2)-0.5), 1), "°C", false)
			b.enum("onOff", "heat pump on or off", "on", "on", "off")
		}
	case kindBattery:
		s.batteryCaps(b, d, at, q)
	case kindInverter:
		hourStart := q.Truncate(time.Hour)
		hv := baseValues(d, hourStart)[0]
		power := hv * (0.85 + 0.3*noise(1))
		dayStart := localMidnight(q, d.loc)
		today := sumSteps(d, dayStart, hourStart, 0)[0] + hv*q.Sub(hourStart).Hours()
		b.num("solar.power", "current production", round(power, 0), "W", true)
		b.num("solar.production.today", "production today", round(today, 1), "Wh", false)
		b.enum("inverter.status", "inverter state", onOffWord(power > 0, "producing", "standby"), "producing", "standby", "fault")
		b.num("cellular.rssi", "signal strength", -60-25*unit(mix(d.key, saltRSSI, uint64(q.Unix()))), "dBm", true)
	}
	if s.opts.BoolValues {
		b.add(Capability{ID: "connectivity.online", Description: "device online", Value: online}, "BooleanCapability")
	}
	// lastSeen lies up to five minutes before the state step began.
	seen := q.Add(-time.Duration(mix(d.key, saltSeen, uint64(q.Unix()))%300000) * time.Millisecond)
	return DeviceDetail{
		ID:               d.id,
		ExternalID:       d.externalID,
		Info:             s.info(d),
		SupportedHistory: s.supported(d),
		Status:           DeviceStatus{LastSeen: seen.UTC().Format("2006-01-02T15:04:05.000Z")},
		Attributes:       s.attributes(d),
		Capabilities:     b.list,
	}
}

func onOffWord(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}

const vehicleTarget = 80.0

// driveCycle models a car that leaves at 07:00 local, comes home at 18:00,
// plugs in, and charges from 22:00 at 11 %/h to the target. Some days it
// stays home. It returns the state of charge (for a vehicle), whether the
// cable is connected and whether it charges.
func driveCycle(key uint64, q time.Time, loc *time.Location, vehicle bool) (soc float64, connected, charging bool) {
	lt := q.In(loc).Add(-7 * time.Hour) // the cycle's day starts at 07:00
	day := uint64(lt.Year())*1000 + uint64(lt.YearDay())
	m := float64(lt.Hour()) + float64(lt.Minute())/60 // hours since 07:00
	use := 0.0
	if unit(mix(key, saltDrive, day)) >= 0.15 {
		use = 8 + 30*unit(mix(key, saltDrive, day, 1))
	}
	const chargeRate = 11.0
	switch {
	case use == 0:
		soc, connected = vehicleTarget, true
	case m < 11:
		soc = vehicleTarget - use*m/11
	case m < 15:
		soc, connected = vehicleTarget-use, true
	default:
		connected = true
		soc = math.Min(vehicleTarget, vehicleTarget-use+chargeRate*(m-15))
		charging = soc < vehicleTarget
	}
	return math.Round(soc), connected, charging
}

// energyFlowCaps maps the battery's energy metrics to capability suffixes.
var energyFlowCaps = []struct {
	suffix, desc string
	idx          int
}{
	{"grid.imported", "grid import", batImport},
	{"grid.exported", "grid export", batExport},
	{"battery.charged", "battery charged", batCharged},
	{"battery.discharged", "battery discharged", batDischarged},
	{"load.consumed", "load consumed", batLoad},
	{"load.generated", "load generated", batSolar},
}

func (s *Simulator) batteryCaps(b *capBuilder, d *device, at, q time.Time) {
	v := baseValues(d, q)
	b.num("storage.stateOfCharge", "state of charge", v[batSoC], "%", true)
	b.num("storage.ratedCapacity", "rated capacity", 13800, "Wh", true)
	b.num("storage.availableEnergy", "available energy", v[batAvailable], "Wh", true)
	b.num("storage.ratedPower", "rated power", 6000, "W", true)
	b.num("powerFlow.battery.power", "battery power", round((v[batDischarged]-v[batCharged])*4, 1), "W", false)
	b.num("powerFlow.grid.power", "grid power", round((v[batImport]-v[batExport])*4, 1), "W", false)
	b.num("powerFlow.load.power", "load power", round(v[batLoad]*4, 1), "W", false)
	b.num("powerFlow.solar.power", "solar power", round(v[batSolar]*4, 1), "W", false)
	ratio := func(a, bb float64) float64 {
		if bb <= 0 {
			return 0
		}
		return round(clamp(a/bb, 0, 1), 2)
	}
	b.num("powerFlow.toGrid", "share to grid", ratio(v[batExport], v[batSolar]), "%", false)
	b.num("powerFlow.toBattery", "share to battery", ratio(v[batCharged], v[batSolar]), "%", false)
	b.num("powerFlow.fromGrid", "share from grid", ratio(v[batImport], v[batLoad]), "%", false)
	b.num("powerFlow.fromSolar", "share from solar", ratio(math.Min(v[batSolar], v[batLoad]), v[batLoad]), "%", false)

	idx := make([]int, len(energyFlowCaps))
	for i, c := range energyFlowCaps {
		idx[i] = c.idx
	}
	periods := []struct {
		name  string
		start time.Time
	}{
		{"hour", q.Truncate(time.Hour)},
		{"day", localMidnight(q, d.loc)},
	}
	for _, p := range periods {
		if at.Sub(p.start) < s.opts.BoundaryGap {
			// Just after a boundary the running totals are null or gone.
			if mix(d.key, saltNull, uint64(p.start.Unix()))&1 == 0 {
				for _, c := range energyFlowCaps {
					b.null("energyFlow."+p.name+"."+c.suffix, c.desc+" this "+p.name, "Wh")
				}
			}
			continue
		}
		sums := sumSteps(d, p.start, q, idx...)
		for i, c := range energyFlowCaps {
			b.num("energyFlow."+p.name+"."+c.suffix, c.desc+" this "+p.name, sums[i], "Wh", false)
		}
	}
	b.num("cellular.rssi", "signal strength", -60-25*unit(mix(d.key, saltRSSI, uint64(q.Unix()))), "dBm", true)
}

func (s *Simulator) info(d *device) DeviceInfo {
	return DeviceInfo{Name: d.name, Brand: d.brand, Model: d.model}
}

func (s *Simulator) supported(d *device) SupportedHistory {
	sh := SupportedHistory{Resolutions: append([]string{}, d.resolutions...)}
	if len(d.resolutions) > 0 {
		sh.MaxRetentionDays = d.retention
	}
	return sh
}

func (s *Simulator) attributes(d *device) []Attribute {
	out := make([]Attribute, len(d.attributes))
	copy(out, d.attributes)
	if s.opts.EmitType {
		for i := range out {
			switch out[i].Value.(type) {
			case bool:
				out[i].Type = "BooleanAttribute"
			case float64, int, int64:
				out[i].Type = "IntegerAttribute"
			case string:
				out[i].Type = "StringAttribute"
			case nil:
				out[i].Type = "ConnectivityAttribute"
			}
		}
	}
	return out
}
