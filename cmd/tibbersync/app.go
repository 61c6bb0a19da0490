package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/tibbersync/tibbersync/internal/auth"
	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/config"
	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/metrics"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/notify"
	"github.com/tibbersync/tibbersync/internal/store"
	"github.com/tibbersync/tibbersync/internal/tibber"
	"github.com/tibbersync/tibbersync/internal/tokenstore"
	"github.com/tibbersync/tibbersync/internal/version"
)

// app is every component of the daemon, wired together. Only this package
// knows the concrete types.
type app struct {
	cfg      config.Config
	log      *slog.Logger
	clk      clock.Clock
	data     *store.DB
	secrets  *tokenstore.Store
	source   *auth.Source
	flow     *auth.Flow
	api      *tibber.Client
	syncer   *jobs.Syncer
	notifier *notify.Notifier
	metrics  *metrics.Metrics
	// clientConfigured is true when both the client id and the secret are known.
	clientConfigured bool

	// skipMu guards skipped: the jobs whose last run was skipped because
	// no API call may be made (see Run).
	skipMu  sync.Mutex
	skipped map[string]bool
}

// appOptions are the few knobs that differ between run, sync, setup and demo.
type appOptions struct {
	clock       clock.Clock
	httpClient  *http.Client
	rateLimit   float64 // overrides [tibber].requests_per_second when > 0
	statusURL   string
	withMetrics bool
	progress    func(jobs.HistoryProgress)
}

