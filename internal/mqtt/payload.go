package mqtt

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"
	"unicode"

	"github.com/tibbersync/tibbersync/internal/model"
)

// StatePayload is the JSON published retained on
// <prefix>/devices/<device_id>/state.
type StatePayload struct {
	ID         string                     `json:"id"`
	Name       string                     `json:"name"`
	Brand      string                     `json:"brand"`
	Model      string                     `json:"model"`
	ExternalID string                     `json:"external_id,omitempty"`
	Category   model.Category             `json:"category"`
	Homes      []model.HomeRef            `json:"homes"`
	ObservedAt *time.Time                 `json:"observed_at"`
	Caps       map[string]CapabilityValue `json:"capabilities"`
}

// CapabilityValue is one capability in a state payload. Value is a JSON
// number, string or boolean, or null for a missing reading (never 0).
type CapabilityValue struct {
	Value      any       `json:"value"`
	Unit       string    `json:"unit"`
	ObservedAt time.Time `json:"observed_at,omitzero"`
}

// statePayload builds the state JSON of d. It depends only on what data.db
// holds, so an unchanged device gives byte-identical JSON.
func statePayload(d model.DeviceState) []byte {
	p := StatePayload{
		ID: d.ID, Name: d.Name, Brand: d.Brand, Model: d.Model, ExternalID: d.ExternalID,
		Category: d.Category, Homes: d.Homes,
		Caps: make(map[string]CapabilityValue, len(d.Capabilities)),
	}
	if p.Homes == nil {
		p.Homes = []model.HomeRef{}
	}
	if p.Category == "" {
		p.Category = model.CategoryUnknown
	}
	if !d.ObservedAt.IsZero() {
		t := d.ObservedAt.UTC()
		p.ObservedAt = &t
	}
	for _, c := range d.Capabilities {
		p.Caps[c.ID] = CapabilityValue{Value: capValue(c), Unit: c.Unit, ObservedAt: c.ObservedAt.UTC()}
	}
	b, _ := json.Marshal(p) // plain types and finite floats (SQLite REAL has no NaN) always marshal
	return b
}

// capValue is the JSON value of a capability: a boolean for booleans, a
// number, a string, or nil when missing.
func capValue(c model.CapabilityState) any {
	if b, ok := c.Bool(); ok {
		return b
	}
	switch {
	case c.Missing:
		return nil
	case c.Num != nil:
		return *c.Num
	case c.Text != nil:
		return *c.Text
	}
	return nil
}

// haKind is how Home Assistant should show a capability.
type haKind struct {
	component   string // sensor or binary_sensor
	deviceClass string
	stateClass  string
	unit        string
}

// classify picks the Home Assistant component, device_class, state_class
// and unit for a capability from its id and unit, for the capabilities the
// Data API is known to carry. Unknown ones become plain sensors.
func classify(c model.CapabilityState) haKind {
	id := strings.ToLower(c.ID)
	if _, ok := c.Bool(); ok {
		k := haKind{component: "binary_sensor"}
		if strings.Contains(id, "online") || strings.Contains(id, "connectivity") {
			k.deviceClass = "connectivity"
		}
		return k
	}
	k := haKind{component: "sensor", unit: c.Unit}
	numeric := c.Num != nil || (c.Missing && c.Unit != "")
	if !numeric {
		return k // text or enum: no unit, no statistics
	}
	k.stateClass = "measurement"
	switch c.Unit {
	case "%":
		if strings.Contains(id, "stateofcharge") || strings.HasSuffix(id, "soc") || strings.Contains(id, "battery.level") {
			k.deviceClass = "battery"
		}
	case "W", "kW":
		k.deviceClass = "power"
	case "Wh", "kWh":
		if strings.HasPrefix(id, "storage.") {
			// Energy held in a battery (capacity, available energy): a level, not a meter.
			k.deviceClass = "energy_storage"
		} else {
			// Period sums (today, this week) that reset: Home Assistant
			// treats a decrease of total_increasing as a meter reset.
			k.deviceClass, k.stateClass = "energy", "total_increasing"
		}
	case "°C", "°F", "K":
		k.deviceClass = "temperature"
	case "m", "km", "mi":
		if strings.Contains(id, "range") || strings.Contains(id, "distance") || strings.Contains(id, "odometer") {
			k.deviceClass = "distance"
		}
		if strings.Contains(id, "odometer") {
			k.stateClass = "total_increasing"
		}
	case "A":
		k.deviceClass = "current"
	case "V":
		k.deviceClass = "voltage"
	case "Hz":
		k.deviceClass = "frequency"
	case "dBm", "dB":
		k.deviceClass = "signal_strength"
	case "s", "min", "h":
		k.deviceClass = "duration"
	}
	return k
}

