// Package daemon is the one wiring of tibbersync: it opens data.db and
// tokens.db and builds every component (token source, authorization flow,
// Data API client, syncer, scheduler, web server, notifier, metrics) the
// way the product runs them, with the product's scheduling policy. The
// command (cmd/tibbersync) and every test harness build the daemon only
// through Open; a harness changes behaviour through Options' hooks, never
// by copying this wiring.
//
// The shape follows benbjohnson/wtf's Main: Open builds, Run serves until
// its context ends, Close releases the files.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tibbersync/tibbersync/internal/auth"
	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/config"
	"github.com/tibbersync/tibbersync/internal/control"
	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/metrics"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/mqtt"
	"github.com/tibbersync/tibbersync/internal/notify"
	"github.com/tibbersync/tibbersync/internal/sdnotify"
	"github.com/tibbersync/tibbersync/internal/store"
	"github.com/tibbersync/tibbersync/internal/tibber"
	"github.com/tibbersync/tibbersync/internal/tokenstore"
	"github.com/tibbersync/tibbersync/internal/version"
	"github.com/tibbersync/tibbersync/internal/web"
)

// Options are what differs between the command's subcommands (run, sync,
// setup, demo) and the test harnesses. The zero value is `tibbersync sync`:
// real clock, the configured rate, no metrics, no lock.
type Options struct {
	// Logger receives every component's log (discarded when nil).
	Logger *slog.Logger
	// Clock is every component's clock (clock.Real when nil).
	Clock clock.Clock
	// NotifyClock is the notifier's clock (Clock when nil). A test on a
	// fake clock whose Sleep returns at once passes one that sleeps for
	// real, or the notifier's wait loop would spin.
	NotifyClock clock.Clock
	// NotBefore is the earliest plausible wall-clock time (R26): before it
	// no token request is made and the scheduler waits. Default: the build
	// time. A test whose fake clock starts earlier sets it.
	NotBefore time.Time

	// Service marks the long-running daemon (`tibbersync run`): Open takes
	// the exclusive lock on <storage dir>/daemon.lock before opening
	// anything, so one daemon runs per state directory, and a token state
	// that cannot be read is logged instead of failing Open (the status
	// page still serves and says so).
	Service bool
	// Metrics enables /metrics and the request, run and write counters.
	Metrics bool
	// Environ is the process environment, for systemd's NOTIFY_SOCKET and
	// WATCHDOG_USEC (sd_notify is off when nil).
	Environ []string

	// HTTPClient makes every token, userinfo and Data API request
	// (default tibber.NewHTTPClient with [tibber].request_timeout).
	HTTPClient *http.Client
	// WrapTransport, when set, wraps HTTPClient's transport (count sockets,
	// label requests, inject faults).
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// RateLimit overrides [tibber].requests_per_second when > 0;
	// math.Inf(1) is unlimited (the limiter waits in real time, which a
	// test on a fake clock must not).
	RateLimit float64
	// Progress receives the history job's progress (the sync progress bar).
	Progress func(jobs.HistoryProgress)

	// Listener is the bound socket for the web server, handed over so that
	// a caller can know the port before Open (to register a redirect URI)
	// without closing a socket and hoping the port stays free. The daemon
	// owns it from Open on. Default: bind [web].listen in Run.
	Listener net.Listener
	// StatusURL is the status page's URL in notifications (default
	// http://<listen address>/).
	StatusURL string

	// ManualSchedule leaves the scheduler and the maintenance loop to the
	// caller: Run serves the web server and the notifier only, and the
	// caller drives Scheduler().RunDue/Wait and Maintain on its own (fake)
	// clock. For tests; the product never sets it.
	ManualSchedule bool

	// Observers are told about every job run and auth state change (see
	// Observer): the extension point for features that publish what the
	// daemon learns, such as an MQTT bridge.
	Observers []Observer

	// Test hooks: each wraps one component as the others see it. They are
	// called once, in Open.

	// WrapAPI wraps the Data API client as the syncer sees it.
	WrapAPI func(jobs.API) jobs.API
	// WrapStore wraps data.db as the syncer sees it.
	WrapStore func(jobs.Store) jobs.Store
	// WrapTokens wraps tokens.db as the token source and flow see it.
	WrapTokens func(auth.TokenStore) auth.TokenStore
	// WrapRunner wraps the scheduler's runner (the product's policy: cycle
	// deadline, quiet skips).
	WrapRunner func(jobs.Runner) jobs.Runner
	// WrapStatus wraps data.db as the web server reads it.
	WrapStatus func(web.StatusSource) web.StatusSource
}

