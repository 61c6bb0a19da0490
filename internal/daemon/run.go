package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tibbersync/tibbersync/internal/auth"
	"github.com/tibbersync/tibbersync/internal/health"
	"github.com/tibbersync/tibbersync/internal/metrics"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/sdnotify"
	"github.com/tibbersync/tibbersync/internal/store"
	"github.com/tibbersync/tibbersync/internal/tibber"
	"github.com/tibbersync/tibbersync/internal/tokenstore"
	"github.com/tibbersync/tibbersync/internal/web"
)

// shutdownGrace bounds the web server's graceful close.
const shutdownGrace = 5 * time.Second

// buildWeb makes the web server (not bound yet).
func (d *Daemon) buildWeb() error {
	cfg := d.cfg
	var status web.StatusSource = d.data
	if d.opts.WrapStatus != nil {
		status = d.opts.WrapStatus(status)
	}
	wopts := web.Options{
		Listen:           cfg.Web.Listen,
		Listener:         d.opts.Listener,
		AllowRemote:      cfg.Web.AllowRemote,
		RedirectURL:      cfg.Tibber.RedirectURL,
		ClientID:         cfg.Tibber.ClientID,
		Scopes:           cfg.Tibber.Scopes,
		ClientConfigured: d.clientConfigured,
		ConfigHint:       ConfigHint(cfg),
		Status:           status,
		JobIntervals:     JobIntervals(cfg),
		Metrics:          d.metrics,
		Clock:            d.clk,
		Logger:           d.log.With("component", "web"),
		ParseRedirect:    auth.ParseRedirect,
		OnAuthorized:     d.authorized,
		StorageHealth:    d.health.Last,
		ExtraChecks:      d.storageChecks,
	}
	if d.flow != nil {
		wopts.Flow = d.flow
	}
	if d.mqtt != nil {
		wopts.MQTT = d.mqtt.Status
		d.metrics.ObserveMQTT(d.mqtt.Status)
	}
	srv, err := web.New(wopts)
	if err != nil {
		return err
	}
	d.srv = srv
	return nil
}

// Run is `tibbersync run`: it serves the setup and status pages, runs the
// scheduler, the notifier and the maintenance loop, and tells systemd,
// until ctx is done; then it lets running jobs finish and returns nil.
// It returns an error when the web server cannot bind, and when data.db
// was deleted or replaced under the running process (a restart reopens
// it).
func (d *Daemon) Run(ctx context.Context) error {
	for _, w := range auth.CheckRedirectURL(d.cfg.Tibber.RedirectURL, d.cfg.Web.Listen) {
		d.log.Warn("redirect uri check: " + w)
	}
	// The control socket first: the web page's /callback may tell it.
	d.openControl()
	if d.ctl != nil {
		defer d.ctl.Close()
	}
	if err := d.srv.Open(); err != nil {
		return err
	}
	url := d.srv.URL()
	d.log.Info("tibbersync started", "url", url, "storage_dir", d.cfg.Storage.Dir)
	st, stErr := d.source.Status(ctx)
	d.logAuthHint(st, stErr, url)
	if d.notifier != nil && stErr == nil {
		d.notifier.Restore(st)
	}
	runCtx, cancel := context.WithCancel(ctx)
	// A database file replaced or deleted under the daemon (Service only)
	// ends Run with an error, so that systemd restarts it on the file that
	// is there now instead of the daemon writing into a ghost. It is armed
	// before Ready, so a check right after Ready can already end Run.
	stop, stopCancel := context.WithCancelCause(runCtx)
	defer stopCancel(nil)
	d.maintMu.Lock()
	d.fileGone = stopCancel
	d.maintMu.Unlock()
	sd := sdnotify.New(d.opts.Environ, os.Getpid())
	if err := sd.Ready(statusLine(st.State, url)); err != nil {
		d.log.Warn("tell systemd we are ready", "err", err)
	}
	close(d.ready)

	// History runs again right after the first devices run only when it
	// has no devices to work on yet; with devices stored, its own first run
	// covers them, and a second run back to back would repeat the work.
	if n, err := d.activeDevices(ctx); err == nil && n > 0 {
		d.historyAfterDevices.Store(false)
	}
	wg := d.startLoops(runCtx, sd, url)
	d.serveControl(runCtx, wg)
	// data.db's quick_check runs in the background: a large file on a Pi
	// must not delay readiness. Damage makes the store refuse writes and
	// shows on /readyz and the status page.
	wg.Go(func() { _ = d.health.RunQuickCheck(runCtx, 0) })
	<-stop.Done()
	exitErr := context.Cause(stop)
	if ctx.Err() != nil || errors.Is(exitErr, context.Canceled) {
		exitErr = nil
	}
	_ = sd.Stopping()
	d.log.Info("stopping: letting running jobs finish")
	cancel()
	closeCtx, closeCancel := context.WithTimeout(context.Background(), shutdownGrace)
	if err := d.srv.Close(closeCtx); err != nil {
		d.log.Warn("web server close", "err", err)
	}
	closeCancel()
	wg.Wait()
	d.sched.Wait()
	d.log.Info("stopped")
	return exitErr
}

