package web

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/health"
	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/metrics"
	"github.com/tibbersync/tibbersync/internal/model"
)

// Defaults for Options.
const (
	DefaultListen          = "127.0.0.1:8765"
	DefaultReadTimeout     = 10 * time.Second
	DefaultWriteTimeout    = 30 * time.Second
	DefaultIdleTimeout     = 60 * time.Second
	DefaultCompleteTimeout = 25 * time.Second
)

// ErrRemoteNotAllowed is returned by New and Open for a listen address that
// is not loopback while Options.AllowRemote is false.
var ErrRemoteNotAllowed = errors.New("not a loopback address, and listening beyond this machine is not allowed (set web.allow_remote)")

// Options configures a Server. Only Listen, RedirectURL and, when the client
// is configured, Flow are needed; the rest has defaults.
type Options struct {
	// Listen is the TCP address to bind (default 127.0.0.1:8765; port 0
	// picks a free port). Ignored when Listener is set.
	Listen string
	// Listener, when set, is the bound socket to serve on instead of
	// binding Listen: a caller that must know the port before the server
	// exists (to register a redirect URI) binds it once and hands it over,
	// rather than closing it and hoping the port stays free. The server
	// owns it from New on: Close closes it, also when Open never ran.
	Listener net.Listener
	// AllowRemote permits a non-loopback Listen address. /setup then also
	// requires the one-time PairingCode.
	AllowRemote bool

	// RedirectURL is the redirect URI exactly as it must be registered at
	// Tibber (and as the flow sends it).
	RedirectURL string
	// ClientID is the configured OAuth2 client id, shown on /setup.
	ClientID string
	// Scopes are the scopes the flow requests, shown on /setup.
	Scopes []string
	// ClientConfigured reports that both the client id and the client secret
	// are present; without them the Connect button is disabled.
	ClientConfigured bool
	// ConfigHint tells the user what to set when the client is not
	// configured (config key, credential file).
	ConfigHint string

	// Flow runs the authorization. It may be nil only when
	// ClientConfigured is false.
	Flow AuthFlow
	// Status feeds the status page, /readyz and /metrics. When nil, / sends
	// the browser to /setup and /readyz reports not ready.
	Status StatusSource
	// JobIntervals is each job's schedule interval; /readyz wants a success
	// within 3× of it (health.Evaluate).
	JobIntervals map[string]time.Duration
	// ExtraChecks, when set, adds checks (storage health, for example) to
	// the one health verdict behind /readyz and the page's banner; `status`
	// must pass the same checks to health.Evaluate.
	ExtraChecks func(ctx context.Context) []health.Check
	// Metrics is served at /metrics; nil answers 404 there.
	Metrics *metrics.Metrics
	// StorageHealth, when set, returns the last storage check (disk full,
	// read-only, database files replaced, deleted or damaged) for the
	// status page's storage banner and its details. It does not decide
	// readiness: the daemon passes the same result to ExtraChecks, which
	// the one health verdict (and so /readyz) uses.
	StorageHealth func() model.StorageHealth

	// Clock defaults to clock.Real.
	Clock clock.Clock
	// Logger defaults to a logger that discards everything.
	Logger *slog.Logger
	// ParseRedirect turns the text pasted into /setup's paste box into the
	// redirect URL (auth.ParseRedirect: tolerant of quotes, whitespace and a
	// bare query). url.Parse when nil.
	ParseRedirect func(raw string) (*url.URL, error)
	// OnAuthorized is called after a successful Complete, before the
	// success page is written. It should return quickly.
	OnAuthorized func(model.AuthStatus)

	// ReadTimeout, WriteTimeout and IdleTimeout bound every connection
	// (defaults 10s, 30s and 60s).
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// CompleteTimeout bounds one call of Flow.Complete (code exchange and
	// userinfo); default 25s, inside the default WriteTimeout. The call is
	// never tied to the browser's request (R3).
	CompleteTimeout time.Duration

	// PairingCode is the one-time code that unlocks /setup when the server
	// listens beyond loopback. A random one is generated when empty.
	PairingCode logging.Secret

	// MQTT, when set, reports the MQTT bridge's state for the status page.
	MQTT func() model.MQTTStatus

	// Charts are the status page charts (default DefaultCharts()).
	Charts []ChartSpec
	// Location is the time zone of times on the pages (default time.Local).
	Location *time.Location
}

