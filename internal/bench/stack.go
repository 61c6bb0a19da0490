package bench

import (
	"context"
	"errors"
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
	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/simulator"
	"github.com/tibbersync/tibbersync/internal/store"
	"github.com/tibbersync/tibbersync/internal/tibber"
	"github.com/tibbersync/tibbersync/internal/tokenstore"
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

// Stack is data.db, tokens.db, the token source, the Data API client and
// the syncer, wired as cmd/tibbersync's openApp wires them, with the HTTP
// client's socket writes counted.
type Stack struct {
	Data    *store.DB
	Secrets *tokenstore.Store
	Source  *auth.Source
	Flow    *auth.Flow
	API     *tibber.Client
	Syncer  *jobs.Syncer
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
	clk := clock.Real{}
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

	var err error
	s.Data, err = store.Open(ctx, s.DataPath, store.Options{Clock: clk, Logger: log.With("component", "store")})
	if err != nil {
		return nil, fmt.Errorf("open stack: %w", err)
	}
	s.Secrets, err = tokenstore.Open(ctx, c.Dir, clk)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("open stack: %w", err)
	}
	authOpts := auth.Options{
		ClientID:     simulator.DefaultClientID,
		ClientSecret: logging.NewSecret(simulator.DefaultClientSecret),
		AuthURL:      c.SimURL + "/connect/authorize",
		TokenURL:     c.SimURL + "/connect/token",
		UserinfoURL:  c.SimURL + "/connect/userinfo",
		RedirectURL:  simulator.DefaultRedirectURI,
		HTTPClient:   hc,
		UserAgent:    version.UserAgent(),
		Store:        s.Secrets,
		Status:       s.Data,
		Clock:        clk,
		Logger:       log.With("component", "auth"),
	}
	if s.Flow, err = auth.NewFlow(authOpts); err != nil {
		s.Close()
		return nil, fmt.Errorf("open stack: authorization flow: %w", err)
	}
	if s.Source, err = auth.NewSource(authOpts); err != nil {
		s.Close()
		return nil, fmt.Errorf("open stack: token source: %w", err)
	}
	if err := s.Source.Init(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("open stack: read token state: %w", err)
	}
	s.API, err = tibber.New(tibber.Options{
		BaseURL:    c.SimURL,
		HTTPClient: hc,
		Tokens:     s.Source,
		UserAgent:  version.UserAgent(),
		Clock:      clk,
		RateLimit:  c.RateLimit,
		Logger:     log.With("component", "tibber"),
	})
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("open stack: data api client: %w", err)
	}
	s.Syncer = &jobs.Syncer{
		API:                s.API,
		Store:              s.Data,
		Clock:              clk,
		Logger:             log.With("component", "jobs"),
		Concurrency:        c.Concurrency,
		GrantedScopes:      s.grantedScopes,
		HistoryResolutions: c.HistoryResolutions,
		BackfillDays:       c.BackfillDays,
	}
	return s, nil
}

func (s *Stack) grantedScopes() []string {
	st, err := s.Source.Status(context.Background())
	if err != nil {
		return nil
	}
	return st.GrantedScopes
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
	var errs []error
	if s.Data != nil {
		errs = append(errs, s.Data.Close())
		s.Data = nil
	}
	if s.Secrets != nil {
		errs = append(errs, s.Secrets.Close())
		s.Secrets = nil
	}
	if err := errors.Join(errs...); err != nil {
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
