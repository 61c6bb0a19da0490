package web

import (
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/tibbersync/tibbersync/internal/logging"
)

// ContentSecurityPolicy is sent with every response. Pages load nothing from
// elsewhere: styles are inline, charts are inline SVG, there is no script.
// The Connect button is a link, so form-action need not name Tibber.
const ContentSecurityPolicy = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// securityHeaders sets the headers every response carries, errors included.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

// recoverPanics logs a handler's panic through the server's redacting
// logger and aborts the response. Left to net/http, the panic value would be
// printed with %v into the error log, which shows a logging.Secret held in
// an unexported field raw (R12); the "panic" attribute is checked by type.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			p := recover()
			if p == nil {
				return
			}
			if p != http.ErrAbortHandler {
				s.log.Error("web handler panicked", "method", r.Method, "path", r.URL.Path,
					"panic", p, "stack", string(debug.Stack()))
			}
			panic(http.ErrAbortHandler) // net/http closes the connection without logging
		}()
		next.ServeHTTP(w, r)
	})
}

// track counts handlers in progress so that Close can wait for them.
func (s *Server) track(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.inflight.Add(1)
		defer s.inflight.Done()
		next.ServeHTTP(w, r)
	})
}

// checkHost answers 403 unless the Host header names this machine on the
// port the request came in on (reliability.md R2: DNS rebinding). Loopback
// names are always fine; in remote mode also the configured listen host and
// the IP literal the client connected to, neither of which a rebinding
// attacker's page can send.
func (s *Server) checkHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.hostAllowed(r) {
			s.log.Warn("request with foreign Host header refused", "host", truncate(r.Host, 100), "path", r.URL.Path)
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusForbidden)
			_, _ = fmt.Fprintln(w, "403 forbidden: unexpected Host header (DNS rebinding protection); open tibbersync as http://localhost:PORT, http://127.0.0.1:PORT or, when it listens on the network, by its IP address")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) hostAllowed(r *http.Request) bool {
	if r.Host == "" {
		return false
	}
	if s.redirectAuthority != "" && strings.EqualFold(r.Host, s.redirectAuthority) {
		// The registered redirect URI is loopback; a port forward that keeps
		// it intact must work.
		return true
	}
	host, port, err := net.SplitHostPort(r.Host)
	if err != nil {
		host, port = r.Host, "80"
	}
	host = strings.ToLower(strings.Trim(host, "[]"))
	localIP, localPort := s.localAddr(r)
	if port != localPort {
		return false
	}
	if host == "localhost" {
		return true
	}
	if ip := net.ParseIP(host); ip != nil {
		if ip.IsLoopback() {
			return true
		}
		if s.remote && localIP != nil && ip.Equal(localIP) {
			return true
		}
		return false
	}
	return s.remote && host == s.listenHost
}

// localAddr returns the address the request's connection was accepted on,
// falling back to the bound or configured port.
func (s *Server) localAddr(r *http.Request) (net.IP, string) {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok && a != nil {
		return a.IP, strconv.Itoa(a.Port)
	}
	if p := s.Port(); p != 0 {
		return nil, strconv.Itoa(p)
	}
	return nil, s.listenPort
}

// statusWriter remembers the status code for the request log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// logRequests logs each request at debug level: method, path (never the
// query, which may hold a code or state), status and duration.
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		s.log.Debug("http request", "method", r.Method, "path", r.URL.Path, "status", sw.status,
			"duration", time.Since(start).Round(time.Microsecond))
	})
}

// Pairing (remote mode only).

const (
	pairCookie = "tibbersync_pairing"
	// freePairingFailures wrong codes per client address cost nothing
	// (typos); each further one doubles the wait before that address may
	// try again, from pairingDelayBase up to pairingDelayMax. There is no
	// global lock: a stranger guessing can never lock out the owner, and
	// at most a few hundred guesses a day per address against a 60-bit code
	// get nowhere.
	freePairingFailures = 3
	pairingDelayBase    = 2 * time.Second
	pairingDelayMax     = time.Hour
	// maxPairingClients bounds the failure table; the entry tried longest
	// ago is dropped first.
	maxPairingClients   = 4096
	pairingCodeLength   = 12
	pairingCodeAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789" // 32 symbols: no I, O, 0, 1
)

// pairing is the state of the one-time pairing code. Guarded by Server.mu.
type pairing struct {
	code    string // normalized
	used    bool
	clients map[string]*pairClient // by clientKey
	session logging.Secret
}

// pairClient is the wrong-code record of one client address.
type pairClient struct {
	failures int
	last     time.Time // the last wrong code
	until    time.Time // no attempt is checked before this
}

// pairingDelay is the wait after n wrong codes from one address.
func pairingDelay(n int) time.Duration {
	if n < freePairingFailures {
		return 0
	}
	d := pairingDelayBase
	for i := freePairingFailures; i < n && d < pairingDelayMax; i++ {
		d *= 2
	}
	return min(d, pairingDelayMax)
}

// clientKey is the address a pairing attempt is counted against: the peer
// IP (never a forwarded header, which the client controls), IPv6 by /64
// since one host usually owns a whole /64.
func clientKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// newPairingCode returns a random code of 60 bits.
func newPairingCode() (logging.Secret, error) {
	b := make([]byte, pairingCodeLength)
	if _, err := rand.Read(b); err != nil {
		return logging.Secret{}, fmt.Errorf("generate pairing code: %w", err)
	}
	for i := range b {
		b[i] = pairingCodeAlphabet[int(b[i])%len(pairingCodeAlphabet)]
	}
	return logging.NewSecret(string(b)), nil
}

