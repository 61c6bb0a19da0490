package tibber_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/simulator"
	"github.com/tibbersync/tibbersync/internal/tibber"
)

// simNow is the simulator's fixed clock: a few minutes past the hour, as
// the daemon schedules its polls.
var simNow = time.Date(2026, 9, 14, 8, 7, 30, 0, time.UTC)

// staticTokens hands out one access token; Refresh returns it again (the
// simulator's unauthorized-once fault rejects a token that is still valid).
type staticTokens struct {
	token   logging.Secret
	refresh atomic.Int64
}

func (s *staticTokens) AccessToken(context.Context) (logging.Secret, error) { return s.token, nil }

func (s *staticTokens) Refresh(context.Context, logging.Secret) (logging.Secret, error) {
	s.refresh.Add(1)
	return s.token, nil
}

type simEnv struct {
	sim    *simulator.Simulator
	url    string
	client *tibber.Client
	clock  *clock.Fake
	tokens *staticTokens
}

// newSimEnv starts the simulator on 127.0.0.1, gets a token through its
// token endpoint with a code from IssueCode, and builds a client.
func newSimEnv(t *testing.T, opts simulator.Options, mod func(*tibber.Options)) *simEnv {
	t.Helper()
	opts.Now = func() time.Time { return simNow }
	if opts.Seed == 0 {
		opts.Seed = 7
	}
	sim := simulator.New(opts)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	t.Cleanup(sim.Close) // runs first: releases stalled requests
	sim.SetBaseURL(srv.URL)

	code := sim.IssueCode(simulator.AllScopes, "", "")
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {simulator.DefaultRedirectURI},
		"client_id":     {simulator.DefaultClientID},
		"client_secret": {simulator.DefaultClientSecret},
	}
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/connect/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", testUA)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != 200 || tok.AccessToken == "" {
		t.Fatalf("token response %d: %v", resp.StatusCode, err)
	}

	env := &simEnv{
		sim:    sim,
		url:    srv.URL,
		clock:  clock.NewFake(simNow),
		tokens: &staticTokens{token: logging.NewSecret(tok.AccessToken)},
	}
	hc := tibber.NewHTTPClient(10 * time.Second)
	t.Cleanup(hc.CloseIdleConnections)
	r := rand.New(rand.NewPCG(3, 4))
	o := tibber.Options{
		BaseURL:    srv.URL,
		HTTPClient: hc,
		Tokens:     env.tokens,
		UserAgent:  testUA,
		Clock:      env.clock,
		Rand:       r.Float64,
		RateLimit:  1000,
		Burst:      100,
	}
	if mod != nil {
		mod(&o)
	}
	env.client, err = tibber.New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if v := sim.Stats().UserAgentViolations; v != 0 {
			t.Errorf("simulator counted %d User-Agent violations", v)
		}
	})
	return env
}

func TestSimulatorGroundTruth(t *testing.T) {
	variants := map[string]simulator.Options{
		"Default":         {PageSize: 10},
		"WireVariants":    {PageSize: 7, BareArrayHomes: true, EmitType: true, BoolValues: true, RelativeLinks: true, NullLink: true},
		"MessyHistory":    {PageSize: 9, ShuffleItems: true, MisalignedTimes: true, Gaps: true, Seed: 11},
		"NoBoundaryGap":   {NoBoundaryGap: true},
		"GeneratedHomes3": {Homes: 3, DevicesPerHome: 4, PageSize: 16, Seed: 5},
	}
	for name, opts := range variants {
		t.Run(name, func(t *testing.T) {
			env := newSimEnv(t, opts, nil)
			checkAgainstSimulator(t, env)
		})
	}
}

