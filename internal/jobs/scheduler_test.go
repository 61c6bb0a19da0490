package jobs_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/tibber"
)

// base is a wall-clock time on a 5-minute boundary.
var base = time.Date(2026, 9, 14, 12, 0, 0, 0, time.UTC)

func newScheduler(clk *clock.Fake, st *fakeStore, r *fakeRunner, logs *logBuffer, jobList ...jobs.Job) *jobs.Scheduler {
	if len(jobList) == 0 {
		jobList = []jobs.Job{{Name: "devices", Spec: "*/5 * * * *"}}
	}
	s := &jobs.Scheduler{Jobs: jobList, Runner: r, Store: st, Clock: clk}
	if logs != nil {
		s.Logger = newLogger(logs)
	}
	return s
}

// tick runs one RunDue and waits for the jobs it started.
func tick(t *testing.T, s *jobs.Scheduler) []string {
	t.Helper()
	started := s.RunDue(context.Background())
	done := make(chan struct{})
	go func() { s.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("jobs did not finish")
	}
	return started
}

// tickFor ticks every 30 s of fake time for d and returns how many runs started.
func tickFor(t *testing.T, s *jobs.Scheduler, clk *clock.Fake, d time.Duration) int {
	t.Helper()
	n := 0
	for end := clk.Now().Add(d); clk.Now().Before(end); clk.Advance(30 * time.Second) {
		n += len(tick(t, s))
	}
	return n
}

func TestSchedulerValidate(t *testing.T) {
	r := &fakeRunner{}
	st := newFakeStore(nil)
	good := &jobs.Scheduler{Runner: r, Store: st, Jobs: []jobs.Job{
		{Name: "devices", Spec: "*/5 * * * *"}, {Name: "homes", Spec: "@every 1h"}, {Name: "history", Spec: "@hourly"},
	}}
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	for name, s := range map[string]*jobs.Scheduler{
		"BadSpec":   {Runner: r, Store: st, Jobs: []jobs.Job{{Name: "devices", Spec: "every five minutes"}}},
		"Duplicate": {Runner: r, Store: st, Jobs: []jobs.Job{{Name: "a", Spec: "@hourly"}, {Name: "a", Spec: "@daily"}}},
		"LongTick":  {Runner: r, Store: st, Tick: 2 * time.Minute, Jobs: []jobs.Job{{Name: "a", Spec: "@hourly"}}},
		"NoRunner":  {Store: st, Jobs: []jobs.Job{{Name: "a", Spec: "@hourly"}}},
	} {
		t.Run(name, func(t *testing.T) {
			if err := s.Validate(); err == nil {
				t.Fatal("Validate accepted it")
			}
			if err := s.Run(context.Background()); err == nil {
				t.Fatal("Run started with an invalid configuration")
			}
		})
	}
}

func TestSchedulerNeverRunRunsOnFirstTick(t *testing.T) {
	clk := clock.NewFake(base.Add(90 * time.Second))
	st, r := newFakeStore(nil), &fakeRunner{}
	s := newScheduler(clk, st, r, nil)
	if got := tick(t, s); len(got) != 1 || got[0] != "devices" {
		t.Fatalf("first tick started %v, want [devices]", got)
	}
	state := st.State("devices")
	if !state.LastRunAt.Equal(clk.Now()) || !state.LastSuccessAt.Equal(clk.Now()) {
		t.Fatalf("state = %+v, want last run and success now", state)
	}
	if want := base.Add(5 * time.Minute); !state.NextRunAt.Equal(want) {
		t.Fatalf("NextRunAt = %v, want the next slot %v", state.NextRunAt, want)
	}
	if n := tickFor(t, s, clk, 3*time.Minute); n != 0 {
		t.Fatalf("%d runs before the next slot, want 0", n)
	}
	if n := tickFor(t, s, clk, 5*time.Minute); n != 1 {
		t.Fatalf("%d runs in the next 5 minutes, want 1", n)
	}
}

