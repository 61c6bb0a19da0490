package tibber_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/tibber"
)

var _ jobs.API = (*tibber.Client)(nil)

const testUA = "tibbersync/1.2.3-dev (linux; amd64)"

// uaRe is the format every request must carry (tibber-data-api.md §8.1).
var uaRe = regexp.MustCompile(`^tibbersync/[0-9A-Za-z.\-]+ \([a-z0-9]+; [a-z0-9]+\)$`)

// fakeTokens is a function-field fake of tibber.Tokens.
type fakeTokens struct {
	mu           sync.Mutex
	token        string
	refreshTo    string
	accessErr    error
	refreshErr   error
	refreshCalls int
	rejected     []string
}

var _ tibber.Tokens = (*fakeTokens)(nil)

func (f *fakeTokens) AccessToken(context.Context) (logging.Secret, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.accessErr != nil {
		return logging.Secret{}, f.accessErr
	}
	return logging.NewSecret(f.token), nil
}

func (f *fakeTokens) Refresh(_ context.Context, rejected logging.Secret) (logging.Secret, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refreshCalls++
	f.rejected = append(f.rejected, rejected.Reveal())
	if f.refreshErr != nil {
		return logging.Secret{}, f.refreshErr
	}
	f.token = f.refreshTo
	return logging.NewSecret(f.refreshTo), nil
}

func (f *fakeTokens) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refreshCalls
}

// apiServer is an httptest server on 127.0.0.1 that counts requests and
// checks the User-Agent and Accept headers of every one.
type apiServer struct {
	*httptest.Server
	requests   atomic.Int64
	violations atomic.Int64
	mu         sync.Mutex
	auths      []string
}

func newAPIServer(t *testing.T, h http.HandlerFunc) *apiServer {
	t.Helper()
	s := &apiServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if !uaRe.MatchString(r.UserAgent()) || r.Header.Get("Accept") != "application/json" {
			s.violations.Add(1)
		}
		s.mu.Lock()
		s.auths = append(s.auths, r.Header.Get("Authorization"))
		s.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(func() {
		s.Close()
		if v := s.violations.Load(); v != 0 {
			t.Errorf("%d requests without a valid User-Agent/Accept", v)
		}
	})
	return s
}

func (s *apiServer) authHeaders() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.auths...)
}

type testEnv struct {
	client *tibber.Client
	clock  *clock.Fake
	tokens *fakeTokens
	hc     *http.Client
}

// newTestClient builds a client against srv with a fake clock, a seeded
// jitter source and no rate limit; mod may change the options.
func newTestClient(t *testing.T, baseURL string, mod func(*tibber.Options)) *testEnv {
	t.Helper()
	env := &testEnv{
		clock:  clock.NewFake(time.Date(2026, 9, 14, 8, 0, 0, 0, time.UTC)),
		tokens: &fakeTokens{token: "access-token-1", refreshTo: "access-token-2"},
		hc:     tibber.NewHTTPClient(5 * time.Second),
	}
	r := rand.New(rand.NewPCG(1, 2))
	opts := tibber.Options{
		BaseURL:    baseURL,
		HTTPClient: env.hc,
		Tokens:     env.tokens,
		UserAgent:  testUA,
		Clock:      env.clock,
		Rand:       r.Float64,
		RateLimit:  1000,
		Burst:      100,
	}
	if mod != nil {
		mod(&opts)
	}
	c, err := tibber.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	env.client = c
	t.Cleanup(env.hc.CloseIdleConnections)
	return env
}

// within fails the test if f does not return within d.
func within(t *testing.T, d time.Duration, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("did not finish within %s", d)
	}
}

// waitGoroutines waits until the goroutine count is back to at most base.
func waitGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("goroutines: %d, baseline %d\n%s", n, base, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprint(w, body)
}

func problem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"type":"https://tools.ietf.org/html/rfc9110#section-15.5.5","title":%q,"status":%d,"detail":%q,"traceId":"00-abc-def-00"}`,
		http.StatusText(status), status, detail)
}