func checkAgainstSimulator(t *testing.T, env *simEnv) {
	ctx := context.Background()
	truth := env.sim.Account()

	homes, err := env.client.Homes(ctx)
	if err != nil {
		t.Fatalf("Homes: %v", err)
	}
	if len(homes) != len(truth.Homes) {
		t.Fatalf("homes = %+v, want %d", homes, len(truth.Homes))
	}
	for i, h := range truth.Homes {
		if homes[i].ID != h.ID || homes[i].Name != h.Name {
			t.Errorf("home %d = %+v, want %s %q", i, homes[i], h.ID, h.Name)
		}
	}

	historyChecked := 0
	for _, h := range truth.Homes {
		devices, err := env.client.Devices(ctx, h.ID)
		if err != nil {
			t.Fatalf("Devices(%s): %v", h.ID, err)
		}
		if len(devices) != len(h.Devices) {
			t.Fatalf("home %s: %d devices, want %d", h.ID, len(devices), len(h.Devices))
		}
		for i, want := range h.Devices {
			got := devices[i]
			if got.ID != want.ID || got.ExternalID != want.ExternalID || got.Name != want.Name || got.Brand != want.Brand ||
				got.Model != want.Model || !slices.Equal(got.SupportedResolutions, want.Resolutions) ||
				got.MaxRetentionDays != want.MaxRetentionDays || got.Capabilities != nil {
				t.Errorf("list item %s = %+v, want %+v", want.ID, got, want)
			}
			checkDetail(t, env, h.ID, want)
			for _, res := range want.Resolutions {
				if res == model.ResolutionHour || res == model.ResolutionDay {
					checkHistory(t, env, h.ID, want, res)
					historyChecked++
				}
			}
		}
	}
	if historyChecked == 0 {
		t.Fatal("no device with hour/day history in the account")
	}
}

func checkDetail(t *testing.T, env *simEnv, homeID string, want simulator.Device) {
	t.Helper()
	d, err := env.client.Device(context.Background(), homeID, want.ID)
	if err != nil {
		t.Fatalf("Device(%s): %v", want.ID, err)
	}
	state := env.sim.DeviceState(homeID, want.ID, simNow)
	if state.ID != want.ID {
		t.Fatalf("simulator has no state for %s", want.ID)
	}
	if got := string(d.Category); got != want.Category {
		t.Errorf("device %s (%s): category %q, want %q", want.ID, want.Kind, got, want.Category)
	}
	if d.Name != want.Name || d.Brand != want.Brand || d.Model != want.Model || d.ExternalID != want.ExternalID {
		t.Errorf("detail %s = %+v", want.ID, d)
	}
	if lastSeen, err := time.Parse(time.RFC3339Nano, state.Status.LastSeen); err != nil || !d.LastSeen.Equal(lastSeen) {
		t.Errorf("LastSeen = %v, want %q", d.LastSeen, state.Status.LastSeen)
	}
	var raw map[string]any
	if err := json.Unmarshal(d.Raw, &raw); err != nil || raw["id"] != want.ID {
		t.Errorf("Raw is not the detail payload: %v", err)
	}
	if len(d.Attributes) != len(state.Attributes) {
		t.Errorf("attributes = %d, want %d", len(d.Attributes), len(state.Attributes))
	}
	if len(d.Capabilities) != len(state.Capabilities) {
		t.Fatalf("device %s: %d capabilities, want %d", want.ID, len(d.Capabilities), len(state.Capabilities))
	}
	for i, wc := range state.Capabilities {
		gc := d.Capabilities[i]
		if gc.ID != wc.ID || gc.Description != wc.Description || !slices.Equal(gc.AvailableValues, wc.AvailableValues) {
			t.Errorf("capability %d = %+v, want %+v", i, gc, wc)
		}
		wantUnit := ""
		if wc.Unit != nil {
			wantUnit = *wc.Unit
		}
		if gc.Unit != wantUnit {
			t.Errorf("%s unit = %q, want %q", wc.ID, gc.Unit, wantUnit)
		}
		if msg := compareValue(gc, wc.Value); msg != "" {
			t.Errorf("%s/%s: %s", want.ID, wc.ID, msg)
		}
	}
}

func compareValue(c model.Capability, v any) string {
	num := func(f float64) string {
		if c.Num == nil || *c.Num != f {
			return fmt.Sprintf("Num = %v, want %v", c.Num, f)
		}
		return ""
	}
	switch v := v.(type) {
	case nil:
		if !c.Missing() {
			return "want missing"
		}
	case float64:
		return num(v)
	case int:
		return num(float64(v))
	case int64:
		return num(float64(v))
	case string:
		if c.Text == nil || *c.Text != v || c.Num != nil {
			return fmt.Sprintf("Text = %v, want %q", c.Text, v)
		}
	case bool:
		want := map[bool]float64{false: 0, true: 1}[v]
		if msg := num(want); msg != "" {
			return msg
		}
		if c.Text == nil || *c.Text != fmt.Sprint(v) {
			return fmt.Sprintf("Text = %v, want %v", c.Text, v)
		}
	default:
		return fmt.Sprintf("unexpected simulator value type %T", v)
	}
	return ""
}