// Server serves the setup and status pages. Create it with New, bind with
// Open, stop with Close; Handler serves the same routes without a listener.
type Server struct {
	opts    Options
	log     *slog.Logger
	clock   clock.Clock
	started time.Time
	charts  []ChartSpec
	loc     *time.Location

	listen     string
	listenHost string // lower-cased host part of listen
	listenPort string
	remote     bool // listen is not loopback: pairing required

	redirect          *url.URL // nil when RedirectURL is empty
	redirectAuthority string   // host[:port] of a loopback redirect URL
	callbackPath      string   // extra callback route from RedirectURL, "" if none

	pages          map[string]*template.Template
	handler        http.Handler
	metricsHandler http.Handler

	baseCtx    context.Context
	cancelBase context.CancelFunc
	inflight   sync.WaitGroup // handlers in progress

	mu              sync.Mutex
	ln              net.Listener
	srv             *http.Server
	serveDone       chan struct{}
	port            int
	pair            pairing
	lastSummaryErr  string
	closed          bool
	completeTimeout time.Duration
}

// New checks opts and builds the server. It refuses a non-loopback Listen
// address unless AllowRemote is set.
func New(opts Options) (*Server, error) {
	if opts.Listener != nil {
		opts.Listen = opts.Listener.Addr().String()
	}
	if opts.Listen == "" {
		opts.Listen = DefaultListen
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = DefaultReadTimeout
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.CompleteTimeout <= 0 {
		opts.CompleteTimeout = DefaultCompleteTimeout
	}
	if opts.ClientConfigured && opts.Flow == nil {
		return nil, errors.New("web: client configured but no authorization flow given")
	}
	host, port, err := net.SplitHostPort(opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("web: listen address %q: %w", opts.Listen, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return nil, fmt.Errorf("web: listen address %q: bad port", opts.Listen)
	}
	remote := !isLoopbackHost(host)
	if remote && !opts.AllowRemote {
		return nil, fmt.Errorf("web: listen address %q: %w", opts.Listen, ErrRemoteNotAllowed)
	}
	loc := opts.Location
	if loc == nil {
		loc = time.Local
	}
	charts := opts.Charts
	if charts == nil {
		charts = DefaultCharts()
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}

	s := &Server{
		opts:            opts,
		log:             opts.Logger,
		clock:           opts.Clock,
		started:         opts.Clock.Now(),
		charts:          charts,
		loc:             loc,
		listen:          opts.Listen,
		listenHost:      strings.ToLower(strings.Trim(host, "[]")),
		listenPort:      port,
		remote:          remote,
		pages:           pages,
		completeTimeout: opts.CompleteTimeout,
	}
	if opts.RedirectURL != "" {
		u, err := url.Parse(opts.RedirectURL)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf("web: redirect url %q is not an absolute http(s) URL", opts.RedirectURL)
		}
		s.redirect = u
		if isLoopbackHost(u.Hostname()) {
			s.redirectAuthority = strings.ToLower(u.Host)
		}
		p := u.EscapedPath()
		if p != "" && p != "/" && p != "/callback" && !reservedPath(p) {
			s.callbackPath = p
		}
	}
	if remote {
		if opts.PairingCode.Empty() {
			code, err := newPairingCode()
			if err != nil {
				return nil, err
			}
			opts.PairingCode = code
			s.opts.PairingCode = code
		}
		s.pair.code = normalizePairingCode(opts.PairingCode.Reveal())
	}
	s.baseCtx, s.cancelBase = context.WithCancel(context.Background())
	if opts.Metrics != nil {
		s.metricsHandler = opts.Metrics.Handler()
	}
	s.handler = s.routes()
	return s, nil
}

// reservedPath reports whether p is a route of its own, so that a redirect
// URL path cannot shadow it.
func reservedPath(p string) bool {
	switch p {
	case "/setup", "/setup/start", "/setup/paste", "/setup/pair", "/healthz", "/readyz", "/metrics":
		return true
	}
	return false
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	// In remote mode the status page shows the account email and device
	// names, so it needs the pairing cookie too; health and metrics stay open
	// for probes and Prometheus.
	mux.HandleFunc("GET /{$}", s.requirePairing(s.handleStatus))
	mux.HandleFunc("GET /setup", s.requirePairing(s.handleSetup))
	mux.HandleFunc("GET /setup/start", s.requirePairing(s.handleStart))
	mux.HandleFunc("POST /setup/paste", s.requirePairing(s.handlePaste))
	mux.HandleFunc("POST /setup/pair", s.handlePair)
	mux.HandleFunc("GET /callback", s.handleCallback)
	if s.callbackPath != "" {
		mux.HandleFunc("GET "+s.callbackPath, s.handleCallback)
	}
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	mux.HandleFunc("GET /metrics", s.handleMetrics)

	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.log.Warn("cross-origin request refused", "method", r.Method, "path", r.URL.Path)
		s.renderMessage(w, http.StatusForbidden, messageView{
			Title:   "Request refused",
			Message: "This form can only be sent from tibbersync's own pages. Open the setup page and try again.",
			Links:   []link{{URL: "/setup", Label: "Open setup"}},
		})
	}))
	var h http.Handler = mux
	h = cop.Handler(h)
	h = s.logRequests(h)
	h = s.checkHost(h)
	h = securityHeaders(h)
	h = s.recoverPanics(h)
	h = s.track(h)
	return h
}