func TestSchedulerOneCatchUpAfterDowntime(t *testing.T) {
	st, r := newFakeStore(nil), &fakeRunner{}
	// The daemon was down for 5 hours: 60 slots were missed.
	st.states["devices"] = model.JobState{Job: "devices", LastRunAt: base, LastSuccessAt: base, NextRunAt: base.Add(5 * time.Minute)}
	clk := clock.NewFake(base.Add(5*time.Hour + 10*time.Second))
	s := newScheduler(clk, st, r, nil)
	if got := tick(t, s); len(got) != 1 {
		t.Fatalf("first tick after downtime started %v, want one catch-up", got)
	}
	if n := tickFor(t, s, clk, 4*time.Minute); n != 0 {
		t.Fatalf("%d more runs right after the catch-up, want 0 (no burst)", n)
	}
	if got, want := r.Calls("devices"), 1; got != want {
		t.Fatalf("runs = %d, want %d", got, want)
	}
	if want := base.Add(5*time.Hour + 5*time.Minute); !st.State("devices").NextRunAt.Equal(want) {
		t.Fatalf("NextRunAt = %v, want %v", st.State("devices").NextRunAt, want)
	}
}

func TestSchedulerForwardJumpRunsOnce(t *testing.T) {
	clk := clock.NewFake(base)
	st, r := newFakeStore(nil), &fakeRunner{}
	s := newScheduler(clk, st, r, nil)
	tick(t, s)
	clk.Advance(2 * time.Hour)
	if n := tickFor(t, s, clk, 2*time.Minute); n != 1 {
		t.Fatalf("%d runs after a +2h jump, want exactly 1", n)
	}
}

func TestSchedulerBackwardJump(t *testing.T) {
	clk := clock.NewFake(base)
	st, r := newFakeStore(nil), &fakeRunner{}
	logs := &logBuffer{}
	s := newScheduler(clk, st, r, logs)
	tick(t, s)
	lastRun := st.State("devices").LastRunAt

	clk.Advance(-time.Hour)
	// The clock went back behind the last run (an NTP correction). The
	// far due time is clamped to the schedule and the job keeps running on
	// it: one run per slot, no burst and no stall until the clock catches
	// up with a time written while it was wrong (issue 17, item 5).
	if n := tickFor(t, s, clk, 50*time.Minute); n != 9 {
		t.Fatalf("%d runs in 50 minutes after the clock went back 1 h, want 9 (one per slot after now)", n)
	}
	next := s.NextRuns()["devices"]
	if limit := clk.Now().Add(5 * time.Minute); next.After(limit) {
		t.Fatalf("NextRuns = %v, want clamped to at most %v", next, limit)
	}
	if logs.Lines("saved run times lie in the future") != 1 {
		t.Fatalf("want exactly one warning about the future run times, logs:\n%s", logs)
	}
	if got := st.State("devices").LastRunAt; got.After(clk.Now()) || got.Before(lastRun.Add(-time.Hour)) {
		t.Fatalf("saved last run %v, want a real one before now %v", got, clk.Now())
	}
	// Once the clock passes the old last run, the schedule goes on as before.
	clk.Set(lastRun.Add(time.Second))
	if n := tickFor(t, s, clk, 15*time.Minute); n != 3 {
		t.Fatalf("%d runs in 15 minutes after the clock caught up, want 3", n)
	}
}

// A daemon restarted after its clock was corrected (a Pi that booted 48 h
// ahead): the saved last and next run lie two days in the future. It used to
// wait until the clock passed them; now it runs when due and warns once.
func TestSchedulerRestartAfterClockCorrection(t *testing.T) {
	clk := clock.NewFake(base)
	st, r := newFakeStore(nil), &fakeRunner{}
	ahead := base.Add(48 * time.Hour)
	st.states["devices"] = model.JobState{Job: "devices", LastRunAt: ahead, LastSuccessAt: ahead, NextRunAt: ahead.Add(5 * time.Minute)}
	logs := &logBuffer{}
	s := newScheduler(clk, st, r, logs)
	s.NotBefore = base.Add(-24 * time.Hour)
	if n := tickFor(t, s, clk, 15*time.Minute); n != 3 {
		t.Fatalf("%d runs in 15 minutes after a restart with run times 48 h ahead, want 3", n)
	}
	if logs.Lines("saved run times lie in the future") != 1 || logs.Lines("clock is earlier") != 0 {
		t.Fatalf("want one warning about the saved times and none about the clock:\n%s", logs)
	}
	got := st.State("devices")
	if got.LastRunAt.After(clk.Now()) || got.LastSuccessAt.After(clk.Now()) {
		t.Fatalf("state still in the future after runs: %+v", got)
	}
}

