package simulator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Simulator is a fake Tibber: authorization server and Data API in one
// http.Handler. All methods are safe for concurrent use.
type Simulator struct {
	opts      Options
	acct      account
	origin    time.Time // first history record: construction time − HistoryDays
	cursorKey []byte
	jwtKey    []byte
	faults    *Faults

	rngMu sync.Mutex
	rng   *rand.Rand

	mu           sync.Mutex // guards everything below
	baseOverride string
	codes        map[string]*codeRecord
	pending      map[string]*authRequest
	grants       []*grant
	refresh      map[string]*refreshRecord
	deleted      bool
	requestSeq   int
	stats        Stats
	events       []Event
	// changed is closed (and replaced) whenever the stats or the event log
	// change, so that WaitStats wakes up; guarded by mu.
	changed chan struct{}

	corrMu      sync.RWMutex
	corrections map[correctionKey]map[string]float64

	limMu    sync.Mutex
	limiters map[string]*rate.Limiter

	done      chan struct{}
	closeOnce sync.Once
}

// MaxEvents is how many events Events keeps; older ones are discarded.
const MaxEvents = 10000

// Stats is a snapshot of the simulator's counters.
type Stats struct {
	// Requests counts requests per endpoint: authorize, consent, token,
	// userinfo, discovery, homes, devices, device, history, other.
	Requests map[string]int
	// Statuses counts responses per status code; 0 means the connection
	// was dropped or stalled without a response.
	Statuses map[int]int
	// EndpointStatuses counts responses per endpoint and status.
	EndpointStatuses map[string]map[int]int
	// TokenRequests counts token requests per grant_type as sent.
	TokenRequests map[string]int
	// TokensIssued counts successful token responses (both grants).
	TokensIssued int
	// Refreshes counts successful refresh_token grants.
	Refreshes int
	// RefreshReuse counts presentations of a rotated-out refresh token
	// outside the grace window.
	RefreshReuse int
	// RefreshReuseGrace counts presentations within the grace window.
	RefreshReuseGrace int
	// UserAgentViolations counts requests with a missing or malformed User-Agent.
	UserAgentViolations int
	// CodesIssued, CodesRedeemed, CodesReused and CodesExpired count
	// authorization codes.
	CodesIssued, CodesRedeemed, CodesReused, CodesExpired int
	// GrantsRevoked counts grants revoked by reuse detection, code reuse or
	// RevokeGrants.
	GrantsRevoked int
	// RateLimited counts 429 answers of the token bucket.
	RateLimited int
	// Unauthorized counts 401 answers on bearer-protected endpoints.
	Unauthorized int
	// Faults counts injected faults per kind.
	Faults map[string]int
	// InFlight is how many requests are being served: entered ServeHTTP
	// and not yet counted in Statuses.
	InFlight int
}

func (st Stats) clone() Stats {
	out := st
	out.Requests = maps.Clone(st.Requests)
	out.Statuses = maps.Clone(st.Statuses)
	out.TokenRequests = maps.Clone(st.TokenRequests)
	out.Faults = maps.Clone(st.Faults)
	out.EndpointStatuses = make(map[string]map[int]int, len(st.EndpointStatuses))
	for k, v := range st.EndpointStatuses {
		out.EndpointStatuses[k] = maps.Clone(v)
	}
	return out
}

func newStats() Stats {
	return Stats{
		Requests: map[string]int{}, Statuses: map[int]int{}, EndpointStatuses: map[string]map[int]int{},
		TokenRequests: map[string]int{}, Faults: map[string]int{},
	}
}

// Event is one entry of the event log. Detail never contains a secret.
type Event struct {
	Time     time.Time
	Kind     string
	Endpoint string
	Detail   string
}

