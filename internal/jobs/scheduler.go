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
	// DefaultTick is the longest the scheduler sleeps between two checks
	// of the due times; it wakes earlier when a job is due.
	DefaultTick = 30 * time.Second
	// MaxTick is the longest allowed tick: Go timers stop during suspend and
	// do not follow wall-clock steps, so the scheduler never waits long on
	// one (R26).
	MaxTick = 60 * time.Second
	// JitterFraction bounds a job's jitter to this fraction of its interval
	// (the default 30 s jitter is a tenth of the default 5-minute devices
	// schedule), so that a short schedule such as "@every 2s" keeps its rhythm.
	JitterFraction = 10
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

// Scheduler runs jobs on cron specs by the wall clock. It sleeps until the
// earliest due time of a job that is not running (but never longer than
// Tick, so that suspend and clock steps are noticed within it), wakes at once
// on Trigger and when a job finishes, and starts each job whose persisted due
// time has passed. A job never overlaps itself and catches up at most once
// after downtime or a forward clock jump; a backward jump clamps the next due
// time. Repeated failures open a circuit breaker whose cool-down doubles up
// to an hour. All scheduling state is persisted through Store, so it
// survives restarts.
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
	// Tick is the longest Run sleeps between checks for due jobs (default
	// 30s, at most 60s); it wakes earlier whenever a job is due.
	Tick time.Duration
	// Jitter adds a random delay in [0, Jitter) to each computed next run,
	// bounded per job to a tenth of its interval (JitterFraction).
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
	clockBad bool      // a "clock is behind" warning is active
	lastNow  time.Time // wall-clock time of the previous RunDue (no monotonic reading)
}