func TestSchedulerClockAt1970DoesNotRun(t *testing.T) {
	st, r := newFakeStore(nil), &fakeRunner{}
	st.states["devices"] = model.JobState{Job: "devices", LastRunAt: base, NextRunAt: base.Add(5 * time.Minute)}
	clk := clock.NewFake(time.Unix(30, 0).UTC())
	logs := &logBuffer{}
	s := newScheduler(clk, st, r, logs, jobs.Job{Name: "devices", Spec: "*/5 * * * *"}, jobs.Job{Name: "homes", Spec: "@hourly"})
	s.NotBefore = base.Add(-24 * time.Hour) // the build time, as the daemon sets it
	if n := tickFor(t, s, clk, 30*time.Minute); n != 0 {
		t.Fatalf("%d runs with the clock at 1970, want 0", n)
	}
	if got := logs.Lines("clock is earlier"); got != 1 {
		t.Fatalf("%d clock warnings, want 1:\n%s", got, logs)
	}

	// NotBefore alone (a fresh install, no run yet) also holds everything back.
	st2 := newFakeStore(nil)
	s2 := newScheduler(clk, st2, r, nil)
	s2.NotBefore = base
	if got := tick(t, s2); len(got) != 0 {
		t.Fatalf("started %v before NotBefore", got)
	}
	clk.Set(base.Add(time.Minute))
	if got := tick(t, s2); len(got) != 1 {
		t.Fatalf("started %v once the clock is plausible, want one job", got)
	}
}

func TestSchedulerNeverOverlaps(t *testing.T) {
	clk := clock.NewFake(base)
	st := newFakeStore(nil)
	release := make(chan struct{})
	var concurrent, peak atomic.Int32
	r := &fakeRunner{RunFn: func(ctx context.Context, job string) (model.Run, error) {
		c := concurrent.Add(1)
		defer concurrent.Add(-1)
		if c > peak.Load() {
			peak.Store(c)
		}
		<-release
		return model.Run{Job: job, Status: jobs.StatusOK}, nil
	}}
	s := newScheduler(clk, st, r, nil)
	if got := s.RunDue(context.Background()); len(got) != 1 {
		t.Fatalf("started %v, want the job", got)
	}
	for range 20 { // 10 minutes of ticks while the job hangs
		clk.Advance(30 * time.Second)
		if got := s.RunDue(context.Background()); len(got) != 0 {
			t.Fatalf("started %v while the job is still running", got)
		}
	}
	close(release)
	s.Wait()
	if r.Calls("devices") != 1 || peak.Load() != 1 {
		t.Fatalf("calls = %d, peak = %d; want 1 and 1", r.Calls("devices"), peak.Load())
	}
	// The missed slots are not queued: the next run is the next slot.
	if next, want := s.NextRuns()["devices"], base.Add(15*time.Minute); !next.Equal(want) {
		t.Fatalf("NextRuns = %v, want %v", next, want)
	}
}

func TestSchedulerBreaker(t *testing.T) {
	clk := clock.NewFake(base)
	st := newFakeStore(nil)
	logs := &logBuffer{}
	var fail atomic.Bool
	fail.Store(true)
	r := &fakeRunner{RunFn: func(ctx context.Context, job string) (model.Run, error) {
		if fail.Load() {
			return model.Run{Job: job, Status: jobs.StatusFailed, Error: "503"}, errors.New("status 503")
		}
		return model.Run{Job: job, Status: jobs.StatusOK}, nil
	}}
	s := newScheduler(clk, st, r, logs, jobs.Job{Name: "devices", Spec: "@every 30s"})

	var cooldowns []time.Duration
	for i := 1; i <= 12; i++ {
		if got := tick(t, s); len(got) != 1 {
			t.Fatalf("failure %d: started %v, want a run", i, got)
		}
		state := st.State("devices")
		if state.ConsecutiveFailures != i {
			t.Fatalf("ConsecutiveFailures = %d, want %d", state.ConsecutiveFailures, i)
		}
		if i < 5 {
			if !state.BreakerUntil.IsZero() {
				t.Fatalf("breaker open after %d failures", i)
			}
		} else {
			cooldowns = append(cooldowns, state.BreakerUntil.Sub(clk.Now()))
			// Closed-breaker ticks until just before the end run nothing and
			// log nothing new.
			clk.Set(state.BreakerUntil.Add(-time.Second))
			if got := tick(t, s); len(got) != 0 {
				t.Fatalf("started %v while the breaker is open", got)
			}
		}
		clk.Set(s.NextRuns()["devices"])
	}
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute,
		16 * time.Minute, 32 * time.Minute, time.Hour, time.Hour}
	if len(cooldowns) != len(want) {
		t.Fatalf("cooldowns = %v", cooldowns)
	}
	for i := range want {
		if cooldowns[i] != want[i] {
			t.Fatalf("cooldowns = %v, want %v", cooldowns, want)
		}
	}
	if got := logs.Lines("circuit breaker open"); got != len(want) {
		t.Fatalf("%d breaker warnings, want one per opening (%d)", got, len(want))
	}

	// The probe after the cool-down succeeds and closes the breaker.
	fail.Store(false)
	if got := tick(t, s); len(got) != 1 {
		t.Fatalf("probe not started: %v", got)
	}
	if state := st.State("devices"); state.ConsecutiveFailures != 0 || !state.BreakerUntil.IsZero() || !state.LastSuccessAt.Equal(clk.Now()) {
		t.Fatalf("state after a good probe = %+v", state)
	}
	if logs.Lines("job recovered") != 1 {
		t.Fatalf("want one recovery line:\n%s", logs)
	}
}