// buildTime is the earliest plausible wall-clock time (R26): a clock before
// it means a Pi booted without an RTC and has not synced yet.
func buildTime() time.Time {
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

// cfgT is the configuration type, aliased for brevity in signatures.
type cfgT = config.Config

// openApp opens data.db and tokens.db and builds every component. It makes
// no network call.
func openApp(ctx context.Context, cfg config.Config, log *slog.Logger, o appOptions) (*app, error) {
	if o.clock == nil {
		o.clock = clock.Real{}
	}
	a := &app{cfg: cfg, log: log, clk: o.clock}
	if err := os.MkdirAll(cfg.Storage.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("create storage dir %q: %w", cfg.Storage.Dir, err)
	}
	var err error
	storeLog := log.With("component", "store")
	a.data, err = store.Open(ctx, filepath.Join(cfg.Storage.Dir, "data.db"), store.Options{
		Clock:  o.clock,
		Logger: storeLog,
		// A data.db of an older release is converted on first open.
		ConvertProgress: store.LogProgress(storeLog, o.clock.Now),
	})
	if err != nil {
		return nil, err
	}
	a.secrets, err = tokenstore.Open(ctx, cfg.Storage.Dir, o.clock)
	if err != nil {
		a.data.Close()
		return nil, err
	}

	secret := cfg.ClientSecret
	if secret.Empty() {
		// A secret typed on the setup page (R11: after the credential and the file).
		if s, err := a.secrets.ClientSecret(ctx); err == nil && !s.Empty() {
			secret = s
		}
	}
	if cfg.ClientSecretSource == "environment" {
		log.Warn("client secret taken from the environment; prefer LoadCredential= or client_secret_file", "component", "config")
	}
	a.clientConfigured = cfg.Tibber.ClientID != "" && !secret.Empty()

	hc := o.httpClient
	if hc == nil {
		hc = tibber.NewHTTPClient(cfg.Tibber.RequestTimeout)
	}
	if o.withMetrics {
		a.metrics = metrics.New()
	}
	if cfg.Notify.WebhookURL != "" || len(cfg.Notify.Command) > 0 {
		a.notifier = notify.New(notify.Options{
			WebhookURL: cfg.Notify.WebhookURL,
			Topic:      cfg.Notify.Topic,
			Command:    cfg.Notify.Command,
			Reminder:   cfg.Notify.Reminder,
			UserAgent:  version.UserAgent(),
			Clock:      o.clock,
			Logger:     log.With("component", "notify"),
			StatusURL:  o.statusURL,
		})
	}
	// Token and userinfo requests go through the same client, observed for
	// /metrics under the routes "token" and "userinfo".
	authHC := hc
	if a.metrics != nil {
		c := *hc
		c.Transport = observingTransport{base: transportOf(hc), m: a.metrics, tokenURL: cfg.Tibber.TokenURL, userinfoURL: cfg.Tibber.UserinfoURL}
		authHC = &c
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
		Store:        a.secrets,
		Status:       a.data,
		Clock:        o.clock,
		Logger:       log.With("component", "auth"),
		NotBefore:    buildTime(),
	}
	if a.notifier != nil {
		authOpts.Notifier = a.notifier
	}
	if a.clientConfigured {
		if a.flow, err = auth.NewFlow(authOpts); err != nil {
			a.close()
			return nil, fmt.Errorf("authorization flow: %w", err)
		}
	}
	if a.source, err = auth.NewSource(authOpts); err != nil {
		a.close()
		return nil, fmt.Errorf("token source: %w", err)
	}
	rate := cfg.Tibber.RequestsPerSecond
	if o.rateLimit > 0 {
		rate = o.rateLimit
	}
	a.api, err = tibber.New(tibber.Options{
		BaseURL:        cfg.Tibber.APIURL,
		HTTPClient:     hc,
		Tokens:         a.source,
		UserAgent:      version.UserAgent(),
		Clock:          o.clock,
		MaxBodyBytes:   cfg.Tibber.MaxResponseBytes,
		RequestTimeout: cfg.Tibber.RequestTimeout,
		RateLimit:      rate,
		Logger:         log.With("component", "tibber"),
		Observer:       a.observer(),
	})
	if err != nil {
		a.close()
		return nil, fmt.Errorf("data api client: %w", err)
	}
	a.syncer = &jobs.Syncer{
		API:                a.api,
		Store:              a.data,
		Clock:              o.clock,
		Logger:             log.With("component", "jobs"),
		Concurrency:        cfg.Sync.Concurrency,
		GrantedScopes:      a.grantedScopes,
		HistoryResolutions: cfg.History.Resolutions,
		BackfillDays:       cfg.History.BackfillDays,
		Lookback:           cfg.History.Lookback,
		Progress:           o.progress,
	}
	return a, nil
}

// observer feeds the Data API client's requests into the metrics.
func (a *app) observer() tibber.Observer {
	if a.metrics == nil {
		return nil
	}
	return metricsObserver{a.metrics}
}

type metricsObserver struct{ m *metrics.Metrics }

func (o metricsObserver) ObserveRequest(endpoint string, status int) {
	o.m.ObserveRequest(endpoint, status)
	if status == http.StatusTooManyRequests {
		o.m.Observe429(endpoint)
	}
}
func (o metricsObserver) ObserveRetry(endpoint string) { o.m.ObserveRetry(endpoint) }

// grantedScopes returns the scopes of the stored grant (for category_access).
func (a *app) grantedScopes() []string {
	st, err := a.source.Status(context.Background())
	if err != nil {
		return nil
	}
	return st.GrantedScopes
}

// runJob runs one job with the configured cycle deadline.
func (a *app) runJob(ctx context.Context, job string) (jobs.Run, error) {
	timeout := a.cfg.Sync.CycleTimeout
	if job == "history" {
		// A long backfill resumes from its checkpoint, so it may run longer
		// than a cycle, but never unbounded.
		timeout *= 6
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return a.syncer.Run(ctx, job)
}

// Run implements jobs.Runner with the cycle deadline. While the auth state
// stays sticky (setup, re-authorization or config error required) only the
// first skipped run of each job is recorded in sync_runs; later slots are
// skipped without writing, so a Pi left waiting for re-authorization for
// weeks does not write a row every five minutes (R19).
func (a *app) Run(ctx context.Context, job string) (jobs.Run, error) {
	a.skipMu.Lock()
	wasSkipped := a.skipped[job]
	a.skipMu.Unlock()
	if wasSkipped {
		if st, err := a.source.Status(ctx); err == nil && st.State.Sticky() {
			now := a.clk.Now()
			return jobs.Run{Job: job, StartedAt: now, FinishedAt: now, Status: jobs.StatusSkipped,
				Error: "not authorized: " + string(st.State)}, fmt.Errorf("%s: %w", job, model.ErrNotAuthorized)
		}
	}
	r, err := a.runJob(ctx, job)
	a.skipMu.Lock()
	if a.skipped == nil {
		a.skipped = map[string]bool{}
	}
	a.skipped[job] = r.Status == jobs.StatusSkipped
	a.skipMu.Unlock()
	return r, err
}

func (a *app) close() {
	if a.data != nil {
		a.data.Close()
	}
	if a.secrets != nil {
		a.secrets.Close()
	}
}

// jobIntervals is each job's nominal interval, for /readyz.
func jobIntervals(cfg config.Config) map[string]time.Duration {
	out := map[string]time.Duration{}
	for name, spec := range map[string]string{"homes": cfg.Schedule.Homes, "devices": cfg.Schedule.Devices, "history": cfg.Schedule.History} {
		sched, err := cron.ParseStandard(spec)
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

// configHint tells the user what to set when the client is not configured.
func configHint(cfg config.Config) string {
	var missing []string
	if cfg.Tibber.ClientID == "" {
		missing = append(missing, "set [tibber].client_id (or TIBBERSYNC_TIBBER_CLIENT_ID)")
	}
	if cfg.ClientSecret.Empty() {
		missing = append(missing, "put the client secret in a 0600 file named by [tibber].client_secret_file, or pass it with systemd LoadCredential=client_secret:/etc/tibbersync/client_secret")
	}
	return strings.Join(missing, "; ")
}

// isAuthStop reports whether err means "no API call may be made".
func isAuthStop(err error) bool {
	return errors.Is(err, model.ErrNotAuthorized)
}

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
	if status == http.StatusTooManyRequests {
		t.m.Observe429(route)
	}
	return resp, err
}

func transportOf(c *http.Client) http.RoundTripper {
	if c.Transport != nil {
		return c.Transport
	}
	return http.DefaultTransport
}
