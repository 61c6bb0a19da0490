package model

import "time"

// MQTTStatus is the state of the MQTT bridge, shown by the status page,
// `tibbersync status --json` and /metrics. Its JSON names are part of the
// `status --json` contract.
type MQTTStatus struct {
	// Broker is mqtt.url (it never holds credentials).
	Broker    string `json:"broker"`
	Connected bool   `json:"connected"`
	// Since is when the bridge last connected or lost its connection.
	Since time.Time `json:"since,omitzero"`
	// MessagesPublished counts messages the broker acknowledged since the
	// daemon started.
	MessagesPublished int64 `json:"messages_published"`
	// Errors counts failed connection attempts, lost connections and failed
	// publishes since the daemon started.
	Errors int64 `json:"errors"`
	// LastError is the most recent broker problem ("" when none since start).
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// UpdatedAt is when the daemon last wrote this status.
	UpdatedAt time.Time `json:"updated_at"`
	// Stopped is true once the daemon shut the bridge down cleanly.
	Stopped bool `json:"stopped,omitempty"`
}
