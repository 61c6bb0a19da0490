package web_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/metrics"
	"github.com/tibbersync/tibbersync/internal/web"
)

func TestHostHeaderCheck(t *testing.T) {
	var logs syncBuffer
	s := openServer(t, baseOptions(&logs))
	port := strconv.Itoa(s.Port())
	if s.Port() == 0 {
		t.Fatal("Port()=0 after Open")
	}
	if got, want := s.URL(), "http://127.0.0.1:"+port; got != want {
		t.Fatalf("URL()=%q, want %q", got, want)
	}
	cases := map[string]struct {
		host string
		want int
	}{
		"Loopback4":     {"127.0.0.1:" + port, http.StatusOK},
		"Localhost":     {"localhost:" + port, http.StatusOK},
		"LocalhostCase": {"LocalHost:" + port, http.StatusOK},
		"Loopback6":     {"[::1]:" + port, http.StatusOK},
		// The loopback redirect URL's authority is allowed as registered.
		"RedirectAuthority": {"localhost:8765", http.StatusOK},
		"Evil":              {"evil.test:" + port, http.StatusForbidden},
		"EvilNoPort":        {"evil.test", http.StatusForbidden},
		"WrongPort":         {"127.0.0.1:1", http.StatusForbidden},
		"NoPort":            {"localhost", http.StatusForbidden},
		"RebindSubdomain":   {"localhost.evil.test:" + port, http.StatusForbidden},
		"LANAddress":        {"192.168.1.10:" + port, http.StatusForbidden},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			for _, path := range []string{"/healthz", "/setup"} {
				req, _ := http.NewRequest(http.MethodGet, s.URL()+path, nil)
				req.Host = c.host
				r := do(t, noRedirect(), req)
				if r.status != c.want {
					t.Fatalf("GET %s with Host %q: status %d, want %d", path, c.host, r.status, c.want)
				}
				if r.header.Get("Cache-Control") != "no-store" {
					t.Errorf("Host %q: Cache-Control=%q", c.host, r.header.Get("Cache-Control"))
				}
			}
		})
	}
}

func TestSecurityHeadersOnEveryResponse(t *testing.T) {
	var logs syncBuffer
	opts := baseOptions(&logs)
	opts.Metrics = metrics.New()
	s := openServer(t, opts)
	c := noRedirect()
	reqs := map[string]*http.Request{}
	for _, p := range []string{"/", "/setup", "/setup/start", "/callback?code=x&state=y", "/healthz", "/readyz", "/metrics", "/no-such-page"} {
		reqs["GET "+p], _ = http.NewRequest(http.MethodGet, s.URL()+p, nil)
	}
	reqs["POST /callback"], _ = http.NewRequest(http.MethodPost, s.URL()+"/callback", nil)
	reqs["POST /setup/paste cross-origin"], _ = http.NewRequest(http.MethodPost, s.URL()+"/setup/paste", strings.NewReader("url=x"))
	reqs["POST /setup/paste cross-origin"].Header.Set("Origin", "http://evil.test")
	reqs["POST /setup/paste cross-origin"].Header.Set("Content-Type", "application/x-www-form-urlencoded")
	evil, _ := http.NewRequest(http.MethodGet, s.URL()+"/", nil)
	evil.Host = "evil.test"
	reqs["evil host"] = evil

	want := map[string]string{
		"Cache-Control":          "no-store",
		"X-Content-Type-Options": "nosniff",
		"Referrer-Policy":        "no-referrer",
		"X-Frame-Options":        "DENY",
	}
	for name, req := range reqs {
		t.Run(name, func(t *testing.T) {
			r := do(t, c, req)
			for k, v := range want {
				if got := r.header.Get(k); got != v {
					t.Errorf("%s: %s=%q, want %q (status %d)", name, k, got, v, r.status)
				}
			}
			csp := r.header.Get("Content-Security-Policy")
			for _, d := range []string{"default-src 'none'", "frame-ancestors 'none'", "form-action 'self'", "style-src 'unsafe-inline'"} {
				if !strings.Contains(csp, d) {
					t.Errorf("%s: CSP %q lacks %q", name, csp, d)
				}
			}
		})
	}
}

