package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/tibber"
)

var t0 = time.Date(2026, 9, 14, 10, 0, 0, 0, time.UTC)

func num(v float64) *float64 { return &v }

// detailOf builds a device detail the way the client returns it.
func detailOf(d model.Device) model.Device {
	d.Capabilities = []model.Capability{{ID: "storage.stateOfCharge", Num: num(50), Unit: "%"}}
	d.Category = model.CategoryOf([]string{"storage.stateOfCharge"})
	d.Raw = []byte(fmt.Sprintf(`{"id":%q}`, d.ID))
	return d
}

func newSyncer(api *fakeAPI, st *fakeStore) *jobs.Syncer {
	return &jobs.Syncer{
		API:           api,
		Store:         st,
		Clock:         clock.NewFake(t0),
		GrantedScopes: func() []string { return []string{"data-api-vehicles-read"} },
	}
}

func TestDevicesVehicleUnderTwoHomesFetchedOnce(t *testing.T) {
	car := model.Device{ID: "car", Name: "ID.7", Brand: "Volkswagen"}
	charger := model.Device{ID: "charger", Name: "Garage", Brand: "Easee"}
	api := &fakeAPI{
		HomesFn: func(context.Context) ([]model.Home, error) {
			return []model.Home{{ID: "h1", Name: "Huis"}, {ID: "h2", Name: "Hytte"}}, nil
		},
		DevicesFn: func(_ context.Context, homeID string) ([]model.Device, error) {
			if homeID == "h1" {
				return []model.Device{car, charger}, nil
			}
			return []model.Device{car}, nil
		},
		DeviceFn: func(_ context.Context, homeID, id string) (model.Device, error) {
			if id == "car" {
				return detailOf(car), nil
			}
			return detailOf(charger), nil
		},
	}
	st := newFakeStore(api)
	run, err := newSyncer(api, st).RunDevices(context.Background())
	if err != nil {
		t.Fatalf("RunDevices: %v", err)
	}
	if run.Status != jobs.StatusOK || run.Error != "" {
		t.Fatalf("run = %+v, want ok without error", run)
	}
	var carCalls []string
	for _, c := range api.Calls() {
		if strings.HasPrefix(c, "device ") && strings.HasSuffix(c, " car") {
			carCalls = append(carCalls, c)
		}
	}
	// Once, through whichever home's list arrived first.
	if len(carCalls) != 1 || (carCalls[0] != "device h1 car" && carCalls[0] != "device h2 car") {
		t.Fatalf("car detail calls = %v, want one, through h1 or h2", carCalls)
	}
	// 1 homes + 2 lists + 2 details.
	if got, want := run.Requests, 5; got != want {
		t.Fatalf("Requests = %d, want %d", got, want)
	}
	batches := st.Batches()
	if len(batches) != 1 {
		t.Fatalf("SaveInventory called %d times, want 1", len(batches))
	}
	b := batches[0]
	if len(b.Details) != 2 {
		t.Fatalf("Details = %d devices, want 2 (car stored once)", len(b.Details))
	}
	for _, home := range []string{"h1", "h2"} {
		if !slices.ContainsFunc(b.HomeDevices[home], func(d model.Device) bool { return d.ID == "car" }) {
			t.Fatalf("HomeDevices[%s] = %v, want the car linked", home, b.HomeDevices[home])
		}
	}
	if len(b.Homes) != 2 || !slices.Equal(b.GrantedScopes, []string{"data-api-vehicles-read"}) {
		t.Fatalf("batch homes/scopes = %v / %v", b.Homes, b.GrantedScopes)
	}
	if !b.ObservedAt.Equal(t0) {
		t.Fatalf("ObservedAt = %v, want %v", b.ObservedAt, t0)
	}
	st.assertNoOverlap(t)
}

