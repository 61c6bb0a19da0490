package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/tibbersync/tibbersync/internal/auth"
	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/config"
	"github.com/tibbersync/tibbersync/internal/daemon"
	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/simulator"
	"github.com/tibbersync/tibbersync/internal/version"
)

// rigOptions configure the daemon a harness process opens.
type rigOptions struct {
	dir    string // storage dir (data.db, secrets/tokens.db)
	simURL string // simulator base URL
	// redirectURL is the registered redirect URI (simulator.DefaultRedirectURI when empty).
	redirectURL string
	clock       clock.Clock
	log         *slog.Logger
	// report, when set, receives one COMMIT line per commit that returned.
	report io.Writer
	// rateLimit is the Data API client's request rate (0: unlimited).
	rateLimit    float64
	backfillDays int
	resolutions  []string
	// wrapTransport, when set, wraps the shared HTTP client's transport.
	wrapTransport func(http.RoundTripper) http.RoundTripper
	// wrapRunner wraps the scheduler's runner (daemon.Options.WrapRunner).
	wrapRunner func(jobs.Runner) jobs.Runner
	// observers are told about every run and auth change.
	observers []daemon.Observer
}

// rigNotBefore is the build-time floor (R26) of every rig: before the
// fake clocks of the tests.
var rigNotBefore = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// rig is the daemon (internal/daemon, the product's wiring) opened on a
// harness's state directory; with a reporter, every commit to data.db and
// tokens.db is reported after it returned.
type rig struct {
	*daemon.Daemon
}

// openRig opens data.db and tokens.db under o.dir and builds every
// component. It makes no network call.
func openRig(ctx context.Context, o rigOptions) (*rig, error) {
	if o.log == nil {
		o.log = logging.Discard()
	}
	cfg := config.Default()
	cfg.Storage.Dir = o.dir
	simulator.Configure(&cfg, o.simURL, o.redirectURL)
	if o.backfillDays > 0 {
		cfg.History.BackfillDays = o.backfillDays
	}
	if len(o.resolutions) > 0 {
		cfg.History.Resolutions = o.resolutions
	}
	rate := o.rateLimit
	if rate <= 0 {
		rate = daemon.Unlimited
	}
	do := daemon.Options{
		Logger:        o.log,
		Clock:         o.clock,
		NotBefore:     rigNotBefore,
		RateLimit:     rate,
		WrapTransport: o.wrapTransport,
		WrapRunner:    o.wrapRunner,
		Observers:     o.observers,
		// The harnesses drive the scheduler themselves, if at all.
		ManualSchedule: true,
	}
	if o.report != nil {
		rep := &reporter{w: o.report}
		do.WrapStore = func(s jobs.Store) jobs.Store { return reportingStore{Store: s, rep: rep} }
		do.WrapTokens = func(s auth.TokenStore) auth.TokenStore { return reportingTokens{TokenStore: s, rep: rep} }
	}
	d, err := daemon.Open(ctx, cfg, do)
	if err != nil {
		return nil, fmt.Errorf("open rig: %w", err)
	}
	return &rig{d}, nil
}

func (r *rig) close() { _ = r.Close() }

// authorize runs the authorization code flow against a simulator with
// AutoConsent, as a browser would: Flow.Start, the authorize redirect, and
// Flow.Complete with the redirected URL.
func (r *rig) authorize(ctx context.Context) (model.AuthStatus, error) {
	authURL, err := r.Flow().Start(ctx)
	if err != nil {
		return model.AuthStatus{}, fmt.Errorf("authorize: %w", err)
	}
	loc, err := followAuthorize(ctx, authURL)
	if err != nil {
		return model.AuthStatus{}, err
	}
	st, err := r.Flow().Complete(ctx, loc)
	if err != nil {
		return model.AuthStatus{}, fmt.Errorf("authorize: complete: %w", err)
	}
	return st, nil
}

// followAuthorize GETs an authorize URL of an AutoConsent simulator and
// returns the redirect it answers with (redirect_uri?code=…&state=…).
func followAuthorize(ctx context.Context, authURL string) (*url.URL, error) {
	c := &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
	if err != nil {
		return nil, fmt.Errorf("authorize: %w", err)
	}
	req.Header.Set("User-Agent", version.UserAgent())
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("authorize: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		return nil, fmt.Errorf("authorize: simulator answered %s, want a redirect", resp.Status)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		return nil, fmt.Errorf("authorize: redirect location: %w", err)
	}
	return loc, nil
}

// commitPrefix starts every commit report line a child prints.
const commitPrefix = "COMMIT "

// Kinds of commit reports.
const (
	commitRun   = "run"   // a sync_runs row (with its inventory batch, if any)
	commitPage  = "page"  // one history page with its checkpoint
	commitToken = "token" // a token committed to tokens.db
)

