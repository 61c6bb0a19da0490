package jobs_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/model"
)

// These tests drive Scheduler.Run in a synctest bubble: time.Now, the
// scheduler's timers and clock.Real are the bubble's fake clock, which
// advances only when every goroutine of the test is blocked, and
// synctest.Wait is the explicit synchronization point.

// runLog records when each job ran, by the bubble's clock.
type runLog struct {
	mu    sync.Mutex
	times map[string][]time.Time
	// running counts concurrent runs per job; peak is the highest seen.
	running, peak map[string]int
	// hold, when set, is how long each run takes.
	hold time.Duration
}

func newRunLog() *runLog {
	return &runLog{times: map[string][]time.Time{}, running: map[string]int{}, peak: map[string]int{}}
}

func (l *runLog) Run(ctx context.Context, job string) (model.Run, error) {
	l.mu.Lock()
	l.times[job] = append(l.times[job], time.Now())
	l.running[job]++
	l.peak[job] = max(l.peak[job], l.running[job])
	l.mu.Unlock()
	if l.hold > 0 {
		time.Sleep(l.hold)
	}
	l.mu.Lock()
	l.running[job]--
	l.mu.Unlock()
	return model.Run{Job: job, Status: jobs.StatusOK}, nil
}

func (l *runLog) Times(job string) []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Time(nil), l.times[job]...)
}

func (l *runLog) Peak(job string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.peak[job]
}

// startRun runs s in the background; the returned stop (also registered as
// a cleanup, so that a failed test leaves no goroutine in the bubble)
// cancels Run and waits for it to return.
func startRun(t *testing.T, s *jobs.Scheduler) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(stop)
	return stop
}

// runFor runs s for d of bubble time and stops it.
func runFor(t *testing.T, s *jobs.Scheduler, d time.Duration) {
	t.Helper()
	stop := startRun(t, s)
	time.Sleep(d)
	synctest.Wait()
	stop()
}

// gaps returns the spacing of ts.
func gaps(ts []time.Time) []time.Duration {
	var out []time.Duration
	for i := 1; i < len(ts); i++ {
		out = append(out, ts[i].Sub(ts[i-1]))
	}
	return out
}

// TestSchedulerRunWakesWhenDue: a job due in 2 s runs at +2 s, not at the
// next 30-second check.
func TestSchedulerRunWakesWhenDue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		st, r := newFakeStore(nil), newRunLog()
		st.states["devices"] = model.JobState{Job: "devices", LastRunAt: start.Add(-3 * time.Minute), NextRunAt: start.Add(2 * time.Second)}
		s := &jobs.Scheduler{Jobs: []jobs.Job{{Name: "devices", Spec: "*/5 * * * *"}}, Runner: r, Store: st, Clock: clock.Real{}}
		runFor(t, s, 10*time.Second)
		got := r.Times("devices")
		if len(got) != 1 || !got[0].Equal(start.Add(2*time.Second)) {
			t.Fatalf("runs at %v, want exactly one at %v (+2s)", got, start.Add(2*time.Second))
		}
		if next := st.State("devices").NextRunAt; !next.Equal(start.Add(5 * time.Minute)) {
			t.Fatalf("persisted next run %v, want the next slot %v", next, start.Add(5*time.Minute))
		}
	})
}

// TestSchedulerRunEvery30s: "@every 30s" starts a run every 30 s, also when
// each run takes 1.5 s (it ran every 60 s when the scheduler only looked
// every 30 s), and the persisted next run follows the last one.
func TestSchedulerRunEvery30s(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		st, r := newFakeStore(nil), newRunLog()
		r.hold = 1500 * time.Millisecond
		s := &jobs.Scheduler{Jobs: []jobs.Job{{Name: "devices", Spec: "@every 30s"}}, Runner: r, Store: st, Clock: clock.Real{}}
		runFor(t, s, 5*time.Minute)
		got := r.Times("devices")
		if len(got) != 11 || !got[0].Equal(start) {
			t.Fatalf("%d runs in 5 minutes, first at +%v; want 11 starting at once: %v", len(got), got[0].Sub(start), got)
		}
		for i, g := range gaps(got) {
			if g != 30*time.Second {
				t.Fatalf("gap %d is %v, want 30s: %v", i, g, gaps(got))
			}
		}
		if next, last := st.State("devices").NextRunAt, got[len(got)-1]; !next.Equal(last.Add(30 * time.Second)) {
			t.Fatalf("persisted next run %v, want %v", next, last.Add(30*time.Second))
		}
	})
}