func TestDevicesOneNotFoundIsPartial(t *testing.T) {
	devs := []model.Device{{ID: "a", Name: "Battery"}, {ID: "gone", Name: "Old charger"}, {ID: "c", Name: "Heat pump"}}
	api := &fakeAPI{
		HomesFn:   func(context.Context) ([]model.Home, error) { return []model.Home{{ID: "h1"}}, nil },
		DevicesFn: func(context.Context, string) ([]model.Device, error) { return devs, nil },
		DeviceFn: func(_ context.Context, _, id string) (model.Device, error) {
			if id == "gone" {
				return model.Device{}, &tibber.APIError{Status: http.StatusNotFound, Endpoint: "GET /v1/homes/h1/devices/gone"}
			}
			return detailOf(model.Device{ID: id}), nil
		},
	}
	st := newFakeStore(api)
	run, err := newSyncer(api, st).RunDevices(context.Background())
	if err != nil {
		t.Fatalf("RunDevices: %v", err)
	}
	if run.Status != jobs.StatusPartial {
		t.Fatalf("Status = %q, want partial", run.Status)
	}
	for _, want := range []string{"gone", "Old charger", "1 of 3"} {
		if !strings.Contains(run.Error, want) {
			t.Fatalf("Error = %q, want it to name %q", run.Error, want)
		}
	}
	b := st.Batches()
	if len(b) != 1 {
		t.Fatalf("SaveInventory called %d times, want 1", len(b))
	}
	var ids []string
	for _, d := range b[0].Details {
		ids = append(ids, d.ID)
		if d.Name == "" {
			t.Fatalf("detail %s lost its name (should be filled from the list)", d.ID)
		}
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"a", "c"}) {
		t.Fatalf("stored details %v, want [a c]", ids)
	}
	if len(b[0].HomeDevices["h1"]) != 3 {
		t.Fatalf("device list of h1 = %d devices, want all 3 linked", len(b[0].HomeDevices["h1"]))
	}
	if runs := st.Runs(); len(runs) != 1 || runs[0].Status != jobs.StatusPartial {
		t.Fatalf("stored runs = %+v, want one partial run", runs)
	}
}

func TestDevicesBadDetailsArePartialAndAllFailingIsFailed(t *testing.T) {
	devs := []model.Device{{ID: "a"}, {ID: "b"}, {ID: "c"}}
	api := &fakeAPI{
		HomesFn:   func(context.Context) ([]model.Home, error) { return []model.Home{{ID: "h1"}}, nil },
		DevicesFn: func(context.Context, string) ([]model.Device, error) { return devs, nil },
	}
	st := newFakeStore(api)
	s := newSyncer(api, st)

	api.DeviceFn = func(_ context.Context, _, id string) (model.Device, error) {
		switch id {
		case "a":
			return model.Device{}, errors.New("decode device: unexpected end of JSON input")
		case "b":
			return detailOf(model.Device{ID: "someone-else"}), nil
		}
		return detailOf(model.Device{ID: id}), nil
	}
	run, err := s.RunDevices(context.Background())
	if err != nil || run.Status != jobs.StatusPartial {
		t.Fatalf("run = %+v, err = %v; want partial without error", run, err)
	}
	if !strings.Contains(run.Error, "unexpected end of JSON") || !strings.Contains(run.Error, "another device id") {
		t.Fatalf("Error = %q, want both problems named", run.Error)
	}
	if got := st.Batches()[0].Details; len(got) != 1 || got[0].ID != "c" {
		t.Fatalf("stored details = %v, want only c", got)
	}

	api.DeviceFn = func(context.Context, string, string) (model.Device, error) {
		return model.Device{}, &tibber.APIError{Status: http.StatusServiceUnavailable, RetryAfter: 2 * time.Minute}
	}
	run, err = s.RunDevices(context.Background())
	if run.Status != jobs.StatusFailed || err == nil {
		t.Fatalf("every detail failing: run = %+v, err = %v; want failed with error", run, err)
	}
	if got := jobs.RetryAfter(err); got != 2*time.Minute {
		t.Fatalf("RetryAfter(err) = %v, want 2m carried through", got)
	}
	// Homes and links are still refreshed.
	if b := st.Batches(); len(b) != 2 || len(b[1].HomeDevices["h1"]) != 3 || len(b[1].Details) != 0 {
		t.Fatalf("second batch = %+v, want homes and links without details", b[len(b)-1])
	}
}

