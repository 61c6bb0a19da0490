package mqtt

import (
	"encoding/json"

	"github.com/tibbersync/tibbersync/internal/model"
)

// bridgeID identifies tibbersync itself as a Home Assistant device (it
// carries the auth sensor; every Tibber device links to it via_device).
func (p *Publisher) bridgeID() string { return slug(p.o.TopicPrefix) + "_bridge" }

func (p *Publisher) origin() DiscoveryOrigin {
	return DiscoveryOrigin{Name: "tibbersync", SWVersion: p.o.Version, SupportURL: "https://github.com/tibbersync/tibbersync"}
}

// discoveryTopic is <discovery_prefix>/<component>/<object_id>/config.
func (p *Publisher) discoveryTopic(component, objectID string) string {
	return p.o.DiscoveryPrefix + "/" + component + "/" + objectID + "/config"
}

// authMessages are <prefix>/auth and, with discovery, a sensor for it on
// the tibbersync device.
func (p *Publisher) authMessages(st model.AuthStatus) map[string]message {
	state := string(st.State)
	if state == "" {
		state = string(model.AuthSetupRequired)
	}
	out := map[string]message{p.Topic("auth"): {rankAuth, []byte(state)}}
	if p.o.DiscoveryPrefix != "" {
		id := p.bridgeID() + "_auth"
		cfg := Discovery{
			Name:              "Tibber authorization",
			UniqueID:          id,
			StateTopic:        p.Topic("auth"),
			ValueTemplate:     "{{ value }}",
			DeviceClass:       "enum",
			EntityCategory:    "diagnostic",
			AvailabilityTopic: p.Topic("status"),
			Device: DiscoveryDevice{
				Identifiers:  []string{p.bridgeID()},
				Name:         "tibbersync",
				Manufacturer: "tibbersync",
				Model:        "Tibber Data API gateway",
				SWVersion:    p.o.Version,
			},
			Origin: p.origin(),
		}
		out[p.discoveryTopic("sensor", id)] = message{rankDiscovery, mustJSON(authDiscovery{cfg, []string{
			string(model.AuthOK), string(model.AuthSetupRequired), string(model.AuthReauthRequired), string(model.AuthConfigError),
		}})}
	}
	return out
}

// authDiscovery adds the enum options to the auth sensor's config.
type authDiscovery struct {
	Discovery
	Options []string `json:"options"`
}

// deviceMessages are a device's state topic and its discovery configs; for
// a removed device, empty payloads that delete them.
func (p *Publisher) deviceMessages(d model.DeviceState) map[string]message {
	out := map[string]message{}
	stateTopic := p.StateTopic(d.ID)
	if d.Removed {
		out[stateTopic] = message{rankState, []byte{}}
	} else {
		out[stateTopic] = message{rankState, statePayload(d)}
	}
	if p.o.DiscoveryPrefix == "" {
		return out
	}
	dev := DiscoveryDevice{
		Identifiers:  []string{"tibbersync_" + d.ID},
		Name:         d.Name,
		Manufacturer: d.Brand,
		Model:        d.Model,
		SerialNumber: d.ExternalID,
		ViaDevice:    p.bridgeID(),
	}
	if dev.Name == "" {
		dev.Name = "Tibber device " + deviceKey(d.ID)
	}
	for _, c := range d.Capabilities {
		k := classify(c)
		objectID := slug(p.o.TopicPrefix) + "_" + deviceKey(d.ID) + "_" + slug(c.ID)
		topic := p.discoveryTopic(k.component, objectID)
		if d.Removed {
			out[topic] = message{rankDiscovery, []byte{}}
			continue
		}
		key := string(mustJSON(c.ID)) // a JSON string is a valid Jinja string literal
		cfg := Discovery{
			Name:              friendlyName(c.ID),
			UniqueID:          objectID,
			StateTopic:        stateTopic,
			ValueTemplate:     "{{ value_json.capabilities[" + key + "].value }}",
			Unit:              k.unit,
			DeviceClass:       k.deviceClass,
			StateClass:        k.stateClass,
			AvailabilityTopic: p.Topic("status"),
			Device:            dev,
			Origin:            p.origin(),
		}
		if k.component == "binary_sensor" {
			// A missing reading renders None, which Home Assistant shows as unknown.
			cfg.ValueTemplate = "{% set v = value_json.capabilities[" + key + "].value %}{{ 'None' if v is none else ('ON' if v else 'OFF') }}"
			cfg.PayloadOn, cfg.PayloadOff = "ON", "OFF"
		}
		out[topic] = message{rankDiscovery, mustJSON(cfg)}
	}
	return out
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only plain structs and strings are marshalled here
	}
	return b
}
