package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"runtime/debug"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/model"
)

// Scheduler defaults and limits.
const (
	// DefaultTick is how often the scheduler compares due times.
	DefaultTick = 30 * time.Second
	// MaxTick is the longest allowed tick: Go timers stop during suspend, so
	// the scheduler never waits long on one (R26).
	MaxTick = 60 * time.Second
	// DefaultStopTimeout is how long running jobs get to finish after the
	// scheduler's context is done, before their own context is cancelled.
	DefaultStopTimeout = 25 * time.Second
	// DefaultBreakerThreshold is how many consecutive failed runs open a
	// job's circuit breaker.
	DefaultBreakerThreshold = 5
	// BreakerBaseCooldown is the first cool-down of an opened breaker; each
	// further failed probe doubles it, up to BreakerMaxCooldown.
	BreakerBaseCooldown = time.Minute
	// BreakerMaxCooldown caps the cool-down.
	BreakerMaxCooldown = time.Hour
)

// stateTimeout bounds the store write of a job's state after a run.
const stateTimeout = 5 * time.Second

// Runner runs one job by name. *Syncer implements it.
type Runner interface {
	Run(ctx context.Context, job string) (model.Run, error)
}

// Job is one scheduled job: its name (what Runner.Run receives) and its
// robfig/cron spec ("*/5 * * * *", "@every 5m", "@hourly").
type Job struct {
	Name, Spec string
}

// Scheduler runs jobs on cron specs by the wall clock. It ticks every Tick
// (never longer than a minute, since timers stop during suspend) and starts
// each job whose persisted due time has passed. A job never overlaps itself
// and catches up at most once after downtime or a forward clock jump; a
// backward jump clamps the next due time. Repeated failures open a circuit
// breaker whose cool-down doubles up to an hour. All scheduling state is
// persisted through Store, so it survives restarts.
type Scheduler struct {
	// Jobs are the scheduled jobs; names must be unique.
	Jobs []Job
	// Runner runs a job (*Syncer).
	Runner Runner
	// Store persists each job's JobState.
	Store Store
	// Clock gives the wall-clock time all due-time logic uses (default clock.Real).
	Clock clock.Clock
	// Logger receives run results and scheduling events (default: discarded).
	Logger *slog.Logger
	// Tick is how often Run checks for due jobs (default 30s, at most 60s).
	Tick time.Duration
	// Jitter adds a random delay in [0, Jitter) to each computed next run.
	Jitter time.Duration
	// StopTimeout is how long running jobs get to finish after Run's context
	// is done before their context is cancelled (default 25s).
	StopTimeout time.Duration
	// Rand returns a number in [0, 1) for the jitter (default math/rand/v2).
	Rand func() float64
	// BreakerThreshold is how many consecutive failed runs open the breaker
	// (default 5).
	BreakerThreshold int
	// NotBefore, when set (e.g. the build time), is the earliest plausible
	// wall-clock time: while the clock is before it, nothing runs (R26).
	NotBefore time.Time
	// OnRun, when set, is called after every run (for metrics).
	OnRun func(model.Run, error)

	mu       sync.Mutex
	entries  map[string]*entry
	wg       sync.WaitGroup
	wake     chan struct{}
	initOnce sync.Once
	clockBad bool // a "clock is behind" warning is active
}

// entry is one job's in-memory scheduling state.
type entry struct {
	job      Job
	sched    cron.Schedule
	state    model.JobState
	loaded   bool
	running  bool
	trigger  bool
	warnedBO bool // the breaker opening was logged
}

func (s *Scheduler) init() {
	s.initOnce.Do(func() {
		s.wake = make(chan struct{}, 1)
		s.entries = map[string]*entry{}
	})
}

// Validate checks the jobs and knobs: every spec parses (standard five-field
// cron or a descriptor such as "@every 5m"), names are unique and non-empty,
// the tick is at most MaxTick and nothing is negative.
func (s *Scheduler) Validate() error {
	_, err := s.parse()
	return err
}

