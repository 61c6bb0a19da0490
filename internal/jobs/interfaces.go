// Package jobs runs the scheduled work: a wall-clock scheduler driven by cron
// specs, and the homes, devices and history jobs. It declares the interfaces
// it needs; *tibber.Client and *store.DB satisfy them without knowing.
package jobs

import (
	"context"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
)

// API is the Data API as the jobs use it. *tibber.Client implements it.
type API interface {
	Homes(ctx context.Context) ([]model.Home, error)
	Devices(ctx context.Context, homeID string) ([]model.Device, error)
	Device(ctx context.Context, homeID, deviceID string) (model.Device, error)
	// History fetches the first page of history going forward from since.
	History(ctx context.Context, homeID, deviceID, resolution string, since time.Time) (model.HistoryPage, error)
	// HistoryNext follows a next link exactly as the server gave it.
	HistoryNext(ctx context.Context, next string) (model.HistoryPage, error)
}

// Run is one finished run of a job, as stored in sync_runs.
type Run struct {
	ID         int64  // sync_runs.id once stored
	Job        string // "homes", "devices", "history"
	StartedAt  time.Time
	FinishedAt time.Time
	Status     string // "ok", "partial", "failed", "skipped"
	Error      string // human-readable, never a secret; "" when ok
	Requests   int    // HTTP requests made by the run
	// RowsWritten is filled in by the store when the run is saved with a batch.
	RowsWritten int
}

// InventoryBatch is everything one homes or devices cycle fetched. It is
// written in one transaction, together with its Run row.
type InventoryBatch struct {
	ObservedAt time.Time
	// Homes is the complete list the API returned; stored homes missing from
	// it are marked removed. Nil means the homes list was not fetched, and
	// no home is marked removed.
	Homes []model.Home
	// HomeDevices maps a home id to the complete device list of that home.
	// Only homes present as keys get their links updated and missing devices
	// marked removed (a home whose list failed is left untouched).
	HomeDevices map[string][]model.Device
	// Details holds device details (with capabilities) to snapshot. A device
	// whose detail failed is absent and keeps its last state.
	Details []model.Device
	// GrantedScopes are the scopes of the token used, so the store can record
	// which categories are not granted.
	GrantedScopes []string
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

// Store is the data.db store as the jobs use it. *store.DB implements it.
type Store interface {
	// SaveInventory writes a homes/devices batch and its run in one
	// transaction. It returns the run as stored: ID filled in, and
	// RowsWritten the rows this transaction wrote added to run.RowsWritten
	// (the rows the run's SaveHomeInventory calls wrote).
	SaveInventory(ctx context.Context, run Run, b InventoryBatch) (Run, error)
	// SaveHomeInventory writes one home's part of a cycle in one
	// transaction: b.Homes (that home), b.HomeDevices (its complete device
	// list) and the details fetched through it, without a run row, and
	// returns the rows it wrote.
	SaveHomeInventory(ctx context.Context, b InventoryBatch) (int, error)
	// RecordRun writes a run that stored no batch (failed or skipped).
	RecordRun(ctx context.Context, run Run) (int64, error)
	// ActiveHomeDevices returns, per non-removed home, its non-removed devices
	// (identity fields only), for the history job.
	ActiveHomeDevices(ctx context.Context) (map[string][]model.Device, error)

	JobState(ctx context.Context, job string) (JobState, error)
	SaveJobState(ctx context.Context, s JobState) error

	HistoryCheckpoint(ctx context.Context, deviceID, resolution string) (HistoryCheckpoint, bool, error)
	// SaveHistoryPage upserts the page's items and saves cp in one transaction.
	SaveHistoryPage(ctx context.Context, deviceID, resolution string, page model.HistoryPage, cp HistoryCheckpoint) (HistoryResult, error)
}