// New returns a simulator with opts (defaults applied). It panics only if
// the embedded fixture is broken, which the package tests rule out.
func New(opts Options) *Simulator {
	opts = opts.withDefaults()
	s := &Simulator{
		opts:        opts,
		cursorKey:   keyFor(opts.Seed, "cursor"),
		jwtKey:      keyFor(opts.Seed, "jwt"),
		rng:         rand.New(rand.NewChaCha8(sha256.Sum256(keyFor(opts.Seed, "rng")))),
		codes:       map[string]*codeRecord{},
		pending:     map[string]*authRequest{},
		refresh:     map[string]*refreshRecord{},
		stats:       newStats(),
		corrections: map[correctionKey]map[string]float64{},
		limiters:    map[string]*rate.Limiter{},
		done:        make(chan struct{}),
		changed:     make(chan struct{}),
	}
	s.faults = &Faults{draw: s.randFloat}
	s.origin = opts.Now().Add(-time.Duration(opts.HistoryDays) * 24 * time.Hour)
	if opts.Homes > 0 {
		s.acct = newGeneratedAccount(opts.Seed, opts.Homes, opts.DevicesPerHome)
	} else {
		a, err := loadFixture(opts.Seed, fixtureJSON)
		if err != nil {
			panic(fmt.Sprintf("simulator: %v", err))
		}
		if opts.HostileNames {
			a.makeHostile()
		}
		s.acct = a
	}
	return s
}

func keyFor(seed int64, purpose string) []byte {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(seed))
	h := sha256.Sum256(append([]byte("tibbersync-simulator/"+purpose+"/"), b[:]...))
	return h[:]
}

// Close releases requests held by stall and trickle faults. The simulator
// keeps serving other requests; call it before closing an httptest.Server
// whose clients may still wait on a stalled request.
func (s *Simulator) Close() {
	s.closeOnce.Do(func() { close(s.done) })
}

// Options returns the effective options (defaults applied).
func (s *Simulator) Options() Options { return s.opts }

// Faults returns the scripted fault queue.
func (s *Simulator) Faults() *Faults { return s.faults }

// Stats returns a snapshot of the counters.
func (s *Simulator) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats.clone()
}

// ResetStats zeroes the counters and clears the event log.
func (s *Simulator) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	inFlight := s.stats.InFlight
	s.stats = newStats()
	s.stats.InFlight = inFlight
	s.events = nil
	s.notifyLocked()
}

// WaitStats waits until cond holds for the stats and returns them. cond is
// evaluated now and again after every change: a request starting or
// finishing, a fault taken, an event logged, a reset. Use it instead of
// reading Stats right after a client saw an error: a dropped or stalled
// request is counted when its handler returns, which may be after the
// client gave up. It returns ctx's error (with the last stats) when ctx
// ends first.
func (s *Simulator) WaitStats(ctx context.Context, cond func(Stats) bool) (Stats, error) {
	for {
		s.mu.Lock()
		st := s.stats.clone()
		changed := s.changed
		s.mu.Unlock()
		if cond(st) {
			return st, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return st, fmt.Errorf("simulator: waiting for stats: %w", ctx.Err())
		}
	}
}

// notifyLocked wakes every WaitStats; s.mu must be held.
func (s *Simulator) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Events returns a copy of the event log, oldest first.
func (s *Simulator) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.events...)
}

// SetBaseURL sets the absolute base (scheme://host[:port]) used for links,
// the issuer and discovery. By default it is derived from each request's Host.
func (s *Simulator) SetBaseURL(u string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.baseOverride = strings.TrimRight(u, "/")
}

