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
	// Clock (the daemon sets it to nine tenths of history's deadline,
	// itself six times sync.cycle_timeout). Each stream
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

// RunHomes fetches the homes and each home's device list (all lists at
// once, within the concurrency limit), saves each home's list in its own
// transaction as it arrives, and then the homes list with the run (no
// device details). Homes and devices that disappeared are marked removed
// by the store.
func (s *Syncer) RunHomes(ctx context.Context) (model.Run, error) {
	return s.runInventory(ctx, JobHomes, false)
}

// RunDevices fetches the homes, then every home's device list and the
// detail of every device (each device once, even when several homes list
// it) as one pipeline: the lists of all homes are requested at once, each
// device's detail as soon as its list arrived, with at most Concurrency
// requests in flight in all. Each home is saved in its own transaction as
// soon as its list and details are in (change-only writes), so the cycle
// never holds the whole inventory; the homes list, the removal marks and
// the run row follow in one last transaction. A device whose detail fails
// is left out and named in the run's error (status partial); when every
// detail or every device list fails, or the homes cannot be fetched, the
// run is failed.
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

// homeResult is what the pipeline fetched and saved for one home.
type homeResult struct {
	listFailed   bool
	targets      int // details fetched through this home
	detailFailed int
	problems     []string
	errs         []error
	saved        int // rows its transaction wrote
	// seen are the categories of the details fetched; refused the ids of
	// devices whose detail got 403 (category scope not granted).
	seen    []model.Category
	refused []string
}

// homeState is one home in the pipeline: its list, the devices whose
// details it fetches, and their results until it is saved.
type homeState struct {
	home    model.Home
	devs    []model.Device
	targets []model.Device
	results []detailResult
	left    int // details not finished yet
	res     homeResult
}

// detailResult is the outcome of one detail fetch.
type detailResult struct {
	attempted bool
	dev       model.Device
	err       error
}

// pipeline runs one inventory run's requests: Concurrency workers take
// requests from one FIFO queue, which starts with every home's device
// list; a list that arrives appends its devices' details at the tail. So
// the lists go first, all slots stay busy, and details are fetched home by
// home in the order the lists came in, so that homes complete (and are
// saved, by one saver, and dropped) one after the other instead of all at
// the end; the saver's queue holds one home, so a fast API cannot outrun
// the database. At most Concurrency requests are in flight and
// Concurrency + 1 goroutines run, whatever the size of the account.
type pipeline struct {
	s           *Syncer
	m           *meter
	log         *slog.Logger
	withDetails bool
	ctx         context.Context
	cancel      context.CancelFunc
	saves       chan *homeState

	mu      sync.Mutex
	cond    *sync.Cond
	queue   []func()
	pending int             // queued or running items
	claimed map[string]bool // device ids whose detail some home fetches
	seen    map[string]bool // device ids any list named

	// stopped: no new detail request in this run (Tibber answered 429, or
	// stormLimit details in a row failed with retryable server errors);
	// the remaining details count as not fetched and the run as partial.
	stopped atomic.Bool
	storm   atomic.Int32 // retryable detail failures in a row
	stopErr error        // a token error: no further call may be made
}

// push queues items (under p.mu).
func (p *pipeline) push(items ...func()) {
	p.queue = append(p.queue, items...)
	p.pending += len(items)
	p.cond.Broadcast()
}

// worker runs queued items until none is queued or running.
func (p *pipeline) worker() {
	for {
		p.mu.Lock()
		for len(p.queue) == 0 && p.pending > 0 {
			p.cond.Wait()
		}
		if len(p.queue) == 0 {
			p.mu.Unlock()
			return
		}
		item := p.queue[0]
		p.queue[0] = nil
		p.queue = p.queue[1:]
		p.mu.Unlock()
		item()
		p.mu.Lock()
		p.pending--
		if p.pending == 0 {
			p.cond.Broadcast()
		}
		p.mu.Unlock()
	}
}

