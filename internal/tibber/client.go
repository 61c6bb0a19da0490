// Package tibber is the client of the Tibber Data API
// (https://data-api.tibber.com). It follows Tibber's client rules: a
// User-Agent on every request, retries of 429/500/502/503/504, timeouts and
// connection resets only, with full-jitter backoff or the server's
// Retry-After, one token refresh on 401, a deadline and a size limit on every
// request, and a global request-rate limit. Its decoders tolerate schema
// drift: unknown members, "$type", null values, a bare array instead of an
// envelope, and relative or absolute paging links.
//
// *Client implements jobs.API. Tokens come from a Tokens source
// (*auth.Source); the client never logs or returns a token.
package tibber

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/model"
)

// Defaults for Options fields left zero.
const (
	// DefaultMaxAttempts is how many HTTP attempts one call makes at most
	// (the retry after a 401 refresh comes on top).
	DefaultMaxAttempts = 5
	// DefaultMaxBodyBytes caps every response body (R24).
	DefaultMaxBodyBytes int64 = 8 << 20
	// DefaultRequestTimeout bounds every attempt, body included (R24).
	DefaultRequestTimeout = 30 * time.Second
	// DefaultRateLimit is the global request rate in requests per second.
	DefaultRateLimit = 2.0
	// DefaultBurst is how many requests may go out at once before the rate applies.
	DefaultBurst = 4
	// DefaultMaxRetryWait is the longest retry sleep taken inside one call.
	DefaultMaxRetryWait = 2 * time.Minute
)

// retryWarnInterval rate-limits the WARN line logged on retries.
const retryWarnInterval = time.Minute

// Options configure a Client. Zero values take the defaults above.
type Options struct {
	// BaseURL is the Data API base, e.g. https://data-api.tibber.com (tests:
	// the simulator's httptest URL). Paths start with /v1/ below it.
	BaseURL string
	// HTTPClient is the shared client; nil builds one with
	// NewHTTPClient(RequestTimeout). Redirects to another host are refused.
	HTTPClient *http.Client
	// Tokens supplies the bearer tokens. Required.
	Tokens Tokens
	// UserAgent is sent on every request (version.UserAgent()). Required, in
	// the form "<app>/<version> [<lib>/<version>] [(<platform hints>)]".
	UserAgent string
	// Clock is used for retry sleeps and Retry-After dates (default clock.Real).
	Clock clock.Clock
	// Rand returns jitter in [0, 1) (default math/rand/v2.Float64). It is
	// called under a lock, so it need not be safe for concurrent use.
	Rand func() float64
	// MaxAttempts is the most HTTP attempts per call (default 5).
	MaxAttempts int
	// MaxBodyBytes caps a response body; a larger one fails the call at once
	// with ErrResponseTooLarge (default 8 MiB).
	MaxBodyBytes int64
	// RequestTimeout bounds one attempt, reading the body included (default 30s).
	RequestTimeout time.Duration
	// RateLimit is the global limit in requests per second (default 2;
	// math.Inf(1) turns limiting off). Waits respect the caller's context.
	RateLimit float64
	// Burst is the limiter's bucket size (default 4).
	Burst int
	// MaxRetryWait is the longest sleep taken before a retry (default 2 min).
	// A Retry-After longer than this ends the call with an *APIError carrying
	// RetryAfter, so the caller's breaker waits instead of a blocked job.
	MaxRetryWait time.Duration
	// Observer, when set, is told about every attempt and retry (metrics).
	Observer Observer
	// Gate is the installation's rate gate (NewGate on the state dir's
	// GateFileName); nil gives the client its own in-memory gate, shared by
	// every call of this client.
	Gate *Gate
	// Logger receives a DEBUG line per attempt and rate-limited WARN lines
	// on retries (default: discard). Tokens are never logged.
	Logger *slog.Logger
}

// Client calls the Tibber Data API. It is safe for concurrent use.
type Client struct {
	base         *url.URL
	baseStr      string // scheme://host/escaped-path without a trailing slash
	hc           *http.Client
	tokens       Tokens
	ua           string
	clock        clock.Clock
	maxAttempts  int
	maxBody      int64
	timeout      time.Duration
	maxRetryWait time.Duration
	limiter      *rate.Limiter
	gate         *Gate
	log          *slog.Logger
	observer     Observer

	randMu sync.Mutex
	rand   func() float64

	warnMu     sync.Mutex
	lastWarn   time.Time
	suppressed int

	// refused is set when the API answered 401 to a token refreshed because
	// of a 401, and cleared by the next successful call: while set, a 401
	// ends the call without another refresh.
	refused atomic.Bool
}