func (s *Simulator) baseURL(r *http.Request) string {
	s.mu.Lock()
	b := s.baseOverride
	s.mu.Unlock()
	if b != "" {
		return b
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (s *Simulator) now() time.Time { return s.opts.Now() }

// event appends to the log; the caller must not hold s.mu.
func (s *Simulator) event(kind, endpoint, detail string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.eventLocked(kind, endpoint, detail)
}

func (s *Simulator) eventLocked(kind, endpoint, detail string) {
	if len(s.events) >= MaxEvents {
		s.events = append(s.events[:0], s.events[len(s.events)-MaxEvents+1:]...)
	}
	s.events = append(s.events, Event{Time: s.now(), Kind: kind, Endpoint: endpoint, Detail: detail})
	s.notifyLocked()
	if l := s.opts.Logger; l != nil {
		l.Info("simulator event", "kind", kind, "endpoint", endpoint, "detail", detail)
	}
}

// randFloat draws from the seeded random source.
func (s *Simulator) randFloat() float64 {
	s.rngMu.Lock()
	defer s.rngMu.Unlock()
	return s.rng.Float64()
}

// randToken returns n random bytes from the seeded source, hex-encoded.
func (s *Simulator) randHex(n int) string {
	s.rngMu.Lock()
	defer s.rngMu.Unlock()
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(s.rng.Uint32())
	}
	return hex.EncodeToString(b)
}

func (s *Simulator) traceID() string {
	return "00-" + s.randHex(16) + "-" + s.randHex(8) + "-00"
}

// reqCtx is one request on its way through the simulator.
type reqCtx struct {
	req      *http.Request
	endpoint string
	segs     []string // unescaped path segments after /v1/
	fault    *Fault   // the terminal fault applied to this request, if any
}

// bufWriter buffers a response so that faults can mangle it afterwards.
type bufWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newBufWriter() *bufWriter { return &bufWriter{header: http.Header{}} }

func (b *bufWriter) Header() http.Header { return b.header }
func (b *bufWriter) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = 200
	}
	return b.body.Write(p)
}
func (b *bufWriter) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}

func (s *Simulator) writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only the simulator's own wire types are marshalled; this cannot fail.
		panic(fmt.Sprintf("simulator: marshal response: %v", err))
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(body)
}

// problem writes an RFC 7807 body as ASP.NET does (§9).
func (s *Simulator) problem(w http.ResponseWriter, status int, detail string) {
	typ := map[int]string{
		400: "https://tools.ietf.org/html/rfc9110#section-15.5.1",
		401: "https://tools.ietf.org/html/rfc9110#section-15.5.2",
		403: "https://tools.ietf.org/html/rfc9110#section-15.5.4",
		404: "https://tools.ietf.org/html/rfc9110#section-15.5.5",
		405: "https://tools.ietf.org/html/rfc9110#section-15.5.6",
		412: "https://tools.ietf.org/html/rfc9110#section-15.5.13",
		429: "https://tools.ietf.org/html/rfc6585#section-4",
		500: "https://tools.ietf.org/html/rfc9110#section-15.6.1",
		502: "https://tools.ietf.org/html/rfc9110#section-15.6.3",
		503: "https://tools.ietf.org/html/rfc9110#section-15.6.4",
	}[status]
	if typ == "" {
		typ = "about:blank"
	}
	body, _ := json.Marshal(Problem{Type: typ, Title: http.StatusText(status), Status: status, Detail: detail, TraceID: s.traceID()})
	w.Header().Set("Content-Type", "application/problem+json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(body)
}

// endpointOf classifies a request path for stats and fault matching.
func endpointOf(r *http.Request) (string, []string) {
	p := r.URL.Path
	switch p {
	case "/connect/authorize":
		return "authorize", nil
	case "/connect/consent":
		return "consent", nil
	case "/connect/token":
		return "token", nil
	case "/connect/userinfo":
		return "userinfo", nil
	case "/.well-known/openid-configuration":
		return "discovery", nil
	}
	if !strings.HasPrefix(p, "/v1/") {
		return "other", nil
	}
	raw := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.EscapedPath(), "/v1/"), "/"), "/")
	segs := make([]string, len(raw))
	for i, sg := range raw {
		u, err := url.PathUnescape(sg)
		if err != nil {
			return "other", nil
		}
		segs[i] = u
	}
	switch {
	case len(segs) == 1 && segs[0] == "homes":
		return "homes", segs
	case len(segs) == 3 && segs[0] == "homes" && segs[2] == "devices":
		return "devices", segs
	case len(segs) == 4 && segs[0] == "homes" && segs[2] == "devices":
		return "device", segs
	case len(segs) == 5 && segs[0] == "homes" && segs[2] == "devices" && segs[4] == "history":
		return "history", segs
	}
	return "other", segs
}

