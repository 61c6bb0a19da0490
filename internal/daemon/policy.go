package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/tibbersync/tibbersync/internal/config"
	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/model"
)

// JobNames are the scheduled jobs, in the order they first run.
var JobNames = []string{jobs.JobHomes, jobs.JobDevices, jobs.JobHistory}

// historyTimeoutFactor: a long history backfill resumes from its
// checkpoint, so it may run longer than a cycle, but never unbounded.
const historyTimeoutFactor = 6

// JobTimeout is one run's deadline: [sync].cycle_timeout, six times that
// for history.
func JobTimeout(cfg config.Config, job string) time.Duration {
	if job == jobs.JobHistory {
		return cfg.Sync.CycleTimeout * historyTimeoutFactor
	}
	return cfg.Sync.CycleTimeout
}

// ScheduleSpec is job's cron spec from [schedule].
func ScheduleSpec(cfg config.Config, job string) string {
	switch job {
	case jobs.JobHomes:
		return cfg.Schedule.Homes
	case jobs.JobDevices:
		return cfg.Schedule.Devices
	default:
		return cfg.Schedule.History
	}
}

// JobIntervals is each job's nominal interval (the gap between two
// consecutive slots of its schedule), for /readyz and `status`, which want
// a success within 3× of it. A spec that does not parse is left out.
func JobIntervals(cfg config.Config) map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, name := range JobNames {
		sched, err := cron.ParseStandard(ScheduleSpec(cfg, name))
		if err != nil {
			continue
		}
		t0 := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
		t1 := sched.Next(t0)
		t2 := sched.Next(t1)
		out[name] = t2.Sub(t1)
	}
	return out
}

// ConfigHint tells the user what to set when the client is not configured.
func ConfigHint(cfg config.Config) string {
	var missing []string
	if cfg.Tibber.ClientID == "" {
		missing = append(missing, "set [tibber].client_id (or TIBBERSYNC_TIBBER_CLIENT_ID)")
	}
	if cfg.ClientSecret.Empty() {
		missing = append(missing, "put the client secret in a 0600 file named by [tibber].client_secret_file, or pass it with systemd LoadCredential=client_secret:/etc/tibbersync/client_secret")
	}
	return strings.Join(missing, "; ")
}

// IsAuthStop reports whether err means "no API call may be made".
func IsAuthStop(err error) bool {
	return errors.Is(err, model.ErrNotAuthorized)
}

// buildScheduler makes the scheduler with the product's policy: every job
// on its [schedule] spec with [schedule].jitter, runs through quietRunner,
// and history chained after the first devices run (see onRun).
func (d *Daemon) buildScheduler() error {
	var runner jobs.Runner = &quietRunner{d: d}
	if d.opts.WrapRunner != nil {
		runner = d.opts.WrapRunner(runner)
	}
	d.historyAfterDevices.Store(true)
	d.sched = &jobs.Scheduler{
		Runner:    runner,
		Store:     d.data,
		Clock:     d.clk,
		Logger:    d.log.With("component", "scheduler"),
		Jitter:    d.cfg.Schedule.Jitter,
		NotBefore: d.opts.NotBefore,
		OnRun:     d.onRun,
	}
	for _, name := range JobNames {
		d.sched.Jobs = append(d.sched.Jobs, jobs.Job{Name: name, Spec: ScheduleSpec(d.cfg, name)})
	}
	return d.sched.Validate()
}

// onRun follows every scheduled run: metrics, the history chain, observers.
// History works on the stored inventory: after a new authorization, and
// after a start-up with no devices stored yet, it runs again as soon as a
// devices run has stored the devices, instead of waiting up to an hour for
// its next slot.
func (d *Daemon) onRun(r model.Run, err error) {
	if d.metrics != nil {
		d.metrics.ObserveRun(r.Job, jobs.CountedStatus(r, err), r.RowsWritten, r.FinishedAt)
	}
	if r.Job == jobs.JobDevices && (r.Status == jobs.StatusOK || r.Status == jobs.StatusPartial) && d.historyAfterDevices.Swap(false) {
		d.sched.Trigger(jobs.JobHistory)
	}
	d.observeRun(context.Background(), r, err)
	d.releaseMemory(context.Background())
}

// authorized is the web server's OnAuthorized (the setup page's
// /callback and paste): the jobs start, and `tibbersync setup` waiting on
// the control socket for the browser learns it is done.
func (d *Daemon) authorized(st model.AuthStatus) {
	d.startJobs(st)
	if d.ctl != nil {
		d.ctl.Authorized()
	}
}

// startJobs follows every successful authorization: the jobs start at
// once, history again after the first devices run. It is the control
// socket's OnAuthorized as it is: the socket's server advances its own
// generation after an authorization it completed, so calling
// d.ctl.Authorized here too would count that one twice.
func (d *Daemon) startJobs(st model.AuthStatus) {
	d.log.Info("authorized; starting jobs", "email", st.Email, "granted_scopes", st.GrantedScopes)
	d.historyAfterDevices.Store(true)
	d.sched.Trigger(jobs.JobHomes)
	d.sched.Trigger(jobs.JobDevices)
}

// quietRunner is the scheduler's runner: one run with its deadline. While
// the auth state stays sticky (setup, re-authorization or config error
// required) only the first skipped run of each job is recorded in
// sync_runs; later slots are skipped without writing, so a Pi left
// waiting for re-authorization for weeks does not write a row every five
// minutes (R19).
type quietRunner struct {
	d *Daemon
	// mu guards skipped: the jobs whose last run was skipped because no
	// API call may be made.
	mu      sync.Mutex
	skipped map[string]bool
}

// Run implements jobs.Runner.
func (q *quietRunner) Run(ctx context.Context, job string) (model.Run, error) {
	q.mu.Lock()
	wasSkipped := q.skipped[job]
	q.mu.Unlock()
	if wasSkipped {
		if st, err := q.d.source.Status(ctx); err == nil && st.State.Sticky() {
			now := q.d.clk.Now()
			return model.Run{Job: job, StartedAt: now, FinishedAt: now, Status: jobs.StatusSkipped,
				Error: "not authorized: " + string(st.State)}, fmt.Errorf("%s: %w", job, model.ErrNotAuthorized)
		}
	}
	r, err := q.d.runJob(ctx, job)
	q.mu.Lock()
	if q.skipped == nil {
		q.skipped = map[string]bool{}
	}
	q.skipped[job] = r.Status == jobs.StatusSkipped
	q.mu.Unlock()
	return r, err
}