// commitReport is one acknowledged commit: printed by the child after the
// store call returned nil, so the commit is durable in SQLite's sense.
type commitReport struct {
	Kind string `json:"kind"`
	// run
	RunID      int64  `json:"run_id,omitempty"`
	Job        string `json:"job,omitempty"`
	Status     string `json:"status,omitempty"`
	FinishedMS int64  `json:"finished_ms,omitempty"`
	// Devices are the devices whose details an inventory batch stored.
	Devices []string `json:"devices,omitempty"`
	// page
	Device     string `json:"device,omitempty"`
	Resolution string `json:"resolution,omitempty"`
	// Periods are the period starts (ms) the page stored rows for.
	Periods      []int64 `json:"periods,omitempty"`
	LastPeriodMS int64   `json:"last_period_ms,omitempty"`
	// token
	Generation int64 `json:"generation,omitempty"`
}

// reporter writes commit reports, one line per write(2), so a SIGKILL
// never leaves half a report that looks whole.
type reporter struct {
	mu sync.Mutex
	w  io.Writer
}

func (r *reporter) report(c commitReport) {
	b, err := json.Marshal(c)
	if err != nil {
		return // plain structs always marshal
	}
	line := append([]byte(commitPrefix), b...)
	line = append(line, '\n')
	r.mu.Lock()
	defer r.mu.Unlock()
	_, _ = r.w.Write(line)
}

// reportingStore is data.db as the syncer sees it; it reports each commit
// after it returned. It implements jobs.Store.
type reportingStore struct {
	jobs.Store
	rep *reporter
}

// SaveInventory implements jobs.Store.
func (s reportingStore) SaveInventory(ctx context.Context, run model.Run, b model.InventoryBatch) (model.Run, error) {
	saved, err := s.Store.SaveInventory(ctx, run, b)
	if err == nil {
		c := commitReport{Kind: commitRun, RunID: saved.ID, Job: saved.Job, Status: saved.Status, FinishedMS: saved.FinishedAt.UnixMilli()}
		for _, d := range b.Details {
			c.Devices = append(c.Devices, d.ID)
		}
		s.rep.report(c)
	}
	return saved, err
}

// RecordRun implements jobs.Store.
func (s reportingStore) RecordRun(ctx context.Context, run model.Run) (int64, error) {
	id, err := s.Store.RecordRun(ctx, run)
	if err == nil {
		s.rep.report(commitReport{Kind: commitRun, RunID: id, Job: run.Job, Status: run.Status, FinishedMS: run.FinishedAt.UnixMilli()})
	}
	return id, err
}

// SaveHistoryPage implements jobs.Store.
func (s reportingStore) SaveHistoryPage(ctx context.Context, deviceID, resolution string, page model.HistoryPage, cp model.HistoryCheckpoint) (model.HistoryResult, error) {
	res, err := s.Store.SaveHistoryPage(ctx, deviceID, resolution, page, cp)
	if err == nil {
		c := commitReport{Kind: commitPage, Device: deviceID, Resolution: resolution}
		last := cp.LastPeriod
		for _, it := range storedItems(page) {
			c.Periods = append(c.Periods, it.Time.UnixMilli())
			if it.Time.After(last) {
				last = it.Time
			}
		}
		if !last.IsZero() {
			c.LastPeriodMS = last.UnixMilli()
		}
		s.rep.report(c)
	}
	return res, err
}

// storedItems are the items SaveHistoryPage stores rows for: inside the
// page's effective window and with at least one finite, named metric (the
// documented contract of store.SaveHistoryPage).
func storedItems(page model.HistoryPage) []model.HistoryItem {
	var out []model.HistoryItem
	for _, it := range page.Items {
		if it.Time.IsZero() ||
			(!page.EffectiveStart.IsZero() && it.Time.Before(page.EffectiveStart)) ||
			(!page.EffectiveEnd.IsZero() && !it.Time.Before(page.EffectiveEnd)) {
			continue
		}
		for m, v := range it.Metrics {
			if m != "" && !math.IsNaN(v) && !math.IsInf(v, 0) {
				out = append(out, it)
				break
			}
		}
	}
	return out
}

// reportingTokens is tokens.db as auth sees it; it reports each committed
// token generation. It implements auth.TokenStore.
type reportingTokens struct {
	auth.TokenStore
	rep *reporter
}

// SaveGrant implements auth.TokenStore.
func (s reportingTokens) SaveGrant(ctx context.Context, tok model.Token, at time.Time) (int64, error) {
	gen, err := s.TokenStore.SaveGrant(ctx, tok, at)
	if err == nil {
		s.rep.report(commitReport{Kind: commitToken, Generation: gen})
	}
	return gen, err
}

// SaveRefreshed implements auth.TokenStore.
func (s reportingTokens) SaveRefreshed(ctx context.Context, tok model.Token, base int64) (int64, error) {
	gen, err := s.TokenStore.SaveRefreshed(ctx, tok, base)
	if err == nil {
		s.rep.report(commitReport{Kind: commitToken, Generation: gen})
	}
	return gen, err
}

// offsetClock is the real clock shifted by a fixed offset: a child process
// uses it to see a stored access token as expired without waiting.
type offsetClock struct{ offset time.Duration }

func (c offsetClock) Now() time.Time { return time.Now().Add(c.offset) }

func (c offsetClock) Sleep(ctx context.Context, d time.Duration) error {
	return clock.Real{}.Sleep(ctx, d)
}

// errNotAuthorized reports whether a job error means "no API call may be made".
func errNotAuthorized(err error) bool { return errors.Is(err, model.ErrNotAuthorized) }