func checkHistory(t *testing.T, env *simEnv, homeID string, dev simulator.Device, res string) {
	t.Helper()
	ctx := context.Background()
	deviceID := dev.ID
	// The endpoint serves the period containing since, HistorySeries the
	// periods starting at or after from: start on a period boundary of the
	// device's zone so both mean the same window.
	since := simNow.Truncate(time.Hour).Add(-50 * time.Hour)
	if res == model.ResolutionDay {
		loc, err := time.LoadLocation(dev.Zone)
		if err != nil {
			t.Fatalf("zone %q: %v", dev.Zone, err)
		}
		l := simNow.In(loc)
		since = time.Date(l.Year(), l.Month(), l.Day()-40, 0, 0, 0, 0, loc)
	}
	page, err := env.client.History(ctx, homeID, deviceID, res, since)
	if err != nil {
		t.Fatalf("History(%s, %s): %v", deviceID, res, err)
	}
	got := map[time.Time]model.HistoryItem{}
	pages := 1
	for {
		if len(page.Problems) > 0 {
			t.Errorf("page problems: %q", page.Problems)
		}
		for _, it := range page.Items {
			got[it.Time] = it
		}
		if page.Next == "" {
			break
		}
		if !strings.HasPrefix(page.Next, env.url+"/") {
			t.Fatalf("next link %q is not absolute on the simulator", page.Next)
		}
		if pages++; pages > 500 {
			t.Fatal("paging does not end")
		}
		if page, err = env.client.HistoryNext(ctx, page.Next); err != nil {
			t.Fatalf("HistoryNext: %v", err)
		}
	}
	want := env.sim.HistorySeries(deviceID, res, since, simNow)
	if len(want) == 0 {
		t.Fatalf("simulator has no %s history for %s", res, deviceID)
	}
	if len(got) != len(want) {
		t.Fatalf("%s %s: %d items in %d pages, want %d", deviceID, res, len(got), pages, len(want))
	}
	for _, w := range want {
		var g model.HistoryItem
		var ok bool
		for tm, it := range got {
			if tm.Equal(w.Time) {
				g, ok = it, true
				break
			}
		}
		if !ok {
			t.Errorf("%s %s: no item at %v", deviceID, res, w.Time)
			continue
		}
		if g.UTCOffsetSeconds != w.OffsetSeconds {
			t.Errorf("%v: offset %d, want %d", w.Time, g.UTCOffsetSeconds, w.OffsetSeconds)
		}
		if len(g.Metrics) != len(w.Metrics) {
			t.Errorf("%v: metrics %v, want %v", w.Time, g.Metrics, w.Metrics)
			continue
		}
		for k, v := range w.Metrics {
			if gv, ok := g.Metrics[k]; !ok || gv != v {
				t.Errorf("%v: %s = %v, want %v", w.Time, k, gv, v)
			}
		}
	}
}

