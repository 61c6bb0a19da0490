package e2e

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the read-only analyst connection

	"github.com/tibbersync/tibbersync/internal/cisummary"
	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/config"
	"github.com/tibbersync/tibbersync/internal/daemon"
	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/simulator"
	"github.com/tibbersync/tibbersync/internal/tibber"
	"github.com/tibbersync/tibbersync/internal/version"
)

// baseTime is the default start of the shared fake clock: a Monday in
// September, 7.5 minutes into a 15-minute simulator state step, so that the
// short sleeps of retries never cross into the next step. 400 days back it
// reaches August 2025, so a 400-day window holds one spring-forward and one
// fall-back day of Europe/Oslo and Europe/London.
var baseTime = time.Date(2026, 9, 14, 8, 7, 30, 0, time.UTC)

// stallLimit is how long a job run of the tests may go without a request
// reaching the simulator before it counts as hung (runGuard).
const stallLimit = 2 * time.Minute

// envConfig describes one end-to-end environment.
type envConfig struct {
	// sim are the simulator options; Now is always the shared fake clock.
	sim simulator.Options
	// start is the fake clock's start (default baseTime).
	start time.Time
	// backfillDays, resolutions and lookback override [history] of the
	// default configuration when non-zero.
	backfillDays int
	resolutions  []string
	lookback     time.Duration
	// wrap, when set, wraps the Data API client the syncer uses (hooks for
	// crashes and for pages the simulator cannot produce). It is called on
	// every open, with the new client.
	wrap func(jobs.API) jobs.API
	// wrapStore, when set, wraps data.db as the syncer sees it (to time a
	// kill inside a page's transaction). It is called on every open.
	wrapStore func(jobs.Store) jobs.Store
	// progress is the syncer's history progress callback.
	progress func(jobs.HistoryProgress)
	// logFormat, when set, builds the daemon's logger with logging.New in
	// this format (tint, logfmt, json) instead of a plain text handler.
	logFormat string
}

// env is a simulator on 127.0.0.1 and the daemon's components wired to it
// in a temporary state directory, sharing one fake clock.
type env struct {
	t        *testing.T
	cfg      envConfig
	clk      *clock.Fake
	sim      *simulator.Simulator
	fe       *frontend
	srv      *httptest.Server
	hc       *http.Client
	dir      string
	dataPath string
	logs     *syncBuffer
	app      *daemon.Daemon
	ro       *sql.DB
}

// newEnv starts the simulator, opens the daemon's components and
// authorizes them through the simulator's authorization endpoint.
func newEnv(t *testing.T, cfg envConfig) *env {
	t.Helper()
	if cfg.start.IsZero() {
		cfg.start = baseTime
	}
	e := &env{t: t, cfg: cfg, clk: clock.NewFake(cfg.start), dir: t.TempDir(), logs: &syncBuffer{}}
	e.dataPath = filepath.Join(e.dir, "data.db")
	so := cfg.sim
	so.Now = e.clk.Now
	if so.Seed == 0 {
		so.Seed = 7
	}
	so.AutoConsent = true
	e.sim = simulator.New(so)
	e.fe = &frontend{sim: e.sim}
	e.srv = httptest.NewServer(e.fe)
	e.sim.SetBaseURL(e.srv.URL)
	e.hc = tibber.NewHTTPClient(30 * time.Second)
	t.Cleanup(func() {
		// The refresh token is read before the files are closed: it must
		// be in tokens.db only, never in the analysts' data.db or the log.
		refresh := e.sim.CurrentRefreshToken()
		if e.app != nil {
			e.app.Close()
		}
		if refresh != "" {
			e.checkNoSecret(refresh)
		}
		if e.ro != nil {
			e.ro.Close()
		}
		e.hc.CloseIdleConnections()
		e.sim.Close() // releases stalled requests before the server closes
		e.srv.Close()
		if v := e.sim.Stats().UserAgentViolations; v != 0 {
			t.Errorf("simulator counted %d User-Agent violations", v)
		}
		if t.Failed() {
			t.Logf("daemon log (tail):\n%s", e.logs.tail(12<<10))
		}
	})
	e.app = e.open()
	e.authorize()
	ro, err := sql.Open("sqlite", "file:"+e.dataPath+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatalf("open read-only data.db: %v", err)
	}
	ro.SetMaxOpenConns(2)
	e.ro = ro
	return e
}

