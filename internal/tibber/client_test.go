package tibber_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/tibber"
)

const homesBody = `{"homes":[{"id":"7ea61717-e440-4067-94f3-b4d59110d259","name":"Huis"}]}`

func TestNewValidatesOptions(t *testing.T) {
	tokens := &fakeTokens{token: "t"}
	cases := map[string]tibber.Options{
		"NoBaseURL":        {Tokens: tokens, UserAgent: testUA},
		"RelativeBaseURL":  {BaseURL: "/v1", Tokens: tokens, UserAgent: testUA},
		"FTPBaseURL":       {BaseURL: "ftp://example.com", Tokens: tokens, UserAgent: testUA},
		"BaseWithQuery":    {BaseURL: "https://example.com/?a=b", Tokens: tokens, UserAgent: testUA},
		"BaseWithUser":     {BaseURL: "https://u:p@example.com", Tokens: tokens, UserAgent: testUA},
		"NoTokens":         {BaseURL: "https://example.com", UserAgent: testUA},
		"NoUserAgent":      {BaseURL: "https://example.com", Tokens: tokens},
		"BadUserAgent":     {BaseURL: "https://example.com", Tokens: tokens, UserAgent: "tibbersync"},
		"NewlineUserAgent": {BaseURL: "https://example.com", Tokens: tokens, UserAgent: "tibbersync/1.0 (linux; amd64)\r\nX: y"},
		"NegativeAttempts": {BaseURL: "https://example.com", Tokens: tokens, UserAgent: testUA, MaxAttempts: -1},
		"NegativeRate":     {BaseURL: "https://example.com", Tokens: tokens, UserAgent: testUA, RateLimit: -1},
		"NaNRate":          {BaseURL: "https://example.com", Tokens: tokens, UserAgent: testUA, RateLimit: math.NaN()},
	}
	for name, opts := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := tibber.New(opts); err == nil {
				t.Fatal("New accepted invalid options")
			}
		})
	}
	for _, ua := range []string{testUA, "tibbersync/0.0.0-20260101-abcdef (linux; arm64)", "MyIntegration/1.0.0 tibber-data-go/0.1.0 (linux; amd64)", "tibbersync/dev"} {
		if _, err := tibber.New(tibber.Options{BaseURL: "https://data-api.tibber.com/", Tokens: tokens, UserAgent: ua}); err != nil {
			t.Errorf("New rejected user agent %q: %v", ua, err)
		}
	}
}

func TestHomesSendsHeaders(t *testing.T) {
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/v1/homes" {
			http.NotFound(w, r)
			return
		}
		writeJSON(w, 200, homesBody)
	})
	env := newTestClient(t, srv.URL, nil)
	homes, err := env.client.Homes(context.Background())
	if err != nil {
		t.Fatalf("Homes: %v", err)
	}
	if len(homes) != 1 || homes[0].ID != "7ea61717-e440-4067-94f3-b4d59110d259" || homes[0].Name != "Huis" {
		t.Fatalf("homes = %+v", homes)
	}
	if got, want := srv.authHeaders(), []string{"Bearer access-token-1"}; len(got) != 1 || got[0] != want[0] {
		t.Fatalf("Authorization headers = %q, want %q", got, want)
	}
}

func TestNoRetryStatuses(t *testing.T) {
	for _, status := range []int{400, 403, 404, 405, 412, 422, 501} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
				problem(w, status, "nothing to see")
			})
			env := newTestClient(t, srv.URL, nil)
			_, err := env.client.Devices(context.Background(), "home-1")
			if err == nil {
				t.Fatal("Devices succeeded")
			}
			if got := srv.requests.Load(); got != 1 {
				t.Fatalf("requests = %d, want 1", got)
			}
			if !tibber.IsStatus(err, status) {
				t.Fatalf("IsStatus(%v, %d) = false", err, status)
			}
			if got, want := tibber.IsNotFound(err), status == 404; got != want {
				t.Fatalf("IsNotFound = %v, want %v", got, want)
			}
			var apiErr *tibber.APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("error %T is not an *APIError", err)
			}
			if apiErr.Attempts != 1 || apiErr.Problem.Detail != "nothing to see" || apiErr.Problem.TraceID != "00-abc-def-00" ||
				apiErr.Problem.Status != status || apiErr.Endpoint != "GET /v1/homes/home-1/devices" {
				t.Fatalf("APIError = %+v", apiErr)
			}
			if apiErr.Retryable() {
				t.Fatal("Retryable() = true")
			}
			if len(env.clock.Sleeps()) != 0 {
				t.Fatalf("slept %v", env.clock.Sleeps())
			}
		})
	}
}