// normalizePairingCode upper-cases the code and drops separators, so that
// "abcd-efgh-jkmn" matches.
func normalizePairingCode(s string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(s) {
		if r == '-' || r == ' ' || r == '\t' {
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// formatPairingCode groups a code in fours for reading it off a log.
func formatPairingCode(code string) string {
	var parts []string
	for len(code) > 4 {
		parts = append(parts, code[:4])
		code = code[4:]
	}
	return strings.Join(append(parts, code), "-")
}

// paired reports whether the request may use /setup: always in loopback
// mode, else only with the session cookie set by a correct pairing code.
func (s *Server) paired(r *http.Request) bool {
	if !s.remote {
		return true
	}
	c, err := r.Cookie(pairCookie)
	if err != nil {
		return false
	}
	s.mu.Lock()
	session := s.pair.session
	s.mu.Unlock()
	return !session.Empty() && subtle.ConstantTimeCompare([]byte(c.Value), []byte(session.Reveal())) == 1
}

// requirePairing shows the pairing form instead of h until the browser has
// paired.
func (s *Server) requirePairing(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.paired(r) {
			h(w, r)
			return
		}
		s.renderPair(w, http.StatusForbidden, "")
	}
}

var errPairingClosed = errors.New("pairing closed")

// handlePair checks the pairing code, then sets the session cookie and
// sends the browser to /setup.
func (s *Server) handlePair(w http.ResponseWriter, r *http.Request) {
	if !s.remote {
		http.Redirect(w, r, "/setup", http.StatusSeeOther)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil {
		s.renderPair(w, http.StatusBadRequest, "The form could not be read. Try again.")
		return
	}
	given := normalizePairingCode(r.PostForm.Get("code"))
	session, failures, wait, err := s.tryPair(clientKey(r.RemoteAddr), given)
	var tooSoon *pairWaitError
	switch {
	case errors.Is(err, errPairingClosed):
		s.renderMessage(w, http.StatusForbidden, messageView{
			Title: "Pairing closed",
			Message: "The pairing code has already been used. " +
				"Restart tibbersync to print a new code to its log, or open the setup page on the machine itself (http://localhost:PORT/setup through an SSH tunnel).",
		})
		return
	case errors.As(err, &tooSoon):
		secs := int((tooSoon.wait + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		s.renderPair(w, http.StatusTooManyRequests, fmt.Sprintf("Too many wrong codes from this address. Wait %s before the next try; the code was not checked.", humanDuration(tooSoon.wait)))
		return
	case err != nil:
		s.log.Warn("wrong pairing code", "failures", failures, "remote_addr", r.RemoteAddr, "next_try_in", wait)
		msg := "That code is not right. The code is in tibbersync's log, in the line that says \"pairing code\"."
		if wait > 0 {
			msg += fmt.Sprintf(" Wait %s before the next try.", humanDuration(wait))
		}
		s.renderPair(w, http.StatusForbidden, msg)
		return
	}
	s.log.Info("browser paired for setup", "remote_addr", r.RemoteAddr)
	http.SetCookie(w, &http.Cookie{
		Name:     pairCookie,
		Value:    session.Reveal(),
		Path:     "/",
		HttpOnly: true,
		SameSite: http.SameSiteStrictMode,
	})
	http.Redirect(w, r, "/setup", http.StatusSeeOther)
}

// pairWaitError refuses an attempt made before the client's wait ended.
type pairWaitError struct{ wait time.Duration }

func (e *pairWaitError) Error() string { return "pairing: wait " + e.wait.String() }

// tryPair consumes the one-time code when given matches it. Wrong codes
// are counted per client (clientKey); a client still inside its wait gets
// a *pairWaitError and its code is not compared at all. It returns the
// client's failures and the wait its last wrong code started.
func (s *Server) tryPair(client, given string) (logging.Secret, int, time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := &s.pair
	if p.used || p.code == "" {
		return logging.Secret{}, 0, 0, errPairingClosed
	}
	now := s.clock.Now()
	c := p.clients[client]
	if c != nil && now.Before(c.until) {
		return logging.Secret{}, c.failures, 0, &pairWaitError{wait: c.until.Sub(now)}
	}
	if subtle.ConstantTimeCompare([]byte(given), []byte(p.code)) != 1 {
		if c == nil {
			if p.clients == nil {
				p.clients = map[string]*pairClient{}
			}
			if len(p.clients) >= maxPairingClients {
				oldest := ""
				for k, v := range p.clients {
					if oldest == "" || v.last.Before(p.clients[oldest].last) {
						oldest = k
					}
				}
				delete(p.clients, oldest)
			}
			c = &pairClient{}
			p.clients[client] = c
		}
		c.failures++
		c.last = now
		wait := pairingDelay(c.failures)
		c.until = now.Add(wait)
		return logging.Secret{}, c.failures, wait, errors.New("wrong pairing code")
	}
	p.used = true
	p.clients = nil
	p.session = logging.NewSecret(rand.Text())
	return p.session, 0, 0, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