// checkNoSecret fails the test when secret appears in data.db, its WAL or
// the daemon log.
func (e *env) checkNoSecret(secret string) {
	e.t.Helper()
	for _, name := range []string{"data.db", "data.db-wal"} {
		b, err := os.ReadFile(filepath.Join(e.dir, name))
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				e.t.Errorf("read %s: %v", name, err)
			}
			continue
		}
		if bytes.Contains(b, []byte(secret)) {
			e.t.Errorf("%s contains the refresh token", name)
		}
	}
	if strings.Contains(e.logs.tail(8<<20), secret) {
		e.t.Errorf("the daemon log contains the refresh token")
	}
}

// config is the daemon configuration of the environment: the defaults with
// the simulator's URLs and the test's history settings.
func (e *env) config() config.Config {
	cfg := config.Default()
	cfg.Storage.Dir = e.dir
	simulator.Configure(&cfg, e.srv.URL, "")
	// The limiter waits in real time; the tests must not.
	cfg.Tibber.RequestsPerSecond = 1000
	if e.cfg.backfillDays > 0 {
		cfg.History.BackfillDays = e.cfg.backfillDays
	}
	if e.cfg.resolutions != nil {
		cfg.History.Resolutions = slices.Clone(e.cfg.resolutions)
	}
	if e.cfg.lookback > 0 {
		cfg.History.Lookback = e.cfg.lookback
	}
	return cfg
}

// open opens the daemon (internal/daemon, the product's wiring) on the
// environment's state directory, with the test's clock, hooks and an
// unlimited request rate.
func (e *env) open() *daemon.Daemon {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if e.cfg.logFormat != "" {
		l, err := logging.New(e.logs, "debug", e.cfg.logFormat)
		if err != nil {
			e.t.Fatalf("logging.New: %v", err)
		}
		log = l
	}
	d, err := daemon.Open(ctx, e.config(), daemon.Options{
		Logger:     log,
		Clock:      e.clk,
		NotBefore:  e.cfg.start.Add(-24 * time.Hour),
		HTTPClient: e.hc,
		WrapAPI:    e.cfg.wrap,
		WrapStore:  e.cfg.wrapStore,
		Progress:   e.cfg.progress,
	})
	if err != nil {
		e.t.Fatalf("daemon.Open: %v", err)
	}
	return d
}

// reopen closes data.db and tokens.db and opens the daemon again on the
// same files, as a restarted daemon would.
func (e *env) reopen() {
	e.t.Helper()
	e.app.Close()
	e.app = e.open()
}

// authorize runs the authorization as the setup page does: Flow.Start, the
// simulator's authorize endpoint (automatic consent) answers with a
// redirect to the callback, and Flow.Complete takes the redirected URL.
func (e *env) authorize() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	authURL, err := e.app.Flow().Start(ctx)
	if err != nil {
		e.t.Fatalf("flow.Start: %v", err)
	}
	browser := &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer browser.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
	if err != nil {
		e.t.Fatalf("authorize request: %v", err)
	}
	req.Header.Set("User-Agent", version.UserAgent())
	resp, err := browser.Do(req)
	if err != nil {
		e.t.Fatalf("authorize: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		e.t.Fatalf("authorize answered %s, want a redirect", resp.Status)
	}
	redirected, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		e.t.Fatalf("authorize redirect: %v", err)
	}
	st, err := e.app.Flow().Complete(ctx, redirected)
	if err != nil {
		e.t.Fatalf("flow.Complete: %v", err)
	}
	if st.State != model.AuthOK {
		e.t.Fatalf("auth state after setup = %s, want ok", st.State)
	}
}

// runResult is one job run with the requests the simulator saw for it.
type runResult struct {
	run  model.Run
	err  error
	reqs []reqRecord
}

// run runs a job under a stall guard (runGuard) and returns the run, its
// error and the requests the frontend saw meanwhile.
func (e *env) run(job string) runResult {
	e.t.Helper()
	ctx, cancel := e.runGuard()
	defer cancel()
	return e.runCtx(ctx, job)
}

func (e *env) runCtx(ctx context.Context, job string) runResult {
	e.t.Helper()
	mark := e.fe.mark()
	r, err := e.app.RunJob(ctx, job)
	if errors.Is(context.Cause(ctx), errRunStalled) {
		e.t.Fatalf("%s run stopped: %v", job, context.Cause(ctx))
	}
	return runResult{run: r, err: err, reqs: e.fe.since(mark)}
}

// errRunStalled is the cause runGuard cancels a hung run with.
var errRunStalled = fmt.Errorf("no request reached the simulator for %s: the run hangs", stallLimit)

