package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/model"
)

// Job names, as stored in sync_runs.job and job_state.job.
const (
	JobHomes   = "homes"
	JobDevices = "devices"
	JobHistory = "history"
)

// Run statuses, as stored in sync_runs.status.
const (
	StatusOK      = "ok"
	StatusPartial = "partial"
	StatusFailed  = "failed"
	StatusSkipped = "skipped"
	// StatusRunning marks the row of a run in progress.
	StatusRunning = "running"
	// StatusInterrupted is a run cut short by shutdown (or whose process
	// died): neither a success nor a failure of the API.
	StatusInterrupted = "interrupted"
)

// Defaults of the Syncer's knobs.
const (
	// DefaultConcurrency is how many device details are fetched at once.
	DefaultConcurrency = 4
	// DefaultBackfillDays is how far back the first history sync goes.
	DefaultBackfillDays = 30
	// DefaultLookback is how much history every incremental run re-fetches.
	DefaultLookback = 48 * time.Hour
	// DefaultMaxPagesPerStream is the hard cap on history pages fetched for
	// one (device, resolution) stream in one run.
	DefaultMaxPagesPerStream = 10000
)

// recordTimeout bounds the store write that records a run that was stopped
// (for example by shutdown), so the run is still recorded but the write can
// never hold up the process for long.
const recordTimeout = 5 * time.Second

// maxProblemsListed bounds how many problems a run's error text names.
const maxProblemsListed = 10

// ErrStorm is wrapped by the error of a run that a storm ended early: the
// API kept failing after all retries, so the run stopped making requests.
// Such a run is not a success that resets the backoff, even when it stored
// something (partial).
var ErrStorm = errors.New("the API kept failing after all retries; the run stopped early")

// errNotFetched marks a device detail not fetched because the run stopped.
var errNotFetched = errors.New("not fetched: run stopped")

// Syncer runs the homes, devices and history jobs once. It is safe to run
// different jobs concurrently; the scheduler never runs one job twice at once.
type Syncer struct {
	// API is the Data API (*tibber.Client).
	API API
	// Store is data.db (*store.DB).
	Store Store
	// Clock tells the time (default clock.Real).
	Clock clock.Clock
	// Logger receives progress and problems (default: discarded).
	Logger *slog.Logger
	// Concurrency is how many device details are fetched at once (default 4).
	Concurrency int
	// GrantedScopes returns the current token's scopes; may be nil.
	GrantedScopes func() []string
	// HistoryResolutions are the resolutions to sync ([history].resolutions);
	// each device's supportedHistory.resolutions limits them further.
	HistoryResolutions []string
	// BackfillDays is how far back the first history sync goes (default 30),
	// capped by each device's maxRetentionDays.
	BackfillDays int
	// Lookback is re-fetched on every incremental history run to pick up
	// late corrections (default 48h).
	Lookback time.Duration
	// MaxPagesPerStream caps the pages of one (device, resolution) stream in
	// one run, so a server that never stops sending next links cannot keep
	// the job busy forever. Zero derives the cap from the window (at most
	// DefaultMaxPagesPerStream). A stream stopped by the cap resumes from its
	// checkpoint on the next run.
	MaxPagesPerStream int
	// Progress, when set, is called after each history page and once when a
	// stream ends (with Done set).
	Progress func(HistoryProgress)
	// Authorized, when set, is asked before a run starts: an error wrapping
	// model.ErrNotAuthorized records the run as skipped without any work
	// (a history run before authorization is not an "ok" run that synced
	// no devices).
	Authorized func(ctx context.Context) error
	// ProgressEvery is the least time between two progress writes of a
	// running history run to the store (default 1s); the end of each stream
	// is always written.
	ProgressEvery time.Duration
	// HistoryBudget bounds the time of one history run, measured with
	// Clock (the daemon sets it below sync.cycle_timeout). Each stream
	// gets a fair share of what is left when it starts (the rest divided
	// by the streams still to come), so one endless or huge stream cannot
	// keep every other device from its history; a stream
	// stopped by its share resumes from its checkpoint next run. Zero: no
	// time bound (the page cap still applies).
	HistoryBudget time.Duration
}