func TestDevicesHomesFailingRecordsFailedRun(t *testing.T) {
	api := &fakeAPI{
		HomesFn: func(context.Context) ([]model.Home, error) {
			return nil, &tibber.APIError{Status: http.StatusBadGateway, Endpoint: "GET /v1/homes", Attempts: 5}
		},
	}
	st := newFakeStore(api)
	st.SaveInventoryFn = func(context.Context, model.Run, model.InventoryBatch) (model.Run, error) {
		t.Error("SaveInventory called after homes failed")
		return model.Run{}, nil
	}
	run, err := newSyncer(api, st).RunDevices(context.Background())
	if err == nil || run.Status != jobs.StatusFailed {
		t.Fatalf("run = %+v, err = %v; want failed with error", run, err)
	}
	runs := st.Runs()
	if len(runs) != 1 || runs[0].Status != jobs.StatusFailed || !strings.Contains(runs[0].Error, "GET /v1/homes") {
		t.Fatalf("recorded runs = %+v, want one failed run naming the homes request", runs)
	}
	if runs[0].Requests != 1 || runs[0].Job != jobs.JobDevices || runs[0].FinishedAt.IsZero() {
		t.Fatalf("recorded run = %+v", runs[0])
	}
}

func TestDevicesNotAuthorizedSkipsWithoutFurtherCalls(t *testing.T) {
	notAuth := fmt.Errorf("access token: %w", model.ErrNotAuthorized)
	t.Run("AtHomes", func(t *testing.T) {
		api := &fakeAPI{HomesFn: func(context.Context) ([]model.Home, error) { return nil, notAuth }}
		st := newFakeStore(api)
		run, err := newSyncer(api, st).RunDevices(context.Background())
		if !errors.Is(err, model.ErrNotAuthorized) || run.Status != jobs.StatusSkipped {
			t.Fatalf("run = %+v, err = %v; want skipped", run, err)
		}
		if calls := api.Calls(); len(calls) != 1 {
			t.Fatalf("API calls = %v, want only the homes call", calls)
		}
		if run.Requests != 0 {
			t.Fatalf("Requests = %d, want 0 (no HTTP request was made)", run.Requests)
		}
		if runs := st.Runs(); len(runs) != 1 || runs[0].Status != jobs.StatusSkipped {
			t.Fatalf("recorded runs = %+v, want one skipped run", runs)
		}
	})
	t.Run("AtDetail", func(t *testing.T) {
		devs := []model.Device{{ID: "a"}, {ID: "b"}, {ID: "c"}, {ID: "d"}}
		api := &fakeAPI{
			HomesFn:   func(context.Context) ([]model.Home, error) { return []model.Home{{ID: "h1"}}, nil },
			DevicesFn: func(context.Context, string) ([]model.Device, error) { return devs, nil },
			DeviceFn: func(_ context.Context, _, id string) (model.Device, error) {
				if id == "b" {
					return model.Device{}, notAuth
				}
				return detailOf(model.Device{ID: id}), nil
			},
		}
		st := newFakeStore(api)
		s := newSyncer(api, st)
		s.Concurrency = 1
		run, err := s.RunDevices(context.Background())
		if !errors.Is(err, model.ErrNotAuthorized) || run.Status != jobs.StatusSkipped {
			t.Fatalf("run = %+v, err = %v; want skipped", run, err)
		}
		calls := api.Calls()
		if last := calls[len(calls)-1]; last != "device h1 b" {
			t.Fatalf("calls = %v, want none after the not-authorized detail", calls)
		}
		if len(st.Batches()) != 0 {
			t.Fatal("SaveInventory called in a skipped run")
		}
	})
	t.Run("TokenBackoffFails", func(t *testing.T) {
		api := &fakeAPI{HomesFn: func(context.Context) ([]model.Home, error) {
			return nil, fmt.Errorf("access token: %w", model.ErrTokenBackoff)
		}}
		st := newFakeStore(api)
		run, err := newSyncer(api, st).RunHomes(context.Background())
		if !errors.Is(err, model.ErrTokenBackoff) || run.Status != jobs.StatusFailed {
			t.Fatalf("run = %+v, err = %v; want failed", run, err)
		}
		if len(api.Calls()) != 1 {
			t.Fatalf("calls = %v, want one", api.Calls())
		}
	})
}

