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
	// Running is true while a run of the job is in progress (its sync_runs
	// row says "running"); LastStatus and LastError then describe the last
	// finished run.
	Running bool `json:"running"`
	// RunningSince is when the run in progress started.
	RunningSince time.Time `json:"running_since,omitzero"`
	// Progress of the run in progress, nil when none is running.
	Progress *RunProgress `json:"progress,omitempty"`
	// LastProgress is what the last finished run recorded (homes and
	// devices seen, streams done), nil when it recorded nothing.
	LastProgress *RunProgress `json:"last_progress,omitempty"`
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

// RunProgress is how far a running job has got, as stored in
// sync_runs.progress (JSON) and shown by every status surface. Fields that
// do not apply to a job are zero.
type RunProgress struct {
	// StreamsDone and StreamsTotal count the history (device, resolution)
	// streams of the run: finished ones and all.
	StreamsDone  int `json:"streams_done"`
	StreamsTotal int `json:"streams_total"`
	// Pages and Points are the history pages and items fetched so far.
	Pages  int `json:"pages"`
	Points int `json:"points"`
	// Homes and Devices the run saw (homes and devices jobs).
	Homes   int `json:"homes,omitempty"`
	Devices int `json:"devices,omitempty"`
	// Requests and RowsWritten so far in this run.
	Requests    int `json:"requests"`
	RowsWritten int `json:"rows_written"`
	// Current names the stream in progress ("Home battery, hour").
	Current string `json:"current,omitempty"`
	// CurrentReached is the newest period the current stream has stored.
	CurrentReached time.Time `json:"current_reached,omitzero"`
	// Fraction is the estimated share of the run done, 0..1; -1 when unknown.
	Fraction float64 `json:"fraction"`
	// ETA is the estimated end of the run; zero when it cannot be estimated.
	ETA time.Time `json:"eta,omitzero"`
	// UpdatedAt is when this progress was recorded.
	UpdatedAt time.Time `json:"updated_at"`
}

// HistoryPoint is one stored history period of one metric.
type HistoryPoint struct {
	// Start is the period's UTC start; Offset the home's UTC offset Tibber
	// reported for it, so Start.Add(Offset) is the local wall time.
	Start  time.Time     `json:"start"`
	Offset time.Duration `json:"offset"`
	Value  float64       `json:"value"`
}

// HistorySeries is one device's stored history of one metric at one
// resolution, oldest first.
type HistorySeries struct {
	DeviceID   string         `json:"device_id"`
	DeviceName string         `json:"device_name"`
	Resolution string         `json:"resolution"`
	Metric     string         `json:"metric"`
	Points     []HistoryPoint `json:"points"`
}

// HistoryUnit is the unit of a history metric as the Data API documents
// it: energy flows in Wh, state of charge in %, temperatures in °C; "" when
// unknown.
func HistoryUnit(metric string) string {
	switch {
	case len(metric) > 11 && metric[:11] == "energyFlow.":
		return "Wh"
	case metric == "storage.stateOfCharge":
		return "%"
	case len(metric) > 5 && metric[:5] == "temp.":
		return "°C"
	}
	return ""
}