// Handler returns the server's routes with every safety middleware, for use
// with httptest or an outer server.
func (s *Server) Handler() http.Handler { return s.handler }

// Open binds the listen address synchronously, so bind errors surface here
// and port 0 works, then serves in the background until Close. In remote
// mode it logs the one-time pairing code once at WARN.
func (s *Server) Open() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("web: server closed")
	}
	if s.ln != nil {
		return errors.New("web: server already open")
	}
	ln := s.opts.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.listen); err != nil {
			return fmt.Errorf("web: listen on %s: %w", s.listen, err)
		}
	}
	addr, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		_ = ln.Close()
		return fmt.Errorf("web: listen on %s: unexpected address %v", s.listen, ln.Addr())
	}
	if !addr.IP.IsLoopback() && !s.remote {
		_ = ln.Close()
		return fmt.Errorf("web: listen on %s (bound %s): %w", s.listen, addr, ErrRemoteNotAllowed)
	}
	s.ln = ln
	s.port = addr.Port
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadTimeout:       s.opts.ReadTimeout,
		ReadHeaderTimeout: min(s.opts.ReadTimeout, 5*time.Second),
		WriteTimeout:      s.opts.WriteTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return s.baseCtx },
	}
	s.serveDone = make(chan struct{})
	srv, done := s.srv, s.serveDone
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("web server stopped", "err", err)
		}
	}()
	base := s.urlLocked()
	s.log.Info("web server listening", "url", base, "setup", base+"/setup")
	if s.remote {
		s.log.Warn("web server listens beyond this machine; /setup asks once for this pairing code",
			"pairing_code", formatPairingCode(s.pair.code), "addr", addr.String())
	}
	return nil
}

// Close stops the server gracefully: no new connections, and in-flight
// requests (a code exchange included) finish until ctx is done, when they
// are cancelled and connections are closed.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	srv, done := s.srv, s.serveDone
	if srv == nil && s.opts.Listener != nil {
		// Handed over but never served: still ours to close.
		_ = s.opts.Listener.Close()
	}
	s.mu.Unlock()
	var err error
	if srv != nil {
		if err = srv.Shutdown(ctx); err != nil {
			s.cancelBase()
			_ = srv.Close()
			err = fmt.Errorf("web: shutdown: %w", err)
		}
		<-done
	}
	s.cancelBase()
	s.inflight.Wait()
	return err
}

// Port returns the bound port, or 0 before Open.
func (s *Server) Port() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.port
}

// URL returns the base URL of the bound server, e.g. http://127.0.0.1:8765,
// or "" before Open. A wildcard bind reports the loopback address.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.urlLocked()
}

func (s *Server) urlLocked() string {
	if s.ln == nil {
		return ""
	}
	addr := s.ln.Addr().(*net.TCPAddr)
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(addr.Port))
}

// isLoopbackHost reports whether host (a listen or URL host, without port)
// names this machine only.
func isLoopbackHost(host string) bool {
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