// runGuard returns the context a job run gets: it is cancelled when the
// simulator has seen no new request for stallLimit, never for the run's
// total length. A loaded machine makes a 400-day backfill take minutes
// instead of seconds (a 90-second deadline failed it under a load average
// of 39); it does not leave the run silent for that long.
func (e *env) runGuard() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		seen, since := e.fe.mark(), time.Now()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if n := e.fe.mark(); n != seen {
				seen, since = n, time.Now()
			} else if time.Since(since) > stallLimit {
				cancel(errRunStalled)
				return
			}
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			close(done)
			cancel(context.Canceled)
		})
	}
}

// mustRun runs a job and fails the test unless its status is want.
func (e *env) mustRun(job, want string) runResult {
	e.t.Helper()
	res := e.run(job)
	if res.run.Status != want {
		e.t.Fatalf("%s run: status %q (error %q, err %v), want %q", job, res.run.Status, res.run.Error, res.err, want)
	}
	return res
}

// frontend serves the simulator and logs every request with the status it
// got. With a rewrite hook set, it can change a response body on its way
// to the client (for input the simulator never produces).
type frontend struct {
	sim     *simulator.Simulator
	mu      sync.Mutex
	log     []reqRecord
	rewrite func(r *http.Request, status int, body []byte) []byte
}

// reqRecord is one request the frontend passed to the simulator.
type reqRecord struct {
	Seq      int
	Endpoint string // homes, devices, device, history, token, userinfo, authorize, other
	Path     string
	Query    url.Values
	URL      string // path and raw query, as requested
	Status   int    // 0: the connection was dropped without an answer
}

// setRewrite installs (or with nil removes) the response rewrite hook.
func (f *frontend) setRewrite(fn func(r *http.Request, status int, body []byte) []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rewrite = fn
}

func (f *frontend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	seq := len(f.log)
	f.log = append(f.log, reqRecord{
		Seq: seq, Endpoint: endpointName(r.URL), Path: r.URL.Path, Query: r.URL.Query(), URL: r.URL.RequestURI(),
	})
	rewrite := f.rewrite
	f.mu.Unlock()

	if rewrite != nil && strings.HasPrefix(r.URL.Path, "/v1/") {
		bw := &bufferWriter{header: http.Header{}}
		// A drop fault panics with http.ErrAbortHandler here (no Hijacker),
		// which aborts the connection just the same.
		defer func() { f.setStatus(seq, bw.status) }()
		f.sim.ServeHTTP(bw, r)
		if bw.status == 0 {
			bw.status = http.StatusOK
		}
		body := rewrite(r, bw.status, bw.body.Bytes())
		maps.Copy(w.Header(), bw.header)
		w.Header().Del("Content-Length")
		w.WriteHeader(bw.status)
		_, _ = w.Write(body)
		return
	}
	sw := &statusWriter{ResponseWriter: w}
	defer func() { f.setStatus(seq, sw.status) }()
	f.sim.ServeHTTP(sw, r)
}

func (f *frontend) setStatus(seq, status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log[seq].Status = status
}

// mark returns the position of the next request in the log.
func (f *frontend) mark() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.log)
}

// since returns the requests logged from mark on.
func (f *frontend) since(mark int) []reqRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.log[mark:])
}

// endpointName classifies a request like the simulator's statistics do.
func endpointName(u *url.URL) string {
	if rest, ok := strings.CutPrefix(u.Path, "/connect/"); ok {
		return rest
	}
	if strings.HasPrefix(u.Path, "/v1/") {
		return tibber.Route(u)
	}
	return "other"
}

// statusWriter records the status and keeps Hijack and Flush working, so
// the simulator's drop and trickle faults behave as without the frontend.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(p)
}

func (s *statusWriter) Flush() {
	if fl, ok := s.ResponseWriter.(http.Flusher); ok {
		fl.Flush()
	}
}

func (s *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := s.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("frontend: response writer cannot hijack")
	}
	return hj.Hijack()
}

// bufferWriter buffers a whole response for the rewrite hook.
type bufferWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferWriter) Header() http.Header { return b.header }

func (b *bufferWriter) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}

func (b *bufferWriter) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

// hookAPI wraps the Data API client: it can edit device lists and details
// on their way to the syncer, and watch, alter or interrupt history pages.
// The hooks run on the syncer's goroutine; history streams are synced one
// after the other.
type hookAPI struct {
	jobs.API
	devices func(homeID string, list []model.Device) []model.Device
	device  func(homeID string, d model.Device) model.Device
	// before runs before each history call.
	before func(ctx context.Context, c historyCall)
	// after may replace the outcome of a history call.
	after func(ctx context.Context, c historyCall, p model.HistoryPage, err error) (model.HistoryPage, error)

	mu    sync.Mutex
	calls int
}

