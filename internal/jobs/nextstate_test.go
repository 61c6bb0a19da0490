package jobs

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
)

// retryAfterErr is an API error that carries a Retry-After.
type retryAfterErr struct {
	status int
	ra     time.Duration
}

func (e retryAfterErr) Error() string                 { return fmt.Sprintf("status %d", e.status) }
func (e retryAfterErr) HTTPStatus() int               { return e.status }
func (e retryAfterErr) RetryAfterHint() time.Duration { return e.ra }

var _ APIError = retryAfterErr{}

func TestNextState(t *testing.T) {
	t0 := time.Date(2026, 9, 14, 12, 0, 0, 0, time.UTC)
	start, end := t0, t0.Add(3*time.Second)
	slot := t0.Add(5 * time.Minute)
	at := runTimes{start: start, end: end, next: slot, threshold: 5}
	failing := func(n int) model.JobState {
		return model.JobState{Job: "devices", LastRunAt: t0.Add(-5 * time.Minute), LastSuccessAt: t0.Add(-time.Hour),
			ConsecutiveFailures: n, LastError: "before"}
	}
	boom := errors.New("boom")

	tests := map[string]struct {
		st     model.JobState
		run    model.Run
		err    error
		at     runTimes
		want   model.JobState
		opened bool
	}{
		"ok clears failures and breaker": {
			st:   model.JobState{Job: "devices", ConsecutiveFailures: 7, BreakerUntil: t0.Add(-time.Second), LastError: "old"},
			run:  model.Run{Status: StatusOK},
			at:   at,
			want: model.JobState{Job: "devices", LastRunAt: start, LastSuccessAt: end, NextRunAt: slot},
		},
		"ok keeps no error even when err is set": {
			st:   failing(0),
			run:  model.Run{Status: StatusOK},
			err:  boom,
			at:   at,
			want: model.JobState{Job: "devices", LastRunAt: start, LastSuccessAt: end, NextRunAt: slot},
		},
		"partial is a success with its error": {
			st:   failing(2),
			run:  model.Run{Status: StatusPartial, Error: "1 device failed"},
			at:   at,
			want: model.JobState{Job: "devices", LastRunAt: start, LastSuccessAt: end, NextRunAt: slot, LastError: "1 device failed"},
		},
		"an interrupted run is no failure and runs again at the next start": {
			st:   failing(2),
			run:  model.Run{Status: StatusInterrupted, Error: "stopped: tibbersync is shutting down"},
			err:  ErrStopped,
			at:   at,
			want: model.JobState{Job: "devices", LastRunAt: start, LastSuccessAt: t0.Add(-time.Hour), NextRunAt: end, ConsecutiveFailures: 2, LastError: "stopped: tibbersync is shutting down"},
		},
		"first failure counts, no breaker": {
			st:   failing(0),
			run:  model.Run{Status: StatusFailed},
			err:  boom,
			at:   at,
			want: model.JobState{Job: "devices", LastRunAt: start, LastSuccessAt: t0.Add(-time.Hour), NextRunAt: slot, ConsecutiveFailures: 1, LastError: "boom"},
		},
		"the run's error wins over err": {
			st:   failing(0),
			run:  model.Run{Status: StatusFailed, Error: "fetch homes: 503"},
			err:  boom,
			at:   at,
			want: model.JobState{Job: "devices", LastRunAt: start, LastSuccessAt: t0.Add(-time.Hour), NextRunAt: slot, ConsecutiveFailures: 1, LastError: "fetch homes: 503"},
		},
		"threshold opens the breaker for a minute": {
			st:     failing(4),
			run:    model.Run{Status: StatusFailed},
			err:    boom,
			at:     at,
			want:   model.JobState{Job: "devices", LastRunAt: start, LastSuccessAt: t0.Add(-time.Hour), ConsecutiveFailures: 5, BreakerUntil: end.Add(time.Minute), NextRunAt: slot, LastError: "boom"},
			opened: true,
		},
		"each further failure doubles the cool-down (the slot is later)": {
			st:     failing(6),
			run:    model.Run{Status: StatusFailed},
			err:    boom,
			at:     at,
			want:   model.JobState{Job: "devices", LastRunAt: start, LastSuccessAt: t0.Add(-time.Hour), ConsecutiveFailures: 7, BreakerUntil: end.Add(4 * time.Minute), NextRunAt: slot, LastError: "boom"},
			opened: true,
		},
		"the cool-down stops at an hour": {
			st:     failing(40),
			run:    model.Run{Status: StatusFailed},
			err:    boom,
			at:     at,
			want:   model.JobState{Job: "devices", LastRunAt: start, LastSuccessAt: t0.Add(-time.Hour), ConsecutiveFailures: 41, BreakerUntil: end.Add(time.Hour), NextRunAt: end.Add(time.Hour), LastError: "boom"},
			opened: true,
		},
		"retry-after below the threshold holds the job": {
			st:     failing(0),
			run:    model.Run{Status: StatusFailed},
			err:    errors.Join(errors.New("fetch"), retryAfterErr{status: 429, ra: 10 * time.Minute}),
			at:     at,
			want:   model.JobState{Job: "devices", LastRunAt: start, LastSuccessAt: t0.Add(-time.Hour), ConsecutiveFailures: 1, BreakerUntil: end.Add(10 * time.Minute), NextRunAt: end.Add(10 * time.Minute), LastError: "fetch\nstatus 429"},
			opened: true,
		},
		"retry-after is capped at an hour": {
			st:     failing(0),
			run:    model.Run{Status: StatusFailed, Error: "429"},
			err:    retryAfterErr{status: 429, ra: 5 * time.Hour},
			at:     at,
			want:   model.JobState{Job: "devices", LastRunAt: start, LastSuccessAt: t0.Add(-time.Hour), ConsecutiveFailures: 1, BreakerUntil: end.Add(time.Hour), NextRunAt: end.Add(time.Hour), LastError: "429"},
			opened: true,
		},
		"shutdown is not a failure and runs again at once": {
			st:   failing(3),
			run:  model.Run{Status: StatusFailed, Error: "interrupted"},
			err:  boom,
			at:   runTimes{start: start, end: end, next: slot, threshold: 5, interrupted: true},
			want: model.JobState{Job: "devices", LastRunAt: start, LastSuccessAt: t0.Add(-time.Hour), ConsecutiveFailures: 3, NextRunAt: end, LastError: "interrupted"},
		},
		"skipped changes neither failures nor breaker": {
			st:   model.JobState{Job: "devices", ConsecutiveFailures: 6, BreakerUntil: t0.Add(20 * time.Minute)},
			run:  model.Run{Status: StatusSkipped, Error: "not authorized: reauth_required"},
			at:   at,
			want: model.JobState{Job: "devices", LastRunAt: start, ConsecutiveFailures: 6, BreakerUntil: t0.Add(20 * time.Minute), NextRunAt: t0.Add(20 * time.Minute), LastError: "not authorized: reauth_required"},
		},
		"last run never moves back": {
			st:   model.JobState{Job: "devices", LastRunAt: start.Add(model.ClockSkewTolerance)},
			run:  model.Run{Status: StatusOK},
			at:   at,
			want: model.JobState{Job: "devices", LastRunAt: start.Add(model.ClockSkewTolerance), LastSuccessAt: end, NextRunAt: slot},
		},
		// Further ahead it was saved while the clock was wrong (issue 17):
		// the real run replaces it.
		"last run far in the future is replaced": {
			st:   model.JobState{Job: "devices", LastRunAt: t0.Add(48 * time.Hour)},
			run:  model.Run{Status: StatusOK},
			at:   at,
			want: model.JobState{Job: "devices", LastRunAt: start, LastSuccessAt: end, NextRunAt: slot},
		},
		"storm-ended partial run is not a success": {
			st:     model.JobState{Job: "devices", LastSuccessAt: t0.Add(-time.Hour)},
			run:    model.Run{Status: StatusPartial, Error: "device x: 503"},
			err:    fmt.Errorf("devices: %w", ErrStorm),
			at:     at,
			want:   model.JobState{Job: "devices", LastRunAt: start, LastSuccessAt: t0.Add(-time.Hour), ConsecutiveFailures: 1, NextRunAt: slot, LastError: "device x: 503"},
			opened: false,
		},
		"rate-limited partial run is not a success": {
			st:     model.JobState{Job: "devices", ConsecutiveFailures: 1, LastSuccessAt: t0.Add(-time.Hour)},
			run:    model.Run{Status: StatusPartial, Error: "device x: 429"},
			err:    retryAfterErr{status: 429, ra: 10 * time.Minute},
			at:     at,
			want:   model.JobState{Job: "devices", LastRunAt: start, LastSuccessAt: t0.Add(-time.Hour), ConsecutiveFailures: 2, BreakerUntil: end.Add(10 * time.Minute), NextRunAt: end.Add(10 * time.Minute), LastError: "device x: 429"},
			opened: true,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, opened := nextState(tc.st, tc.run, tc.err, tc.at)
			if got != tc.want || opened != tc.opened {
				t.Fatalf("nextState =\n  %+v, opened %t\nwant\n  %+v, opened %t", got, opened, tc.want, tc.opened)
			}
		})
	}
}

func TestNormalizeRun(t *testing.T) {
	run, err := normalizeRun("homes", model.Run{}, nil)
	if run.Job != "homes" || run.Status != StatusFailed || err == nil {
		t.Fatalf("empty run = %+v, %v; want a failed homes run with an error", run, err)
	}
	boom := errors.New("boom")
	run, err = normalizeRun("homes", model.Run{Job: "homes", Status: StatusOK}, boom)
	if run.Status != StatusOK || err != boom {
		t.Fatalf("complete run changed: %+v, %v", run, err)
	}
}