func TestNonLoopbackListenRefusedWithoutAllowRemote(t *testing.T) {
	for _, listen := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:8765", "myhost.lan:8765"} {
		t.Run(listen, func(t *testing.T) {
			opts := baseOptions(&syncBuffer{})
			opts.Listen = listen
			_, err := web.New(opts)
			if !errors.Is(err, web.ErrRemoteNotAllowed) {
				t.Fatalf("New(Listen=%q)=%v, want ErrRemoteNotAllowed", listen, err)
			}
			opts.AllowRemote = true
			if _, err := web.New(opts); err != nil {
				t.Fatalf("New(Listen=%q, AllowRemote)=%v", listen, err)
			}
		})
	}
	for _, listen := range []string{"127.0.0.1:0", "localhost:0", "[::1]:0", "127.0.0.2:0"} {
		opts := baseOptions(&syncBuffer{})
		opts.Listen = listen
		if _, err := web.New(opts); err != nil {
			t.Errorf("New(Listen=%q)=%v, want ok", listen, err)
		}
	}
}

func TestOpenReportsBindErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	opts := baseOptions(&syncBuffer{})
	opts.Listen = ln.Addr().String()
	s, err := web.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(); err == nil {
		_ = s.Close(context.Background())
		t.Fatal("Open on a busy port succeeded")
	}
}

func TestRemoteModeRequiresPairing(t *testing.T) {
	var logs syncBuffer
	opts := baseOptions(&logs)
	opts.Listen = "192.0.2.1:8765" // remote mode; served below through httptest on loopback
	opts.AllowRemote = true
	opts.PairingCode = logging.NewSecret("ABCD-EFGH-JKMN")
	_, ts := handlerServer(t, opts)

	c := jarClient(t)
	r := get(t, c, ts.URL+"/setup")
	if r.status != http.StatusForbidden {
		t.Fatalf("unpaired GET /setup: status %d, want 403", r.status)
	}
	mustContain(t, r.body, `action="/setup/pair"`)
	if strings.Contains(r.body, "client-123") {
		t.Error("unpaired /setup shows the setup page")
	}
	if r := get(t, c, ts.URL+"/setup/start"); r.status != http.StatusForbidden {
		t.Errorf("unpaired /setup/start: status %d, want 403", r.status)
	}
	if r := postForm(t, c, ts.URL+"/setup/paste", url.Values{"url": {"http://localhost:8765/callback?code=a&state=b"}}, nil); r.status != http.StatusForbidden {
		t.Errorf("unpaired /setup/paste: status %d, want 403", r.status)
	}
	if _, completes := opts.Flow.(*fakeFlow).counts(); completes != 0 {
		t.Errorf("unpaired paste reached the flow %d times", completes)
	}
	// Health stays open for probes; the status page (account email, device
	// names) is behind pairing.
	if r := get(t, c, ts.URL+"/healthz"); r.status != http.StatusOK {
		t.Errorf("/healthz in remote mode: status %d", r.status)
	}
	if r := get(t, c, ts.URL+"/"); r.status != http.StatusForbidden {
		t.Errorf("unpaired GET / in remote mode: status %d, want 403", r.status)
	}

	r = postForm(t, c, ts.URL+"/setup/pair", url.Values{"code": {"WRONG-CODE-1234"}}, nil)
	if r.status != http.StatusForbidden {
		t.Fatalf("wrong pairing code: status %d, want 403", r.status)
	}
	mustContain(t, r.body, `action="/setup/pair"`, "not right")

	// The right code, typed in lower case without dashes; the client follows
	// the 303 to /setup with the new cookie.
	r = postForm(t, c, ts.URL+"/setup/pair", url.Values{"code": {"abcdefghjkmn"}}, nil)
	if r.status != http.StatusOK {
		t.Fatalf("right pairing code then /setup: status %d, want 200\n%s", r.status, r.body)
	}
	mustContain(t, r.body, "client-123", `href="/setup/start"`)
	if r := get(t, c, ts.URL+"/setup"); r.status != http.StatusOK {
		t.Fatalf("paired GET /setup: status %d", r.status)
	}
	u, _ := url.Parse(ts.URL)
	if cookies := c.Jar.Cookies(u); len(cookies) != 1 {
		t.Fatalf("cookies=%d, want 1", len(cookies))
	}

	// The code is one-time: a second browser cannot pair with it.
	other := jarClient(t)
	r = postForm(t, other, ts.URL+"/setup/pair", url.Values{"code": {"ABCD-EFGH-JKMN"}}, nil)
	if r.status != http.StatusForbidden {
		t.Fatalf("reused pairing code: status %d, want 403", r.status)
	}
	if r := get(t, other, ts.URL+"/setup"); r.status != http.StatusForbidden {
		t.Fatalf("second browser GET /setup: status %d, want 403", r.status)
	}
	if strings.Contains(logs.String(), "ABCD") {
		t.Error("pairing code logged outside Open")
	}
}