// entry is one job's in-memory scheduling state.
type entry struct {
	job      Job
	sched    cron.Schedule
	state    model.JobState
	loaded   bool
	checked  bool // the loaded state was checked against the schedule once
	running  bool
	trigger  bool
	warnedBO bool // the breaker opening was logged
	// warnedFuture: the "saved times lie in the future" warning was logged.
	warnedFuture bool
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

// maxJitter is the jitter bound of e's run at slot: Jitter, but at most
// 1/JitterFraction of the interval that follows slot.
func (s *Scheduler) maxJitter(e *entry, slot time.Time) time.Duration {
	if s.Jitter <= 0 {
		return 0
	}
	return min(s.Jitter, e.sched.Next(slot).Sub(slot)/JitterFraction)
}

// nextSlot is e's next due time after t: the schedule's next slot plus jitter.
func (s *Scheduler) nextSlot(e *entry, t time.Time) time.Time {
	slot := e.sched.Next(t)
	return slot.Add(s.jitter(s.maxJitter(e, slot)))
}

// jitter returns a random delay in [0, limit).
func (s *Scheduler) jitter(limit time.Duration) time.Duration {
	if limit <= 0 {
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
	return time.Duration(f * float64(limit))
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
	log := s.logger()

	s.mu.Lock()
	defer s.mu.Unlock()
	// Read the clock under the lock: a run that finished before it was
	// taken is never newer than now, and two RunDue calls read it in order.
	now := s.now()

	// First bring every due time in line with the schedule, even while the
	// clock is implausible, so NextRuns shows sane values.
	wall := now.Round(0) // compare wall clocks: the monotonic one never goes back
	back := !s.lastNow.IsZero() && wall.Before(s.lastNow)
	if back {
		log.Info("clock moved backward", "from", s.lastNow, "to", wall)
	}
	s.lastNow = wall
	for _, j := range s.Jobs {
		e := s.entries[j.Name]
		if e == nil || !e.loaded {
			continue
		}
		s.suspectTimes(e, now)
		s.alignLocked(e, now, back)
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
				st.NextRunAt = s.nextSlot(e, now)
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

// suspectTimes warns once when a job's saved last or next run lies more
// than model.ClockSkewTolerance in the future: they were written while the
// clock was wrong (a Pi that booted ahead and was corrected). They are not
// trusted: at start-up a job whose last run is unknown is due at once, a
// next run far ahead is clamped to the schedule (alignLocked), and the last
// run is replaced by the next real one. Called with s.mu held, before
// alignLocked.
func (s *Scheduler) suspectTimes(e *entry, now time.Time) {
	st := &e.state
	future := model.InFuture(st.LastRunAt, now) || model.InFuture(st.LastSuccessAt, now)
	if !future && model.InFuture(st.NextRunAt, now) {
		// A next run far beyond the schedule's next slot is suspect too.
		future = st.NextRunAt.After(laterOf(e.sched.Next(e.sched.Next(now)).Add(s.Jitter), st.BreakerUntil))
	}
	if !future {
		e.warnedFuture = false
		return
	}
	if e.warnedFuture {
		return
	}
	e.warnedFuture = true
	if !e.checked && model.InFuture(st.LastRunAt, now) {
		// Found at start-up: when the job really ran last is unknown, so it
		// is due now, as after a first start (an open breaker still holds
		// it back). A step back while running is clamped to the schedule
		// instead (alignLocked): the last run was moments ago.
		st.NextRunAt = laterOf(now, st.BreakerUntil)
	}
	s.logger().Warn("saved run times lie in the future; the clock was probably corrected: running when due by the schedule",
		"job", e.job.Name, "now", now, "last_run_at", st.LastRunAt, "next_run_at", st.NextRunAt, "last_success_at", st.LastSuccessAt)
}

// alignLocked brings e's due time in line with its schedule at now. A due
// time further away than the schedule allows is clamped: after a backward
// clock step (back), or at the first check after loading, when the schedule
// or jitter was changed since the state was saved. It is logged only then,
// and only when the due time actually moved. Called with s.mu held.
func (s *Scheduler) alignLocked(e *entry, now time.Time, back bool) {
	st := &e.state
	first := !e.checked
	e.checked = true
	slot := e.sched.Next(now)
	limit := s.maxJitter(e, slot)
	switch {
	case st.NextRunAt.IsZero() && st.LastRunAt.IsZero():
		// Never run: the first start fetches soon.
		st.NextRunAt = now.Add(s.jitter(limit))
	case st.NextRunAt.IsZero():
		st.NextRunAt = slot.Add(s.jitter(limit))
	case st.NextRunAt.After(laterOf(slot.Add(limit), st.BreakerUntil)):
		old := st.NextRunAt
		st.NextRunAt = laterOf(slot.Add(s.jitter(limit)), st.BreakerUntil)
		switch {
		case st.NextRunAt.Equal(old):
		case back:
			s.logger().Info("clock moved backward, next run clamped", "job", e.job.Name, "was", old, "next_run_at", st.NextRunAt)
		case first:
			s.logger().Info("next run brought forward to the current schedule", "job", e.job.Name,
				"spec", e.job.Spec, "was", old, "next_run_at", st.NextRunAt)
		}
	}
	if limit := now.Add(BreakerMaxCooldown); st.BreakerUntil.After(limit) {
		st.BreakerUntil = limit
		st.NextRunAt = laterOf(slot.Add(s.jitter(s.maxJitter(e, slot))), st.BreakerUntil)
	}
}

// untilDue is how long Run may sleep at now: until the earliest due time of
// a job that is not running (at once for a triggered one), at most limit. A
// job whose state is not loaded yet, or an implausible clock, is checked
// again after limit.
func (s *Scheduler) untilDue(now time.Time, limit time.Duration) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.clockBad {
		return limit
	}
	wait := limit
	for _, e := range s.entries {
		switch {
		case !e.loaded || e.running:
			continue
		case e.trigger:
			return 0
		}
		wait = min(wait, laterOf(e.state.NextRunAt, e.state.BreakerUntil).Sub(now))
	}
	return max(wait, 0)
}

// behindClock reports whether the clock is earlier than NotBefore (the
// build time), and warns once while so. A saved last run in the future does
// not hold the scheduler back: that only stalled every job until the clock
// caught up with a time written while it was wrong. Called with s.mu held.
func (s *Scheduler) behindClock(now time.Time) bool {
	floor := s.NotBefore
	if now.Before(floor) {
		if !s.clockBad {
			s.clockBad = true
			s.logger().Warn("clock is earlier than the build time, waiting for the clock to be set",
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
	run, err = normalizeRun(name, run, err)
	end := s.now()

	s.mu.Lock()
	// The next slot counts from the start, so that "@every 30s" starts every
	// 30 s however long a run takes; a slot that passed during the run is
	// not queued.
	next := s.nextSlot(e, start)
	if !next.After(end) {
		next = s.nextSlot(e, end)
	}
	prev := e.state
	state, opened := nextState(prev, run, err, runTimes{
		start:       start,
		end:         end,
		next:        next,
		threshold:   s.threshold(),
		interrupted: ctx.Err() != nil && run.Status == StatusFailed,
	})
	e.state = state
	if opened {
		e.warnedBO = false
	}
	logOpen := opened && !e.warnedBO
	if logOpen {
		e.warnedBO = true
	}
	s.mu.Unlock()

	if (run.Status == StatusOK || run.Status == StatusPartial) && state.ConsecutiveFailures == 0 && prev.ConsecutiveFailures > 0 {
		log.Info("job recovered", "after_failures", prev.ConsecutiveFailures)
	}
	logRun(log, run, err, state, end.Sub(start), logOpen)

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
	s.mu.Unlock()
	// Run's loop sleeps until the earliest due time of the jobs not running;
	// this one's is new, and a trigger may be pending.
	s.poke()
}

// normalizeRun fills in what a runner left out: the job's name, and a failed
// status (with an error) when it returned none.
func normalizeRun(name string, run model.Run, err error) (model.Run, error) {
	if run.Job == "" {
		run.Job = name
	}
	if run.Status == "" {
		run.Status = StatusFailed
		if err == nil {
			err = errors.New("runner returned no status")
		}
	}
	return run, err
}

// runTimes is what nextState needs besides the state and the run.
type runTimes struct {
	start, end time.Time
	// next is the job's next slot, jitter included: the first after start
	// that is after end.
	next time.Time
	// threshold is how many consecutive failures open the breaker.
	threshold int
	// interrupted: the run failed because the scheduler was shutting down.
	interrupted bool
}

// CountedStatus is the status a finished run counts as for the job's
// state (job_state, /readyz, the metrics): run.Status, except that a
// partial run that met a 429 (or the closed rate gate) or that a storm
// ended counts as failed — it stored something, but it is not a success
// that resets the backoff (issue 17). Every place that judges a run uses
// this one rule.
func CountedStatus(run model.Run, err error) string {
	if run.Status == StatusPartial && (RateLimited(err) || errors.Is(err, ErrStorm)) {
		return StatusFailed
	}
	return run.Status
}

// nextState is the scheduling rule, without side effects: the job's state
// after run (which returned err), and whether the circuit breaker opened or
// was extended. A success or a partial run clears the failures and the
// breaker; a failure counts, and from the threshold on it opens the breaker
// for a doubling cool-down, at least as long as a Retry-After carried by
// err; a skipped run (not authorized) changes neither; a run interrupted by
// shutdown is due again at once and not counted.
func nextState(st model.JobState, run model.Run, err error, at runTimes) (model.JobState, bool) {
	st.LastRunAt = laterOf(at.start, st.LastRunAt)
	if model.InFuture(st.LastRunAt, at.start) {
		st.LastRunAt = at.start // saved while the clock was wrong
	}
	st.LastError = run.Error
	if st.LastError == "" && err != nil && run.Status != StatusOK {
		st.LastError = err.Error()
	}
	st.NextRunAt = at.next
	opened := false
	switch CountedStatus(run, err) {
	case StatusOK, StatusPartial:
		st.LastSuccessAt = at.end
		st.ConsecutiveFailures = 0
		st.BreakerUntil = time.Time{}
	case StatusFailed, StatusInterrupted:
		if at.interrupted || run.Status == StatusInterrupted {
			// Stopped by shutdown: not the API's fault; run again at the
			// next start.
			st.NextRunAt = at.end
			break
		}
		st.ConsecutiveFailures++
		var until time.Time
		if n := st.ConsecutiveFailures - at.threshold; n >= 0 {
			until = at.end.Add(breakerCooldown(n))
		}
		if ra := min(RetryAfter(err), BreakerMaxCooldown); ra > 0 {
			until = laterOf(until, at.end.Add(ra))
		}
		if until.After(at.end) {
			st.BreakerUntil = until
			opened = true
		}
	case StatusSkipped:
		// Not authorized: neither a success nor a failure of the API.
	}
	st.NextRunAt = laterOf(st.NextRunAt, st.BreakerUntil)
	return st, opened
}

// logRun writes the one line that reports a finished run.
func logRun(log *slog.Logger, run model.Run, err error, state model.JobState, took time.Duration, breakerOpened bool) {
	attrs := []any{"status", run.Status, "duration", took.Round(time.Millisecond),
		"requests", run.Requests, "rows_written", run.RowsWritten, "next_run_at", state.NextRunAt}
	switch {
	case breakerOpened:
		log.Warn("circuit breaker open", append(attrs, "until", state.BreakerUntil,
			"consecutive_failures", state.ConsecutiveFailures, "err", errText(err, run))...)
	case run.Status == StatusFailed && state.ConsecutiveFailures <= 1:
		log.Warn("job failed", append(attrs, "err", errText(err, run))...)
	case run.Status == StatusFailed:
		log.Debug("job failed again", append(attrs, "consecutive_failures", state.ConsecutiveFailures, "err", errText(err, run))...)
	case run.Status == StatusInterrupted:
		log.Info("job interrupted by shutdown; it resumes at the next start", attrs...)
	case run.Status == StatusSkipped:
		log.Debug("job skipped", append(attrs, "err", errText(err, run))...)
	case run.Status == StatusPartial:
		log.Info("job finished with problems", append(attrs, "err", run.Error)...)
	default:
		log.Info("job finished", attrs...)
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

// Run validates the jobs, then starts the due jobs at once and again
// whenever the next one is due: it sleeps until the earliest due time of the
// jobs not running, at most Tick (so that suspend and wall-clock steps, which
// timers do not see, are noticed within it), and wakes early on Trigger and
// when a job finishes. The sleep is a real-time timer; every due-time
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
	// A resumable history run stops at its next page once ctx is done.
	jobCtx = WithStop(jobCtx, ctx.Done())

	timer := time.NewTimer(tick)
	defer timer.Stop()
	for ctx.Err() == nil {
		s.RunDue(jobCtx)
		timer.Reset(s.untilDue(s.now(), tick))
		select {
		case <-ctx.Done():
		case <-timer.C:
		case <-s.wake:
		}
	}

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	grace := time.NewTimer(stopTimeout)
	defer grace.Stop()
	select {
	case <-done:
		return nil
	case <-grace.C:
	}
	s.logger().Warn("jobs still running at shutdown, cancelling them", "stop_timeout", stopTimeout)
	cancelJobs()
	<-done
	return nil
}