// historyCall is one History or HistoryNext call seen by a hookAPI.
type historyCall struct {
	// N numbers the history calls of the hookAPI from 1.
	N        int
	DeviceID string
	// Resolution is the resolution asked for; Link is the next link
	// followed ("" for a since request).
	Resolution string
	Link       string
}

func (h *hookAPI) Devices(ctx context.Context, homeID string) ([]model.Device, error) {
	list, err := h.API.Devices(ctx, homeID)
	if err == nil && h.devices != nil {
		list = h.devices(homeID, list)
	}
	return list, err
}

func (h *hookAPI) Device(ctx context.Context, homeID, deviceID string) (model.Device, error) {
	d, err := h.API.Device(ctx, homeID, deviceID)
	if err == nil && h.device != nil {
		d = h.device(homeID, d)
	}
	return d, err
}

func (h *hookAPI) History(ctx context.Context, homeID, deviceID, resolution string, since time.Time) (model.HistoryPage, error) {
	c := historyCall{N: h.next(), DeviceID: deviceID, Resolution: resolution}
	if h.before != nil {
		h.before(ctx, c)
	}
	p, err := h.API.History(ctx, homeID, deviceID, resolution, since)
	if h.after != nil {
		p, err = h.after(ctx, c, p, err)
	}
	return p, err
}

func (h *hookAPI) HistoryNext(ctx context.Context, link string) (model.HistoryPage, error) {
	c := historyCall{N: h.next(), Link: link}
	if u, err := url.Parse(link); err == nil {
		// /v1/homes/{home}/devices/{device}/history?resolution=…&cursor=…
		if segs := strings.Split(strings.Trim(u.Path, "/"), "/"); len(segs) == 6 {
			c.DeviceID = segs[4]
		}
		c.Resolution = u.Query().Get("resolution")
	}
	if h.before != nil {
		h.before(ctx, c)
	}
	p, err := h.API.HistoryNext(ctx, link)
	if h.after != nil {
		p, err = h.after(ctx, c, p, err)
	}
	return p, err
}

func (h *hookAPI) next() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls++
	return h.calls
}

// count returns the number of history calls so far.
func (h *hookAPI) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of loggers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Keep the log bounded: only the tail is ever shown.
	if s.b.Len() > 4<<20 {
		rest := slices.Clone(s.b.Bytes()[s.b.Len()-(1<<20):])
		s.b.Reset()
		s.b.Write(rest)
	}
	return s.b.Write(p)
}

func (s *syncBuffer) tail(n int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.b.Bytes()
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// writeSummary logs one summary line and, when TIBBERSYNC_SUMMARY_FILE is
// set, appends it to that file for .ci/run. A test that failed gets a
// line saying so instead of figures it did not prove.
func writeSummary(t *testing.T, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf(format, args...)
	t.Log(line)
	if t.Failed() {
		line = t.Name() + ": FAILED (see the test log)"
	}
	if err := cisummary.Append(line); err != nil {
		t.Error(err)
	}
}

// keepDevices returns a hookAPI devices filter that keeps only the devices
// with the given names (all when names is empty), so a test can sync a
// subset of the fixture account.
func keepDevices(names ...string) func(string, []model.Device) []model.Device {
	if len(names) == 0 {
		return nil
	}
	return func(_ string, list []model.Device) []model.Device {
		out := list[:0:0]
		for _, d := range list {
			if slices.Contains(names, d.Name) {
				out = append(out, d)
			}
		}
		return out
	}
}

// windows records, per (device, resolution) stream, the earliest window
// start and the latest window end the syncer reported through Progress, and
// the progress reports themselves.
type windows struct {
	mu      sync.Mutex
	m       map[string]jobs.HistoryProgress
	reports int
}

func newWindows() *windows { return &windows{m: map[string]jobs.HistoryProgress{}} }

// progress is a jobs.Syncer Progress callback.
func (w *windows) progress(p jobs.HistoryProgress) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.reports++
	k := p.DeviceID + "/" + p.Resolution
	old, ok := w.m[k]
	if ok {
		if !old.Start.IsZero() && (p.Start.IsZero() || old.Start.Before(p.Start)) {
			p.Start = old.Start
		}
		if old.Target.After(p.Target) {
			p.Target = old.Target
		}
	}
	w.m[k] = p
}

// window returns the recorded window of a stream.
func (w *windows) window(deviceID, res string) (start, end time.Time, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	p, ok := w.m[deviceID+"/"+res]
	return p.Start, p.Target, ok
}