func TestDevicesConcurrencyBound(t *testing.T) {
	const bound, n = 3, 10
	var devs []model.Device
	for i := range n {
		devs = append(devs, model.Device{ID: fmt.Sprintf("d%02d", i)})
	}
	var (
		cur, peak atomic.Int32
		once      sync.Once
		open      = make(chan struct{})
	)
	api := &fakeAPI{
		HomesFn:   func(context.Context) ([]model.Home, error) { return []model.Home{{ID: "h1"}}, nil },
		DevicesFn: func(context.Context, string) ([]model.Device, error) { return devs, nil },
	}
	api.DeviceFn = func(ctx context.Context, _, id string) (model.Device, error) {
		c := cur.Add(1)
		defer cur.Add(-1)
		for {
			p := peak.Load()
			if c <= p || peak.CompareAndSwap(p, c) {
				break
			}
		}
		// Barrier: the first calls wait until `bound` are in flight at once,
		// proving the fetches really run concurrently.
		if c >= bound {
			once.Do(func() { close(open) })
		}
		select {
		case <-open:
		case <-ctx.Done():
			return model.Device{}, ctx.Err()
		}
		return detailOf(model.Device{ID: id}), nil
	}
	st := newFakeStore(api)
	s := newSyncer(api, st)
	s.Concurrency = bound

	done := make(chan struct{})
	var run model.Run
	var err error
	go func() {
		defer close(done)
		run, err = s.RunDevices(context.Background())
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("RunDevices hung: the barrier never saw the concurrency bound reached")
	}
	if err != nil || run.Status != jobs.StatusOK {
		t.Fatalf("run = %+v, err = %v", run, err)
	}
	if got := peak.Load(); got != bound {
		t.Fatalf("peak in-flight detail calls = %d, want %d", got, bound)
	}
	if got := len(st.Batches()[0].Details); got != n {
		t.Fatalf("stored %d details, want %d", got, n)
	}
	st.assertNoOverlap(t)
}

func TestHomesJobSavesListsWithoutDetails(t *testing.T) {
	api := &fakeAPI{
		HomesFn: func(context.Context) ([]model.Home, error) {
			// A home without id and a duplicate are dropped.
			return []model.Home{{ID: "h1"}, {ID: ""}, {ID: "h2"}, {ID: "h1"}}, nil
		},
		DevicesFn: func(_ context.Context, homeID string) ([]model.Device, error) {
			if homeID == "h2" {
				return nil, &tibber.APIError{Status: http.StatusInternalServerError}
			}
			return []model.Device{{ID: "a"}, {ID: ""}}, nil
		},
	}
	st := newFakeStore(api)
	run, err := newSyncer(api, st).Run(context.Background(), jobs.JobHomes)
	if err != nil || run.Status != jobs.StatusPartial || run.Job != jobs.JobHomes {
		t.Fatalf("run = %+v, err = %v; want a partial homes run", run, err)
	}
	b := st.Batches()[0]
	if len(b.Homes) != 2 || b.Details != nil {
		t.Fatalf("batch homes = %v details = %v", b.Homes, b.Details)
	}
	if _, ok := b.HomeDevices["h2"]; ok {
		t.Fatal("a home whose device list failed must be absent from HomeDevices (left untouched)")
	}
	if got := b.HomeDevices["h1"]; len(got) != 1 || got[0].ID != "a" {
		t.Fatalf("HomeDevices[h1] = %v, want [a]", got)
	}
	for _, c := range api.Calls() {
		if strings.HasPrefix(c, "device ") {
			t.Fatalf("homes job fetched a detail: %s", c)
		}
	}
	if _, err := newSyncer(api, st).Run(context.Background(), "bogus"); err == nil {
		t.Fatal("Run of an unknown job succeeded")
	}
}