func TestRetriesExhausted(t *testing.T) {
	for _, status := range []int{500, 502, 503, 504} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(status)
			})
			env := newTestClient(t, srv.URL, nil)
			var wg atomic.Int64
			ctx := tibber.WithRequestCounter(context.Background(), &wg)
			var err error
			for range 2 { // ten requests in all: two calls of five attempts
				_, err = env.client.Homes(ctx)
				var apiErr *tibber.APIError
				if !errors.As(err, &apiErr) || apiErr.Status != status || apiErr.Attempts != 5 || !apiErr.Retryable() {
					t.Fatalf("err = %v", err)
				}
			}
			if got := srv.requests.Load(); got != 10 {
				t.Fatalf("requests = %d, want 10 (5 per call)", got)
			}
			if got := wg.Load(); got != 10 {
				t.Fatalf("request counter = %d, want 10", got)
			}
			if !strings.Contains(err.Error(), "after 5 attempts") {
				t.Fatalf("error %q does not say how many attempts", err)
			}
			sleeps := env.clock.Sleeps()
			if len(sleeps) != 8 {
				t.Fatalf("sleeps = %v, want 4 per call", sleeps)
			}
			distinct := map[time.Duration]bool{}
			for i, d := range sleeps {
				ceil := min(tibber.BackoffCap, tibber.BackoffBase<<(i%4))
				if d < 0 || d > ceil {
					t.Errorf("sleep %d = %s, want within [0, %s]", i, d, ceil)
				}
				distinct[d] = true
			}
			if len(distinct) < 2 {
				t.Fatalf("all sleeps equal: %v", sleeps)
			}
		})
	}
}

func TestBackoffCapped(t *testing.T) {
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	})
	env := newTestClient(t, srv.URL, func(o *tibber.Options) {
		o.MaxAttempts = 10
		o.Rand = func() float64 { return 0.999999 }
	})
	if _, err := env.client.Homes(context.Background()); !tibber.IsStatus(err, 502) {
		t.Fatalf("err = %v", err)
	}
	sleeps := env.clock.Sleeps()
	if len(sleeps) != 9 {
		t.Fatalf("sleeps = %v", sleeps)
	}
	for i, d := range sleeps {
		ceil := min(tibber.BackoffCap, tibber.BackoffBase<<i)
		if d > ceil || d < ceil*99/100 {
			t.Errorf("sleep %d = %s, want just under %s", i, d, ceil)
		}
	}
	if sleeps[8] > tibber.BackoffCap {
		t.Fatalf("sleep beyond cap: %s", sleeps[8])
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 9, 14, 8, 0, 0, 0, time.UTC)
	cases := map[string]struct {
		header   func() string
		min, max time.Duration
	}{
		"Seconds":     {func() string { return "3" }, 3 * time.Second, 3*time.Second + 250*time.Millisecond},
		"Zero":        {func() string { return "0" }, 0, 250 * time.Millisecond},
		"HTTPDate":    {func() string { return now.Add(10 * time.Second).Format(http.TimeFormat) }, 10 * time.Second, 10*time.Second + 250*time.Millisecond},
		"RFC850Date":  {func() string { return now.Add(7 * time.Second).Format(time.RFC850) }, 7 * time.Second, 7*time.Second + 250*time.Millisecond},
		"ANSICDate":   {func() string { return now.Add(5 * time.Second).Format(time.ANSIC) }, 5 * time.Second, 5*time.Second + 250*time.Millisecond},
		"NoHeader":    {func() string { return "" }, 0, tibber.BackoffBase},
		"Garbage":     {func() string { return "soon" }, 0, tibber.BackoffBase},
		"PastDate":    {func() string { return now.Add(-time.Hour).Format(http.TimeFormat) }, 0, tibber.BackoffBase},
		"NegativeSec": {func() string { return "-3" }, 0, tibber.BackoffBase},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var n atomic.Int64
			srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
				if n.Add(1) == 1 {
					if h := tc.header(); h != "" {
						w.Header().Set("Retry-After", h)
					}
					problem(w, http.StatusTooManyRequests, "slow down")
					return
				}
				writeJSON(w, 200, homesBody)
			})
			env := newTestClient(t, srv.URL, nil)
			env.clock.Set(now)
			if _, err := env.client.Homes(context.Background()); err != nil {
				t.Fatalf("Homes: %v", err)
			}
			sleeps := env.clock.Sleeps()
			if len(sleeps) != 1 || sleeps[0] < tc.min || sleeps[0] > tc.max {
				t.Fatalf("sleeps = %v, want one in [%s, %s]", sleeps, tc.min, tc.max)
			}
			if got := srv.requests.Load(); got != 2 {
				t.Fatalf("requests = %d, want 2", got)
			}
		})
	}
}