// Daemon is tibbersync with every component wired. Open builds it, Run
// serves until its context ends, Close releases the files.
type Daemon struct {
	cfg  config.Config
	opts Options
	log  *slog.Logger
	clk  clock.Clock

	unlock  func()
	data    *store.DB
	secrets *tokenstore.Store
	source  *auth.Source
	flow    *auth.Flow
	// ctl is the control socket (control.go), set in Run before serving.
	ctl      *control.Server
	api      *tibber.Client
	syncer   *jobs.Syncer
	notifier *notify.Notifier
	metrics  *metrics.Metrics
	sched    *jobs.Scheduler
	srv      *web.Server
	// health is the storage health (issue 17): checked every Maintain and
	// before each job, shown on /readyz and the status page.
	health *store.Health
	mqtt   *mqtt.Publisher // nil unless [mqtt].url is set
	// clientConfigured is true when both the client id and the secret are known.
	clientConfigured bool

	// historyAfterDevices: after a new authorization, and after a start-up
	// with no devices stored yet, history runs again as soon as a devices
	// run stored the inventory, instead of waiting up to an hour for its
	// slot.
	historyAfterDevices atomic.Bool

	// maintMu guards lastCheckpoint, the time of Maintain's last WAL
	// checkpoint (Open counts as one).
	maintMu        sync.Mutex
	lastCheckpoint time.Time
	lastStorage    string // the storage problems last logged
	// fileGone ends Run with its cause (set by Run): a database file was
	// replaced or deleted under the service.
	fileGone context.CancelCauseFunc

	ready     chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// ConfigError marks an error that restarting cannot fix: the command
// exits 78 (EX_CONFIG) for it, which systemd's RestartPreventExitStatus
// covers.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// IsConfigError reports whether err (or one it wraps) is a ConfigError.
func IsConfigError(err error) bool {
	var ce *ConfigError
	return errors.As(err, &ce)
}

func configErr(err error) error { return &ConfigError{Err: err} }

// openErr classifies an error opening data.db or tokens.db. Permissions,
// an insecure secrets directory, a bad path and a data.db of a newer
// release are for the admin to fix: ConfigErrors (exit 78, which systemd
// does not restart). Anything else may pass and is left unmarked, so the
// service is restarted: a conversion cancelled by a stop or by systemd's
// start timeout, a busy lock, a full disk, an I/O error.
func openErr(err error) error {
	switch {
	case errors.Is(err, fs.ErrPermission), errors.Is(err, tokenstore.ErrInsecure),
		errors.Is(err, store.ErrBadDSN), errors.Is(err, store.ErrNewerSchema),
		errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.EISDIR):
		return configErr(err)
	}
	return err
}

// BuildTime is the earliest plausible wall-clock time (R26): a clock before
// it means a Pi booted without an RTC and has not synced yet.
func BuildTime() time.Time {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.time" {
				if t, err := time.Parse(time.RFC3339, s.Value); err == nil {
					return t
				}
			}
		}
	}
	return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
}