func TestSchedulerBreakerHonoursRetryAfter(t *testing.T) {
	clk := clock.NewFake(base)
	st := newFakeStore(nil)
	retryAfter := 20 * time.Minute
	r := &fakeRunner{RunFn: func(ctx context.Context, job string) (model.Run, error) {
		err := errors.Join(errors.New("device a: boom"),
			&tibber.APIError{Status: http.StatusTooManyRequests, RetryAfter: retryAfter})
		return model.Run{Job: job, Status: jobs.StatusFailed, Error: "429"}, err
	}}
	s := newScheduler(clk, st, r, nil)
	tick(t, s)
	state := st.State("devices")
	if got := state.BreakerUntil.Sub(clk.Now()); got != retryAfter {
		t.Fatalf("breaker after one 429 = %v, want Retry-After %v", got, retryAfter)
	}
	if n := tickFor(t, s, clk, retryAfter-time.Second); n != 0 {
		t.Fatalf("%d runs before Retry-After elapsed", n)
	}
	if n := tickFor(t, s, clk, time.Minute); n != 1 {
		t.Fatalf("%d runs right after Retry-After, want 1", n)
	}

	// At the threshold, a Retry-After longer than the cool-down wins.
	clk.Advance(5 * time.Minute)
	st.states["devices"] = model.JobState{Job: "devices", ConsecutiveFailures: 4, LastRunAt: clk.Now().Add(-time.Minute), NextRunAt: clk.Now()}
	s2 := newScheduler(clk, st, r, nil)
	retryAfter = 10 * time.Minute
	tick(t, s2)
	if got := st.State("devices").BreakerUntil.Sub(clk.Now()); got != 10*time.Minute {
		t.Fatalf("breaker at threshold with Retry-After 10m = %v, want 10m", got)
	}
}

func TestSchedulerSkippedDoesNotCount(t *testing.T) {
	clk := clock.NewFake(base)
	st := newFakeStore(nil)
	st.states["devices"] = model.JobState{Job: "devices", ConsecutiveFailures: 3, NextRunAt: base, LastRunAt: base.Add(-5 * time.Minute)}
	r := &fakeRunner{RunFn: func(ctx context.Context, job string) (model.Run, error) {
		return model.Run{Job: job, Status: jobs.StatusSkipped, Error: "not authorized"}, errors.New("not authorized")
	}}
	s := newScheduler(clk, st, r, nil)
	tick(t, s)
	state := st.State("devices")
	if state.ConsecutiveFailures != 3 || !state.LastSuccessAt.IsZero() || state.LastError != "not authorized" {
		t.Fatalf("state after a skipped run = %+v", state)
	}
}