func TestRetryAfterJitterVaries(t *testing.T) {
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "3")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	env := newTestClient(t, srv.URL, nil)
	_, err := env.client.Homes(context.Background())
	var apiErr *tibber.APIError
	if !errors.As(err, &apiErr) || apiErr.RetryAfter != 3*time.Second || apiErr.Attempts != 5 {
		t.Fatalf("err = %#v", err)
	}
	distinct := map[time.Duration]bool{}
	for _, d := range env.clock.Sleeps() {
		if d < 3*time.Second || d > 3*time.Second+tibber.RetryAfterJitter {
			t.Fatalf("sleep %s outside [3s, 3.25s]", d)
		}
		distinct[d] = true
	}
	if len(distinct) < 2 {
		t.Fatalf("no jitter: %v", env.clock.Sleeps())
	}
}

func TestLongRetryAfterReturnsAtOnce(t *testing.T) {
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "86400")
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	env := newTestClient(t, srv.URL, nil)
	_, err := env.client.Homes(context.Background())
	var apiErr *tibber.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("err = %v", err)
	}
	if apiErr.RetryAfter != time.Hour {
		t.Fatalf("RetryAfter = %s, want capped at 1h", apiErr.RetryAfter)
	}
	if got := srv.requests.Load(); got != 1 {
		t.Fatalf("requests = %d, want 1", got)
	}
	if len(env.clock.Sleeps()) != 0 {
		t.Fatalf("slept %v", env.clock.Sleeps())
	}
}

func TestUnauthorizedRefreshesOnce(t *testing.T) {
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer access-token-2" {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			problem(w, http.StatusUnauthorized, "token expired")
			return
		}
		writeJSON(w, 200, homesBody)
	})
	env := newTestClient(t, srv.URL, nil)
	var cnt atomic.Int64
	homes, err := env.client.Homes(tibber.WithRequestCounter(context.Background(), &cnt))
	if err != nil || len(homes) != 1 {
		t.Fatalf("Homes = %v, %v", homes, err)
	}
	if got := env.tokens.calls(); got != 1 {
		t.Fatalf("refresh calls = %d, want 1", got)
	}
	if env.tokens.rejected[0] != "access-token-1" {
		t.Fatalf("Refresh got rejected token %q", env.tokens.rejected[0])
	}
	if got, want := strings.Join(srv.authHeaders(), ","), "Bearer access-token-1,Bearer access-token-2"; got != want {
		t.Fatalf("Authorization headers = %s, want %s", got, want)
	}
	if cnt.Load() != 2 {
		t.Fatalf("request counter = %d, want 2", cnt.Load())
	}
	if len(env.clock.Sleeps()) != 0 {
		t.Fatalf("slept before the retry: %v", env.clock.Sleeps())
	}
}

func TestUnauthorizedTwiceFails(t *testing.T) {
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		problem(w, http.StatusUnauthorized, "invalid token")
	})
	env := newTestClient(t, srv.URL, nil)
	_, err := env.client.Device(context.Background(), "h", "d")
	if !tibber.IsStatus(err, 401) {
		t.Fatalf("err = %v, want a 401 APIError", err)
	}
	if got := env.tokens.calls(); got != 1 {
		t.Fatalf("refresh calls = %d, want exactly 1", got)
	}
	if got := srv.requests.Load(); got != 2 {
		t.Fatalf("requests = %d, want 2", got)
	}
	for _, s := range []string{"access-token-1", "access-token-2"} {
		if strings.Contains(err.Error(), s) {
			t.Fatalf("error %q contains a token", err)
		}
	}
}