// waitOrFail waits for ch, failing the test after a generous bound (a
// deadlock guard: the pipeline must make progress on its own).
func waitOrFail(ctx context.Context, ch <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(10 * time.Second):
		return errors.New("waited 10 s: the pipeline did not get there")
	}
}

// TestDevicesPipelined: the device lists of all homes are requested at once,
// a device's detail starts while another home's list is still out, and a
// home is saved (its own transaction) while another home's detail is still
// out. The serialized cycle deadlocks on each of these barriers.
func TestDevicesPipelined(t *testing.T) {
	homes := []model.Home{{ID: "h1"}, {ID: "h2"}, {ID: "h3"}}
	var (
		listsOut                     atomic.Int32
		allListsOut                  = make(chan struct{})
		allListsOnce, h1DetailOnce   sync.Once
		h1DetailStarted, h1HomeSaved = make(chan struct{}), make(chan struct{})
		h1SavedOnce                  sync.Once
	)
	api := &fakeAPI{
		HomesFn: func(context.Context) ([]model.Home, error) { return homes, nil },
		DevicesFn: func(ctx context.Context, homeID string) ([]model.Device, error) {
			if listsOut.Add(1) == int32(len(homes)) {
				allListsOnce.Do(func() { close(allListsOut) })
			}
			if err := waitOrFail(ctx, allListsOut); err != nil {
				return nil, fmt.Errorf("lists not requested together: %w", err)
			}
			if homeID == "h1" {
				return []model.Device{{ID: "a1"}}, nil
			}
			// h2 and h3 answer only once h1's device detail is out.
			if err := waitOrFail(ctx, h1DetailStarted); err != nil {
				return nil, fmt.Errorf("no detail while a list was out: %w", err)
			}
			return []model.Device{{ID: homeID + "-d"}}, nil
		},
		DeviceFn: func(ctx context.Context, homeID, id string) (model.Device, error) {
			if id == "a1" {
				h1DetailOnce.Do(func() { close(h1DetailStarted) })
				return detailOf(model.Device{ID: id}), nil
			}
			// The other homes' details wait until h1 is saved.
			if err := waitOrFail(ctx, h1HomeSaved); err != nil {
				return model.Device{}, fmt.Errorf("h1 not saved while other details were out: %w", err)
			}
			return detailOf(model.Device{ID: id}), nil
		},
	}
	st := newFakeStore(api)
	var saves []string
	var mu sync.Mutex
	st.SaveHomeInventoryFn = func(_ context.Context, b model.InventoryBatch) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		if len(b.HomeDevices) != 1 || len(b.Homes) != 1 {
			t.Errorf("home part = %+v, want one home and its list", b)
		}
		for h, devs := range b.HomeDevices {
			saves = append(saves, h)
			if len(devs) != 1 || len(b.Details) != 1 || b.Details[0].ID != devs[0].ID {
				t.Errorf("part of %s = list %v details %v, want its one device with its detail", h, devs, b.Details)
			}
			if h == "h1" {
				h1SavedOnce.Do(func() { close(h1HomeSaved) })
			}
		}
		return 2, nil
	}
	s := newSyncer(api, st)
	s.Concurrency = 4
	run, err := s.RunDevices(context.Background())
	if err != nil || run.Status != jobs.StatusOK {
		t.Fatalf("run = %+v, err = %v", run, err)
	}
	slices.Sort(saves)
	if !slices.Equal(saves, []string{"h1", "h2", "h3"}) {
		t.Fatalf("home transactions = %v, want one per home", saves)
	}
	b := st.Batches()
	if len(b) != 1 || len(b[0].Homes) != 3 {
		t.Fatalf("closing batch = %+v, want the homes list", b)
	}
	// 3 parts × 2 rows + the 3 homes the fake counts for the closing batch.
	if run.RowsWritten != 9 || run.Requests != 1+3+3 {
		t.Fatalf("run rows %d requests %d, want 9 and 7", run.RowsWritten, run.Requests)
	}
}