// claimedDevices is every device id a saved list named.
func (p *pipeline) claimedDevices() map[string]bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen
}

// called records one finished API call; a token error stops the run.
func (p *pipeline) called(err error) {
	p.m.done(err)
	if isTokenError(err) {
		p.mu.Lock()
		if p.stopErr == nil {
			p.stopErr = err
		}
		p.mu.Unlock()
		p.cancel()
	}
}

// list fetches one home's device list and queues the details of the
// devices no earlier list named.
func (p *pipeline) list(h *homeState) {
	if p.ctx.Err() != nil {
		return
	}
	devs, err := p.s.API.Devices(p.ctx, h.home.ID)
	p.called(err)
	if p.ctx.Err() != nil {
		return
	}
	if err != nil {
		h.res.listFailed = true
		h.res.errs = append(h.res.errs, err)
		h.res.problems = append(h.res.problems, fmt.Sprintf("device list of home %s: %v", h.home.ID, err))
		p.log.Warn("device list skipped", "home_id", h.home.ID, "err", err)
		return
	}
	h.devs = cleanDevices(devs, h.home.ID, &h.res.problems)
	p.mu.Lock()
	for _, d := range h.devs {
		p.seen[d.ID] = true
	}
	if p.withDetails {
		for _, d := range h.devs {
			if !p.claimed[d.ID] {
				p.claimed[d.ID] = true
				h.targets = append(h.targets, d)
			}
		}
	}
	h.res.targets = len(h.targets)
	h.results = make([]detailResult, len(h.targets))
	h.left = len(h.targets)
	for i := range h.targets {
		p.push(func() { p.detail(h, i) })
	}
	// Read under the lock: once the details are queued, the home's last
	// detail hands it to the saver, which clears h.targets.
	noDetails := len(h.targets) == 0
	p.mu.Unlock()
	if noDetails {
		p.saves <- h
	}
}

// detail fetches one device detail; the home's last one hands the home to
// the saver.
func (p *pipeline) detail(h *homeState, i int) {
	if p.ctx.Err() == nil && !p.stopped.Load() {
		dev, err := p.s.API.Device(p.ctx, h.home.ID, h.targets[i].ID)
		p.called(err)
		h.results[i] = detailResult{attempted: true, dev: dev, err: err}
		switch {
		case err == nil:
			p.storm.Store(0)
		case RateLimited(err):
			// Tibber asked to slow down: no new requests in this run.
			p.stopped.Store(true)
		case overloaded(err) && p.storm.Add(1) >= stormLimit:
			p.stopped.Store(true)
		}
	}
	p.mu.Lock()
	h.left--
	last := h.left == 0
	p.mu.Unlock()
	if last {
		p.saves <- h
	}
}