// activeDevices counts the devices stored and not removed.
func (d *Daemon) activeDevices(ctx context.Context) (int, error) {
	homes, err := d.data.ActiveHomeDevices(ctx)
	if err != nil {
		return 0, err
	}
	seen := map[string]bool{}
	for _, devs := range homes {
		for _, dev := range devs {
			seen[dev.ID] = true
		}
	}
	return len(seen), nil
}

// logAuthHint tells the user at start-up what to do, if anything.
func (d *Daemon) logAuthHint(st model.AuthStatus, err error, url string) {
	setup := url + "/setup"
	switch {
	case err != nil:
		d.log.Error("read auth status", "err", err)
	case !d.clientConfigured:
		d.log.Warn("client not configured: " + ConfigHint(d.cfg) + "; then open " + setup + " for the steps")
	case st.State == model.AuthSetupRequired:
		d.log.Warn("authorization required: open " + setup)
	case st.State == model.AuthReauthRequired || st.State == model.AuthConfigError:
		// The transition itself was logged at WARN (once) by the life that
		// saw it; a restart repeats the hint at INFO so that a wrapper
		// restarting the daemon does not multiply warnings (R9).
		d.log.Info("re-authorization required: open "+setup, "state", st.State, "reason", st.Reason, "since", st.Since)
	}
}

// startLoops starts the scheduler, the notifier, the MQTT bridge and the maintenance loop
// (the scheduler and maintenance only without ManualSchedule).
func (d *Daemon) startLoops(ctx context.Context, sd *sdnotify.Notifier, url string) *sync.WaitGroup {
	var wg sync.WaitGroup
	if !d.opts.ManualSchedule {
		wg.Go(func() {
			if err := d.sched.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				d.log.Error("scheduler stopped", "err", err)
			}
		})
		wg.Go(func() { d.maintainLoop(ctx, sd, url) })
	}
	if d.notifier != nil {
		wg.Go(func() { d.notifier.Run(ctx) })
	}
	if d.mqtt != nil {
		// Publishes "offline" and disconnects when ctx ends.
		wg.Go(func() { _ = d.mqtt.Run(ctx) })
	}
	return &wg
}

// maintainLoop runs Maintain every minute (more often when systemd's
// watchdog asks for it), with the systemd watchdog ping and status line.
func (d *Daemon) maintainLoop(ctx context.Context, sd *sdnotify.Notifier, url string) {
	every := time.Minute
	if sd.Watchdog > 0 && sd.Watchdog/2 < every {
		every = sd.Watchdog / 2
	}
	t := time.NewTicker(every)
	defer t.Stop()
	lastState := model.AuthState("")
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := sd.Ping(); err != nil {
			d.log.Warn("systemd watchdog", "err", err)
		}
		if st, err := d.source.Status(ctx); err == nil && st.State != lastState {
			lastState = st.State
			_ = sd.Status(statusLine(st.State, url))
		}
		d.Maintain(ctx)
	}
}

// Maintain is one round of the daemon's housekeeping: the storage checks
// (tokens.db rewritten once while it refused writes), the token keep-alive
// refresh (R8), a WAL checkpoint when the last one is 10 minutes old
// (R17), and the bytes-written metric. Run calls it every minute; a test
// driving the scheduler by hand calls it itself.
func (d *Daemon) Maintain(ctx context.Context) {
	// Postponed refreshes are reported until tokens.db takes a write again:
	// try one, so that a disk freed meanwhile shows as fixed now.
	d.source.RecheckStorage(ctx)
	if st := d.CheckStorage(); !st.OK() {
		d.warnStorage(st)
		d.exitIfFileGone()
	}
	if err := d.source.KeepAlive(ctx); err != nil && !IsAuthStop(err) && ctx.Err() == nil {
		d.log.Warn("keep-alive refresh", "err", err)
	}
	now := d.clk.Now()
	d.maintMu.Lock()
	due := now.Sub(d.lastCheckpoint) >= checkpointEvery
	if due {
		d.lastCheckpoint = now
	}
	d.maintMu.Unlock()
	if due {
		if _, err := d.data.Checkpoint(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("wal checkpoint", "err", err)
		}
	}
	// The summary metrics (auth, tables, sizes) are read on each /metrics
	// scrape by the web server; only the write counter is fed from here.
	if d.metrics != nil {
		if n, ok := processBytesWritten(); ok {
			d.metrics.SetBytesWritten(n)
		}
	}
}