func TestSchedulerJitter(t *testing.T) {
	const jitter = 30 * time.Second
	for _, rv := range []float64{0, 0.5, 0.999999} {
		clk := clock.NewFake(base)
		st := newFakeStore(nil)
		st.states["devices"] = model.JobState{Job: "devices", LastRunAt: base.Add(-5 * time.Minute), NextRunAt: base}
		s := newScheduler(clk, st, &fakeRunner{}, nil)
		s.Jitter = jitter
		s.Rand = func() float64 { return rv }
		tick(t, s)
		got := st.State("devices").NextRunAt.Sub(base.Add(5 * time.Minute))
		if want := time.Duration(rv * float64(jitter)); got != want || got < 0 || got >= jitter {
			t.Fatalf("rand %v: jitter = %v, want %v within [0, %v)", rv, got, want, jitter)
		}
	}
	// With the default random source every delay stays in [0, Jitter).
	clk := clock.NewFake(base)
	st := newFakeStore(nil)
	st.states["devices"] = model.JobState{Job: "devices", LastRunAt: base.Add(-time.Minute), NextRunAt: base}
	s := newScheduler(clk, st, &fakeRunner{}, nil, jobs.Job{Name: "devices", Spec: "@every 1m"})
	s.Jitter = jitter
	seen := map[time.Duration]bool{}
	for range 50 {
		tick(t, s)
		now := clk.Now()
		next := st.State("devices").NextRunAt
		d := next.Sub(now.Truncate(time.Second).Add(time.Minute)) // @every rounds to whole seconds
		// Bounded to a tenth of the 1-minute interval.
		if limit := time.Minute / jobs.JitterFraction; d < 0 || d >= limit {
			t.Fatalf("jitter %v outside [0, %v)", d, limit)
		}
		seen[d] = true
		clk.Set(next)
	}
	if len(seen) < 10 {
		t.Fatalf("only %d distinct jitter values in 50 runs", len(seen))
	}
}

func TestSchedulerStatePersistedAndReloaded(t *testing.T) {
	clk := clock.NewFake(base)
	st := newFakeStore(nil)
	jobList := []jobs.Job{{Name: "devices", Spec: "*/5 * * * *"}, {Name: "homes", Spec: "0 * * * *"}}
	a := newScheduler(clk, st, &fakeRunner{}, nil, jobList...)
	tick(t, a)
	want := a.NextRuns()

	clk.Advance(time.Minute) // restart a minute later
	r := &fakeRunner{}
	b := newScheduler(clk, st, r, nil, jobList...)
	if got := tick(t, b); len(got) != 0 {
		t.Fatalf("restarted scheduler ran %v, want nothing due", got)
	}
	got := b.NextRuns()
	for _, j := range jobList {
		if !got[j.Name].Equal(want[j.Name]) {
			t.Fatalf("NextRuns[%s] after restart = %v, want %v", j.Name, got[j.Name], want[j.Name])
		}
	}
	if want := base.Add(time.Hour); !got["homes"].Equal(want) {
		t.Fatalf("homes next = %v, want %v", got["homes"], want)
	}
}

func TestSchedulerTrigger(t *testing.T) {
	clk := clock.NewFake(base)
	st := newFakeStore(nil)
	release := make(chan struct{}, 10)
	r := &fakeRunner{RunFn: func(ctx context.Context, job string) (model.Run, error) {
		<-release
		return model.Run{Job: job, Status: jobs.StatusOK}, nil
	}}
	s := newScheduler(clk, st, r, nil, jobs.Job{Name: "homes", Spec: "0 * * * *"})
	release <- struct{}{}
	tick(t, s)
	clk.Advance(time.Minute)
	s.Trigger("homes")
	s.Trigger("nonexistent")
	if got := s.RunDue(context.Background()); len(got) != 1 {
		t.Fatalf("triggered job not started: %v", got)
	}
	// Triggered again while running: it waits for the run to finish.
	s.Trigger("homes")
	if got := s.RunDue(context.Background()); len(got) != 0 {
		t.Fatalf("trigger started an overlapping run: %v", got)
	}
	release <- struct{}{}
	s.Wait()
	release <- struct{}{}
	if got := tick(t, s); len(got) != 1 {
		t.Fatalf("pending trigger not run after the job finished: %v", got)
	}
	if got := tick(t, s); len(got) != 0 {
		t.Fatalf("a trigger ran twice: %v", got)
	}
	if r.Calls("homes") != 3 {
		t.Fatalf("runs = %d, want 3", r.Calls("homes"))
	}
}

func TestSchedulerRecoversPanic(t *testing.T) {
	clk := clock.NewFake(base)
	st := newFakeStore(nil)
	var got model.Run
	r := &fakeRunner{RunFn: func(ctx context.Context, job string) (model.Run, error) { panic("boom") }}
	s := newScheduler(clk, st, r, nil)
	s.OnRun = func(run model.Run, err error) { got = run }
	tick(t, s)
	if got.Status != jobs.StatusFailed || !strings.Contains(got.Error, "boom") {
		t.Fatalf("run after a panic = %+v", got)
	}
	if st.State("devices").ConsecutiveFailures != 1 {
		t.Fatalf("state = %+v, want one failure", st.State("devices"))
	}
}

