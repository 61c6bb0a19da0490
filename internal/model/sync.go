package model

import "time"

// The types below describe the sync runs and their persisted progress. The
// jobs package produces them and the store persists them; they live here so
// that the store does not depend on the jobs (nor, through them, on the API
// client).

// Run is one finished run of a job, as stored in sync_runs.
type Run struct {
	ID         int64  // sync_runs.id once stored
	Job        string // "homes", "devices", "history"
	StartedAt  time.Time
	FinishedAt time.Time
	Status     string // "running", "ok", "partial", "failed", "skipped", "interrupted"
	Error      string // human-readable, never a secret; "" when ok
	Requests   int    // HTTP requests made by the run
	// RowsWritten is filled in by the store when the run is saved with a batch.
	RowsWritten int
	// Progress, when set, is stored in sync_runs.progress with the finished
	// run: what it saw (homes, devices) or how far it got.
	Progress *RunProgress
}

// InventoryBatch is everything one homes or devices cycle fetched. It is
// written in one transaction, together with its Run row.
type InventoryBatch struct {
	ObservedAt time.Time
	// Homes is the complete list the API returned; stored homes missing from
	// it are marked removed. Nil means the homes list was not fetched, and
	// no home is marked removed.
	Homes []Home
	// HomeDevices maps a home id to the complete device list of that home.
	// Only homes present as keys get their links updated and missing devices
	// marked removed (a home whose list failed is left untouched).
	HomeDevices map[string][]Device
	// Details holds device details (with capabilities) to snapshot. A device
	// whose detail failed is absent and keeps its last state.
	Details []Device
	// GrantedScopes are the scopes of the token used, so the store can record
	// which categories are not granted.
	GrantedScopes []string
	// ScopeRefused are ids of listed devices whose detail the API answered
	// with 403 (insufficient permission): the store marks the category each
	// was last stored with as not granted, unless a detail of the same
	// category in this batch proves the scope granted.
	ScopeRefused []string
	// SeenCategories are the categories of device details fetched in this
	// run but saved before (per home), so the run's closing save can tell
	// which scopes they prove granted.
	SeenCategories []Category
}

// JobState is the persisted scheduling state of one job.
type JobState struct {
	Job                 string
	NextRunAt           time.Time // zero when never scheduled
	LastRunAt           time.Time
	LastSuccessAt       time.Time
	ConsecutiveFailures int
	// BreakerUntil is when the circuit breaker lets the next probe through (zero when closed).
	BreakerUntil time.Time
	LastError    string
}

// HistoryCheckpoint is the persisted progress of one (device, resolution) history stream.
type HistoryCheckpoint struct {
	DeviceID   string
	HomeID     string
	Resolution string
	// NextURL is the next link of the last committed page; "" when the
	// stream reached the end of available history.
	NextURL string
	// LastPeriod is the newest period start stored for this stream (zero when none).
	LastPeriod time.Time
	// BackfillDone is true once a full forward pass reached the end.
	BackfillDone bool
	UpdatedAt    time.Time
	// LastError records the last problem (bad page, loop, 400), "" when none.
	LastError string
}

// HistoryResult is what saving one history page did.
type HistoryResult struct {
	Inserted int // new (device, resolution, period, metric) rows
	Updated  int // rows whose value changed (revisions counted)
	Skipped  int // items outside the effective window or otherwise invalid
}
