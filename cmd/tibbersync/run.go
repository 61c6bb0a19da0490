package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tibbersync/tibbersync/internal/auth"
	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/memtrim"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/sdnotify"
	"github.com/tibbersync/tibbersync/internal/store"
	"github.com/tibbersync/tibbersync/internal/web"
)

// jobNames are the scheduled jobs, in the order they first run.
var jobNames = []string{"homes", "devices", "history"}

func cmdRun(ctx context.Context, args []string, env *environment) int {
	fs, g := newFlagSet(ctx, "run", env)
	if code, ok := parseFlags(fs, args, 0, env); !ok {
		return code
	}
	cfg, log, code, ok := loadConfigAndLogger(g, env)
	if !ok {
		return code
	}
	d := &daemon{env: env, log: log}
	return d.run(ctx, cfg, appOptions{withMetrics: true})
}

// daemon is `tibbersync run`: web server, scheduler, notifier and
// maintenance, owned by one context.
type daemon struct {
	env *environment
	log *slog.Logger
	// ready, when set, is called with the web server's URL once it listens (tests, demo).
	ready func(url string, a *app)
}

func (d *daemon) run(ctx context.Context, cfg cfgT, o appOptions) int {
	log := d.log
	for _, w := range auth.CheckRedirectURL(cfg.Tibber.RedirectURL, cfg.Web.Listen) {
		log.Warn("redirect uri check: " + w)
	}
	if err := os.MkdirAll(cfg.Storage.Dir, 0o750); err != nil {
		fmt.Fprintf(d.env.stderr, "tibbersync: create storage dir: %v\n", err)
		return exitConfig
	}
	unlock, err := lockDaemon(cfg.Storage.Dir)
	if err != nil {
		fmt.Fprintf(d.env.stderr, "tibbersync: %v\n", err)
		return exitError
	}
	defer unlock()
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}

	if o.statusURL == "" {
		o.statusURL = "http://" + cfg.Web.Listen + "/"
	}
	a, err := openApp(ctx, cfg, log, o)
	if err != nil {
		fmt.Fprintf(d.env.stderr, "tibbersync: %v\n", err)
		return exitConfig
	}
	defer a.close()
	if err := a.source.Init(ctx); err != nil {
		log.Error("read token state", "err", err)
	}

	// History works on the stored inventory: after start-up and after a new
	// authorization, it runs again as soon as a devices run has stored the
	// devices, instead of waiting up to an hour for its next slot.
	var historyAfterDevices atomic.Bool
	historyAfterDevices.Store(true)
	var sched *jobs.Scheduler
	sched = &jobs.Scheduler{
		Runner:    a,
		Store:     a.data,
		Clock:     a.clk,
		Logger:    log.With("component", "scheduler"),
		Jitter:    cfg.Schedule.Jitter,
		NotBefore: buildTime(),
		OnRun: func(r jobs.Run, err error) {
			if a.metrics != nil {
				a.metrics.ObserveRun(r.Job, r.Status, r.RowsWritten, r.FinishedAt)
			}
			if r.Job == "devices" && (r.Status == jobs.StatusOK || r.Status == jobs.StatusPartial) && historyAfterDevices.Swap(false) {
				sched.Trigger("history")
			}
			releaseMemory(ctx, a.data, log)
		},
	}
	for _, name := range jobNames {
		sched.Jobs = append(sched.Jobs, jobs.Job{Name: name, Spec: scheduleSpec(cfg, name)})
	}
	if err := sched.Validate(); err != nil {
		fmt.Fprintf(d.env.stderr, "tibbersync: %v\n", err)
		return exitConfig
	}

	wopts := web.Options{
		Listen:           cfg.Web.Listen,
		AllowRemote:      cfg.Web.AllowRemote,
		RedirectURL:      cfg.Tibber.RedirectURL,
		ClientID:         cfg.Tibber.ClientID,
		Scopes:           cfg.Tibber.Scopes,
		ClientConfigured: a.clientConfigured,
		ConfigHint:       configHint(cfg),
		Status:           a.data,
		JobIntervals:     jobIntervals(cfg),
		Metrics:          a.metrics,
		Clock:            a.clk,
		Logger:           log.With("component", "web"),
		ParseRedirect:    auth.ParseRedirect,
		OnAuthorized: func(st model.AuthStatus) {
			log.Info("authorized; starting jobs", "email", st.Email, "granted_scopes", st.GrantedScopes)
			historyAfterDevices.Store(true)
			sched.Trigger("homes")
			sched.Trigger("devices")
		},
	}
	if a.flow != nil {
		wopts.Flow = a.flow
	}
	srv, err := web.New(wopts)
	if err != nil {
		fmt.Fprintf(d.env.stderr, "tibbersync: web: %v\n", err)
		return exitConfig
	}
	if err := srv.Open(); err != nil {
		fmt.Fprintf(d.env.stderr, "tibbersync: web: %v\n", err)
		return exitError
	}
	log.Info("tibbersync started", "url", srv.URL(), "storage_dir", cfg.Storage.Dir)

	st, err := a.source.Status(ctx)
	switch {
	case err != nil:
		log.Error("read auth status", "err", err)
	case !a.clientConfigured:
		log.Warn("client not configured: " + configHint(cfg) + "; then open " + setupURL(srv) + " for the steps")
	case st.State == model.AuthSetupRequired:
		log.Warn("authorization required: open " + setupURL(srv))
	case st.State == model.AuthReauthRequired || st.State == model.AuthConfigError:
		// The transition itself was logged at WARN (once) by the life that
		// saw it; a restart repeats the hint at INFO so that a wrapper
		// restarting the daemon does not multiply warnings (R9).
		log.Info("re-authorization required: open "+setupURL(srv), "state", st.State, "reason", st.Reason, "since", st.Since)
	}
	if a.notifier != nil && err == nil {
		a.notifier.Restore(st)
	}
	sd := sdnotify.New(d.env.environ, os.Getpid())
	if err := sd.Ready(statusLine(st.State, srv.URL())); err != nil {
		log.Warn("tell systemd we are ready", "err", err)
	}
	if d.ready != nil {
		d.ready(srv.URL(), a)
	}

	var wg sync.WaitGroup
	runCtx, cancel := context.WithCancel(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := sched.Run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("scheduler stopped", "err", err)
		}
	}()
	if a.notifier != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.notifier.Run(runCtx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		maintain(runCtx, a, log, sd, srv.URL())
	}()

	<-ctx.Done()
	_ = sd.Stopping()
	log.Info("stopping: letting running jobs finish")
	cancel()
	closeCtx, closeCancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := srv.Close(closeCtx); err != nil {
		log.Warn("web server close", "err", err)
	}
	closeCancel()
	wg.Wait()
	log.Info("stopped")
	return exitOK
}

