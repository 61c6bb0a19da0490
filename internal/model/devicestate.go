package model

import "time"

// DeviceState is one device's current state as data.db holds it (the
// latest_capabilities view plus the device's identity and homes): what the
// MQTT bridge publishes.
type DeviceState struct {
	ID         string
	Name       string
	Brand      string
	Model      string
	ExternalID string
	Category   Category
	// Homes lists the homes that list the device now, by id.
	Homes []HomeRef
	// Removed is true once no home lists the device any more.
	Removed bool
	// ObservedAt is the poll that first saw the device's current state
	// (its newest device_snapshots row); zero before any detail was stored.
	ObservedAt time.Time
	// Capabilities are the rows of latest_capabilities, by capability id.
	Capabilities []CapabilityState
}

// HomeRef names a home.
type HomeRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// CapabilityState is one row of latest_capabilities.
type CapabilityState struct {
	ID string
	// Num and Text as in capability_values: booleans have both (0/1 and
	// "true"/"false"); a missing reading has neither.
	Num     *float64
	Text    *string
	Unit    string
	Missing bool
	// ObservedAt is since when the value holds.
	ObservedAt time.Time
}

// Bool reports whether the value is a boolean, and which.
func (c CapabilityState) Bool() (value, ok bool) {
	if c.Num == nil || c.Text == nil {
		return false, false
	}
	switch *c.Text {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}
