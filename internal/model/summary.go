package model

import "time"

// RefreshLifetimeEstimate is Tibber's documented refresh-token lifetime
// ("long-lived, ~30 days", tibber-data-api.md §2.8). Whether it slides with
// use is unknown, so expiry estimates count from the refresh token's issue
// time.
const RefreshLifetimeEstimate = 30 * 24 * time.Hour

// Summary is the read-only picture of the daemon's state that the status
// page, /readyz, /metrics and `tibbersync status --json` show. It is built
// from data.db (never from tokens.db) plus token expiry estimates added by
// the caller. JSON field names are part of the `status --json` contract.
type Summary struct {
	GeneratedAt time.Time        `json:"generated_at"`
	Auth        AuthSummary      `json:"auth"`
	Jobs        []JobSummary     `json:"jobs"`
	Tables      map[string]int64 `json:"tables"` // row count per table
	DataDBBytes int64            `json:"data_db_bytes"`
	WALBytes    int64            `json:"wal_bytes"`
	Devices     []DeviceSummary  `json:"devices"`
	// Categories maps each known category to "granted" or "not granted".
	Categories map[Category]string `json:"categories"`
}

// AuthSummary is the auth part of Summary. Token expiry estimates come from
// the token store's metadata (never the tokens themselves) and are zero when
// unknown.
type AuthSummary struct {
	State             AuthState `json:"state"`
	Reason            string    `json:"reason,omitempty"`
	Since             time.Time `json:"since"`
	GrantedScopes     []string  `json:"granted_scopes"`
	MissingScopes     []string  `json:"missing_scopes,omitempty"`
	Email             string    `json:"email,omitempty"`
	AccessExpiresAt   time.Time `json:"access_expires_at,omitzero"`
	RefreshIssuedAt   time.Time `json:"refresh_issued_at,omitzero"`
	RefreshExpiresEst time.Time `json:"refresh_expires_estimate,omitzero"`
}

// JobSummary is one job's scheduling state and last run.
type JobSummary struct {
	Job                 string    `json:"job"`
	NextRunAt           time.Time `json:"next_run_at,omitzero"`
	LastRunAt           time.Time `json:"last_run_at,omitzero"`
	LastSuccessAt       time.Time `json:"last_success_at,omitzero"`
	LastStatus          string    `json:"last_status,omitempty"`
	LastError           string    `json:"last_error,omitempty"`
	ConsecutiveFailures int       `json:"consecutive_failures"`
	LastRequests        int       `json:"last_requests"`
	LastRowsWritten     int       `json:"last_rows_written"`
	RowsWrittenTotal    int64     `json:"rows_written_total"`
	BreakerUntil        time.Time `json:"breaker_until,omitzero"`
}

// DeviceSummary is one device with a few headline values.
type DeviceSummary struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Brand    string    `json:"brand"`
	Model    string    `json:"model,omitempty"`
	Category Category  `json:"category"`
	Homes    []string  `json:"homes"`
	Removed  bool      `json:"removed,omitempty"`
	LastSeen time.Time `json:"last_seen,omitzero"`
	// StateOfCharge is storage.stateOfCharge in percent, when the device has one.
	StateOfCharge *float64 `json:"state_of_charge,omitempty"`
}

// SeriesPoint is one point of a capability over time, for charts.
type SeriesPoint struct {
	At    time.Time `json:"at"`
	Value float64   `json:"value"`
}

// Series is one device's values of one capability.
type Series struct {
	DeviceID     string        `json:"device_id"`
	DeviceName   string        `json:"device_name"`
	CapabilityID string        `json:"capability_id"`
	Unit         string        `json:"unit"`
	Points       []SeriesPoint `json:"points"`
}
