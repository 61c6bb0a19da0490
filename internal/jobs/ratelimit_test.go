package jobs_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/tibber"
)

// A history run that meets a 429 makes no new request: it used to move on
// to its next stream 2 ms later and end "partial" (issue 17, item 2).
func TestHistoryStopsAtA429(t *testing.T) {
	for name, hit := range map[string]error{
		"429":         &tibber.APIError{Status: http.StatusTooManyRequests, RetryAfter: 120 * time.Second},
		"429 no hint": &tibber.APIError{Status: http.StatusTooManyRequests},
		"gate closed": &tibber.GateError{Endpoint: "GET /v1/x", Wait: 90 * time.Second, Until: hnow.Add(90 * time.Second)},
	} {
		t.Run(name, func(t *testing.T) {
			a, b, c := newSeries("a", 3, 500), newSeries("b", 3, 500), newSeries("c", 3, 500)
			api := historyAPI(a, b, c)
			serve := api.HistoryFn
			api.HistoryFn = func(ctx context.Context, home, dev, res string, since time.Time) (model.HistoryPage, error) {
				if dev == "b" {
					return model.HistoryPage{}, hit
				}
				return serve(ctx, home, dev, res, since)
			}
			st := newFakeStore(api)
			s, _ := historySyncer(api, st, hourDevice("a", 0), hourDevice("b", 0), hourDevice("c", 0))
			run, err := s.RunHistory(context.Background())
			if calls := api.Calls(); len(calls) != 2 {
				t.Fatalf("calls = %v, want a and b only (no request after the 429)", calls)
			}
			if run.Status != jobs.StatusFailed || !jobs.RateLimited(err) {
				t.Fatalf("run = %+v, err = %v; want failed and rate limited", run, err)
			}
			if !strings.Contains(run.Error, "slowed down as Tibber asked") {
				t.Fatalf("run error %q does not say why it stopped", run.Error)
			}
		})
	}
}

// During a storm (retryable errors that survive the client's retries) a
// history run ends after two failed streams instead of trying every one.
func TestHistoryStormEndsTheRun(t *testing.T) {
	var devs []model.Device
	for _, id := range []string{"a", "b", "c", "d", "e", "f"} {
		devs = append(devs, hourDevice(id, 0))
	}
	api := &fakeAPI{HistoryFn: func(context.Context, string, string, string, time.Time) (model.HistoryPage, error) {
		return model.HistoryPage{}, &tibber.APIError{Status: http.StatusServiceUnavailable, Attempts: 5}
	}}
	st := newFakeStore(api)
	s, _ := historySyncer(api, st, devs...)
	run, err := s.RunHistory(context.Background())
	if calls := api.Calls(); len(calls) != 2 {
		t.Fatalf("%d history calls in a storm, want 2: %v", len(calls), calls)
	}
	if run.Status != jobs.StatusFailed || err == nil {
		t.Fatalf("run = %+v, err = %v; want failed", run, err)
	}
	// One failing device among good ones does not stop the others.
	good := map[string]*series{}
	var all []*series
	for _, id := range []string{"a", "b", "c"} {
		good[id] = newSeries(id, 2, 500)
		all = append(all, good[id])
	}
	api2 := historyAPI(all...)
	serve := api2.HistoryFn
	api2.HistoryFn = func(ctx context.Context, home, dev, res string, since time.Time) (model.HistoryPage, error) {
		if dev == "a" {
			return model.HistoryPage{}, &tibber.APIError{Status: http.StatusInternalServerError, Attempts: 5}
		}
		return serve(ctx, home, dev, res, since)
	}
	st2 := newFakeStore(api2)
	s2, _ := historySyncer(api2, st2, hourDevice("a", 0), hourDevice("b", 0), hourDevice("c", 0))
	run2, _ := s2.RunHistory(context.Background())
	if run2.Status != jobs.StatusPartial || len(api2.Calls()) != 3 {
		t.Fatalf("one bad device: status %s calls %v, want partial and all three streams", run2.Status, api2.Calls())
	}
}