func TestPairingCookieFlags(t *testing.T) {
	opts := baseOptions(&syncBuffer{})
	opts.Listen = "192.0.2.1:8765"
	opts.AllowRemote = true
	opts.PairingCode = logging.NewSecret("QRST-UVWX-YZ23")
	_, ts := handlerServer(t, opts)
	r := postForm(t, noRedirect(), ts.URL+"/setup/pair", url.Values{"code": {"QRST-UVWX-YZ23"}}, nil)
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/setup" {
		t.Fatalf("pair: status %d Location %q, want 303 /setup", r.status, r.header.Get("Location"))
	}
	sc := r.header.Get("Set-Cookie")
	for _, want := range []string{"HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(sc, want) {
			t.Errorf("Set-Cookie %q lacks %s", sc, want)
		}
	}
}

// pairFrom posts a pairing code as the client at remoteAddr would.
func pairFrom(t *testing.T, h http.Handler, remoteAddr, code string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "http://192.0.2.1:8765/setup/pair", strings.NewReader(url.Values{"code": {code}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.RemoteAddr = remoteAddr
	req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 8765}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestPairingWrongGuessesArePerClient: wrong codes are counted per client
// address with growing waits, and a client inside its wait is not even
// checked; ten wrong guesses from one host never lock out the owner's
// correct code from another (a global counter used to lock remote setup
// until restart).
func TestPairingWrongGuessesArePerClient(t *testing.T) {
	opts := baseOptions(&syncBuffer{})
	opts.Listen = "192.0.2.1:8765"
	opts.AllowRemote = true
	opts.PairingCode = logging.NewSecret("ABCD-EFGH-JKMN")
	clk := clock.NewFake(t0)
	opts.Clock = clk
	s, err := web.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	const attacker = "198.51.100.7:40000"
	var waits []time.Duration
	for i := range 10 {
		rec := pairFrom(t, h, attacker, "AAAA-AAAA-AAA"+strconv.Itoa(i))
		if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "not right") {
			t.Fatalf("wrong code %d: status %d, want 403\n%s", i, rec.Code, rec.Body)
		}
		if i < 2 {
			continue // the first wrong codes cost nothing (typos)
		}
		// Another guess right away (another source port, same host) is
		// refused unchecked while the wait runs: even the right code.
		soon := pairFrom(t, h, "198.51.100.7:40001", "ABCD-EFGH-JKMN")
		ra, _ := strconv.Atoi(soon.Header().Get("Retry-After"))
		if soon.Code != http.StatusTooManyRequests || ra <= 0 {
			t.Fatalf("guess %d inside the wait: status %d Retry-After %q, want 429 with Retry-After", i, soon.Code, soon.Header().Get("Retry-After"))
		}
		waits = append(waits, time.Duration(ra)*time.Second)
		clk.Advance(time.Duration(ra) * time.Second)
	}
	for i := 1; i < len(waits); i++ {
		if waits[i] < waits[i-1] || (waits[i] == waits[i-1] && waits[i] < time.Hour) {
			t.Fatalf("waits do not grow: %v", waits)
		}
	}
	if len(waits) == 0 || waits[len(waits)-1] < time.Minute {
		t.Fatalf("waits after ten wrong codes: %v, want growing to minutes", waits)
	}
	// The owner, from another address, pairs at once.
	owner := pairFrom(t, h, "203.0.113.5:50000", "abcd-efgh-jkmn")
	if owner.Code != http.StatusSeeOther || owner.Header().Get("Location") != "/setup" {
		t.Fatalf("owner's right code after ten wrong guesses elsewhere: status %d, want 303 /setup\n%s", owner.Code, owner.Body)
	}
	// The code is one-time: used up now.
	if rec := pairFrom(t, h, "203.0.113.6:1", "ABCD-EFGH-JKMN"); rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "Pairing closed") {
		t.Fatalf("reused code: status %d", rec.Code)
	}
}