func (s *Scheduler) parse() (map[string]cron.Schedule, error) {
	var errs []error
	out := make(map[string]cron.Schedule, len(s.Jobs))
	for _, j := range s.Jobs {
		if j.Name == "" {
			errs = append(errs, errors.New("job with empty name"))
			continue
		}
		if _, dup := out[j.Name]; dup {
			errs = append(errs, fmt.Errorf("job %q listed twice", j.Name))
			continue
		}
		sched, err := cron.ParseStandard(j.Spec)
		if err != nil {
			errs = append(errs, fmt.Errorf("schedule of job %q: spec %q: %w", j.Name, j.Spec, err))
			continue
		}
		out[j.Name] = sched
	}
	if s.Tick > MaxTick {
		errs = append(errs, fmt.Errorf("tick %s is longer than %s", s.Tick, MaxTick))
	}
	if s.Tick < 0 || s.Jitter < 0 || s.StopTimeout < 0 || s.BreakerThreshold < 0 {
		errs = append(errs, errors.New("tick, jitter, stop timeout and breaker threshold must not be negative"))
	}
	if s.Runner == nil || s.Store == nil {
		errs = append(errs, errors.New("runner and store are required"))
	}
	return out, errors.Join(errs...)
}

func (s *Scheduler) now() time.Time {
	if s.Clock == nil {
		return time.Now()
	}
	return s.Clock.Now()
}

func (s *Scheduler) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Scheduler) threshold() int {
	if s.BreakerThreshold > 0 {
		return s.BreakerThreshold
	}
	return DefaultBreakerThreshold
}

// jitter returns a random delay in [0, Jitter).
func (s *Scheduler) jitter() time.Duration {
	if s.Jitter <= 0 {
		return 0
	}
	r := s.Rand
	if r == nil {
		r = rand.Float64
	}
	f := r()
	if f < 0 || f >= 1 {
		f = 0
	}
	return time.Duration(f * float64(s.Jitter))
}

// ensureEntries parses the specs into entries once. Jobs with a bad spec are
// left out (Run validates before starting).
func (s *Scheduler) ensureEntries() {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.entries) > 0 {
		return
	}
	scheds, _ := s.parse()
	for _, j := range s.Jobs {
		if sc, ok := scheds[j.Name]; ok {
			s.entries[j.Name] = &entry{job: j, sched: sc}
		}
	}
}

// load reads the persisted state of every job not loaded yet. A job whose
// state cannot be read is retried on the next tick and not run meanwhile.
func (s *Scheduler) load(ctx context.Context) {
	s.mu.Lock()
	var names []string
	for name, e := range s.entries {
		if !e.loaded {
			names = append(names, name)
		}
	}
	s.mu.Unlock()
	for _, name := range names {
		st, err := s.Store.JobState(ctx, name)
		if err != nil {
			s.logger().Warn("load job state", "job", name, "err", err)
			continue
		}
		st.Job = name
		s.mu.Lock()
		e := s.entries[name]
		e.state, e.loaded = st, true
		if st.BreakerUntil.After(s.now()) {
			e.warnedBO = true
			s.logger().Warn("circuit breaker open", "job", name, "until", st.BreakerUntil,
				"consecutive_failures", st.ConsecutiveFailures, "err", st.LastError)
		}
		s.mu.Unlock()
	}
}

// RunDue is one tick: it starts every due job that is not already running,
// each in its own goroutine owned by the scheduler, and returns the names
// started. Jobs started here get ctx as their parent context.
func (s *Scheduler) RunDue(ctx context.Context) []string {
	s.ensureEntries()
	if ctx.Err() != nil {
		return nil
	}
	s.load(ctx)
	now := s.now()
	log := s.logger()

	s.mu.Lock()
	defer s.mu.Unlock()

	// First bring every due time in line with the schedule, even while the
	// clock is implausible, so NextRuns shows sane values.
	for _, j := range s.Jobs {
		e := s.entries[j.Name]
		if e == nil || !e.loaded {
			continue
		}
		st := &e.state
		slot := e.sched.Next(now)
		switch {
		case st.NextRunAt.IsZero() && st.LastRunAt.IsZero():
			// Never run: the first start fetches soon.
			st.NextRunAt = now.Add(s.jitter())
		case st.NextRunAt.IsZero():
			st.NextRunAt = slot.Add(s.jitter())
		case st.NextRunAt.After(laterOf(slot.Add(s.Jitter), st.BreakerUntil)):
			// The clock went back: the persisted due time is further away
			// than the schedule allows. Clamp it.
			old := st.NextRunAt
			st.NextRunAt = laterOf(slot.Add(s.jitter()), st.BreakerUntil)
			log.Info("clock moved backward, next run clamped", "job", j.Name, "was", old, "next_run_at", st.NextRunAt)
		}
		if limit := now.Add(BreakerMaxCooldown); st.BreakerUntil.After(limit) {
			st.BreakerUntil = limit
			st.NextRunAt = laterOf(slot.Add(s.jitter()), st.BreakerUntil)
		}
	}
	if s.behindClock(now) {
		return nil
	}

	var started []string
	for _, j := range s.Jobs {
		e := s.entries[j.Name]
		if e == nil || !e.loaded {
			continue
		}
		st := &e.state
		due := e.trigger || (!now.Before(st.NextRunAt) && !now.Before(st.BreakerUntil))
		if !due {
			continue
		}
		if e.running {
			log.Debug("job still running, slot skipped", "job", j.Name)
			if !e.trigger {
				// A missed slot is never queued.
				st.NextRunAt = e.sched.Next(now).Add(s.jitter())
			}
			continue
		}
		e.trigger = false
		e.running = true
		started = append(started, j.Name)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.runJob(ctx, e)
		}()
	}
	return started
}