func TestUnauthorizedRefreshFails(t *testing.T) {
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	})
	env := newTestClient(t, srv.URL, nil)
	env.tokens.refreshErr = fmt.Errorf("refresh: invalid_grant: %w", model.ErrNotAuthorized)
	_, err := env.client.Homes(context.Background())
	if !errors.Is(err, model.ErrNotAuthorized) {
		t.Fatalf("err = %v, want it to wrap ErrNotAuthorized", err)
	}
	if got := srv.requests.Load(); got != 1 {
		t.Fatalf("requests = %d, want 1", got)
	}
}

func TestUnauthorizedAfterTransientRetries(t *testing.T) {
	// A 401 on the last allowed attempt still gets its one refresh retry.
	var n atomic.Int64
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case n.Add(1) < 5:
			w.WriteHeader(http.StatusServiceUnavailable)
		case r.Header.Get("Authorization") != "Bearer access-token-2":
			w.WriteHeader(http.StatusUnauthorized)
		default:
			writeJSON(w, 200, homesBody)
		}
	})
	env := newTestClient(t, srv.URL, nil)
	if _, err := env.client.Homes(context.Background()); err != nil {
		t.Fatalf("Homes: %v", err)
	}
	if got := srv.requests.Load(); got != 6 {
		t.Fatalf("requests = %d, want 6", got)
	}
}

func TestTokenSourceErrorsMakeNoRequest(t *testing.T) {
	for name, sentinel := range map[string]error{"NotAuthorized": model.ErrNotAuthorized, "Backoff": model.ErrTokenBackoff} {
		t.Run(name, func(t *testing.T) {
			srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, 200, homesBody)
			})
			env := newTestClient(t, srv.URL, nil)
			env.tokens.accessErr = fmt.Errorf("token source: %w", sentinel)
			var cnt atomic.Int64
			_, err := env.client.Homes(tibber.WithRequestCounter(context.Background(), &cnt))
			if !errors.Is(err, sentinel) {
				t.Fatalf("err = %v, want it to wrap %v", err, sentinel)
			}
			if srv.requests.Load() != 0 || cnt.Load() != 0 {
				t.Fatalf("requests = %d, counter = %d, want none", srv.requests.Load(), cnt.Load())
			}
		})
	}
}

func TestRequestCounterCountsAttempts(t *testing.T) {
	var n atomic.Int64
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) <= 2 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		writeJSON(w, 200, homesBody)
	})
	env := newTestClient(t, srv.URL, nil)
	var cnt atomic.Int64
	ctx := tibber.WithRequestCounter(context.Background(), &cnt)
	if _, err := env.client.Homes(ctx); err != nil {
		t.Fatalf("Homes: %v", err)
	}
	if _, err := env.client.Homes(ctx); err != nil {
		t.Fatalf("Homes: %v", err)
	}
	if got := cnt.Load(); got != 4 {
		t.Fatalf("counter = %d, want 4 (3 attempts + 1)", got)
	}
	// Without a counter in the context nothing breaks.
	if _, err := env.client.Homes(context.Background()); err != nil {
		t.Fatalf("Homes: %v", err)
	}
}