// exitIfFileGone ends Run (the service only) when data.db or tokens.db
// was replaced or deleted under the daemon: a restart opens the file that
// is there now, which the store cannot do under a running connection.
func (d *Daemon) exitIfFileGone() {
	d.maintMu.Lock()
	gone := d.fileGone
	d.maintMu.Unlock()
	if !d.opts.Service || gone == nil {
		return
	}
	err := d.data.Fault()
	if err == nil || !errors.Is(err, store.ErrFileReplaced) {
		err = d.secrets.CheckFiles()
	}
	if err == nil || !(errors.Is(err, store.ErrFileReplaced) || errors.Is(err, tokenstore.ErrFileReplaced)) {
		return
	}
	d.log.Error("a database file was replaced or deleted under the running daemon; exiting so that systemd restarts it on the file now there", "err", err)
	gone(fmt.Errorf("restart needed: %w", err))
}

// storageChecks is the storage line of /readyz and the page's verdict: the
// last storage check (every minute and before each job).
func (d *Daemon) storageChecks(context.Context) []health.Check {
	return []health.Check{health.StorageCheck(d.health.Last())}
}

// warnStorage logs the storage problems when they change.
func (d *Daemon) warnStorage(st model.StorageHealth) {
	text := strings.Join(st.Problems, "; ")
	d.maintMu.Lock()
	changed := text != d.lastStorage
	d.lastStorage = text
	d.maintMu.Unlock()
	if changed {
		d.log.Error("storage problem: data or tokens may not be stored", "problems", text, "dir", st.Dir)
	}
}

// checkpointEvery is how often Maintain checkpoints the WAL.
const checkpointEvery = 10 * time.Minute

// lockDir takes an exclusive flock on <dir>/daemon.lock so that only one
// daemon runs per state directory.
func lockDir(dir string) (func(), error) {
	path := filepath.Join(dir, "daemon.lock")
	// 0600: anyone who can open the file can flock it and keep the daemon
	// from starting (a read-only analyst in the group included). An older
	// lock file created 0640 is tightened.
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open daemon lock %q: %w", path, err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, fmt.Errorf("daemon lock %q: %w", path, err)
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

// apiObserver feeds the Data API client's requests into the metrics.
func (d *Daemon) apiObserver() tibber.Observer {
	if d.metrics == nil {
		return nil
	}
	return metricsObserver{d.metrics}
}

type metricsObserver struct{ m *metrics.Metrics }

func (o metricsObserver) ObserveRequest(endpoint string, status int) {
	o.m.ObserveRequest(endpoint, status) // a 429 also counts as throttled
}
func (o metricsObserver) ObserveRetry(endpoint string) { o.m.ObserveRetry(endpoint) }

// ObserveSchemaDrift implements tibber.DriftObserver.
func (o metricsObserver) ObserveSchemaDrift(endpoint string) { o.m.ObserveSchemaDrift(endpoint) }

// observingTransport counts token-endpoint and userinfo requests for
// /metrics. It only observes: it never retries or changes a request (R3).
type observingTransport struct {
	base                  http.RoundTripper
	m                     *metrics.Metrics
	tokenURL, userinfoURL string
}

func (t observingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	route := "other"
	switch u := req.URL.Scheme + "://" + req.URL.Host + req.URL.Path; u {
	case t.tokenURL:
		route = "token"
	case t.userinfoURL:
		route = "userinfo"
	}
	resp, err := t.base.RoundTrip(req)
	status := 0
	if err == nil {
		status = resp.StatusCode
	}
	t.m.ObserveRequest(route, status)
	return resp, err
}

// processBytesWritten reads wchar from /proc/self/io: bytes this process
// asked the kernel to write (SD-card wear budget, R19).
func processBytesWritten() (int64, bool) {
	f, err := os.Open("/proc/self/io")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && k == "wchar" {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