// TestSchedulerRunEvery2s: with "@every 2s" and the default 30 s jitter, at
// least 3 runs complete in 20 s, and no two successes are further apart than
// the 3× interval that status and /readyz call stale. The jitter is bounded
// to a tenth of the interval.
func TestSchedulerRunEvery2s(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st, r := newFakeStore(nil), newRunLog()
		var draws atomic.Int64
		s := &jobs.Scheduler{
			Jobs: []jobs.Job{{Name: "devices", Spec: "@every 2s"}}, Runner: r, Store: st, Clock: clock.Real{},
			Jitter: 30 * time.Second,
			// The worst case: every delay at the top of its range.
			Rand: func() float64 { draws.Add(1); return 0.999999 },
		}
		runFor(t, s, 20*time.Second)
		got := r.Times("devices")
		if len(got) < 3 {
			t.Fatalf("%d runs in 20 s of \"@every 2s\", want at least 3", len(got))
		}
		for i, g := range gaps(got) {
			if g > 2*time.Second+200*time.Millisecond {
				t.Fatalf("gap %d is %v, want at most 2.2s (2s + a tenth as jitter): %v", i, g, gaps(got))
			}
		}
		if draws.Load() == 0 {
			t.Fatal("no jitter drawn")
		}
	})
}

// TestSchedulerRunSlowJobNeverOverlaps: a job that takes longer than its
// interval never runs twice at once, and the slots it missed are not queued.
func TestSchedulerRunSlowJobNeverOverlaps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st, r := newFakeStore(nil), newRunLog()
		r.hold = 5 * time.Second
		s := &jobs.Scheduler{Jobs: []jobs.Job{{Name: "devices", Spec: "@every 2s"}}, Runner: r, Store: st, Clock: clock.Real{}}
		runFor(t, s, 30*time.Second)
		if p := r.Peak("devices"); p != 1 {
			t.Fatalf("%d concurrent runs, want 1", p)
		}
		got := r.Times("devices")
		for i, g := range gaps(got) {
			// 5 s of work, then the next slot 2 s after the end.
			if g != 7*time.Second {
				t.Fatalf("gap %d is %v, want 7s (no queued catch-up): %v", i, g, gaps(got))
			}
		}
		if len(got) < 4 {
			t.Fatalf("%d runs in 30 s, want at least 4", len(got))
		}
	})
}

// TestSchedulerRunTriggerWakes: a trigger (e.g. after authorization) runs
// the job at once, however far its next slot is.
func TestSchedulerRunTriggerWakes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		st, r := newFakeStore(nil), newRunLog()
		st.states["homes"] = model.JobState{Job: "homes", LastRunAt: start.Add(-time.Minute), NextRunAt: start.Add(time.Hour)}
		s := &jobs.Scheduler{Jobs: []jobs.Job{{Name: "homes", Spec: "0 * * * *"}}, Runner: r, Store: st, Clock: clock.Real{}}
		stop := startRun(t, s)
		time.Sleep(7 * time.Second)
		synctest.Wait()
		if n := len(r.Times("homes")); n != 0 {
			t.Fatalf("%d runs before the trigger, want 0", n)
		}
		s.Trigger("homes")
		synctest.Wait()
		got := r.Times("homes")
		if len(got) != 1 || !got[0].Equal(start.Add(7*time.Second)) {
			t.Fatalf("runs %v, want one at the trigger (+7s)", got)
		}
		stop()
	})
}