func TestErrorBodies(t *testing.T) {
	const token = "access-token-1"
	cases := map[string]struct {
		status   int
		ctype    string
		body     string
		want     []string
		mustNot  []string
		wantCode string
	}{
		"ProblemJSON": {
			status: 404, ctype: "application/problem+json",
			body: `{"type":"https://tools.ietf.org/html/rfc9110#section-15.5.5","title":"Not Found","status":404,"detail":"Device not found","traceId":"00-1-2-00"}`,
			want: []string{"GET /v1/homes/h/devices/d", "404", "Not Found", "Device not found", "00-1-2-00"},
		},
		"OAuthStyle": {
			status: 403, ctype: "application/json",
			body:     `{"error":"insufficient_scope","error_description":"scope data-api-vehicles-read missing"}`,
			want:     []string{"insufficient_scope", "scope data-api-vehicles-read missing"},
			wantCode: "insufficient_scope",
		},
		"HTML": {
			status: 400, ctype: "text/html",
			body:    `<html><body><h1>Bad Request</h1><script>alert(1)</script></body></html>`,
			want:    []string{"400 Bad Request"},
			mustNot: []string{"<html>", "script"},
		},
		"Empty": {status: 403, want: []string{"403 Forbidden"}},
		"EchoedToken": {
			status: 400, ctype: "application/problem+json",
			body:    `{"title":"Bad Request","detail":"Authorization: Bearer ` + token + ` rejected; also eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln and ` + token + `"}`,
			want:    []string{"Bad Request", "REDACTED"},
			mustNot: []string{token, "eyJhbGciOiJIUzI1NiJ9"},
		},
		"LongDetail": {
			status: 400, ctype: "application/problem+json",
			body:    `{"title":"Bad Request","detail":"` + strings.Repeat("x", 5000) + `\n\u0007tail"}`,
			want:    []string{"Bad Request", "…"},
			mustNot: []string{strings.Repeat("x", 201), "\n", "\a", "tail"},
		},
		"WrongTypes": {
			status: 404, ctype: "application/problem+json",
			body: `{"title":404,"status":"404","detail":["x"],"traceId":null}`,
			want: []string{"404 Not Found"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.ctype != "" {
					w.Header().Set("Content-Type", tc.ctype)
				}
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			})
			env := newTestClient(t, srv.URL, nil)
			_, err := env.client.Device(context.Background(), "h", "d")
			if err == nil {
				t.Fatal("Device succeeded")
			}
			msg := err.Error()
			for _, s := range tc.want {
				if !strings.Contains(msg, s) {
					t.Errorf("error %q does not contain %q", msg, s)
				}
			}
			for _, s := range tc.mustNot {
				if strings.Contains(msg, s) {
					t.Errorf("error %q contains %q", msg, s)
				}
			}
			var apiErr *tibber.APIError
			if !errors.As(err, &apiErr) || apiErr.Problem.ErrorCode != tc.wantCode {
				t.Errorf("APIError = %+v", apiErr)
			}
			if len(msg) > 600 {
				t.Errorf("error is %d bytes long", len(msg))
			}
		})
	}
}

func TestConnectionResetIsRetried(t *testing.T) {
	var n atomic.Int64
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			hj, ok := w.(http.Hijacker)
			if !ok {
				t.Error("no hijacker")
				return
			}
			conn, _, err := hj.Hijack()
			if err == nil {
				conn.Close() // the client sees EOF before any response
			}
			return
		}
		writeJSON(w, 200, homesBody)
	})
	env := newTestClient(t, srv.URL, nil)
	if _, err := env.client.Homes(context.Background()); err != nil {
		t.Fatalf("Homes: %v", err)
	}
	if got := srv.requests.Load(); got != 2 {
		t.Fatalf("requests = %d, want 2", got)
	}
}

func TestTruncatedBodyIsRetried(t *testing.T) {
	var n atomic.Int64
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(200)
			io.WriteString(w, `{"homes":[`)
			return // the server closes the connection short of 1000 bytes
		}
		writeJSON(w, 200, homesBody)
	})
	env := newTestClient(t, srv.URL, nil)
	if _, err := env.client.Homes(context.Background()); err != nil {
		t.Fatalf("Homes: %v", err)
	}
	if got := srv.requests.Load(); got != 2 {
		t.Fatalf("requests = %d, want 2", got)
	}
}

func TestConnectionRefusedIsRetried(t *testing.T) {
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {})
	url := srv.URL
	srv.Close() // nothing listens there any more
	env := newTestClient(t, url, nil)
	var cnt atomic.Int64
	_, err := env.client.Homes(tibber.WithRequestCounter(context.Background(), &cnt))
	if err == nil {
		t.Fatal("Homes succeeded")
	}
	if cnt.Load() != 5 {
		t.Fatalf("attempts = %d, want 5 (err %v)", cnt.Load(), err)
	}
}