// Discovery is one Home Assistant MQTT discovery config.
type Discovery struct {
	Name              string          `json:"name"`
	UniqueID          string          `json:"unique_id"`
	StateTopic        string          `json:"state_topic"`
	ValueTemplate     string          `json:"value_template"`
	Unit              string          `json:"unit_of_measurement,omitempty"`
	DeviceClass       string          `json:"device_class,omitempty"`
	StateClass        string          `json:"state_class,omitempty"`
	PayloadOn         string          `json:"payload_on,omitempty"`
	PayloadOff        string          `json:"payload_off,omitempty"`
	EntityCategory    string          `json:"entity_category,omitempty"`
	AvailabilityTopic string          `json:"availability_topic"`
	Device            DiscoveryDevice `json:"device"`
	Origin            DiscoveryOrigin `json:"origin"`
}

// DiscoveryDevice makes every Tibber device one device in Home Assistant.
type DiscoveryDevice struct {
	Identifiers  []string `json:"identifiers"`
	Name         string   `json:"name"`
	Manufacturer string   `json:"manufacturer,omitempty"`
	Model        string   `json:"model,omitempty"`
	SerialNumber string   `json:"serial_number,omitempty"`
	SWVersion    string   `json:"sw_version,omitempty"`
	ViaDevice    string   `json:"via_device,omitempty"`
}

// DiscoveryOrigin names the software that published the config.
type DiscoveryOrigin struct {
	Name       string `json:"name"`
	SWVersion  string `json:"sw_version,omitempty"`
	SupportURL string `json:"support_url,omitempty"`
}

// slug turns s into [a-z0-9_] for object ids.
func slug(s string) string {
	var b strings.Builder
	lastUnderscore := false
	for _, r := range s {
		switch {
		case r < 128 && (unicode.IsLetter(r) || unicode.IsDigit(r)):
			b.WriteRune(unicode.ToLower(r))
			lastUnderscore = false
		default:
			if !lastUnderscore && b.Len() > 0 {
				b.WriteByte('_')
				lastUnderscore = true
			}
		}
	}
	return strings.TrimSuffix(b.String(), "_")
}

// deviceKey is a short, stable, topic-safe key for a device id (ids are
// long opaque strings).
func deviceKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:6])
}

// topicLevel makes an id safe as one topic level: Tibber's ids are
// base64url and pass unchanged; anything outside [A-Za-z0-9._~=-] (such
// as / + # or a control character) is percent-encoded.
func topicLevel(id string) string {
	const hexdigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', strings.IndexByte("._~=-", c) >= 0:
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hexdigits[c>>4])
			b.WriteByte(hexdigits[c&15])
		}
	}
	if b.Len() == 0 {
		return "%00"
	}
	return b.String()
}

// friendlyName turns a capability id into words: "storage.stateOfCharge"
// becomes "Storage state of charge".
func friendlyName(id string) string {
	var words []string
	for _, part := range strings.FieldsFunc(id, func(r rune) bool { return r == '.' || r == '_' || r == '-' }) {
		var w strings.Builder
		for i, r := range part {
			if i > 0 && unicode.IsUpper(r) {
				words = append(words, strings.ToLower(w.String()))
				w.Reset()
			}
			w.WriteRune(r)
		}
		words = append(words, strings.ToLower(w.String()))
	}
	s := strings.Join(words, " ")
	if s == "" {
		return id
	}
	r := []rune(s)
	r[0] = unicode.ToUpper(r[0])
	return string(r)
}