// userAgentRe is Tibber's format: product tokens of letters, digits and
// dashes with a version, then an optional parenthesized comment.
var userAgentRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]*/[0-9A-Za-z.+-]+( [A-Za-z0-9][A-Za-z0-9-]*/[0-9A-Za-z.+-]+)*( \([\x20-\x27\x2a-\x7e]+\))?$`)

// New checks opts and returns a Client.
func New(opts Options) (*Client, error) {
	base, err := parseBaseURL(opts.BaseURL)
	if err != nil {
		return nil, err
	}
	if opts.Tokens == nil {
		return nil, errors.New("tibber client: token source required")
	}
	if !userAgentRe.MatchString(opts.UserAgent) {
		return nil, fmt.Errorf("tibber client: invalid user agent %q: want \"<app>/<version> (<os>; <arch>)\"", opts.UserAgent)
	}
	if opts.MaxAttempts < 0 || opts.MaxBodyBytes < 0 || opts.RequestTimeout < 0 || opts.Burst < 0 ||
		opts.MaxRetryWait < 0 || opts.RateLimit < 0 || math.IsNaN(opts.RateLimit) {
		return nil, errors.New("tibber client: negative limit in options")
	}
	c := &Client{
		base:         base,
		baseStr:      strings.TrimSuffix(base.String(), "/"),
		tokens:       opts.Tokens,
		ua:           opts.UserAgent,
		clock:        opts.Clock,
		rand:         opts.Rand,
		maxAttempts:  orDefault(opts.MaxAttempts, DefaultMaxAttempts),
		maxBody:      orDefault(opts.MaxBodyBytes, DefaultMaxBodyBytes),
		timeout:      orDefault(opts.RequestTimeout, DefaultRequestTimeout),
		maxRetryWait: orDefault(opts.MaxRetryWait, DefaultMaxRetryWait),
		log:          opts.Logger,
		observer:     opts.Observer,
		gate:         opts.Gate,
	}
	if c.clock == nil {
		c.clock = clock.Real{}
	}
	if c.rand == nil {
		c.rand = rand.Float64
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.gate == nil {
		c.gate = NewGate("", c.clock)
	}
	limit := rate.Limit(orDefault(opts.RateLimit, DefaultRateLimit))
	if math.IsInf(opts.RateLimit, 1) {
		limit = rate.Inf
	}
	c.limiter = rate.NewLimiter(limit, orDefault(opts.Burst, DefaultBurst))
	hc := opts.HTTPClient
	if hc == nil {
		hc = NewHTTPClient(c.timeout)
	}
	// A shallow copy, so the shared client keeps its own redirect policy.
	own := *hc
	own.CheckRedirect = c.checkRedirect
	c.hc = &own
	return c, nil
}

func orDefault[T int | int64 | float64 | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

func parseBaseURL(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("tibber client: invalid base URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("tibber client: base URL %q must be an absolute http(s) URL", s)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("tibber client: base URL %q must not have user info, query or fragment", u.Redacted())
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = strings.TrimSuffix(u.RawPath, "/")
	return u, nil
}

// checkRedirect follows redirects only on the API's own origin, so the
// bearer token never goes elsewhere; others end with the 3xx response.
func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("stopped after 5 redirects")
	}
	if req.URL.User != nil || !sameOrigin(req.URL, c.base) {
		return http.ErrUseLastResponse
	}
	return nil
}

// NewHTTPClient returns an *http.Client for talking to Tibber: Timeout is
// timeout (default 30s) and the transport bounds dialing, the TLS handshake
// and the wait for response headers, with modest connection limits (R24).
func NewHTTPClient(timeout time.Duration) *http.Client {
	if timeout <= 0 {
		timeout = DefaultRequestTimeout
	}
	step := min(10*time.Second, timeout)
	dialer := &net.Dialer{Timeout: step, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            dialer.DialContext,
		ForceAttemptHTTP2:      true,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    step,
		ResponseHeaderTimeout:  timeout,
		ExpectContinueTimeout:  time.Second,
		IdleConnTimeout:        90 * time.Second,
		MaxIdleConns:           16,
		MaxIdleConnsPerHost:    4,
		MaxConnsPerHost:        8,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &http.Client{Transport: tr, Timeout: timeout}
}

// WithRequestCounter returns a context under which every HTTP attempt the
// client makes (retries included) increments n. It is model.WithRequestCounter,
// named here for callers that hold a *Client.
func WithRequestCounter(ctx context.Context, n *atomic.Int64) context.Context {
	return model.WithRequestCounter(ctx, n)
}

// attemptResult is the outcome of one HTTP attempt.
type attemptResult struct {
	body      []byte
	apiErr    *APIError // a non-2xx answer
	err       error     // transport, timeout, read or size failure
	retryable bool
	hinted    bool // the answer carried a valid Retry-After
}

// get performs a GET with the retry, refresh and rate rules and returns the
// 2xx body.
func (c *Client) get(ctx context.Context, u *url.URL) ([]byte, error) {
	endpoint := "GET " + u.EscapedPath()
	limit := c.maxAttempts
	var (
		attempts, failures int
		refreshed, haveTok bool
		tok                logging.Secret
	)
	for {
		if err := c.waitGate(ctx, endpoint); err != nil {
			// Nothing is sent to the Data API, but the token source keeps
			// its own schedule (a refresh due, or the one retry of a
			// refresh whose answer was lost, which must come soon): the
			// gate binds the Data API only.
			if !haveTok {
				_, _ = c.tokens.AccessToken(ctx)
			}
			return nil, err
		}
		if err := c.limiter.Wait(ctx); err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return nil, fmt.Errorf("%s: %w", endpoint, ctxErr)
			}
			return nil, fmt.Errorf("%s: rate limit: %w", endpoint, err)
		}
		if !haveTok {
			t, err := c.tokens.AccessToken(ctx)
			if err != nil {
				return nil, fmt.Errorf("%s: access token: %w", endpoint, err)
			}
			tok = t
		}
		haveTok = false
		attempts++
		res := c.attempt(ctx, u, endpoint, tok, attempts)
		if res.err == nil && res.apiErr == nil {
			c.refused.Store(false)
			return res.body, nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("%s: %w", endpoint, ctxErr)
		}
		if res.apiErr != nil {
			res.apiErr.Attempts = attempts
			if res.apiErr.Status == http.StatusUnauthorized && (refreshed || c.refused.Load()) {
				// A freshly refreshed token was refused: no more refreshes
				// until a call succeeds (see refusedError).
				return nil, c.refusedError(ctx, endpoint, res.apiErr, refreshed)
			}
			if res.apiErr.Status == http.StatusUnauthorized && !refreshed {
				refreshed = true
				t, err := c.tokens.Refresh(ctx, tok)
				if err != nil {
					return nil, fmt.Errorf("%s: refresh after 401: %w", endpoint, err)
				}
				tok, haveTok = t, true
				limit++ // the retry with the new token is not a failure retry
				continue
			}
		}
		var wait time.Duration
		gated := closesGate(res)
		if gated {
			wait = c.retryWait(res, failures)
			c.closeGate(ctx, endpoint, res, wait)
		}
		if !res.retryable || attempts >= limit {
			return nil, c.finalError(endpoint, res, attempts)
		}
		if !gated {
			wait = c.retryWait(res, failures)
		}
		failures++
		if res.hinted && wait > c.maxRetryWait {
			return nil, c.finalError(endpoint, res, attempts)
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return nil, c.finalError(endpoint, res, attempts)
		}
		c.warnRetry(ctx, endpoint, attempts, wait, res)
		if c.observer != nil {
			c.observer.ObserveRetry(Route(u))
		}
		if err := c.clock.Sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("%s: %w", endpoint, err)
		}
	}
}

// refusedError is the error of a 401 that costs no refresh: the token was
// refreshed for this call (justRefreshed) or for an earlier one, and Tibber
// still refuses it. It wraps model.ErrTokenRefused and the APIError.
func (c *Client) refusedError(ctx context.Context, endpoint string, apiErr *APIError, justRefreshed bool) error {
	if justRefreshed && !c.refused.Swap(true) {
		c.log.LogAttrs(ctx, slog.LevelWarn, "Tibber refuses a freshly refreshed access token; no further refresh until an API call succeeds",
			slog.String("endpoint", endpoint))
	}
	return fmt.Errorf("%w: %w", model.ErrTokenRefused, apiErr)
}

// closesGate reports whether an answer closes the installation's rate
// gate: every 429, and a 503 that says how long to wait.
func closesGate(res attemptResult) bool {
	if res.apiErr == nil {
		return false
	}
	return res.apiErr.Status == http.StatusTooManyRequests ||
		(res.apiErr.Status == http.StatusServiceUnavailable && res.hinted)
}

// closeGate closes the rate gate for wait after a 429 or a hinted 503.
func (c *Client) closeGate(ctx context.Context, endpoint string, res attemptResult, wait time.Duration) {
	reason := fmt.Sprintf("%d on %s", res.apiErr.Status, endpoint)
	if res.hinted {
		reason += fmt.Sprintf(" with Retry-After %s", res.apiErr.RetryAfter)
	}
	until := c.clock.Now().Add(wait)
	if err := c.gate.Close(until, reason); err != nil {
		c.log.WarnContext(ctx, "rate gate could not be persisted; it holds in this process only", "err", err)
	}
	c.log.InfoContext(ctx, "rate gate closed: no request of this installation before the wait is over",
		"until", until, "reason", reason)
}

// waitGate waits while the installation's rate gate is closed, or, when it
// stays closed longer than a retry may wait (or than ctx allows), returns a
// *GateError without sending anything.
func (c *Client) waitGate(ctx context.Context, endpoint string) error {
	until, reason := c.gate.Until()
	now := c.clock.Now()
	if !until.After(now) {
		return nil
	}
	wait := until.Sub(now)
	dl, hasDL := ctx.Deadline()
	if wait > c.maxRetryWait || (hasDL && time.Until(dl) < wait) {
		return &GateError{Endpoint: endpoint, Until: until, Wait: wait, Reason: reason}
	}
	c.log.DebugContext(ctx, "rate gate closed, waiting", "endpoint", endpoint, "wait", wait, "reason", reason)
	if err := c.clock.Sleep(ctx, wait); err != nil {
		return fmt.Errorf("%s: %w", endpoint, err)
	}
	return nil
}

func (c *Client) finalError(endpoint string, res attemptResult, attempts int) error {
	if res.apiErr != nil {
		return res.apiErr
	}
	if attempts > 1 {
		return fmt.Errorf("%s: %w (after %d attempts)", endpoint, res.err, attempts)
	}
	return fmt.Errorf("%s: %w", endpoint, res.err)
}

// retryWait is Retry-After plus 0–250 ms when the server gave one, else
// full jitter for the number of failures so far.
func (c *Client) retryWait(res attemptResult, failures int) time.Duration {
	r := c.random()
	if res.hinted {
		return res.apiErr.RetryAfter + time.Duration(clamp01(r)*float64(RetryAfterJitter))
	}
	return fullJitter(failures, r)
}

func (c *Client) random() float64 {
	c.randMu.Lock()
	defer c.randMu.Unlock()
	return c.rand()
}

// attempt makes one HTTP request under the per-attempt timeout.
func (c *Client) attempt(ctx context.Context, u *url.URL, endpoint string, tok logging.Secret, n int) attemptResult {
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, u.String(), nil)
	if err != nil {
		return attemptResult{err: fmt.Errorf("build request: %w", err)}
	}
	req.Header.Set("Authorization", "Bearer "+tok.Reveal())
	req.Header.Set("User-Agent", c.ua)
	req.Header.Set("Accept", "application/json")
	if cnt := model.RequestCounter(ctx); cnt != nil {
		cnt.Add(1)
	}
	start := time.Now()
	res := c.exchange(ctx, actx, req, endpoint, tok)
	attrs := []slog.Attr{
		slog.String("method", http.MethodGet),
		slog.String("path", u.EscapedPath()),
		slog.Int("attempt", n),
		slog.Duration("duration", time.Since(start)),
	}
	if r := u.Query().Get("resolution"); r != "" {
		attrs = append(attrs, slog.String("resolution", r))
	}
	switch {
	case res.apiErr != nil:
		attrs = append(attrs, slog.Int("status", res.apiErr.Status))
	case res.err != nil:
		attrs = append(attrs, slog.String("err", res.err.Error()))
	default:
		attrs = append(attrs, slog.Int("status", http.StatusOK), slog.Int("bytes", len(res.body)))
	}
	c.log.LogAttrs(ctx, slog.LevelDebug, "api request", attrs...)
	if c.observer != nil {
		status := http.StatusOK
		switch {
		case res.apiErr != nil:
			status = res.apiErr.Status
		case res.err != nil:
			status = 0
		}
		c.observer.ObserveRequest(Route(u), status)
	}
	return res
}

func (c *Client) exchange(ctx, actx context.Context, req *http.Request, endpoint string, tok logging.Secret) attemptResult {
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.transportFailure(ctx, actx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if resp.ContentLength > c.maxBody {
			return c.tooLarge()
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody+1))
		if err != nil {
			return c.transportFailure(ctx, actx, fmt.Errorf("read body: %w", err))
		}
		if int64(len(body)) > c.maxBody {
			return c.tooLarge()
		}
		return attemptResult{body: body}
	}
	// Read a bounded part of the error body to find a problem; a failure to
	// read it only costs the problem text.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	res := attemptResult{
		apiErr: &APIError{
			Status:   resp.StatusCode,
			Problem:  parseProblem(body, tok),
			Endpoint: endpoint,
		},
		retryable: retryableStatus(resp.StatusCode),
	}
	if d, ok := ParseRetryAfter(resp.Header.Get("Retry-After"), c.clock.Now()); ok {
		res.apiErr.RetryAfter, res.hinted = d, true
	}
	return res
}

func (c *Client) tooLarge() attemptResult {
	return attemptResult{err: fmt.Errorf("%w (limit %d bytes)", ErrResponseTooLarge, c.maxBody)}
}

// transportFailure classifies an error of sending or reading: the caller's
// own cancellation is final, the per-attempt timeout and transient network
// failures are retried, anything else (TLS, protocol) is not.
func (c *Client) transportFailure(ctx, actx context.Context, err error) attemptResult {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return attemptResult{err: ctxErr}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // the URL adds nothing to our endpoint prefix
	}
	if actx.Err() != nil {
		return attemptResult{err: fmt.Errorf("request timed out after %s", c.timeout), retryable: true}
	}
	return attemptResult{err: err, retryable: transient(err)}
}

// transient reports whether a network error is worth another attempt:
// timeouts, resets, refused connections, truncated responses, temporary DNS
// failures and unreachable networks.
func transient(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return dns.IsTemporary || dns.IsTimeout
	}
	for _, target := range []error{
		context.DeadlineExceeded, io.EOF, io.ErrUnexpectedEOF,
		syscall.ECONNRESET, syscall.ECONNREFUSED, syscall.ECONNABORTED, syscall.EPIPE,
		syscall.ETIMEDOUT, syscall.EHOSTUNREACH, syscall.ENETUNREACH,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// warnRetry logs a retry at WARN at most once per retryWarnInterval; the
// others go to DEBUG and are counted in the next WARN line.
func (c *Client) warnRetry(ctx context.Context, endpoint string, attempt int, wait time.Duration, res attemptResult) {
	c.warnMu.Lock()
	now := c.clock.Now()
	level := slog.LevelDebug
	suppressed := 0
	if c.lastWarn.IsZero() || now.Sub(c.lastWarn) >= retryWarnInterval || now.Before(c.lastWarn) {
		level = slog.LevelWarn
		c.lastWarn = now
		suppressed, c.suppressed = c.suppressed, 0
	} else {
		c.suppressed++
	}
	c.warnMu.Unlock()
	reason := ""
	if res.apiErr != nil {
		reason = res.apiErr.Error()
	} else if res.err != nil {
		reason = res.err.Error()
	}
	c.log.LogAttrs(ctx, level, "api request failed, retrying",
		slog.String("endpoint", endpoint),
		slog.Int("attempt", attempt),
		slog.Duration("wait", wait),
		slog.String("err", reason),
		slog.Int("suppressed", suppressed),
	)
}

// Observer is told about every HTTP attempt and every retry, with a
// low-cardinality route name (see Route). It must be fast and safe for
// concurrent use.
type Observer interface {
	ObserveRequest(route string, status int) // status 0: transport error or timeout
	ObserveRetry(route string)
}

// Route names a Data API URL without ids: "homes", "devices", "device",
// "history", or "other".
func Route(u *url.URL) string {
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	// Allow a base URL with a path prefix: find the "v1" segment.
	for i, p := range parts {
		if p == "v1" {
			parts = parts[i+1:]
			break
		}
	}
	switch {
	case len(parts) == 1 && parts[0] == "homes":
		return "homes"
	case len(parts) == 3 && parts[0] == "homes" && parts[2] == "devices":
		return "devices"
	case len(parts) == 4 && parts[0] == "homes" && parts[2] == "devices":
		return "device"
	case len(parts) == 5 && parts[0] == "homes" && parts[2] == "devices" && parts[4] == "history":
		return "history"
	}
	return "other"
}