// isAPI reports whether ep is a Data API endpoint.
func isAPI(ep string) bool {
	switch ep {
	case "homes", "devices", "device", "history", "other":
		return true
	}
	return false
}

// ServeHTTP serves the authorization server and the Data API.
func (s *Simulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	started := time.Now()
	ep, segs := endpointOf(r)
	s.mu.Lock()
	s.stats.Requests[ep]++
	s.stats.InFlight++
	s.notifyLocked()
	s.mu.Unlock()
	rc := &reqCtx{req: r, endpoint: ep, segs: segs}
	// status stays 0 when serve aborts the handler (a drop whose hijack
	// failed panics with http.ErrAbortHandler): the request is still counted.
	status := 0
	defer func() {
		s.mu.Lock()
		s.stats.Statuses[status]++
		if s.stats.EndpointStatuses[ep] == nil {
			s.stats.EndpointStatuses[ep] = map[int]int{}
		}
		s.stats.EndpointStatuses[ep][status]++
		s.stats.InFlight--
		s.notifyLocked()
		s.mu.Unlock()
		if l := s.opts.Logger; l != nil {
			// The path only: queries may carry a state, a code or a cursor.
			l.Info("simulator request", "method", r.Method, "endpoint", ep, "path", r.URL.Path, "status", status, "duration", time.Since(started))
		}
	}()
	status = s.serve(w, rc)
}

// serve runs one request and returns the status sent (0 for none).
func (s *Simulator) serve(w http.ResponseWriter, rc *reqCtx) int {
	r := rc.req
	if ep := rc.endpoint; ep != "authorize" && ep != "consent" {
		if ua := r.Header.Get("User-Agent"); !ValidUserAgent(ua) {
			s.mu.Lock()
			s.stats.UserAgentViolations++
			s.eventLocked("user-agent-violation", ep, fmt.Sprintf("user-agent=%q", truncate(ua, 80)))
			s.mu.Unlock()
			if !s.opts.LenientUserAgent {
				detail := "A User-Agent of the form <App>/<Version> is required."
				if ep == "token" {
					s.writeJSON(w, 400, OAuthError{Error: "invalid_request", ErrorDescription: detail})
				} else {
					s.problem(w, 400, detail)
				}
				return 400
			}
		}
	}
	latency, f := s.faults.take(rc.endpoint)
	if latency > 0 {
		s.countFault("latency", rc.endpoint)
		if !s.sleep(r.Context(), latency) {
			return 0
		}
	}
	if f != nil {
		s.countFault(f.Kind, rc.endpoint)
		rc.fault = f
		if status, done := s.preFault(w, rc); done {
			return status
		}
	}
	buf := newBufWriter()
	s.dispatch(buf, rc)
	if buf.status == 0 {
		buf.status = 200
	}
	return s.emit(w, rc, buf)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// dispatch routes to the handlers, writing into buf.
func (s *Simulator) dispatch(w *bufWriter, rc *reqCtx) {
	switch rc.endpoint {
	case "authorize":
		s.handleAuthorize(w, rc)
	case "consent":
		s.handleConsent(w, rc)
	case "token":
		s.handleToken(w, rc)
	case "userinfo":
		s.handleUserinfo(w, rc)
	case "discovery":
		s.handleDiscovery(w, rc)
	case "other":
		if strings.HasPrefix(rc.req.URL.Path, "/v1/") {
			if _, ok := s.authenticate(w, rc); !ok {
				return
			}
			s.problem(w, 404, "No such endpoint.")
			return
		}
		http.NotFound(w, rc.req)
	default:
		s.handleAPI(w, rc)
	}
}

// emit sends the buffered response, applying post-processing faults.
func (s *Simulator) emit(w http.ResponseWriter, rc *reqCtx, buf *bufWriter) int {
	f := rc.fault
	kind := ""
	if f != nil {
		kind = f.Kind
	}
	switch kind {
	case KindRotateThenDrop:
		s.drop(w)
		return 0
	case KindProcessThen500:
		if rc.endpoint == "token" {
			s.writeJSON(w, 500, OAuthError{Error: "server_error"})
		} else {
			s.problem(w, 500, "An unexpected error occurred.")
		}
		return 500
	case KindMalformedJSON:
		body := buf.body.Bytes()
		cut := len(body) / 2
		if cut == 0 {
			body = []byte("{")
		} else {
			body = body[:cut]
		}
		maps.Copy(w.Header(), buf.header)
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(buf.status)
		w.Write(body)
		return buf.status
	case KindDrift:
		body := buf.body.Bytes()
		member := f.Member
		if member == "" {
			member = driftMember(rc.endpoint)
		}
		var obj map[string]json.RawMessage
		if member != "" && buf.status == 200 && json.Unmarshal(body, &obj) == nil {
			if v, ok := obj[member]; ok {
				delete(obj, member)
				obj[member+"V2"] = v
				if b, err := json.Marshal(obj); err == nil {
					body = b
				}
			}
		}
		maps.Copy(w.Header(), buf.header)
		w.Header().Del("Content-Length")
		w.WriteHeader(buf.status)
		w.Write(body)
		return buf.status
	case KindTrickle:
		maps.Copy(w.Header(), buf.header)
		w.Header().Del("Content-Length")
		w.WriteHeader(buf.status)
		delay := f.Delay
		if delay <= 0 {
			delay = time.Second
		}
		fl, _ := w.(http.Flusher)
		for i, c := range buf.body.Bytes() {
			if i > 0 && !s.sleep(rc.req.Context(), delay) {
				break
			}
			w.Write([]byte{c})
			if fl != nil {
				fl.Flush()
			}
		}
		return buf.status
	}
	maps.Copy(w.Header(), buf.header)
	w.WriteHeader(buf.status)
	w.Write(buf.body.Bytes())
	return buf.status
}

// sleep waits for d unless the request or the simulator ends first.
func (s *Simulator) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.done:
		return false
	}
}