// TestDevicesListsShareTheConcurrencyLimit: lists and details together never
// have more than Concurrency requests out.
func TestDevicesListsShareTheConcurrencyLimit(t *testing.T) {
	const bound = 2
	var cur, peak atomic.Int32
	track := func() func() {
		c := cur.Add(1)
		for {
			p := peak.Load()
			if c <= p || peak.CompareAndSwap(p, c) {
				break
			}
		}
		return func() { cur.Add(-1) }
	}
	var homes []model.Home
	for i := range 6 {
		homes = append(homes, model.Home{ID: fmt.Sprintf("h%d", i)})
	}
	api := &fakeAPI{
		HomesFn: func(context.Context) ([]model.Home, error) { return homes, nil },
		DevicesFn: func(_ context.Context, homeID string) ([]model.Device, error) {
			defer track()()
			return []model.Device{{ID: homeID + "-a"}, {ID: homeID + "-b"}}, nil
		},
		DeviceFn: func(_ context.Context, _, id string) (model.Device, error) {
			defer track()()
			return detailOf(model.Device{ID: id}), nil
		},
	}
	st := newFakeStore(api)
	s := newSyncer(api, st)
	s.Concurrency = bound
	run, err := s.RunDevices(context.Background())
	if err != nil || run.Status != jobs.StatusOK {
		t.Fatalf("run = %+v, err = %v", run, err)
	}
	if got := peak.Load(); got > bound {
		t.Fatalf("peak requests in flight = %d, want at most %d", got, bound)
	}
	if got := len(st.Batches()[0].Details); got != 12 {
		t.Fatalf("stored %d details, want 12", got)
	}
}

// TestDevicesHomesCompleteOneAfterAnother: details are fetched home by home
// in the order the lists arrived, so only a few homes hold fetched details
// that are not saved yet, however large the account (the cycle's memory
// stays flat).
func TestDevicesHomesCompleteOneAfterAnother(t *testing.T) {
	const homesN, perHome, bound = 20, 5, 2
	var homes []model.Home
	for i := range homesN {
		homes = append(homes, model.Home{ID: fmt.Sprintf("h%02d", i)})
	}
	var (
		mu      sync.Mutex
		started = map[string]bool{}
		saved   = map[string]bool{}
		maxOpen int
	)
	api := &fakeAPI{
		HomesFn: func(context.Context) ([]model.Home, error) { return homes, nil },
		DevicesFn: func(_ context.Context, homeID string) ([]model.Device, error) {
			var devs []model.Device
			for j := range perHome {
				devs = append(devs, model.Device{ID: fmt.Sprintf("%s-d%d", homeID, j)})
			}
			return devs, nil
		},
		DeviceFn: func(_ context.Context, homeID, id string) (model.Device, error) {
			mu.Lock()
			started[homeID] = true
			open := 0
			for h := range started {
				if !saved[h] {
					open++
				}
			}
			maxOpen = max(maxOpen, open)
			mu.Unlock()
			return detailOf(model.Device{ID: id}), nil
		},
	}
	st := newFakeStore(api)
	st.SaveHomeInventoryFn = func(_ context.Context, b model.InventoryBatch) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		for h := range b.HomeDevices {
			saved[h] = true
		}
		return len(b.Details), nil
	}
	s := newSyncer(api, st)
	s.Concurrency = bound
	run, err := s.RunDevices(context.Background())
	if err != nil || run.Status != jobs.StatusOK || run.RowsWritten != homesN*perHome+homesN { // parts + the homes the fake counts
		t.Fatalf("run = %+v, err = %v", run, err)
	}
	// One home being saved, one waiting for the saver, and the homes the
	// workers are on.
	if maxOpen > bound+2 {
		t.Fatalf("up to %d homes had details fetched and not saved, want at most %d", maxOpen, bound+2)
	}
}