func TestStalledServerTimesOut(t *testing.T) {
	base := runtime.NumGoroutine()
	release := make(chan struct{})
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	env := newTestClient(t, srv.URL, func(o *tibber.Options) {
		o.RequestTimeout = 200 * time.Millisecond
		o.MaxAttempts = 2
	})
	start := time.Now()
	within(t, 5*time.Second, func() {
		_, err := env.client.Homes(context.Background())
		if err == nil || !strings.Contains(err.Error(), "timed out") {
			t.Errorf("err = %v, want a timeout", err)
		}
	})
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("took %s for two 200ms attempts", el)
	}
	if got := srv.requests.Load(); got != 2 {
		t.Fatalf("requests = %d, want 2 (a timeout is retried)", got)
	}
	close(release)
	srv.Close()
	env.hc.CloseIdleConnections()
	waitGoroutines(t, base)
}

func TestTricklingBodyTimesOut(t *testing.T) {
	base := runtime.NumGoroutine()
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(200)
		io.WriteString(w, `{"homes":[`)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
				if _, err := io.WriteString(w, " "); err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		}
	})
	env := newTestClient(t, srv.URL, func(o *tibber.Options) {
		o.RequestTimeout = 300 * time.Millisecond
		o.MaxAttempts = 1
	})
	start := time.Now()
	within(t, 5*time.Second, func() {
		_, err := env.client.Homes(context.Background())
		if err == nil || !strings.Contains(err.Error(), "timed out") {
			t.Errorf("err = %v, want a timeout", err)
		}
	})
	if el := time.Since(start); el > 300*time.Millisecond+time.Second {
		t.Fatalf("took %s, want within timeout + 1s", el)
	}
	srv.Close()
	env.hc.CloseIdleConnections()
	waitGoroutines(t, base)
}

func TestCallerDeadlineIsNotRetried(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	env := newTestClient(t, srv.URL, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	within(t, 3*time.Second, func() {
		_, err := env.client.Homes(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want context.DeadlineExceeded", err)
		}
	})
	if got := srv.requests.Load(); got != 1 {
		t.Fatalf("requests = %d, want 1", got)
	}
}

func TestHugeBodyRejected(t *testing.T) {
	const total = 100 << 20
	for _, withLength := range []bool{false, true} {
		t.Run(fmt.Sprintf("ContentLength=%v", withLength), func(t *testing.T) {
			base := runtime.NumGoroutine()
			var written atomic.Int64
			handlerDone := make(chan struct{}, 1)
			srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
				defer func() { handlerDone <- struct{}{} }()
				w.Header().Set("Content-Type", "application/json")
				if withLength {
					w.Header().Set("Content-Length", strconv.Itoa(total))
				}
				w.WriteHeader(200)
				chunk := []byte(`{"homes":[` + strings.Repeat(" ", 64<<10-10))
				for written.Load() < total {
					n, err := w.Write(chunk)
					written.Add(int64(n))
					if err != nil {
						return
					}
					chunk = []byte(strings.Repeat(" ", 64<<10))
				}
			})
			env := newTestClient(t, srv.URL, nil)
			// The limit is proven by the bytes the server managed to write,
			// not by wall time (a loaded machine may be slow); the bound
			// below only guards against a hang.
			within(t, 2*time.Minute, func() {
				_, err := env.client.Homes(context.Background())
				if !errors.Is(err, tibber.ErrResponseTooLarge) {
					t.Errorf("err = %v, want ErrResponseTooLarge", err)
				}
			})
			if got := srv.requests.Load(); got != 1 {
				t.Errorf("requests = %d, want 1 (not retried)", got)
			}
			select {
			case <-handlerDone:
			case <-time.After(2 * time.Minute):
				t.Fatal("handler still writing")
			}
			if w := written.Load(); w >= total/2 {
				t.Errorf("server wrote %d bytes: the client read far more than the limit", w)
			}
			srv.Close()
			env.hc.CloseIdleConnections()
			waitGoroutines(t, base)
		})
	}
}

func TestBodyLimitOption(t *testing.T) {
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, homesBody)
	})
	env := newTestClient(t, srv.URL, func(o *tibber.Options) { o.MaxBodyBytes = int64(len(homesBody)) - 1 })
	if _, err := env.client.Homes(context.Background()); !errors.Is(err, tibber.ErrResponseTooLarge) {
		t.Fatalf("err = %v, want ErrResponseTooLarge", err)
	}
	env = newTestClient(t, srv.URL, func(o *tibber.Options) { o.MaxBodyBytes = int64(len(homesBody)) })
	if _, err := env.client.Homes(context.Background()); err != nil {
		t.Fatalf("body of exactly the limit: %v", err)
	}
}