// drop closes the connection without a response.
func (s *Simulator) drop(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

func (s *Simulator) countFault(kind, ep string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Faults[kind]++
	s.eventLocked("fault", ep, kind)
}

// rateLimited applies the per-client token bucket; it writes the 429 and
// returns true when the client is over the limit.
func (s *Simulator) rateLimited(w http.ResponseWriter, rc *reqCtx, client string) bool {
	if s.opts.RateLimit <= 0 {
		return false
	}
	now := s.now()
	s.limMu.Lock()
	lim := s.limiters[client]
	if lim == nil {
		lim = rate.NewLimiter(rate.Limit(s.opts.RateLimit), s.opts.RateBurst)
		s.limiters[client] = lim
	}
	res := lim.ReserveN(now, 1)
	delay := res.DelayFrom(now)
	if delay > 0 || !res.OK() {
		res.CancelAt(now)
	}
	s.limMu.Unlock()
	if res.OK() && delay == 0 {
		return false
	}
	if !res.OK() {
		delay = time.Second
	}
	s.mu.Lock()
	s.stats.RateLimited++
	s.eventLocked("rate-limited", rc.endpoint, fmt.Sprintf("client=%s retry_after=%s", client, delay.Round(time.Millisecond)))
	s.mu.Unlock()
	s.tooMany(w, rc, s.retryAfterValue(s.opts.RetryAfterForm, delay))
	return true
}

// retryAfterValue formats a wait in the given form ("" for no header).
func (s *Simulator) retryAfterValue(form string, d time.Duration) string {
	switch form {
	case "none":
		return ""
	case "http-date":
		return s.now().Add(d).UTC().Format(http.TimeFormat)
	}
	secs := int((d + time.Second - 1) / time.Second)
	return fmt.Sprint(max(1, secs))
}

func (s *Simulator) tooMany(w http.ResponseWriter, rc *reqCtx, retryAfter string) {
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	if rc.endpoint == "token" {
		s.writeJSON(w, 429, OAuthError{Error: "temporarily_unavailable", ErrorDescription: "Too many requests."})
		return
	}
	s.problem(w, 429, "Too many requests.")
}