// RunTracker is implemented by a Store that shows runs while they run
// (*store.DB): a run's row is written when it starts, with status running,
// and finished in place by RecordRun or SaveInventory (Run.ID set).
type RunTracker interface {
	StartRun(ctx context.Context, run model.Run) (int64, error)
	UpdateRunProgress(ctx context.Context, id int64, p model.RunProgress) error
}

// ErrStopped ends a run at a safe point because the process is stopping.
var ErrStopped = errors.New("stopped: tibbersync is shutting down")

type stopKey struct{}

// WithStop returns ctx carrying stop: once stop is closed, a history run
// ends after the page it is saving (it resumes from its checkpoint next
// time) and is recorded as interrupted, instead of running on until its
// context is cancelled.
func WithStop(ctx context.Context, stop <-chan struct{}) context.Context {
	return context.WithValue(ctx, stopKey{}, stop)
}

// stopRequested reports whether the stop channel of ctx is closed.
func stopRequested(ctx context.Context) bool {
	ch, _ := ctx.Value(stopKey{}).(<-chan struct{})
	if ch == nil {
		return false
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// interrupted reports whether err (or ctx) means the run was cut short by
// shutdown: a cancelled context or a stop request. A run that hit its own
// deadline is not interrupted but failed.
func interrupted(ctx context.Context, err error) bool {
	return errors.Is(err, ErrStopped) || errors.Is(ctx.Err(), context.Canceled)
}

// begin starts a run: its row is written at once with status running when
// the store supports it.
func (s *Syncer) begin(ctx context.Context, job string) model.Run {
	run := model.Run{Job: job, StartedAt: s.now()}
	if t, ok := s.Store.(RunTracker); ok {
		id, err := t.StartRun(ctx, run)
		if err != nil {
			s.logger().Warn("record run start", "job", job, "err", err)
		} else {
			run.ID = id
		}
	}
	return run
}

// Run runs the job with the given name once: "homes", "devices" or "history".
// It implements the scheduler's Runner.
func (s *Syncer) Run(ctx context.Context, job string) (model.Run, error) {
	switch job {
	case JobHomes, JobDevices, JobHistory:
		if s.Authorized == nil {
			break
		}
		if err := s.Authorized(ctx); err != nil && errors.Is(err, model.ErrNotAuthorized) {
			return s.abort(ctx, model.Run{Job: job, StartedAt: s.now()}, &meter{}, err)
		}
	}
	switch job {
	case JobHomes:
		return s.RunHomes(ctx)
	case JobDevices:
		return s.RunDevices(ctx)
	case JobHistory:
		return s.RunHistory(ctx)
	}
	return model.Run{Job: job}, fmt.Errorf("unknown job %q", job)
}

// RunHomes fetches the homes and each home's device list, and saves them in
// one transaction (no device details). Homes and devices that disappeared
// are marked removed by the store.
func (s *Syncer) RunHomes(ctx context.Context) (model.Run, error) {
	return s.runInventory(ctx, JobHomes, false)
}

// RunDevices fetches the homes, each home's device list and the detail of
// every device (each device once, even when several homes list it), with
// bounded concurrency, then saves everything in one transaction. A device
// whose detail fails is left out and named in the run's error (status
// partial); when every detail or every device list fails, or the homes
// cannot be fetched, the run is failed.
func (s *Syncer) RunDevices(ctx context.Context) (model.Run, error) {
	return s.runInventory(ctx, JobDevices, true)
}

// meter counts the requests of one run. counter is incremented by the
// tibber client for every HTTP attempt (retries included); calls counts the
// API calls that got as far as the network, so a fake API without a counter
// still yields a sensible number. The run reports the larger of the two.
type meter struct {
	counter atomic.Int64
	calls   atomic.Int64
}

// done records one finished API call.
func (m *meter) done(err error) {
	if !isTokenError(err) {
		m.calls.Add(1)
	}
}

// requests is the number of HTTP requests the run made.
func (m *meter) requests() int {
	n := m.counter.Load()
	if c := m.calls.Load(); c > n {
		n = c
	}
	return int(n)
}

// isTokenError reports whether err says no API call could be made at all.
func isTokenError(err error) bool {
	return err != nil && (errors.Is(err, model.ErrNotAuthorized) || errors.Is(err, model.ErrTokenBackoff) ||
		errors.Is(err, model.ErrTokenRefused))
}

func (s *Syncer) now() time.Time {
	if s.Clock == nil {
		return time.Now()
	}
	return s.Clock.Now()
}

func (s *Syncer) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Syncer) concurrency() int {
	if s.Concurrency > 0 {
		return s.Concurrency
	}
	return DefaultConcurrency
}

func (s *Syncer) scopes() []string {
	if s.GrantedScopes == nil {
		return nil
	}
	return s.GrantedScopes()
}

// abort finishes a run that stored nothing: skipped when the token source
// said no call may be made, failed otherwise. The run is recorded even when
// ctx was cancelled (shutdown), within recordTimeout.
func (s *Syncer) abort(ctx context.Context, run model.Run, m *meter, cause error) (model.Run, error) {
	run.Status = StatusFailed
	switch {
	case errors.Is(cause, model.ErrNotAuthorized):
		run.Status = StatusSkipped
	case interrupted(ctx, cause):
		run.Status = StatusInterrupted
	}
	run.Error = cause.Error()
	return s.record(ctx, run, m, cause)
}

// record stores a run without a batch and returns it with err.
func (s *Syncer) record(ctx context.Context, run model.Run, m *meter, err error) (model.Run, error) {
	run.FinishedAt = s.now()
	run.Requests = m.requests()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if _, rerr := s.Store.RecordRun(rctx, run); rerr != nil {
		err = errors.Join(err, fmt.Errorf("record %s run: %w", run.Job, rerr))
	}
	return run, err
}

// detailTarget is one device whose detail is to be fetched, through the
// first home that listed it.
type detailTarget struct {
	homeID string
	listed model.Device
}

// detailResult is the outcome of one detail fetch.
type detailResult struct {
	attempted bool
	dev       model.Device
	err       error
}

func (s *Syncer) runInventory(ctx context.Context, job string, withDetails bool) (model.Run, error) {
	run := s.begin(ctx, job)
	m := &meter{}
	ctx = withRequestCounter(ctx, &m.counter)
	log := s.logger().With("job", job)

	rawHomes, err := s.API.Homes(ctx)
	m.done(err)
	if err != nil {
		return s.abort(ctx, run, m, err)
	}
	var problems []string
	var errs []error
	homes := cleanHomes(rawHomes, &problems)

	batch := model.InventoryBatch{
		Homes:         homes,
		HomeDevices:   make(map[string][]model.Device, len(homes)),
		GrantedScopes: s.scopes(),
	}
	listFailed := 0
	for _, h := range homes {
		if err := ctx.Err(); err != nil {
			return s.abort(ctx, run, m, fmt.Errorf("fetch devices: %w", err))
		}
		devs, err := s.API.Devices(ctx, h.ID)
		m.done(err)
		if err != nil {
			if isTokenError(err) || ctx.Err() != nil {
				return s.abort(ctx, run, m, fmt.Errorf("fetch devices of home %s: %w", h.ID, err))
			}
			listFailed++
			errs = append(errs, err)
			problems = append(problems, fmt.Sprintf("device list of home %s: %v", h.ID, err))
			log.Warn("device list skipped", "home_id", h.ID, "err", err)
			continue
		}
		batch.HomeDevices[h.ID] = cleanDevices(devs, h.ID, &problems)
	}

	var targets []detailTarget
	if withDetails {
		seen := map[string]bool{}
		for _, h := range homes {
			for _, d := range batch.HomeDevices[h.ID] {
				if seen[d.ID] {
					continue
				}
				seen[d.ID] = true
				targets = append(targets, detailTarget{homeID: h.ID, listed: d})
			}
		}
	}
	results, stopErr := s.fetchDetails(ctx, m, targets)
	if stopErr != nil {
		return s.abort(ctx, run, m, fmt.Errorf("fetch device details: %w", stopErr))
	}
	if err := ctx.Err(); err != nil {
		return s.abort(ctx, run, m, fmt.Errorf("fetch device details: %w", err))
	}
	detailFailed := 0
	for i, r := range results {
		t := targets[i]
		if r.err == nil {
			r.err = checkDetail(t.listed, &r.dev)
		}
		if r.err != nil {
			detailFailed++
			errs = append(errs, r.err)
			problems = append(problems, fmt.Sprintf("device %s: %v", deviceLabel(t.listed), r.err))
			log.Warn("device detail skipped", "device_id", t.listed.ID, "device", t.listed.Name, "home_id", t.homeID, "err", r.err)
			continue
		}
		batch.Details = append(batch.Details, r.dev)
	}

	run.Status = StatusOK
	if len(problems) > 0 {
		run.Status = StatusPartial
	}
	allListsFailed := len(homes) > 0 && listFailed == len(homes)
	allDetailsFailed := len(targets) > 0 && detailFailed == len(targets)
	if allListsFailed || allDetailsFailed {
		run.Status = StatusFailed
	}
	run.Error = summarize(problems, detailFailed, len(targets))
	run.Requests = m.requests()
	// What the run saw, whether or not it changed anything: the homes job
	// says "2 homes, 9 devices" even when the devices job stored them first.
	seen := map[string]bool{}
	for _, devs := range batch.HomeDevices {
		for _, d := range devs {
			seen[d.ID] = true
		}
	}
	run.Progress = &model.RunProgress{Homes: len(homes), Devices: len(seen), Requests: run.Requests, Fraction: 1}
	batch.ObservedAt = s.now()
	run.FinishedAt = batch.ObservedAt

	// Everything valid is stored, even when the run counts as failed (homes
	// still refresh when every device list failed).
	saved, err := s.Store.SaveInventory(ctx, run, batch)
	if err != nil {
		saveErr := fmt.Errorf("save inventory: %w", err)
		run.Status = StatusFailed
		run.Error = joinText(saveErr.Error(), run.Error)
		return s.record(ctx, run, m, saveErr)
	}
	run.ID, run.RowsWritten = saved.ID, saved.RowsWritten
	log.Debug("inventory saved", "homes", len(homes), "details", len(batch.Details), "problems", len(problems))
	if run.Status == StatusFailed {
		return run, fmt.Errorf("%s: %w", job, errors.Join(errs...))
	}
	if err := errors.Join(errs...); RateLimited(err) {
		// Stored what it had, but met a 429: the scheduler must not count
		// it as a success that resets the backoff.
		return run, fmt.Errorf("%s: rate limited: %w", job, err)
	} else if errors.Is(err, errNotFetched) {
		// Stored what it had, but a storm ended the detail fetches.
		return run, fmt.Errorf("%s: %w: %w", job, ErrStorm, err)
	}
	return run, nil
}

// fetchDetails fetches the targets' details with at most Concurrency calls
// in flight. One failing device never cancels the others; only an error
// from the token source (no call may be made) stops the remaining fetches,
// and is returned. results[i] belongs to targets[i].
func (s *Syncer) fetchDetails(ctx context.Context, m *meter, targets []detailTarget) ([]detailResult, error) {
	results := make([]detailResult, len(targets))
	if len(targets) == 0 {
		return results, nil
	}
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		mu      sync.Mutex
		stopErr error
		stopped atomic.Bool
		storm   atomic.Int32 // retryable failures in a row
	)
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(s.concurrency(), len(targets)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if stopped.Load() || dctx.Err() != nil {
					continue
				}
				t := targets[i]
				dev, err := s.API.Device(dctx, t.homeID, t.listed.ID)
				m.done(err)
				results[i] = detailResult{attempted: true, dev: dev, err: err}
				switch {
				case err == nil:
					storm.Store(0)
				case RateLimited(err):
					// Tibber asked to slow down: no new requests in this run.
					stopped.Store(true)
				case overloaded(err) && storm.Add(1) >= stormLimit:
					stopped.Store(true)
				}
				if isTokenError(err) {
					mu.Lock()
					if stopErr == nil {
						stopErr = err
					}
					mu.Unlock()
					stopped.Store(true)
					cancel()
				}
			}
		}()
	}
	for i := range targets {
		if stopped.Load() || dctx.Err() != nil {
			break
		}
		work <- i
	}
	close(work)
	wg.Wait()
	for i := range results {
		if !results[i].attempted && results[i].err == nil {
			results[i].err = errNotFetched
		}
	}
	return results, stopErr
}