func setupURL(srv *web.Server) string { return srv.URL() + "/setup" }

func scheduleSpec(cfg cfgT, job string) string {
	switch job {
	case "homes":
		return cfg.Schedule.Homes
	case "devices":
		return cfg.Schedule.Devices
	default:
		return cfg.Schedule.History
	}
}

// maintain runs the daemon's housekeeping every minute (more often when
// systemd's watchdog asks for it): the token keep-alive refresh (R8), WAL
// checkpoints when idle (R17), the bytes-written metric, and the systemd
// watchdog and status line.
func maintain(ctx context.Context, a *app, log *slog.Logger, sd *sdnotify.Notifier, url string) {
	every := time.Minute
	if sd.Watchdog > 0 && sd.Watchdog/2 < every {
		every = sd.Watchdog / 2
	}
	t := time.NewTicker(every)
	defer t.Stop()
	lastCheckpoint := a.clk.Now()
	lastState := model.AuthState("")
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := sd.Ping(); err != nil {
			log.Warn("systemd watchdog", "err", err)
		}
		if st, err := a.source.Status(ctx); err == nil && st.State != lastState {
			lastState = st.State
			_ = sd.Status(statusLine(st.State, url))
		}
		if err := a.source.KeepAlive(ctx); err != nil && !isAuthStop(err) && ctx.Err() == nil {
			log.Warn("keep-alive refresh", "err", err)
		}
		now := a.clk.Now()
		if now.Sub(lastCheckpoint) >= 10*time.Minute {
			lastCheckpoint = now
			if _, err := a.data.Checkpoint(ctx); err != nil && ctx.Err() == nil {
				log.Warn("wal checkpoint", "err", err)
			}
		}
		// The summary metrics (auth, tables, sizes) are read on each /metrics
		// scrape by the web server; only the write counter is fed from here.
		if a.metrics != nil {
			if n, ok := processBytesWritten(); ok {
				a.metrics.SetBytesWritten(n)
			}
		}
	}
}

// releaseMemory hands what a job used back to the system: SQLite's caches,
// the Go heap the job left behind (debug.FreeOSMemory runs a GC and returns
// the freed pages at once instead of over minutes) and the pages of the
// binary's code that the job ran (see internal/memtrim). It runs after
// every job; at idle-heap sizes it costs a few milliseconds.
func releaseMemory(ctx context.Context, db *store.DB, log *slog.Logger) {
	if err := db.ReleaseMemory(ctx); err != nil && ctx.Err() == nil {
		log.Debug("release memory", "err", err)
	}
	if _, err := memtrim.Release(); err != nil {
		log.Debug("release memory", "err", err)
	}
}

// memoryLimit is the daemon's soft memory limit (debug.SetMemoryLimit)
// unless GOMEMLIMIT is set: the Go runtime collects harder as its memory
// approaches it, which keeps the peak of a long backfill low. The daemon
// idles far below it.
const memoryLimit = 40 << 20

// lockDaemon takes an exclusive flock on <dir>/daemon.lock so that only one
// daemon runs per state directory.
func lockDaemon(dir string) (func(), error) {
	path := filepath.Join(dir, "daemon.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open daemon lock %q: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another tibbersync daemon is already running with storage dir %q (lock %s held)", dir, path)
		}
		return nil, fmt.Errorf("lock %q: %w", path, err)
	}
	_ = f.Truncate(0)
	_, _ = fmt.Fprintf(f, "%d\n", os.Getpid())
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}

// loopbackHost reports whether host (of web.listen) is loopback.
func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// statusLine is what `systemctl status tibbersync` shows.
func statusLine(state model.AuthState, url string) string {
	switch state {
	case model.AuthOK:
		return "authorized; syncing (status: " + url + "/)"
	case model.AuthSetupRequired:
		return "authorization required: open " + url + "/setup"
	case model.AuthReauthRequired:
		return "RE-AUTHORIZATION REQUIRED: open " + url + "/setup"
	case model.AuthConfigError:
		return "CONFIGURATION ERROR: see the log and " + url + "/"
	}
	return "starting"
}
