package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tibbersync/tibbersync/internal/auth"
	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/config"
	"github.com/tibbersync/tibbersync/internal/daemon"
	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/simulator"
	"github.com/tibbersync/tibbersync/internal/store"
	"github.com/tibbersync/tibbersync/internal/tibber"
	"github.com/tibbersync/tibbersync/internal/version"
)

// StackConfig configures the daemon's components as one bench process
// runs them: the settings that cmd/tibbersync takes from config.toml.
type StackConfig struct {
	// Dir is the state directory ([storage].dir).
	Dir string
	// SimURL is the simulator's base URL: authorization server and Data API.
	SimURL string
	// RateLimit is [tibber].requests_per_second; 0 keeps the client's
	// default (tibber.DefaultRateLimit).
	RateLimit float64
	// Concurrency is [sync].concurrency (0: jobs.DefaultConcurrency).
	Concurrency int
	// HistoryResolutions is [history].resolutions.
	HistoryResolutions []string
	// BackfillDays is [history].backfill_days.
	BackfillDays int
	// Logger receives the components' logs (default: discarded).
	Logger *slog.Logger
}

// Stack is the daemon (internal/daemon, the product's wiring) as one bench
// process runs it, with the HTTP client's socket writes counted. Its
// fields are the daemon's components.
type Stack struct {
	Daemon *daemon.Daemon
	Data   *store.DB
	Source *auth.Source
	Flow   *auth.Flow
	Syncer *jobs.Syncer
	// Sockets counts the bytes the HTTP client wrote to the network.
	Sockets *SocketCounter
	// DataPath is the path of data.db.
	DataPath string
	hc       *http.Client
}

// OpenStack opens the state directory and builds every component. It
// makes no network call.
func OpenStack(ctx context.Context, c StackConfig) (*Stack, error) {
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Stack{Sockets: &SocketCounter{}, DataPath: filepath.Join(c.Dir, "data.db")}
	hc := tibber.NewHTTPClient(tibber.DefaultRequestTimeout)
	tr, ok := hc.Transport.(*http.Transport)
	if !ok {
		return nil, fmt.Errorf("open stack: http transport is %T, want *http.Transport", hc.Transport)
	}
	tr = tr.Clone()
	tr.DialContext = s.Sockets.WrapDial(tr.DialContext)
	hc.Transport = tr
	s.hc = hc

	cfg := config.Default()
	cfg.Storage.Dir = c.Dir
	simulator.Configure(&cfg, c.SimURL, "")
	cfg.Tibber.RequestTimeout = tibber.DefaultRequestTimeout
	if c.Concurrency > 0 {
		cfg.Sync.Concurrency = c.Concurrency
	}
	if len(c.HistoryResolutions) > 0 {
		cfg.History.Resolutions = c.HistoryResolutions
	}
	if c.BackfillDays > 0 {
		cfg.History.BackfillDays = c.BackfillDays
	}
	d, err := daemon.Open(ctx, cfg, daemon.Options{
		Logger:         log,
		Clock:          clock.Real{},
		HTTPClient:     hc,
		RateLimit:      c.RateLimit,
		ManualSchedule: true,
	})
	if err != nil {
		return nil, fmt.Errorf("open stack: %w", err)
	}
	s.Daemon = d
	s.Data, s.Source, s.Flow, s.Syncer = d.Store(), d.Auth(), d.Flow(), d.Syncer()
	return s, nil
}

// Authorize runs the one-time authorization against a simulator with
// AutoConsent: Start, the authorize request (its redirect is read, not
// followed), then Complete with the redirect URL, as /callback would.
func (s *Stack) Authorize(ctx context.Context) error {
	authURL, err := s.Flow.Start(ctx)
	if err != nil {
		return fmt.Errorf("authorize: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
	if err != nil {
		return fmt.Errorf("authorize: %w", err)
	}
	req.Header.Set("User-Agent", version.UserAgent())
	c := &http.Client{
		Transport:     s.hc.Transport,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("authorize: %w", err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode/100 != 3 || loc == "" {
		return fmt.Errorf("authorize: want a redirect (AutoConsent), got %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	u, err := url.Parse(loc)
	if err != nil {
		return fmt.Errorf("authorize: redirect: %w", err)
	}
	if _, err := s.Flow.Complete(ctx, u); err != nil {
		return fmt.Errorf("authorize: %w", err)
	}
	return nil
}

// FileSizes returns the sizes of data.db and data.db-wal (0 when absent).
func (s *Stack) FileSizes() (db, wal int64) {
	return fileSize(s.DataPath), fileSize(s.DataPath + "-wal")
}

// Close closes both databases; closing again does nothing.
func (s *Stack) Close() error {
	if err := s.Daemon.Close(); err != nil {
		return fmt.Errorf("close stack: %w", err)
	}
	return nil
}

// fileSize returns the size of path, 0 when it does not exist. It only
// stats the file (reliability.md R18: nothing but SQLite opens a database).
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
