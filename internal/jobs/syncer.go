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
}

// Run runs the job with the given name once: "homes", "devices" or "history".
// It implements the scheduler's Runner.
func (s *Syncer) Run(ctx context.Context, job string) (model.Run, error) {
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
	return err != nil && (errors.Is(err, model.ErrNotAuthorized) || errors.Is(err, model.ErrTokenBackoff))
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
	if errors.Is(cause, model.ErrNotAuthorized) {
		run.Status = StatusSkipped
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
}

// pipeline is the shared state of one inventory run's fetches.
type pipeline struct {
	s           *Syncer
	m           *meter
	log         *slog.Logger
	withDetails bool
	slots       chan struct{} // one token per request in flight

	mu      sync.Mutex
	claimed map[string]bool // device ids whose detail some home fetches
	stopErr error           // a token error: no further call may be made
	cancel  context.CancelFunc
}

// call runs one API call in a concurrency slot. It returns false without
// calling when the run is stopping.
func (p *pipeline) call(ctx context.Context, f func() error) bool {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	defer func() { <-p.slots }()
	if ctx.Err() != nil {
		return false
	}
	err := f()
	p.m.done(err)
	if isTokenError(err) {
		p.mu.Lock()
		if p.stopErr == nil {
			p.stopErr = err
		}
		p.mu.Unlock()
		p.cancel()
	}
	return true
}

// claim reports whether this home fetches the detail of id (the first
// home whose list names a device does).
func (p *pipeline) claim(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.claimed[id] {
		return false
	}
	p.claimed[id] = true
	return true
}

// home fetches one home's device list, then the details of the devices it
// claims, all at once within the slots, and saves the home in one
// transaction once everything is in. Nothing is saved when the run stops.
func (p *pipeline) home(ctx context.Context, h model.Home) homeResult {
	var r homeResult
	var (
		devs    []model.Device
		listErr error
	)
	if !p.call(ctx, func() error {
		devs, listErr = p.s.API.Devices(ctx, h.ID)
		return listErr
	}) || ctx.Err() != nil {
		return r
	}
	if listErr != nil {
		r.listFailed = true
		r.errs = append(r.errs, listErr)
		r.problems = append(r.problems, fmt.Sprintf("device list of home %s: %v", h.ID, listErr))
		p.log.Warn("device list skipped", "home_id", h.ID, "err", listErr)
		return r
	}
	devs = cleanDevices(devs, h.ID, &r.problems)
	var targets []model.Device
	if p.withDetails {
		for _, d := range devs {
			if p.claim(d.ID) {
				targets = append(targets, d)
			}
		}
	}
	r.targets = len(targets)
	results := make([]detailResult, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.call(ctx, func() error {
				dev, err := p.s.API.Device(ctx, h.ID, t.ID)
				results[i] = detailResult{attempted: true, dev: dev, err: err}
				return err
			})
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return r
	}
	var details []model.Device
	for i, res := range results {
		t := targets[i]
		if !res.attempted && res.err == nil {
			res.err = errors.New("not fetched: run stopped")
		}
		if res.err == nil {
			res.err = checkDetail(t, &res.dev)
		}
		if res.err != nil {
			r.detailFailed++
			r.errs = append(r.errs, res.err)
			r.problems = append(r.problems, fmt.Sprintf("device %s: %v", deviceLabel(t), res.err))
			p.log.Warn("device detail skipped", "device_id", t.ID, "home_id", h.ID, "err", res.err)
			continue
		}
		details = append(details, res.dev)
	}
	if !p.withDetails {
		details = nil
	}
	n, err := p.s.Store.SaveHomeInventory(ctx, model.InventoryBatch{
		ObservedAt:  p.s.now(),
		Homes:       []model.Home{h},
		HomeDevices: map[string][]model.Device{h.ID: devs},
		Details:     details,
	})
	if err != nil {
		err = fmt.Errorf("save home %s: %w", h.ID, err)
		r.errs = append(r.errs, err)
		r.problems = append(r.problems, err.Error())
		r.listFailed = true
		p.log.Warn("home not saved", "home_id", h.ID, "err", err)
		return r
	}
	r.saved = n
	return r
}

// detailResult is the outcome of one detail fetch.
type detailResult struct {
	attempted bool
	dev       model.Device
	err       error
}

func (s *Syncer) runInventory(ctx context.Context, job string, withDetails bool) (model.Run, error) {
	run := model.Run{Job: job, StartedAt: s.now()}
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
		slots:   make(chan struct{}, s.concurrency()),
		claimed: map[string]bool{},
		cancel:  cancel,
	}
	results := make([]homeResult, len(homes))
	var wg sync.WaitGroup
	for i, h := range homes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = p.home(pctx, h)
		}()
	}
	wg.Wait()
	if p.stopErr != nil {
		return s.abort(ctx, run, m, fmt.Errorf("fetch devices: %w", p.stopErr))
	}
	if err := ctx.Err(); err != nil {
		return s.abort(ctx, run, m, fmt.Errorf("fetch devices: %w", err))
	}
	listFailed, targets, detailFailed := 0, 0, 0
	for _, r := range results {
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
	run.FinishedAt = s.now()

	// The homes list (removed homes), devices no active home lists any
	// more, category access and the run row, in the last transaction;
	// run.RowsWritten already counts the per-home transactions.
	saved, err := s.Store.SaveInventory(ctx, run, model.InventoryBatch{
		ObservedAt:    run.FinishedAt,
		Homes:         homes,
		GrantedScopes: s.scopes(),
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