// TestSchedulerClampLogOnlyWhenItHappened: neither a restart nor a trigger
// (as after authorization) logs a backward clock move that did not happen; a
// real backward step is logged, once per job whose next run it clamps.
func TestSchedulerClampLogOnlyWhenItHappened(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		jobList := []jobs.Job{{Name: "devices", Spec: "@every 2s"}, {Name: "homes", Spec: "0 * * * *"}, {Name: "history", Spec: "7 * * * *"}}
		st := newFakeStore(nil)
		logs := &logBuffer{}
		clk := &offsetClock{}
		newSched := func() *jobs.Scheduler {
			return &jobs.Scheduler{Jobs: jobList, Runner: newRunLog(), Store: st, Clock: clk, Logger: newLogger(logs), Jitter: 30 * time.Second}
		}
		// A first life, then a restart that finds its state, and triggers.
		runFor(t, newSched(), 10*time.Second)
		s := newSched()
		stop := startRun(t, s)
		time.Sleep(3 * time.Second)
		s.Trigger("homes")
		s.Trigger("devices")
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if n := logs.Lines("clock moved backward") + logs.Lines("brought forward"); n != 0 {
			t.Fatalf("%d clamp lines without a clock move or schedule change:\n%s", n, logs)
		}

		// A real step back of 10 minutes: devices' next run (2 s away) and
		// homes' (the next hour) are now further away than their schedules
		// allow; history's next slot (:07) is the same as before.
		clk.Add(-10 * time.Minute)
		s.Trigger("devices") // wake the loop now, as its timer would within Tick
		synctest.Wait()
		if n := logs.Lines("clock moved backward, next run clamped"); n != 2 {
			t.Fatalf("%d clamp lines after a 10-minute step back, want 2 (devices, homes):\n%s", n, logs)
		}
		if n := logs.Lines("level=INFO msg=\"clock moved backward\""); n != 1 {
			t.Fatalf("%d lines about the step itself, want 1:\n%s", n, logs)
		}
		stop()
	})
}

// TestSchedulerScheduleChangeIsNotAClockMove: a next run saved under an
// older, longer schedule is brought forward at start-up, and said so, not
// reported as a backward clock move.
func TestSchedulerScheduleChangeIsNotAClockMove(t *testing.T) {
	clk := clock.NewFake(base.Add(10 * time.Second))
	st, r := newFakeStore(nil), &fakeRunner{}
	st.states["devices"] = model.JobState{Job: "devices", LastRunAt: base, LastSuccessAt: base, NextRunAt: base.Add(5 * time.Minute)}
	logs := &logBuffer{}
	s := newScheduler(clk, st, r, logs, jobs.Job{Name: "devices", Spec: "@every 2s"})
	tick(t, s)
	if n := logs.Lines("clock moved backward"); n != 0 {
		t.Fatalf("a schedule change reported as a clock move:\n%s", logs)
	}
	if n := logs.Lines("next run brought forward to the current schedule"); n != 1 {
		t.Fatalf("%d schedule-change lines, want 1:\n%s", n, logs)
	}
	if next := s.NextRuns()["devices"]; next.After(clk.Now().Add(2 * time.Second)) {
		t.Fatalf("next run %v, want within 2s of %v", next, clk.Now())
	}
	// Nothing more is said on later checks.
	clk.Advance(time.Second)
	tick(t, s)
	if n := logs.Lines("brought forward") + logs.Lines("clamped"); n != 1 {
		t.Fatalf("%d clamp lines after a second check, want still 1:\n%s", n, logs)
	}
}

// offsetClock is the bubble's clock plus an offset the test can step.
type offsetClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *offsetClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *offsetClock) Sleep(ctx context.Context, d time.Duration) error {
	return clock.Real{}.Sleep(ctx, d)
}

func (c *offsetClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}