// checkDetail validates a device detail against its list item, and fills
// identity fields the detail lacked from the list item.
func checkDetail(listed model.Device, d *model.Device) error {
	switch {
	case d.ID == "":
		return errors.New("detail has no id")
	case d.ID != listed.ID:
		return fmt.Errorf("detail answered for another device id %q", d.ID)
	}
	if d.ExternalID == "" {
		d.ExternalID = listed.ExternalID
	}
	if d.Name == "" {
		d.Name = listed.Name
	}
	if d.Brand == "" {
		d.Brand = listed.Brand
	}
	if d.Model == "" {
		d.Model = listed.Model
	}
	if d.SupportedResolutions == nil {
		d.SupportedResolutions = listed.SupportedResolutions
	}
	if d.MaxRetentionDays == 0 {
		d.MaxRetentionDays = listed.MaxRetentionDays
	}
	if d.Category == "" {
		ids := make([]string, 0, len(d.Capabilities))
		for _, c := range d.Capabilities {
			ids = append(ids, c.ID)
		}
		d.Category = model.CategoryOf(ids)
	}
	return nil
}

// cleanHomes drops homes without an id and duplicates, keeping the API's order.
func cleanHomes(in []model.Home, problems *[]string) []model.Home {
	out := make([]model.Home, 0, len(in))
	seen := map[string]bool{}
	for _, h := range in {
		switch {
		case h.ID == "":
			*problems = append(*problems, "a home without id was skipped")
			continue
		case seen[h.ID]:
			continue
		}
		seen[h.ID] = true
		out = append(out, h)
	}
	return out
}