func TestCancelDuringRetrySleep(t *testing.T) {
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	env := newTestClient(t, srv.URL, func(o *tibber.Options) { o.Clock = clock.Real{} })
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	within(t, 3*time.Second, func() {
		_, err := env.client.Homes(ctx)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	})
	if el := time.Since(start); el > time.Second {
		t.Fatalf("took %s to notice the cancellation", el)
	}
	if got := srv.requests.Load(); got != 1 {
		t.Fatalf("requests = %d, want 1", got)
	}
}

func TestRetrySleepBeyondDeadlineReturnsAtOnce(t *testing.T) {
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "60")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	env := newTestClient(t, srv.URL, func(o *tibber.Options) { o.Clock = clock.Real{} })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := env.client.Homes(ctx)
	var apiErr *tibber.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 429 || apiErr.RetryAfter != time.Minute {
		t.Fatalf("err = %v", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("slept %s although the deadline was nearer than Retry-After", el)
	}
}

func TestRateLimiter(t *testing.T) {
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, homesBody)
	})
	const (
		n     = 8
		burst = 2
		rps   = 20.0
	)
	env := newTestClient(t, srv.URL, func(o *tibber.Options) {
		o.RateLimit = rps
		o.Burst = burst
	})
	start := time.Now()
	within(t, 5*time.Second, func() {
		for range n {
			if _, err := env.client.Homes(context.Background()); err != nil {
				t.Errorf("Homes: %v", err)
			}
		}
	})
	minimum := time.Duration(float64(n-burst) / rps * float64(time.Second))
	if el := time.Since(start); el < minimum-10*time.Millisecond {
		t.Fatalf("%d requests took %s, want at least %s", n, el, minimum)
	}
}

func TestRateLimiterWaitRespectsContext(t *testing.T) {
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, homesBody)
	})
	env := newTestClient(t, srv.URL, func(o *tibber.Options) {
		o.RateLimit = 0.001
		o.Burst = 1
	})
	if _, err := env.client.Homes(context.Background()); err != nil {
		t.Fatalf("first Homes: %v", err)
	}
	for name, mk := range map[string]func() (context.Context, context.CancelFunc){
		"Deadline": func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 100*time.Millisecond)
		},
		"Cancel": func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			return ctx, cancel
		},
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := mk()
			defer cancel()
			within(t, 3*time.Second, func() {
				if _, err := env.client.Homes(ctx); err == nil {
					t.Error("Homes succeeded past the rate limit")
				}
			})
		})
	}
	if got := srv.requests.Load(); got != 1 {
		t.Fatalf("requests = %d, want 1", got)
	}
}

func TestRedirectToOtherHostRefused(t *testing.T) {
	other := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, homesBody)
	})
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/homes" {
			http.Redirect(w, r, other.URL+"/v1/homes", http.StatusFound)
			return
		}
		http.NotFound(w, r)
	})
	env := newTestClient(t, srv.URL, nil)
	_, err := env.client.Homes(context.Background())
	if !tibber.IsStatus(err, http.StatusFound) {
		t.Fatalf("err = %v, want the 302 as an error", err)
	}
	if got := other.requests.Load(); got != 0 {
		t.Fatalf("the other host got %d requests", got)
	}
}

func TestLogsNeverContainTokens(t *testing.T) {
	var n atomic.Int64
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) {
		case 1:
			w.WriteHeader(http.StatusUnauthorized)
		case 2:
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			writeJSON(w, 200, homesBody)
		}
	})
	var buf strings.Builder
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	env := newTestClient(t, srv.URL, func(o *tibber.Options) { o.Logger = logger })
	if _, err := env.client.Homes(context.Background()); err != nil {
		t.Fatalf("Homes: %v", err)
	}
	out := buf.String()
	if !strings.Contains(out, "api request") || !strings.Contains(out, "retrying") {
		t.Fatalf("expected request and retry lines, got:\n%s", out)
	}
	for _, s := range []string{"access-token-1", "access-token-2", "Bearer"} {
		if strings.Contains(out, s) {
			t.Fatalf("log contains %q:\n%s", s, out)
		}
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