func TestSchedulerRunStopsWithinStopTimeout(t *testing.T) {
	clk := clock.NewFake(base)
	st := newFakeStore(nil)
	started := make(chan string, 2)
	var homesCtxErr atomic.Value
	finishDevices := make(chan struct{})
	r := &fakeRunner{RunFn: func(ctx context.Context, job string) (model.Run, error) {
		started <- job
		switch job {
		case "homes": // ignores shutdown until its ctx is cancelled
			<-ctx.Done()
			homesCtxErr.Store(ctx.Err())
			return model.Run{Job: job, Status: jobs.StatusFailed, Error: "interrupted"}, ctx.Err()
		default: // finishes within the grace period
			<-finishDevices
			if ctx.Err() != nil {
				return model.Run{Job: job, Status: jobs.StatusFailed}, ctx.Err()
			}
			return model.Run{Job: job, Status: jobs.StatusOK}, nil
		}
	}}
	s := newScheduler(clk, st, r, nil,
		jobs.Job{Name: "homes", Spec: "@hourly"}, jobs.Job{Name: "devices", Spec: "*/5 * * * *"})
	s.Tick = 10 * time.Millisecond
	s.StopTimeout = 150 * time.Millisecond

	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- s.Run(ctx) }()
	for range 2 {
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatal("jobs not started by Run")
		}
	}
	cancel()
	stopAt := time.Now()
	close(finishDevices)
	select {
	case err := <-runErr:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after StopTimeout")
	}
	if took := time.Since(stopAt); took < s.StopTimeout {
		t.Fatalf("Run returned after %v, before the %v grace period ended", took, s.StopTimeout)
	}
	if err, _ := homesCtxErr.Load().(error); !errors.Is(err, context.Canceled) {
		t.Fatalf("hanging job's ctx err = %v, want canceled", err)
	}
	// The job that finished in the grace period succeeded; the cancelled one
	// is due again at the next start and not counted as a failure.
	if got := st.State("devices"); got.LastSuccessAt.IsZero() {
		t.Fatalf("devices state = %+v, want a success", got)
	}
	if got := st.State("homes"); got.ConsecutiveFailures != 0 || got.NextRunAt.After(clk.Now()) {
		t.Fatalf("homes state = %+v, want no failure counted and due at once", got)
	}
}

func TestSchedulerRetriesStateLoad(t *testing.T) {
	clk := clock.NewFake(base)
	st, r := newFakeStore(nil), &fakeRunner{}
	var loads atomic.Int32
	st.JobStateFn = func(ctx context.Context, job string) (model.JobState, error) {
		if loads.Add(1) == 1 {
			return model.JobState{}, errors.New("database is locked")
		}
		return model.JobState{Job: job}, nil
	}
	logs := &logBuffer{}
	s := newScheduler(clk, st, r, logs)
	if got := tick(t, s); len(got) != 0 {
		t.Fatalf("started %v without its state", got)
	}
	if logs.Lines("load job state") != 1 {
		t.Fatalf("load failure not logged:\n%s", logs)
	}
	clk.Advance(30 * time.Second)
	if got := tick(t, s); len(got) != 1 {
		t.Fatalf("started %v after the state loaded, want the job", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	clk.Advance(time.Hour)
	if got := s.RunDue(ctx); len(got) != 0 {
		t.Fatalf("RunDue with a done context started %v", got)
	}
}

// secretHolder keeps a value in an unexported field, where fmt's %v would
// print it (fmt cannot call a redacting method on an unexported field).
type secretHolder struct{ tok string }

func TestSchedulerPanicWithSecretValueIsNotPrinted(t *testing.T) {
	const canary = "CANARY-ACCESS-TOKEN-3b1f"
	clk := clock.NewFake(base)
	st := newFakeStore(nil)
	var got model.Run
	r := &fakeRunner{RunFn: func(ctx context.Context, job string) (model.Run, error) { panic(secretHolder{tok: canary}) }}
	s := newScheduler(clk, st, r, nil)
	s.OnRun = func(run model.Run, err error) { got = run }
	tick(t, s)
	if got.Status != jobs.StatusFailed || strings.Contains(got.Error, canary) || !strings.Contains(got.Error, "secretHolder") {
		t.Fatalf("run after a panic with a secret-holding value = %+v; want failed, naming the type only", got)
	}
}