// behindClock reports whether the clock is earlier than every plausible
// time (NotBefore, or a job's last persisted run), and warns once while so.
// Called with s.mu held.
func (s *Scheduler) behindClock(now time.Time) bool {
	floor := s.NotBefore
	for _, e := range s.entries {
		if e.loaded {
			floor = laterOf(floor, e.state.LastRunAt)
		}
	}
	if now.Before(floor) {
		if !s.clockBad {
			s.clockBad = true
			s.logger().Warn("clock is earlier than the last run or the build time, waiting for the clock to be set",
				"now", now, "not_before", floor)
		}
		return true
	}
	if s.clockBad {
		s.clockBad = false
		s.logger().Info("clock is plausible again", "now", now)
	}
	return false
}

// runJob runs one job and records its result in the job's state.
func (s *Scheduler) runJob(ctx context.Context, e *entry) {
	name := e.job.Name
	log := s.logger().With("job", name)
	start := s.now()
	run, err := s.safeRun(ctx, name)
	if run.Job == "" {
		run.Job = name
	}
	if run.Status == "" {
		run.Status = StatusFailed
		if err == nil {
			err = errors.New("runner returned no status")
		}
	}
	end := s.now()
	interrupted := ctx.Err() != nil && run.Status == StatusFailed

	s.mu.Lock()
	st := &e.state
	st.LastRunAt = laterOf(start, st.LastRunAt)
	st.LastError = run.Error
	if st.LastError == "" && err != nil && run.Status != StatusOK {
		st.LastError = err.Error()
	}
	st.NextRunAt = e.sched.Next(end).Add(s.jitter())
	opened := false
	switch run.Status {
	case StatusOK, StatusPartial:
		if st.ConsecutiveFailures > 0 {
			log.Info("job recovered", "after_failures", st.ConsecutiveFailures)
		}
		st.LastSuccessAt = end
		st.ConsecutiveFailures = 0
		st.BreakerUntil = time.Time{}
	case StatusFailed:
		if interrupted {
			// Stopped by shutdown: not the API's fault; run again at the
			// next start.
			st.NextRunAt = end
			break
		}
		st.ConsecutiveFailures++
		var until time.Time
		if n := st.ConsecutiveFailures - s.threshold(); n >= 0 {
			until = end.Add(breakerCooldown(n))
		}
		if ra := min(RetryAfter(err), BreakerMaxCooldown); ra > 0 {
			until = laterOf(until, end.Add(ra))
		}
		if until.After(end) {
			st.BreakerUntil = until
			opened = true
		}
	case StatusSkipped:
		// Not authorized: neither a success nor a failure of the API.
	}
	st.NextRunAt = laterOf(st.NextRunAt, st.BreakerUntil)
	state := *st
	if opened {
		e.warnedBO = false
	}
	logOpen := opened && !e.warnedBO
	if logOpen {
		e.warnedBO = true
	}
	s.mu.Unlock()

	attrs := []any{"status", run.Status, "duration", end.Sub(start).Round(time.Millisecond),
		"requests", run.Requests, "rows_written", run.RowsWritten, "next_run_at", state.NextRunAt}
	switch {
	case logOpen:
		log.Warn("circuit breaker open", append(attrs, "until", state.BreakerUntil,
			"consecutive_failures", state.ConsecutiveFailures, "err", errText(err, run))...)
	case run.Status == StatusFailed && state.ConsecutiveFailures <= 1:
		log.Warn("job failed", append(attrs, "err", errText(err, run))...)
	case run.Status == StatusFailed:
		log.Debug("job failed again", append(attrs, "consecutive_failures", state.ConsecutiveFailures, "err", errText(err, run))...)
	case run.Status == StatusSkipped:
		log.Debug("job skipped", append(attrs, "err", errText(err, run))...)
	case run.Status == StatusPartial:
		log.Info("job finished with problems", append(attrs, "err", run.Error)...)
	default:
		log.Info("job finished", attrs...)
	}

	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stateTimeout)
	if serr := s.Store.SaveJobState(sctx, state); serr != nil {
		log.Error("save job state", "err", serr)
	}
	cancel()
	if s.OnRun != nil {
		s.OnRun(run, err)
	}

	s.mu.Lock()
	e.running = false
	retrigger := e.trigger
	s.mu.Unlock()
	if retrigger {
		s.poke()
	}
}