// Open opens data.db and tokens.db under [storage].dir, builds every
// component and reads the stored token state. It makes no network call
// and binds no port (a Listener given in Options is kept for Run). Errors
// that a restart cannot fix are ConfigErrors.
func Open(ctx context.Context, cfg config.Config, o Options) (_ *Daemon, err error) {
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.NotifyClock == nil {
		o.NotifyClock = o.Clock
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.NotBefore.IsZero() {
		o.NotBefore = BuildTime()
	}
	d := &Daemon{cfg: cfg, opts: o, log: o.Logger, clk: o.Clock, ready: make(chan struct{}), lastCheckpoint: o.Clock.Now()}
	defer func() {
		if err != nil {
			_ = d.Close()
		}
	}()
	if err := os.MkdirAll(cfg.Storage.Dir, 0o750); err != nil {
		return nil, configErr(fmt.Errorf("create storage dir %q: %w", cfg.Storage.Dir, err))
	}
	if o.Service {
		if d.unlock, err = lockDir(cfg.Storage.Dir); err != nil {
			return nil, err
		}
	}
	if err := d.openStores(ctx); err != nil {
		return nil, openErr(err)
	}
	// Before the components: the bridge registers itself as an observer.
	if err := d.buildMQTT(); err != nil {
		return nil, configErr(err)
	}
	if err := d.buildComponents(); err != nil {
		return nil, configErr(err)
	}
	if err := d.source.Init(ctx); err != nil {
		if !o.Service {
			return nil, fmt.Errorf("read token state: %w", err)
		}
		d.log.Error("read token state", "err", err)
	}
	d.closeStaleRuns(ctx)
	return d, nil
}

// mayWork says whether jobs may work: a run before authorization (or
// while re-authorization is required) is recorded as skipped without any
// work, so a history run with no stored devices is never an "ok" run.
func (d *Daemon) mayWork(ctx context.Context) error {
	st, err := d.source.Status(ctx)
	if err != nil || !st.State.Sticky() {
		// An unreadable state is left to the token source, which the run
		// asks next.
		return nil
	}
	return fmt.Errorf("%w (%s)", model.ErrNotAuthorized, st.State)
}

// closeStaleRuns closes the "running" rows of runs whose process died
// (crash, kill, power loss) as interrupted. Rows of a live process (a
// `tibbersync sync` next to the daemon) stay running.
func (d *Daemon) closeStaleRuns(ctx context.Context) {
	n, err := d.data.CloseStaleRuns(ctx, processAlive)
	switch {
	case err != nil:
		d.log.Warn("close runs left running by an earlier process", "err", err)
	case n > 0:
		d.log.Info("runs left running by an earlier process recorded as interrupted", "runs", n)
	}
}

// processAlive reports whether a process with pid exists.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// recordJobState updates job_state after a run made outside the scheduler
// (`tibbersync sync`), the way the scheduler records its own runs, so that
// sync_health and /readyz see it.
func (d *Daemon) recordJobState(ctx context.Context, r model.Run, runErr error) {
	if r.Job == "" {
		return
	}
	st, err := d.data.JobState(ctx, r.Job)
	if err != nil {
		d.log.Warn("read job state", "job", r.Job, "err", err)
		return
	}
	st.Job = r.Job
	if r.StartedAt.After(st.LastRunAt) {
		st.LastRunAt = r.StartedAt
	}
	switch jobs.CountedStatus(r, runErr) {
	case jobs.StatusOK, jobs.StatusPartial:
		st.LastSuccessAt = r.FinishedAt
		st.ConsecutiveFailures = 0
		st.BreakerUntil = time.Time{}
		st.LastError = r.Error
	case jobs.StatusFailed:
		st.ConsecutiveFailures++
		st.LastError = r.Error
		if st.LastError == "" && runErr != nil {
			st.LastError = runErr.Error()
		}
	default:
		// skipped or interrupted: neither a success nor a failure.
		return
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := d.data.SaveJobState(sctx, st); err != nil {
		d.log.Warn("save job state", "job", r.Job, "err", err)
	}
}

// openStores opens data.db and tokens.db.
func (d *Daemon) openStores(ctx context.Context) error {
	var err error
	storeLog := d.log.With("component", "store")
	d.data, err = store.Open(ctx, filepath.Join(d.cfg.Storage.Dir, "data.db"), store.Options{
		Clock:  d.clk,
		Logger: storeLog,
		// A data.db of an older release is converted on first open, with
		// its progress in the log (the terminal when run by hand) and,
		// under systemd, in the unit's status.
		ConvertProgress: d.convertProgress(storeLog),
	})
	if err != nil {
		return err
	}
	d.secrets, err = tokenstore.Open(ctx, d.cfg.Storage.Dir, d.clk)
	if err != nil {
		return err
	}
	if damage := d.secrets.Damage(); damage != "" {
		d.log.Error(damage, "component", "tokenstore")
	}
	return nil
}

// convertExtend is how far each conversion batch pushes systemd's start
// timeout: far more than a batch takes on a Pi, so that only a conversion
// that stopped making progress is ended by TimeoutStartSec.
const convertExtend = 5 * time.Minute

// convertProgress logs the one-off history conversion and, under systemd
// (Type=notify: Open runs before READY=1), extends the start timeout with
// every batch. Without it systemd's default 90 s would stop a conversion
// that a Pi needs minutes for, on every start after an upgrade.
func (d *Daemon) convertProgress(log *slog.Logger) func(store.ConvertProgress) {
	logged := store.LogProgress(log, d.clk.Now)
	sd := sdnotify.New(d.opts.Environ, os.Getpid())
	if !d.opts.Service || !sd.Enabled() {
		return logged
	}
	return func(p store.ConvertProgress) {
		logged(p)
		status := fmt.Sprintf("STATUS=converting history to the compact layout: %d of %d values", p.Done, p.Total)
		if p.Finished {
			status = "STATUS=history converted to the compact layout"
		}
		if err := sd.Send(fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d", convertExtend.Microseconds()), status); err != nil {
			log.Debug("sd_notify", "err", err)
		}
	}
}

// buildComponents wires auth, the Data API client, the syncer, the
// scheduler, the notifier, metrics and the web server.
func (d *Daemon) buildComponents() error {
	cfg, o := d.cfg, d.opts
	secret := cfg.ClientSecret
	if cfg.ClientSecretSource == "environment" {
		d.log.Warn("client secret taken from the environment; prefer LoadCredential= or client_secret_file", "component", "config")
	}
	d.clientConfigured = cfg.Tibber.ClientID != "" && !secret.Empty()

	hc := o.HTTPClient
	if hc == nil {
		hc = tibber.NewHTTPClient(cfg.Tibber.RequestTimeout)
	}
	if o.WrapTransport != nil {
		c := *hc
		c.Transport = o.WrapTransport(transportOf(hc))
		hc = &c
	}
	if o.Metrics {
		d.metrics = metrics.New()
	}
	if cfg.Notify.WebhookURL != "" || len(cfg.Notify.Command) > 0 {
		d.notifier = notify.New(notify.Options{
			WebhookURL: cfg.Notify.WebhookURL,
			Topic:      cfg.Notify.Topic,
			Command:    cfg.Notify.Command,
			Reminder:   cfg.Notify.Reminder,
			UserAgent:  version.UserAgent(),
			Clock:      o.NotifyClock,
			Logger:     d.log.With("component", "notify"),
			StatusURL:  d.statusURL(),
		})
	}
	// Token and userinfo requests go through the same client, observed for
	// /metrics under the routes "token" and "userinfo".
	authHC := hc
	if d.metrics != nil {
		c := *hc
		c.Transport = observingTransport{base: transportOf(hc), m: d.metrics, tokenURL: cfg.Tibber.TokenURL, userinfoURL: cfg.Tibber.UserinfoURL}
		authHC = &c
	}
	var tokens auth.TokenStore = d.secrets
	if o.WrapTokens != nil {
		tokens = o.WrapTokens(tokens)
	}
	authOpts := auth.Options{
		ClientID:     cfg.Tibber.ClientID,
		ClientSecret: secret,
		AuthURL:      cfg.Tibber.AuthURL,
		TokenURL:     cfg.Tibber.TokenURL,
		UserinfoURL:  cfg.Tibber.UserinfoURL,
		RedirectURL:  cfg.Tibber.RedirectURL,
		Scopes:       cfg.Tibber.Scopes,
		HTTPClient:   authHC,
		UserAgent:    version.UserAgent(),
		Store:        tokens,
		Status:       d.data,
		Clock:        d.clk,
		Logger:       d.log.With("component", "auth"),
		NotBefore:    o.NotBefore,
	}
	if n := d.authNotifier(); n != nil {
		authOpts.Notifier = n
	}
	var err error
	if d.clientConfigured {
		if d.flow, err = auth.NewFlow(authOpts); err != nil {
			return fmt.Errorf("authorization flow: %w", err)
		}
	}
	if d.source, err = auth.NewSource(authOpts); err != nil {
		return fmt.Errorf("token source: %w", err)
	}
	rate := cfg.Tibber.RequestsPerSecond
	if o.RateLimit > 0 {
		rate = o.RateLimit
	}
	d.api, err = tibber.New(tibber.Options{
		BaseURL:        cfg.Tibber.APIURL,
		HTTPClient:     hc,
		Tokens:         d.source,
		UserAgent:      version.UserAgent(),
		Clock:          d.clk,
		MaxBodyBytes:   cfg.Tibber.MaxResponseBytes,
		RequestTimeout: cfg.Tibber.RequestTimeout,
		RateLimit:      rate,
		Logger:         d.log.With("component", "tibber"),
		Observer:       d.apiObserver(),
		// One rate gate for the installation: every job of this process
		// and any `tibbersync sync` on the same state directory.
		Gate: tibber.NewGate(filepath.Join(cfg.Storage.Dir, tibber.GateFileName), d.clk),
	})
	if err != nil {
		return fmt.Errorf("data api client: %w", err)
	}
	var api jobs.API = d.api
	if o.WrapAPI != nil {
		api = o.WrapAPI(api)
	}
	var st jobs.Store = d.data
	if o.WrapStore != nil {
		st = o.WrapStore(st)
		// A wrapper that embeds jobs.Store hides data.db's RunTracker:
		// without it a run writes no "running" row, and a devices run's
		// per-home commits would exist without their run after a crash.
		// Keep the product's run rows whatever the wrapper forwards.
		if _, ok := st.(jobs.RunTracker); !ok {
			st = trackedStore{Store: st, RunTracker: d.data}
		}
	}
	d.syncer = &jobs.Syncer{
		API:                api,
		Store:              st,
		Clock:              d.clk,
		Logger:             d.log.With("component", "jobs"),
		Concurrency:        cfg.Sync.Concurrency,
		GrantedScopes:      d.grantedScopes,
		HistoryResolutions: cfg.History.Resolutions,
		BackfillDays:       cfg.History.BackfillDays,
		Lookback:           cfg.History.Lookback,
		Progress:           o.Progress,
		Authorized:         d.mayWork,
		// Nine tenths of the history run's deadline, shared fairly among
		// the streams, so that a huge or endless stream leaves the others
		// their history and the run still ends in time to record itself.
		HistoryBudget: JobTimeout(cfg, jobs.JobHistory) * 9 / 10,
	}
	d.buildHealth()
	if err := d.buildScheduler(); err != nil {
		return err
	}
	return d.buildWeb()
}

// buildHealth wires the storage health: data.db and the state directory,
// tokens.db's files, and refreshes postponed because tokens.db refused a
// write; storage errors feed the metric.
func (d *Daemon) buildHealth() {
	d.health = &store.Health{
		Dir: d.cfg.Storage.Dir,
		DB:  d.data,
		Checks: []func() error{
			d.secrets.CheckFiles,
			d.source.StorageError,
		},
	}
	if m := d.metrics; m != nil {
		d.data.OnStorageError(m.ObserveStorageError)
		d.health.OnCheck = func(st model.StorageHealth, dir store.DirHealth) {
			m.SetStorageOK(st.OK())
			if !dir.Writable {
				m.ObserveStorageError("unwritable")
			}
		}
	}
}

// CheckStorage runs the storage checks now (Maintain does every minute,
// the scheduler's runner before each job); the metrics follow.
func (d *Daemon) CheckStorage() model.StorageHealth { return d.health.Check() }

// Health returns the storage health (its Last is what /readyz shows).
func (d *Daemon) Health() *store.Health { return d.health }

// authNotifier is what the token source and the flow tell about state
// changes: the notifier and the observers. nil when nobody listens.
func (d *Daemon) authNotifier() auth.Notifier {
	if d.notifier == nil && len(d.opts.Observers) == 0 {
		return nil
	}
	return authFanout{d: d}
}

type authFanout struct{ d *Daemon }

func (f authFanout) Notify(ctx context.Context, st model.AuthStatus) {
	if f.d.notifier != nil {
		f.d.notifier.Notify(ctx, st)
	}
	for _, ob := range f.d.opts.Observers {
		ob.AuthChanged(ctx, st)
	}
}

// statusURL is the status page's URL in notifications.
func (d *Daemon) statusURL() string {
	if d.opts.StatusURL != "" {
		return d.opts.StatusURL
	}
	if d.opts.Listener != nil {
		return "http://" + d.opts.Listener.Addr().String() + "/"
	}
	return "http://" + d.cfg.Web.Listen + "/"
}

// grantedScopes returns the scopes of the stored grant (for category_access).
func (d *Daemon) grantedScopes() []string {
	st, err := d.source.Status(context.Background())
	if err != nil {
		return nil
	}
	return st.GrantedScopes
}

// RunJob runs one job now, with the cycle deadline (history gets longer),
// through the scheduler's code path but outside its schedule: `tibbersync
// sync` and the demo. The run is recorded in data.db and the observers
// are told.
func (d *Daemon) RunJob(ctx context.Context, job string) (model.Run, error) {
	r, err := d.runJob(ctx, job)
	d.recordJobState(ctx, r, err)
	d.observeRun(ctx, r, err)
	return r, err
}

// runJob runs one job with its deadline, scheduled or not, unless the
// storage health says its result could not be stored (data.db replaced,
// deleted or damaged; disk full or read-only): then it fails at once and
// makes no API call.
func (d *Daemon) runJob(ctx context.Context, job string) (model.Run, error) {
	if err := d.health.BeforeJob(); err != nil {
		now := d.clk.Now()
		d.log.Warn("job not started: storage problem", "job", job, "err", err)
		return model.Run{Job: job, StartedAt: now, FinishedAt: now, Status: jobs.StatusFailed,
			Error: "not started: " + err.Error()}, fmt.Errorf("%s: %w", job, err)
	}
	ctx, cancel := context.WithTimeout(ctx, JobTimeout(d.cfg, job))
	defer cancel()
	return d.syncer.Run(ctx, job)
}

func (d *Daemon) observeRun(ctx context.Context, r model.Run, err error) {
	for _, ob := range d.opts.Observers {
		ob.RunFinished(ctx, r, err)
	}
}

// Close releases the web listener (when Run never took it), data.db,
// tokens.db and the daemon lock. It is idempotent; call it after Run
// returned.
func (d *Daemon) Close() error {
	d.closeOnce.Do(func() {
		var errs []error
		if d.srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			errs = append(errs, d.srv.Close(ctx))
			cancel()
		} else if d.opts.Listener != nil {
			_ = d.opts.Listener.Close()
		}
		if d.source != nil {
			// A refreshed token that could not be stored gets one more
			// try; if it is lost, Close logs at ERROR what and what to do.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = d.source.Close(ctx)
			cancel()
		}
		if d.data != nil {
			errs = append(errs, d.data.Close())
		}
		if d.secrets != nil {
			errs = append(errs, d.secrets.Close())
		}
		if d.unlock != nil {
			d.unlock()
		}
		d.closeErr = errors.Join(errs...)
	})
	return d.closeErr
}

// Config returns the configuration the daemon was opened with.
func (d *Daemon) Config() config.Config { return d.cfg }

// Store returns data.db.
func (d *Daemon) Store() *store.DB { return d.data }

// Tokens returns tokens.db.
func (d *Daemon) Tokens() *tokenstore.Store { return d.secrets }

// Auth returns the token source (auth state, access tokens, keep-alive).
func (d *Daemon) Auth() *auth.Source { return d.source }

// Flow returns the authorization flow; nil when the client is not
// configured (no client id or no secret).
func (d *Daemon) Flow() *auth.Flow { return d.flow }

// ClientConfigured reports whether both the client id and the secret are known.
func (d *Daemon) ClientConfigured() bool { return d.clientConfigured }

// API returns the Data API client.
func (d *Daemon) API() *tibber.Client { return d.api }

// Syncer returns the jobs' syncer, as the scheduler runs it.
func (d *Daemon) Syncer() *jobs.Syncer { return d.syncer }

// Scheduler returns the scheduler; its Runner applies the product's policy.
func (d *Daemon) Scheduler() *jobs.Scheduler { return d.sched }

// Metrics returns the metrics; nil unless Options.Metrics.
func (d *Daemon) Metrics() *metrics.Metrics { return d.metrics }

// Notifier returns the notifier; nil unless [notify] configures one.
func (d *Daemon) Notifier() *notify.Notifier { return d.notifier }

// Web returns the web server (setup and status pages, /metrics). Run binds
// it; Handler works without.
func (d *Daemon) Web() *web.Server { return d.srv }

// URL returns the web server's base URL, e.g. http://127.0.0.1:8765: the
// bound address once Run serves (or the handed-over Listener's), else the
// configured one.
func (d *Daemon) URL() string {
	if u := d.srv.URL(); u != "" {
		return u
	}
	if d.opts.Listener != nil {
		return "http://" + d.opts.Listener.Addr().String()
	}
	return "http://" + d.cfg.Web.Listen
}

// Ready is closed once Run serves the web server and has told systemd.
func (d *Daemon) Ready() <-chan struct{} { return d.ready }

// transportOf returns c's transport, http.DefaultTransport when unset.
func transportOf(c *http.Client) http.RoundTripper {
	if c.Transport != nil {
		return c.Transport
	}
	return http.DefaultTransport
}

// Unlimited is the RateLimit of a test that must not wait for the limiter.
var Unlimited = math.Inf(1)

// trackedStore is a wrapped jobs.Store with data.db's run tracking.
type trackedStore struct {
	jobs.Store
	jobs.RunTracker
}