// TestPairingSameHostAfterWait: the owner who mistyped from the same host
// pairs once the wait is over; IPv6 addresses of one /64 share a record.
func TestPairingSameHostAfterWait(t *testing.T) {
	opts := baseOptions(&syncBuffer{})
	opts.Listen = "192.0.2.1:8765"
	opts.AllowRemote = true
	opts.PairingCode = logging.NewSecret("ABCD-EFGH-JKMN")
	clk := clock.NewFake(t0)
	opts.Clock = clk
	s, err := web.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	for i := range 4 {
		pairFrom(t, h, "[2001:db8:1:2::"+strconv.Itoa(i+1)+"]:4000", "WRONG")
		clk.Advance(time.Hour)
	}
	pairFrom(t, h, "[2001:db8:1:2::99]:4000", "WRONG")
	if rec := pairFrom(t, h, "[2001:db8:1:2::aa]:4000", "ABCD-EFGH-JKMN"); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("same /64 inside the wait: status %d, want 429", rec.Code)
	}
	clk.Advance(time.Hour)
	if rec := pairFrom(t, h, "[2001:db8:1:2::aa]:4000", "ABCD-EFGH-JKMN"); rec.Code != http.StatusSeeOther {
		t.Fatalf("right code after the wait: status %d, want 303", rec.Code)
	}
}

func TestLoopbackModeNeedsNoPairing(t *testing.T) {
	_, ts := handlerServer(t, baseOptions(&syncBuffer{}))
	if r := get(t, noRedirect(), ts.URL+"/setup"); r.status != http.StatusOK {
		t.Fatalf("GET /setup on loopback: status %d, want 200", r.status)
	}
}

func TestCloseStopsListenerAndGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	opts := baseOptions(&syncBuffer{})
	s, err := web.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	base := s.URL()
	tr := &http.Transport{DisableKeepAlives: true}
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	if r := get(t, c, base+"/healthz"); r.status != http.StatusOK || r.body != "ok\n" {
		t.Fatalf("/healthz: %d %q", r.status, r.body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	if _, err := c.Get(base + "/healthz"); err == nil {
		t.Fatal("server still answers after Close")
	}
	tr.CloseIdleConnections()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines: %d after Close, %d before Open", runtime.NumGoroutine(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.Open(); err == nil {
		t.Fatal("Open after Close succeeded")
	}
}

func TestRemoteModeHosts(t *testing.T) {
	opts := baseOptions(&syncBuffer{})
	opts.Listen = "pi.lan:8765"
	opts.AllowRemote = true
	_, ts := handlerServer(t, opts)
	port := ts.URL[strings.LastIndex(ts.URL, ":")+1:]
	cases := map[string]int{
		"pi.lan:" + port:    http.StatusOK, // the configured listen host
		"PI.LAN:" + port:    http.StatusOK,
		"127.0.0.1:" + port: http.StatusOK, // the address the client connected to
		"pi.lan:1":          http.StatusForbidden,
		"evil.test:" + port: http.StatusForbidden,
		"10.0.0.9:" + port:  http.StatusForbidden, // an IP this connection did not use
	}
	for host, want := range cases {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+"/healthz", nil)
		req.Host = host
		if r := do(t, noRedirect(), req); r.status != want {
			t.Errorf("remote mode, Host %q: status %d, want %d", host, r.status, want)
		}
	}
	// In loopback mode the same name is refused.
	_, lts := handlerServer(t, baseOptions(&syncBuffer{}))
	lport := lts.URL[strings.LastIndex(lts.URL, ":")+1:]
	req, _ := http.NewRequest(http.MethodGet, lts.URL+"/healthz", nil)
	req.Host = "pi.lan:" + lport
	if r := do(t, noRedirect(), req); r.status != http.StatusForbidden {
		t.Errorf("loopback mode, Host pi.lan: status %d, want 403", r.status)
	}
}

// TestServesOnGivenListener: a caller that bound the port itself (to know
// it before the server exists) hands the listener over; the server serves
// on exactly that socket and closes it on Close, also when never opened.
func TestServesOnGivenListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts := baseOptions(&syncBuffer{})
	opts.Listen = "127.0.0.1:1" // ignored: the listener wins
	opts.Listener = ln
	s, err := web.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	if got, want := s.URL(), "http://"+ln.Addr().String(); got != want {
		t.Fatalf("URL()=%q, want the given listener's %q", got, want)
	}
	resp, err := http.Get(s.URL() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz on the given listener: %s", resp.Status)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := ln.Accept(); err == nil {
		t.Fatal("the given listener is still open after Close")
	}

	// Never opened: Close still releases the socket.
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts.Listener = ln2
	s2, err := web.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := ln2.Accept(); err == nil {
		t.Fatal("a listener handed to a server that never opened stays open after Close")
	}
}
