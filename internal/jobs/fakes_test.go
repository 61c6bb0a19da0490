package jobs_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/testutil"
)

var (
	_ jobs.API    = (*fakeAPI)(nil)
	_ jobs.Store  = (*fakeStore)(nil)
	_ jobs.Runner = (*fakeRunner)(nil)
	_ jobs.Runner = (*jobs.Syncer)(nil)
)

// fakeAPI is a function-field fake of the Data API. It logs every call and
// counts calls in flight, so fakeStore can assert that no store call
// happens while the network is in use.
type fakeAPI struct {
	HomesFn       func(ctx context.Context) ([]model.Home, error)
	DevicesFn     func(ctx context.Context, homeID string) ([]model.Device, error)
	DeviceFn      func(ctx context.Context, homeID, deviceID string) (model.Device, error)
	HistoryFn     func(ctx context.Context, homeID, deviceID, resolution string, since time.Time) (model.HistoryPage, error)
	HistoryNextFn func(ctx context.Context, next string) (model.HistoryPage, error)

	inFlight atomic.Int32
	mu       sync.Mutex
	calls    []string
}

func (f *fakeAPI) enter(call string) func() {
	f.inFlight.Add(1)
	f.mu.Lock()
	f.calls = append(f.calls, call)
	f.mu.Unlock()
	return func() { f.inFlight.Add(-1) }
}

// Calls returns the calls so far, e.g. "device h1 d1".
func (f *fakeAPI) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeAPI) Homes(ctx context.Context) ([]model.Home, error) {
	defer f.enter("homes")()
	if f.HomesFn == nil {
		return nil, nil
	}
	return f.HomesFn(ctx)
}

func (f *fakeAPI) Devices(ctx context.Context, homeID string) ([]model.Device, error) {
	defer f.enter("devices " + homeID)()
	if f.DevicesFn == nil {
		return nil, nil
	}
	return f.DevicesFn(ctx, homeID)
}

func (f *fakeAPI) Device(ctx context.Context, homeID, deviceID string) (model.Device, error) {
	defer f.enter("device " + homeID + " " + deviceID)()
	if f.DeviceFn == nil {
		return model.Device{}, fmt.Errorf("unexpected detail call for %s", deviceID)
	}
	return f.DeviceFn(ctx, homeID, deviceID)
}

func (f *fakeAPI) History(ctx context.Context, homeID, deviceID, resolution string, since time.Time) (model.HistoryPage, error) {
	defer f.enter(fmt.Sprintf("history %s %s %s since=%s", homeID, deviceID, resolution, since.UTC().Format(time.RFC3339)))()
	if f.HistoryFn == nil {
		return model.HistoryPage{}, fmt.Errorf("unexpected history call for %s", deviceID)
	}
	return f.HistoryFn(ctx, homeID, deviceID, resolution, since)
}

func (f *fakeAPI) HistoryNext(ctx context.Context, next string) (model.HistoryPage, error) {
	defer f.enter("next " + next)()
	if f.HistoryNextFn == nil {
		return model.HistoryPage{}, fmt.Errorf("unexpected next call %s", next)
	}
	return f.HistoryNextFn(ctx, next)
}

type histKey struct {
	device, resolution string
	period             int64
	metric             string
}

// fakeStore is an in-memory Store with the store's documented semantics
// (history items outside the served window are skipped), optional
// function-field overrides for fault injection, and a check that no call is
// made while the API has a call in flight.
type fakeStore struct {
	api *fakeAPI // may be nil

	SaveInventoryFn     func(ctx context.Context, run model.Run, b model.InventoryBatch) (model.Run, error)
	SaveHomeInventoryFn func(ctx context.Context, b model.InventoryBatch) (int, error)
	SaveHistoryPageFn   func(ctx context.Context, deviceID, resolution string, page model.HistoryPage, cp model.HistoryCheckpoint) (model.HistoryResult, error)
	JobStateFn          func(ctx context.Context, job string) (model.JobState, error)

	mu          sync.Mutex
	violations  []string
	runs        []model.Run
	batches     []model.InventoryBatch
	parts       []model.InventoryBatch // SaveHomeInventory calls since the last SaveInventory
	homeDevices map[string][]model.Device
	states      map[string]model.JobState
	checkpoints map[string]model.HistoryCheckpoint
	history     map[histKey]float64
	saves       map[histKey]int // how often each row was written
	pages       int
}

func newFakeStore(api *fakeAPI) *fakeStore {
	return &fakeStore{
		api:         api,
		states:      map[string]model.JobState{},
		checkpoints: map[string]model.HistoryCheckpoint{},
		history:     map[histKey]float64{},
		saves:       map[histKey]int{},
	}
}

func (s *fakeStore) check(call string) {
	if s.api != nil && s.api.inFlight.Load() > 0 {
		s.mu.Lock()
		s.violations = append(s.violations, call)
		s.mu.Unlock()
	}
}

// assertNoOverlap fails t when a store call was made while an API call was
// in flight.
func (s *fakeStore) assertNoOverlap(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.violations) > 0 {
		t.Fatalf("store calls while an API call was in flight: %v", s.violations)
	}
}

func (s *fakeStore) Runs() []model.Run {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]model.Run(nil), s.runs...)
}

func (s *fakeStore) Batches() []model.InventoryBatch {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]model.InventoryBatch(nil), s.batches...)
}

