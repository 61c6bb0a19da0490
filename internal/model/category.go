package model

import "strings"

// Category is a device category, derived from capability ids.
type Category string

// Device categories. Scope names are in CategoryScopes.
const (
	CategoryVehicle      Category = "vehicle"
	CategoryCharger      Category = "charger"
	CategoryThermostat   Category = "thermostat"
	CategoryEnergySystem Category = "energy_system"
	CategoryInverter     Category = "inverter"
	CategoryUnknown      Category = "unknown"
)

// CategoryScopes maps each category to the scope that makes its devices visible.
var CategoryScopes = map[Category]string{
	CategoryVehicle:      "data-api-vehicles-read",
	CategoryCharger:      "data-api-chargers-read",
	CategoryThermostat:   "data-api-thermostats-read",
	CategoryEnergySystem: "data-api-energy-systems-read",
	CategoryInverter:     "data-api-inverters-read",
}

// AllCategories lists the known categories in display order.
var AllCategories = []Category{CategoryVehicle, CategoryCharger, CategoryThermostat, CategoryEnergySystem, CategoryInverter}

// MissingCategories returns the categories whose scope is not in granted.
func MissingCategories(granted []string) []Category {
	have := map[string]bool{}
	for _, s := range granted {
		have[s] = true
	}
	var out []Category
	for _, c := range AllCategories {
		if !have[CategoryScopes[c]] {
			out = append(out, c)
		}
	}
	return out
}

// CategoryOf classifies a device by its capability ids, since the Data API
// has no category field.
func CategoryOf(capabilityIDs []string) Category {
	has := func(pred func(string) bool) bool {
		for _, id := range capabilityIDs {
			if pred(id) {
				return true
			}
		}
		return false
	}
	eq := func(s string) func(string) bool { return func(id string) bool { return id == s } }
	pre := func(p string) func(string) bool { return func(id string) bool { return strings.HasPrefix(id, p) } }
	switch {
	case has(eq("range.remaining")):
		return CategoryVehicle
	case has(pre("charging.current")) || has(eq("grid.phaseCount")):
		return CategoryCharger
	case has(pre("temp.")):
		return CategoryThermostat
	case has(pre("powerFlow.")) || has(pre("energyFlow.")) || has(pre("storage.ratedCapacity")):
		return CategoryEnergySystem
	case has(pre("solar.")) || has(pre("inverter.")):
		return CategoryInverter
	case has(eq("onOff")):
		return CategoryThermostat
	case has(eq("connector.status")) || has(eq("charging.status")):
		return CategoryCharger
	}
	return CategoryUnknown
}