func TestSimulatorFaults(t *testing.T) {
	ctx := context.Background()
	t.Run("RetryAfter", func(t *testing.T) {
		env := newSimEnv(t, simulator.Options{}, nil)
		env.sim.Faults().Add(simulator.Fault{Endpoint: "homes", Kind: simulator.Kind429, RetryAfter: "2", Count: 1})
		if _, err := env.client.Homes(ctx); err != nil {
			t.Fatalf("Homes: %v", err)
		}
		if s := env.clock.Sleeps(); len(s) != 1 || s[0] < 2*time.Second || s[0] > 2*time.Second+tibber.RetryAfterJitter {
			t.Fatalf("sleeps = %v", s)
		}
	})
	t.Run("RetryAfterHTTPDate", func(t *testing.T) {
		env := newSimEnv(t, simulator.Options{RetryAfterForm: "http-date"}, nil)
		env.sim.Faults().Add(simulator.Fault{Endpoint: "homes", Kind: simulator.Kind429, Delay: 5 * time.Second, Count: 1})
		if _, err := env.client.Homes(ctx); err != nil {
			t.Fatalf("Homes: %v", err)
		}
		if s := env.clock.Sleeps(); len(s) != 1 || s[0] < 4*time.Second || s[0] > 6*time.Second+tibber.RetryAfterJitter {
			t.Fatalf("sleeps = %v", s)
		}
	})
	t.Run("TransientStatuses", func(t *testing.T) {
		env := newSimEnv(t, simulator.Options{}, nil)
		env.sim.Faults().Add(simulator.Fault{Endpoint: "homes", Kind: simulator.KindStatus, Status: 503, Count: 2})
		env.sim.Faults().Add(simulator.Fault{Endpoint: "homes", Kind: simulator.KindStatusHTML, Status: 502, Count: 1})
		var cnt atomic.Int64
		if _, err := env.client.Homes(tibber.WithRequestCounter(ctx, &cnt)); err != nil {
			t.Fatalf("Homes: %v", err)
		}
		if cnt.Load() != 4 || env.sim.Stats().Requests["homes"] != 4 {
			t.Fatalf("attempts = %d, simulator saw %d", cnt.Load(), env.sim.Stats().Requests["homes"])
		}
	})
	t.Run("HTMLErrorExhausted", func(t *testing.T) {
		env := newSimEnv(t, simulator.Options{}, nil)
		env.sim.Faults().Add(simulator.Fault{Endpoint: "homes", Kind: simulator.KindStatusHTML, Status: 502})
		_, err := env.client.Homes(ctx)
		if !tibber.IsStatus(err, 502) || strings.Contains(err.Error(), "<") {
			t.Fatalf("err = %v", err)
		}
		if n := env.sim.Stats().Requests["homes"]; n != 5 {
			t.Fatalf("requests = %d, want 5", n)
		}
	})
	t.Run("NotFoundNotRetried", func(t *testing.T) {
		env := newSimEnv(t, simulator.Options{}, nil)
		home := env.sim.Account().Homes[0].ID
		_, err := env.client.Device(ctx, home, "bm8gc3VjaCBkZXZpY2U")
		if !tibber.IsNotFound(err) {
			t.Fatalf("err = %v, want 404", err)
		}
		if n := env.sim.Stats().Requests["device"]; n != 1 {
			t.Fatalf("requests = %d, want 1", n)
		}
	})
	t.Run("UnauthorizedOnce", func(t *testing.T) {
		env := newSimEnv(t, simulator.Options{}, nil)
		env.sim.Faults().Add(simulator.Fault{Endpoint: "homes", Kind: simulator.KindUnauthorizedOnce})
		if _, err := env.client.Homes(ctx); err != nil {
			t.Fatalf("Homes: %v", err)
		}
		if n := env.tokens.refresh.Load(); n != 1 {
			t.Fatalf("refresh calls = %d, want 1", n)
		}
	})
	t.Run("Oversize", func(t *testing.T) {
		env := newSimEnv(t, simulator.Options{}, nil)
		env.sim.Faults().Add(simulator.Fault{Endpoint: "homes", Kind: simulator.KindOversize, Bytes: 9 << 20})
		if _, err := env.client.Homes(ctx); !errors.Is(err, tibber.ErrResponseTooLarge) {
			t.Fatalf("err = %v, want ErrResponseTooLarge", err)
		}
		if n := env.sim.Stats().Requests["homes"]; n != 1 {
			t.Fatalf("requests = %d, want 1", n)
		}
	})
	t.Run("MalformedJSON", func(t *testing.T) {
		env := newSimEnv(t, simulator.Options{}, nil)
		env.sim.Faults().Add(simulator.Fault{Endpoint: "homes", Kind: simulator.KindMalformedJSON})
		_, err := env.client.Homes(ctx)
		if err == nil || !strings.Contains(err.Error(), "GET /v1/homes") {
			t.Fatalf("err = %v, want a decode error naming the endpoint", err)
		}
	})
	t.Run("Stall", func(t *testing.T) {
		env := newSimEnv(t, simulator.Options{}, func(o *tibber.Options) {
			o.RequestTimeout = 200 * time.Millisecond
			o.MaxAttempts = 2
		})
		env.sim.Faults().Add(simulator.Fault{Endpoint: "homes", Kind: simulator.KindStall})
		within(t, 5*time.Second, func() {
			if _, err := env.client.Homes(ctx); err == nil || !strings.Contains(err.Error(), "timed out") {
				t.Errorf("err = %v, want a timeout", err)
			}
		})
	})
	t.Run("Drop", func(t *testing.T) {
		env := newSimEnv(t, simulator.Options{}, nil)
		env.sim.Faults().Add(simulator.Fault{Endpoint: "homes", Kind: simulator.KindDrop, Count: 1})
		if _, err := env.client.Homes(ctx); err != nil {
			t.Fatalf("Homes after a dropped connection: %v", err)
		}
	})
}
