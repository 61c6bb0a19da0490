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

// Store is the data.db store as the jobs use it. *store.DB implements it.
type Store interface {
	// SaveInventory writes a homes/devices batch and its run in one
	// transaction. It returns the run as stored: ID filled in, and
	// RowsWritten the rows this transaction wrote added to run.RowsWritten
	// (the rows the run's SaveHomeInventory calls wrote).
	SaveInventory(ctx context.Context, run model.Run, b model.InventoryBatch) (model.Run, error)
	// SaveHomeInventory writes one home's part of a cycle in one
	// transaction: b.Homes (that home), b.HomeDevices (its complete device
	// list) and the details fetched through it, without a run row, and
	// returns the rows it wrote.
	SaveHomeInventory(ctx context.Context, b model.InventoryBatch) (int, error)
	// RecordRun writes a run that stored no batch (failed or skipped).
	RecordRun(ctx context.Context, run model.Run) (int64, error)
	// ActiveHomeDevices returns, per non-removed home, its non-removed devices
	// (identity fields only), for the history job.
	ActiveHomeDevices(ctx context.Context) (map[string][]model.Device, error)

	JobState(ctx context.Context, job string) (model.JobState, error)
	SaveJobState(ctx context.Context, s model.JobState) error

	HistoryCheckpoint(ctx context.Context, deviceID, resolution string) (model.HistoryCheckpoint, bool, error)
	// SaveHistoryPage upserts the page's items and saves cp in one transaction.
	SaveHistoryPage(ctx context.Context, deviceID, resolution string, page model.HistoryPage, cp model.HistoryCheckpoint) (model.HistoryResult, error)
}

// CategoryAccessRecorder is implemented by a Store that records what API
// answers showed about category scopes (*store.DB): false after a 403 to a
// request that needs the category's scope, true after a success. The
// history job reports through it; the devices job through
// InventoryBatch.ScopeRefused.
type CategoryAccessRecorder interface {
	RecordCategoryAccess(ctx context.Context, access map[model.Category]bool) error
}