// safeRun calls the runner, turning a panic into a failed run.
func (s *Scheduler) safeRun(ctx context.Context, name string) (run model.Run, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.logger().Error("job panicked", "job", name, "panic", p, "stack", string(debug.Stack()))
			run = model.Run{Job: name, Status: StatusFailed, Error: "panic: " + panicText(p)}
			err = fmt.Errorf("job %s panicked: %s", name, panicText(p))
		}
	}()
	return s.Runner.Run(ctx, name)
}

// panicText describes a recovered panic value for the run's error, which
// goes to data.db and log lines as plain text. Errors, strings and numbers
// are printed; any other value only by its type, since fmt prints a
// logging.Secret held in an unexported field raw (R12). The log line's
// "panic" attribute keeps the value itself: the redacting handler checks it
// by type.
func panicText(p any) string {
	switch v := p.(type) {
	case error:
		return v.Error()
	case string:
		return v
	}
	switch reflect.ValueOf(p).Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.String:
		return fmt.Sprint(p)
	}
	return fmt.Sprintf("value of type %T", p)
}

func errText(err error, run model.Run) string {
	if err != nil {
		return err.Error()
	}
	return run.Error
}

// breakerCooldown is the cool-down after the n-th failure past the
// threshold (n = 0 for the opening failure): 1m, 2m, 4m, … capped at 1h.
func breakerCooldown(n int) time.Duration {
	d := BreakerBaseCooldown
	for range n {
		d *= 2
		if d >= BreakerMaxCooldown {
			return BreakerMaxCooldown
		}
	}
	return min(d, BreakerMaxCooldown)
}

// Trigger makes job run as soon as possible (at once under Run), bypassing
// its schedule and breaker; a job already running runs again right after it
// finishes, never concurrently. Unknown names are ignored.
func (s *Scheduler) Trigger(job string) {
	s.ensureEntries()
	s.mu.Lock()
	e := s.entries[job]
	if e != nil {
		e.trigger = true
	}
	s.mu.Unlock()
	if e != nil {
		s.poke()
	}
}

// poke wakes Run's loop without blocking.
func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Wait blocks until every job started so far has finished.
func (s *Scheduler) Wait() { s.wg.Wait() }

// NextRuns returns each loaded job's next due time (including an open
// breaker's delay).
func (s *Scheduler) NextRuns() map[string]time.Time {
	s.ensureEntries()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]time.Time, len(s.entries))
	for name, e := range s.entries {
		if e.loaded {
			out[name] = laterOf(e.state.NextRunAt, e.state.BreakerUntil)
		}
	}
	return out
}

// Run validates the jobs, then checks for due jobs at once and on every
// tick until ctx is done. The tick is a real-time ticker; every due-time
// decision uses Clock. When ctx is done, running jobs get StopTimeout to
// finish, then their context is cancelled; Run returns once they returned.
func (s *Scheduler) Run(ctx context.Context) error {
	if err := s.Validate(); err != nil {
		return fmt.Errorf("scheduler: %w", err)
	}
	s.ensureEntries()
	tick := s.Tick
	if tick <= 0 {
		tick = DefaultTick
	}
	stopTimeout := s.StopTimeout
	if stopTimeout <= 0 {
		stopTimeout = DefaultStopTimeout
	}
	// Jobs outlive ctx by up to stopTimeout, so they get their own context.
	jobCtx, cancelJobs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelJobs()

	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	s.RunDue(jobCtx)
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-ticker.C:
		case <-s.wake:
		}
		if ctx.Err() != nil {
			break loop
		}
		s.RunDue(jobCtx)
	}

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-done:
		return nil
	case <-timer.C:
	}
	s.logger().Warn("jobs still running at shutdown, cancelling them", "stop_timeout", stopTimeout)
	cancelJobs()
	<-done
	return nil
}
