package web_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/testutil"
	"github.com/tibbersync/tibbersync/internal/web"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeFlow is a function-field AuthFlow.
type fakeFlow struct {
	StartFn    func(ctx context.Context) (string, error)
	CompleteFn func(ctx context.Context, redirected *url.URL) (model.AuthStatus, error)

	mu        sync.Mutex
	starts    int
	completes int
}

var _ web.AuthFlow = (*fakeFlow)(nil)

func (f *fakeFlow) Start(ctx context.Context) (string, error) {
	f.mu.Lock()
	f.starts++
	f.mu.Unlock()
	return f.StartFn(ctx)
}

func (f *fakeFlow) Complete(ctx context.Context, redirected *url.URL) (model.AuthStatus, error) {
	f.mu.Lock()
	f.completes++
	f.mu.Unlock()
	return f.CompleteFn(ctx, redirected)
}

func (f *fakeFlow) counts() (starts, completes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.starts, f.completes
}

// fakeStatus is a function-field StatusSource.
type fakeStatus struct {
	SummaryFn func(ctx context.Context) (model.Summary, error)
	SeriesFn  func(ctx context.Context, capabilityID string, since time.Time) ([]model.Series, error)
	HistoryFn func(ctx context.Context, resolution string, from, to time.Time) ([]model.HistorySeries, error)
}

func (f *fakeStatus) HistorySeries(ctx context.Context, resolution string, from, to time.Time) ([]model.HistorySeries, error) {
	if f.HistoryFn == nil {
		return nil, nil
	}
	return f.HistoryFn(ctx, resolution, from, to)
}

var _ web.StatusSource = (*fakeStatus)(nil)

func (f *fakeStatus) Summary(ctx context.Context) (model.Summary, error) { return f.SummaryFn(ctx) }

func (f *fakeStatus) CapabilitySeries(ctx context.Context, capabilityID string, since time.Time) ([]model.Series, error) {
	if f.SeriesFn == nil {
		return nil, nil
	}
	return f.SeriesFn(ctx, capabilityID, since)
}

// userError is an auth-like error with a user message and optional status.
type userError struct {
	msg    string
	status int
}

func (e userError) Error() string       { return "auth: " + e.msg }
func (e userError) UserMessage() string { return e.msg }
func (e userError) HTTPStatus() int     { return e.status }

// syncBuffer is the shared concurrency-safe log sink.
type syncBuffer = testutil.SyncBuffer

// okStatus returns a summary source with state ok.
func okStatus() *fakeStatus {
	return &fakeStatus{SummaryFn: func(context.Context) (model.Summary, error) {
		return model.Summary{Auth: model.AuthSummary{State: model.AuthOK}}, nil
	}}
}

// baseOptions are options for a configured client on 127.0.0.1:0.
func baseOptions(logs io.Writer) web.Options {
	return web.Options{
		Listen:           "127.0.0.1:0",
		RedirectURL:      "http://localhost:8765/callback",
		ClientID:         "client-123",
		Scopes:           []string{"openid", "profile", "email", "offline_access", "data-api-user-read", "data-api-homes-read", "data-api-vehicles-read"},
		ClientConfigured: true,
		ConfigHint:       "set tibber.client_id",
		Flow: &fakeFlow{
			StartFn: func(context.Context) (string, error) { return "https://auth.example/authorize?x=1", nil },
			CompleteFn: func(context.Context, *url.URL) (model.AuthStatus, error) {
				return model.AuthStatus{}, userError{msg: "no authorization attempt is pending"}
			},
		},
		Status:   okStatus(),
		Clock:    clock.NewFake(t0),
		Logger:   slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Location: time.UTC,
	}
}

// openServer builds and opens a server, closing it at the end of the test.
func openServer(t *testing.T, opts web.Options) *web.Server {
	t.Helper()
	s, err := web.New(opts)
	if err != nil {
		t.Fatalf("new: %v", err)
	}
	if err := s.Open(); err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

// handlerServer serves s.Handler() through httptest on 127.0.0.1.
func handlerServer(t *testing.T, opts web.Options) (*web.Server, *httptest.Server) {
	t.Helper()
	s, err := web.New(opts)
	if err != nil {
		t.Fatalf("new: %v", err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return s, ts
}

// noRedirect is a client that reports redirects instead of following them.
func noRedirect() *http.Client {
	return &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// jarClient follows redirects and keeps cookies, like curl -L -b -c.
func jarClient(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 10 * time.Second}
}

type response struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, c *http.Client, req *http.Request) response {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func get(t *testing.T, c *http.Client, u string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, c, req)
}

func postForm(t *testing.T, c *http.Client, u string, form url.Values, header map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return do(t, c, req)
}

func mustContain(t *testing.T, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("body lacks %q", w)
		}
	}
	if t.Failed() {
		t.Logf("body:\n%s", body)
	}
}