// save checks a complete home's details and writes the home in one
// transaction, then drops what it fetched.
func (p *pipeline) save(h *homeState) {
	if p.ctx.Err() != nil {
		return
	}
	r := &h.res
	details := make([]model.Device, 0, len(h.targets))
	for i, res := range h.results {
		t := h.targets[i]
		if !res.attempted && res.err == nil {
			res.err = errNotFetched
		}
		if res.err == nil {
			res.err = checkDetail(t, &res.dev)
		}
		if res.err != nil {
			if isForbidden(res.err) {
				// Tibber refuses this device: its category's scope is
				// not granted (the store knows the category).
				r.refused = append(r.refused, t.ID)
			}
			r.detailFailed++
			r.errs = append(r.errs, res.err)
			r.problems = append(r.problems, fmt.Sprintf("device %s: %v", deviceLabel(t), res.err))
			p.log.Warn("device detail skipped", "device_id", t.ID, "device", t.Name, "home_id", h.home.ID, "err", res.err)
			continue
		}
		details = append(details, res.dev)
		r.seen = append(r.seen, res.dev.Category)
	}
	if !p.withDetails {
		details = nil
	}
	n, err := p.s.Store.SaveHomeInventory(p.ctx, model.InventoryBatch{
		ObservedAt:  p.s.now(),
		Homes:       []model.Home{h.home},
		HomeDevices: map[string][]model.Device{h.home.ID: h.devs},
		Details:     details,
	})
	h.devs, h.targets, h.results = nil, nil, nil
	if err != nil {
		if p.ctx.Err() != nil {
			return
		}
		err = fmt.Errorf("save home %s: %w", h.home.ID, err)
		r.errs = append(r.errs, err)
		r.problems = append(r.problems, err.Error())
		r.listFailed = true
		p.log.Warn("home not saved", "home_id", h.home.ID, "err", err)
		return
	}
	r.saved = n
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

	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p := &pipeline{
		s: s, m: m, log: log, withDetails: withDetails,
		ctx: pctx, cancel: cancel,
		// Room for one complete home: a worker that completes another
		// waits for the saver, so fetched homes cannot pile up in memory.
		saves:   make(chan *homeState, 1),
		claimed: map[string]bool{},
		seen:    map[string]bool{},
	}
	p.cond = sync.NewCond(&p.mu)
	states := make([]*homeState, len(homes))
	p.mu.Lock()
	for i, h := range homes {
		states[i] = &homeState{home: h}
		p.push(func() { p.list(states[i]) })
	}
	p.mu.Unlock()
	saverDone := make(chan struct{})
	go func() {
		defer close(saverDone)
		for h := range p.saves {
			p.save(h)
		}
	}()
	var wg sync.WaitGroup
	for range s.concurrency() {
		wg.Go(p.worker)
	}
	wg.Wait()
	close(p.saves)
	<-saverDone
	if p.stopErr != nil {
		return s.abort(ctx, run, m, fmt.Errorf("fetch devices: %w", p.stopErr))
	}
	if err := ctx.Err(); err != nil {
		return s.abort(ctx, run, m, fmt.Errorf("fetch devices: %w", err))
	}
	listFailed, targets, detailFailed := 0, 0, 0
	var seenCats []model.Category
	var refused []string
	for _, h := range states {
		r := h.res
		seenCats = append(seenCats, r.seen...)
		refused = append(refused, r.refused...)
		if r.listFailed {
			listFailed++
		}
		targets += r.targets
		detailFailed += r.detailFailed
		problems = append(problems, r.problems...)
		errs = append(errs, r.errs...)
		run.RowsWritten += r.saved
	}

	run.Status = StatusOK
	if len(problems) > 0 {
		run.Status = StatusPartial
	}
	allListsFailed := len(homes) > 0 && listFailed == len(homes)
	allDetailsFailed := targets > 0 && detailFailed == targets
	if allListsFailed || allDetailsFailed {
		run.Status = StatusFailed
	}
	run.Error = summarize(problems, detailFailed, targets)
	run.Requests = m.requests()
	// What the run saw, whether or not it changed anything: the homes job
	// says "2 homes, 9 devices" even when the devices job stored them first.
	run.Progress = &model.RunProgress{Homes: len(homes), Devices: len(p.claimedDevices()), Requests: run.Requests, Fraction: 1}
	run.FinishedAt = s.now()

	// The homes list (removed homes), devices no active home lists any
	// more, category access and the run row, in the last transaction;
	// run.RowsWritten already counts the per-home transactions.
	saved, err := s.Store.SaveInventory(ctx, run, model.InventoryBatch{
		ObservedAt:     run.FinishedAt,
		Homes:          homes,
		GrantedScopes:  s.scopes(),
		SeenCategories: seenCats,
		ScopeRefused:   refused,
	})
	if err != nil {
		saveErr := fmt.Errorf("save inventory: %w", err)
		run.Status = StatusFailed
		run.Error = joinText(saveErr.Error(), run.Error)
		return s.record(ctx, run, m, saveErr)
	}
	run.ID, run.RowsWritten = saved.ID, saved.RowsWritten
	log.Debug("inventory saved", "homes", len(homes), "details", targets-detailFailed, "problems", len(problems))
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
