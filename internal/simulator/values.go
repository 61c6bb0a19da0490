package simulator

import (
	"math"
	"time"
)

// This file holds the value model: the finest history step of every device
// kind as a pure function of (device key, step start). History periods and
// the running totals of device detail aggregate these steps.

// localInfo is what the value model needs to know about a local time.
type localInfo struct {
	hod     float64 // hour of day, fractional
	dayKey  uint64  // unique per local date
	season  float64 // 1 at midsummer, -1 at midwinter
	weekday time.Weekday
}

func localOf(t time.Time, loc *time.Location) localInfo {
	lt := t.In(loc)
	doy := lt.YearDay()
	return localInfo{
		hod:     float64(lt.Hour()) + float64(lt.Minute())/60,
		dayKey:  uint64(lt.Year())*1000 + uint64(doy),
		season:  math.Cos(2 * math.Pi * float64(doy-172) / 365.25),
		weekday: lt.Weekday(),
	}
}

// sun is the relative solar irradiance (0..1) at hour of day hod.
func sun(hod, season float64) float64 {
	half := 6 + 3*season // half the day length in hours
	rise, set := 13-half, 13+half
	if hod <= rise || hod >= set {
		return 0
	}
	return math.Sin(math.Pi * (hod - rise) / (set - rise))
}

// cloud is the day's clearness (0.25..1).
func cloud(key, dayKey uint64) float64 { return 0.25 + 0.75*unit(mix(key, saltCloud, dayKey)) }

// baseValues returns the values of the metrics of d's kind for the base step
// starting at t (a quarter hour or an hour), in the order of spec.metrics.
func baseValues(d *device, t time.Time) []float64 {
	li := localOf(t, d.loc)
	n := uint64(t.Unix())
	noise := func(i uint64) float64 { return unit(mix(d.key, saltNoise, n, i)) }
	switch d.kind {
	case kindBattery:
		return batteryStep(d.key, li, noise)
	case kindThermostat, kindHeatPump:
		sp := setpoint(d, li)
		avg := sp - 0.5 + 0.8*noise(1) + 0.3*li.season
		if d.kind == kindThermostat {
			return []float64{round(avg, 2), round(sp, 1)}
		}
		energy := (1700 - 1100*li.season) * (0.7 + 0.6*noise(2))
		if li.hod < 5 || li.hod >= 23 {
			energy *= 0.6
		}
		return []float64{round(avg, 2), round(sp, 1), round(energy, 1)}
	case kindInverter:
		s := sun(li.hod+0.5, li.season) * cloud(d.key, li.dayKey) * (0.55 + 0.45*li.season)
		return []float64{round(5000*s*(0.9+0.2*noise(1)), 1)}
	}
	return nil
}

// setpoint is the thermostat setpoint in force at li.
func setpoint(d *device, li localInfo) float64 {
	eco := unit(mix(d.key, saltEco, li.dayKey)) < 0.1
	switch {
	case eco:
		return 19
	case li.hod >= 6 && li.hod < 22:
		if d.kind == kindHeatPump {
			return 22
		}
		return 21
	}
	if d.kind == kindHeatPump {
		return 20
	}
	return 18
}

// batteryStep models one quarter hour of a home battery with solar and a
// house load: energies in Wh, stateOfCharge in %, availableEnergy in Wh.
func batteryStep(key uint64, li localInfo, noise func(uint64) float64) []float64 {
	const capacity = 13800.0
	h := li.hod
	peak := math.Exp(-(h-8)*(h-8)/2) + 1.3*math.Exp(-(h-19)*(h-19)/4)
	load := (90 + 90*peak + 40*noise(1)) * (1.15 - 0.15*li.season)
	solar := 1200 * sun(h+0.125, li.season) * cloud(key, li.dayKey) * (0.6 + 0.4*li.season)
	var imp, exp, charged, discharged float64
	if surplus := solar - load; surplus > 0 {
		charged = math.Min(surplus, 800)
		exp = surplus - charged
	} else {
		deficit := -surplus
		if h >= 16 && h < 23 {
			discharged = math.Min(deficit, 700)
		}
		imp = deficit - discharged
	}
	soc := 55 + 30*math.Sin(2*math.Pi*(h-9)/24)*(0.5+0.5*cloud(key, li.dayKey)) + 4*(noise(2)-0.5)
	soc = clamp(soc, 5, 100)
	return []float64{
		round(imp, 1), round(exp, 1), round(charged, 1), round(discharged, 1),
		round(load, 1), round(solar, 1),
		round(soc, 1), round(soc/100*capacity, 0),
	}
}

// Indexes into batteryStep's result.
const (
	batImport = iota
	batExport
	batCharged
	batDischarged
	batLoad
	batSolar
	batSoC
	batAvailable
)

// sumSteps sums metric i of d's base steps in [from, to).
func sumSteps(d *device, from, to time.Time, idx ...int) []float64 {
	out := make([]float64, len(idx))
	for t := from; t.Before(to); t = t.Add(d.spec.base) {
		v := baseValues(d, t)
		for k, i := range idx {
			out[k] += v[i]
		}
	}
	for k := range out {
		out[k] = round(out[k], 1)
	}
	return out
}