// cleanDevices drops list items without an id and duplicates.
func cleanDevices(in []model.Device, homeID string, problems *[]string) []model.Device {
	out := make([]model.Device, 0, len(in))
	seen := map[string]bool{}
	for _, d := range in {
		switch {
		case d.ID == "":
			*problems = append(*problems, fmt.Sprintf("a device without id in home %s was skipped", homeID))
			continue
		case seen[d.ID]:
			continue
		}
		seen[d.ID] = true
		out = append(out, d)
	}
	return out
}

// deviceLabel names a device for humans: its name and its id.
func deviceLabel(d model.Device) string {
	if d.Name == "" {
		return d.ID
	}
	return fmt.Sprintf("%q (%s)", d.Name, d.ID)
}

// summarize turns a run's problems into its error text, naming at most
// maxProblemsListed of them.
func summarize(problems []string, detailFailed, details int) string {
	if len(problems) == 0 {
		return ""
	}
	var b strings.Builder
	if detailFailed > 0 {
		fmt.Fprintf(&b, "%d of %d device details skipped; ", detailFailed, details)
	}
	for i, p := range problems {
		if i == maxProblemsListed {
			fmt.Fprintf(&b, "; and %d more", len(problems)-i)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p)
	}
	return b.String()
}

// joinText joins non-empty texts with "; ".
func joinText(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, "; ")
}