// SaveInventory records the run with everything it saved: the batch merged
// with the run's SaveHomeInventory parts, so that Batches shows one batch
// per run.
func (s *fakeStore) SaveInventory(ctx context.Context, run model.Run, b model.InventoryBatch) (model.Run, error) {
	s.check("SaveInventory")
	s.mu.Lock()
	parts := s.parts
	s.parts = nil
	s.mu.Unlock()
	for _, p := range parts {
		if b.HomeDevices == nil {
			b.HomeDevices = map[string][]model.Device{}
		}
		for h, devs := range p.HomeDevices {
			b.HomeDevices[h] = devs
		}
		b.Details = append(b.Details, p.Details...)
	}
	if s.SaveInventoryFn != nil {
		return s.SaveInventoryFn(ctx, run, b)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runs = append(s.runs, run)
	s.batches = append(s.batches, b)
	run.ID = int64(len(s.runs))
	run.RowsWritten += len(b.Homes)
	return run, nil
}

// SaveHomeInventory keeps one home's part until the run's SaveInventory.
// It is not checked against API calls in flight: a home is saved while
// other homes' requests run, by design; R14 forbids network I/O inside a
// transaction, which a store call cannot do.
func (s *fakeStore) SaveHomeInventory(ctx context.Context, b model.InventoryBatch) (int, error) {
	if s.SaveHomeInventoryFn != nil {
		return s.SaveHomeInventoryFn(ctx, b)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.parts = append(s.parts, b)
	return len(b.Details), nil
}

func (s *fakeStore) RecordRun(ctx context.Context, run model.Run) (int64, error) {
	s.check("RecordRun")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runs = append(s.runs, run)
	return int64(len(s.runs)), nil
}

func (s *fakeStore) ActiveHomeDevices(ctx context.Context) (map[string][]model.Device, error) {
	s.check("ActiveHomeDevices")
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.homeDevices, nil
}

func (s *fakeStore) JobState(ctx context.Context, job string) (model.JobState, error) {
	s.check("JobState")
	if s.JobStateFn != nil {
		return s.JobStateFn(ctx, job)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.states[job]
	if !ok {
		return model.JobState{Job: job}, nil
	}
	return st, nil
}

func (s *fakeStore) SaveJobState(ctx context.Context, st model.JobState) error {
	s.check("SaveJobState")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.states[st.Job] = st
	return nil
}

func (s *fakeStore) State(job string) model.JobState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.states[job]
}

func (s *fakeStore) HistoryCheckpoint(ctx context.Context, deviceID, resolution string) (model.HistoryCheckpoint, bool, error) {
	s.check("HistoryCheckpoint")
	s.mu.Lock()
	defer s.mu.Unlock()
	cp, ok := s.checkpoints[deviceID+"/"+resolution]
	return cp, ok, nil
}

func (s *fakeStore) Checkpoint(deviceID, resolution string) model.HistoryCheckpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.checkpoints[deviceID+"/"+resolution]
}

func (s *fakeStore) SaveHistoryPage(ctx context.Context, deviceID, resolution string, page model.HistoryPage, cp model.HistoryCheckpoint) (model.HistoryResult, error) {
	s.check("SaveHistoryPage")
	if s.SaveHistoryPageFn != nil {
		return s.SaveHistoryPageFn(ctx, deviceID, resolution, page, cp)
	}
	if err := ctx.Err(); err != nil {
		return model.HistoryResult{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var r model.HistoryResult
	for _, it := range page.Items {
		if (!page.EffectiveStart.IsZero() && it.Time.Before(page.EffectiveStart)) ||
			(!page.EffectiveEnd.IsZero() && !it.Time.Before(page.EffectiveEnd)) {
			r.Skipped++
			continue
		}
		for metric, v := range it.Metrics {
			k := histKey{deviceID, resolution, it.Time.UnixMilli(), metric}
			old, ok := s.history[k]
			switch {
			case !ok:
				r.Inserted++
			case old != v:
				r.Updated++
			}
			s.history[k] = v
			s.saves[k]++
		}
	}
	s.checkpoints[deviceID+"/"+resolution] = cp
	if len(page.Items) > 0 {
		s.pages++
	}
	return r, nil
}

// Periods returns the stored period starts of one stream, sorted, and the
// largest number of times any row was written.
func (s *fakeStore) Periods(deviceID, resolution string) (periods []int64, maxSaves int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[int64]bool{}
	for k, n := range s.saves {
		if k.device != deviceID || k.resolution != resolution {
			continue
		}
		maxSaves = max(maxSaves, n)
		if !seen[k.period] {
			seen[k.period] = true
			periods = append(periods, k.period)
		}
	}
	slices.Sort(periods)
	return periods, maxSaves
}

// fakeRunner is a function-field fake of the scheduler's Runner.
type fakeRunner struct {
	RunFn func(ctx context.Context, job string) (model.Run, error)

	mu    sync.Mutex
	calls map[string]int
}

func (r *fakeRunner) Run(ctx context.Context, job string) (model.Run, error) {
	r.mu.Lock()
	if r.calls == nil {
		r.calls = map[string]int{}
	}
	r.calls[job]++
	r.mu.Unlock()
	if r.RunFn == nil {
		return model.Run{Job: job, Status: jobs.StatusOK}, nil
	}
	return r.RunFn(ctx, job)
}

func (r *fakeRunner) Calls(job string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[job]
}

// logBuffer is the shared concurrency-safe log sink.
type logBuffer = testutil.SyncBuffer

func newLogger(b *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