// A devices run that met a 429 stops fetching details and, though it stored
// what it had (partial), does not reset the backoff.
func TestPartialRunWith429IsNotASuccess(t *testing.T) {
	clk := clock.NewFake(base)
	st := newFakeStore(nil)
	rl := &tibber.APIError{Status: http.StatusTooManyRequests, RetryAfter: 10 * time.Minute}
	r := &fakeRunner{RunFn: func(ctx context.Context, job string) (model.Run, error) {
		return model.Run{Job: job, Status: jobs.StatusPartial, Error: "device x: 429"}, errors.Join(rl)
	}}
	st.states["devices"] = model.JobState{Job: "devices", ConsecutiveFailures: 3, LastRunAt: base.Add(-5 * time.Minute), NextRunAt: base}
	s := newScheduler(clk, st, r, nil)
	tick(t, s)
	got := st.State("devices")
	if got.ConsecutiveFailures != 4 || !got.LastSuccessAt.IsZero() {
		t.Fatalf("state after a rate-limited partial run: %+v; want failures 4 and no success", got)
	}
	if got.BreakerUntil.Before(base.Add(10 * time.Minute)) {
		t.Fatalf("breaker until %v, want at least the Retry-After", got.BreakerUntil)
	}
}

func TestDeviceDetailsStopAtA429(t *testing.T) {
	var listed []model.Device
	for _, id := range []string{"d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8"} {
		listed = append(listed, model.Device{ID: id})
	}
	api := &fakeAPI{
		HomesFn:   func(context.Context) ([]model.Home, error) { return []model.Home{{ID: "h1"}}, nil },
		DevicesFn: func(context.Context, string) ([]model.Device, error) { return listed, nil },
		DeviceFn: func(_ context.Context, _, id string) (model.Device, error) {
			if id == "d1" {
				return model.Device{}, &tibber.APIError{Status: http.StatusTooManyRequests, RetryAfter: time.Minute}
			}
			return model.Device{ID: id}, nil
		},
	}
	st := newFakeStore(api)
	s := &jobs.Syncer{API: api, Store: st, Clock: clock.NewFake(base), Concurrency: 1}
	run, err := s.RunDevices(context.Background())
	if n := len(api.Calls()); n != 3 {
		t.Fatalf("calls %v, want homes, devices and the one detail that got the 429", api.Calls())
	}
	if !jobs.RateLimited(err) || run.Status == jobs.StatusOK {
		t.Fatalf("run %+v err %v, want a rate-limited error", run, err)
	}
}

// A storm in the middle of the device details ends the fetches; the run
// stores what it has (partial) but says a storm ended it, so the scheduler
// does not count it as a success.
func TestDeviceDetailsStormEndsThePartialRun(t *testing.T) {
	var listed []model.Device
	for _, id := range []string{"d1", "d2", "d3", "d4", "d5", "d6"} {
		listed = append(listed, model.Device{ID: id})
	}
	api := &fakeAPI{
		HomesFn:   func(context.Context) ([]model.Home, error) { return []model.Home{{ID: "h1"}}, nil },
		DevicesFn: func(context.Context, string) ([]model.Device, error) { return listed, nil },
		DeviceFn: func(_ context.Context, _, id string) (model.Device, error) {
			if id == "d1" {
				return model.Device{ID: id}, nil
			}
			return model.Device{}, &tibber.APIError{Status: http.StatusServiceUnavailable, Attempts: 5}
		},
	}
	st := newFakeStore(api)
	s := &jobs.Syncer{API: api, Store: st, Clock: clock.NewFake(base), Concurrency: 1}
	run, err := s.RunDevices(context.Background())
	if n := len(api.Calls()); n != 5 {
		t.Fatalf("calls %v, want homes, devices, d1 and the two failures that make a storm", api.Calls())
	}
	if run.Status != jobs.StatusPartial || !errors.Is(err, jobs.ErrStorm) {
		t.Fatalf("run %+v err %v, want partial and ErrStorm", run, err)
	}
}
