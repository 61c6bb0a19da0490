package tibber_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/simulator"
	"github.com/tibbersync/tibbersync/internal/tibber"
)

// stampedRequest is one request as the client sent it, with the fake time.
type stampedRequest struct {
	at   time.Time
	path string
}

// stampTransport records the fake-clock time of every request sent.
type stampTransport struct {
	base http.RoundTripper
	clk  *clock.Fake
	mu   sync.Mutex
	reqs []stampedRequest
}

func (s *stampTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	s.mu.Lock()
	s.reqs = append(s.reqs, stampedRequest{at: s.clk.Now(), path: r.URL.Path})
	s.mu.Unlock()
	return s.base.RoundTrip(r)
}

func (s *stampTransport) sent() []stampedRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]stampedRequest(nil), s.reqs...)
}

// TestRateGateBindsTheInstallation: a 429 with Retry-After: 120 on one
// client closes the gate for every client on the same state directory (the
// daemon's jobs and a concurrent `tibbersync sync`): no request of either is
// sent until it opens (issue 17, item 2).
func TestRateGateBindsTheInstallation(t *testing.T) {
	ctx := context.Background()
	gatePath := filepath.Join(t.TempDir(), tibber.GateFileName)
	var stA *stampTransport
	env := newSimEnv(t, simulator.Options{}, func(o *tibber.Options) {
		stA = &stampTransport{base: o.HTTPClient.Transport, clk: nil}
		hc := *o.HTTPClient
		hc.Transport = stA
		o.HTTPClient = &hc
		o.Gate = tibber.NewGate(gatePath, o.Clock)
	})
	stA.clk = env.clock
	// A second process: its own client and its own Gate on the same file.
	stB := &stampTransport{base: tibber.NewHTTPClient(10 * time.Second).Transport, clk: env.clock}
	clientB, err := tibber.New(tibber.Options{
		BaseURL: env.url, HTTPClient: &http.Client{Transport: stB}, Tokens: env.tokens, UserAgent: testUA,
		Clock: env.clock, RateLimit: 1000, Burst: 100, Gate: tibber.NewGate(gatePath, env.clock),
	})
	if err != nil {
		t.Fatal(err)
	}
	homes, err := env.client.Homes(ctx)
	if err != nil || len(homes) == 0 {
		t.Fatalf("Homes: %v", err)
	}

	env.sim.Faults().Add(simulator.Fault{Endpoint: "devices", Kind: simulator.Kind429, RetryAfter: "120", Count: 1})
	t429 := env.clock.Now()
	_, err = env.client.Devices(ctx, homes[0].ID)
	if !tibber.IsStatus(err, http.StatusTooManyRequests) {
		t.Fatalf("Devices: %v, want the 429", err)
	}
	// Every other call, of this client and of the other process, is not
	// sent while the gate is closed; each says why and for how long.
	for name, call := range map[string]func() error{
		"same client, other endpoint": func() error { _, err := env.client.Homes(ctx); return err },
		"other process":               func() error { _, err := clientB.Homes(ctx); return err },
		"other process, device":       func() error { _, err := clientB.Device(ctx, homes[0].ID, "x"); return err },
	} {
		err := call()
		var ge *tibber.GateError
		if !errors.As(err, &ge) || !errors.Is(err, tibber.ErrRateGated) || ge.Wait < 119*time.Second ||
			!strings.Contains(err.Error(), "429") {
			t.Fatalf("%s: %v, want a GateError of ~120 s naming the 429", name, err)
		}
		if ra := jobs.RetryAfter(err); ra < 119*time.Second {
			t.Fatalf("%s: the scheduler would see Retry-After %s", name, ra)
		}
	}
	// A call that may wait (the gate opens within its retry budget) waits.
	env.clock.Advance(100 * time.Second)
	if _, err := clientB.Homes(ctx); err != nil {
		t.Fatalf("Homes after the gate opened: %v", err)
	}
	for _, r := range append(stA.sent(), stB.sent()...) {
		if strings.HasPrefix(r.path, "/v1/") && r.at.After(t429) && r.at.Before(t429.Add(120*time.Second)) {
			t.Errorf("request %s at +%s, inside the 120 s the server asked for", r.path, r.at.Sub(t429))
		}
	}
	if n := len(stB.sent()); n != 1 {
		t.Fatalf("other process sent %d requests, want 1 (after the gate opened)", n)
	}
}

// A 503 that carries Retry-After closes the gate too; a 503 without it
// does not (its retries use full jitter).
func TestRateGateOn503WithRetryAfter(t *testing.T) {
	var mu sync.Mutex
	hinted := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		h := hinted
		mu.Unlock()
		if h {
			w.Header().Set("Retry-After", "600")
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	clk := clock.NewFake(simNow)
	gate := tibber.NewGate(filepath.Join(t.TempDir(), tibber.GateFileName), clk)
	c, err := tibber.New(tibber.Options{BaseURL: srv.URL, Tokens: &staticTokens{}, UserAgent: testUA, Clock: clk,
		RateLimit: 1000, Burst: 100, Gate: gate})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Homes(context.Background())
	until, reason := gate.Until()
	if until.Sub(simNow) < 600*time.Second || !strings.Contains(reason, "503") {
		t.Fatalf("gate until +%s (%q), want +600 s for the 503", until.Sub(simNow), reason)
	}
	// A new life of the process reads the persisted gate.
	again := tibber.NewGate(gate.Path(), clk)
	if u, _ := again.Until(); !u.Equal(until.UTC()) && !u.Equal(until) {
		t.Fatalf("persisted gate %v, want %v", u, until)
	}
	clk.Advance(time.Hour)
	mu.Lock()
	hinted = false
	mu.Unlock()
	before, _ := gate.Until()
	_, _ = c.Homes(context.Background())
	if after, _ := gate.Until(); !after.Equal(before) {
		t.Fatalf("a 503 without Retry-After moved the gate to %v", after)
	}
}
