package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/tibber"
)

// hnow is "now" for the history tests: mid-hour, so the current period is
// unfinished.
var hnow = time.Date(2026, 9, 14, 10, 30, 0, 0, time.UTC)

// oslo is a fixed +02:00 offset, as Tibber reports it on item times.
var oslo = time.FixedZone("", 2*3600)

// series is a fake history server for one device: hourly items from start
// up to the current hour, served pageSize at a time with opaque next links.
type series struct {
	device   string
	start    time.Time // retention start
	end      time.Time // effectiveEnd: start of the current hour
	pageSize int

	mu      sync.Mutex
	sinces  []time.Time
	fetches int
}

func newSeries(device string, days int, pageSize int) *series {
	end := hnow.Truncate(time.Hour)
	return &series{device: device, start: end.AddDate(0, 0, -days), end: end, pageSize: pageSize}
}

func (s *series) link(idx int, effStart time.Time) string {
	return fmt.Sprintf("https://data-api.test/v1/homes/h1/devices/%s/history?resolution=hour&cursor=%d.%d",
		s.device, idx, effStart.Unix())
}

// times are all the periods the server has.
func (s *series) times() []int64 {
	var out []int64
	for t := s.start; t.Before(s.end); t = t.Add(time.Hour) {
		out = append(out, t.UnixMilli())
	}
	return out
}

// page serves the items of the window starting at effStart, from index idx.
func (s *series) page(effStart time.Time, idx int) model.HistoryPage {
	s.mu.Lock()
	s.fetches++
	s.mu.Unlock()
	p := model.HistoryPage{EffectiveStart: effStart.In(oslo), EffectiveEnd: s.end.In(oslo), PageSize: s.pageSize}
	t := effStart.Add(time.Duration(idx) * time.Hour)
	for n := 0; n < s.pageSize && t.Before(s.end); n++ {
		p.Items = append(p.Items, model.HistoryItem{
			Time:             t.In(oslo),
			UTCOffsetSeconds: 7200,
			Metrics:          map[string]float64{"energyFlow.gridImport": float64(t.Hour())},
		})
		t = t.Add(time.Hour)
	}
	if t.Before(s.end) {
		p.Next = s.link(idx+s.pageSize, effStart)
	}
	return p
}

func (s *series) first(since time.Time) model.HistoryPage {
	s.mu.Lock()
	s.sinces = append(s.sinces, since)
	s.mu.Unlock()
	eff := since.UTC().Truncate(time.Hour)
	if eff.Before(s.start) {
		eff = s.start
	}
	return s.page(eff, 0)
}

func (s *series) next(link string) (model.HistoryPage, error) {
	_, q, ok := strings.Cut(link, "cursor=")
	if !ok {
		return model.HistoryPage{}, fmt.Errorf("bad link %q", link)
	}
	a, b, _ := strings.Cut(q, ".")
	idx, err1 := strconv.Atoi(a)
	sec, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil {
		return model.HistoryPage{}, fmt.Errorf("bad cursor %q", q)
	}
	return s.page(time.Unix(sec, 0).UTC(), idx), nil
}

func (s *series) Sinces() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.sinces...)
}

// historyAPI serves each device's series; hook may replace an answer.
func historyAPI(ss ...*series) *fakeAPI {
	byDev := map[string]*series{}
	for _, s := range ss {
		byDev[s.device] = s
	}
	return &fakeAPI{
		HistoryFn: func(_ context.Context, _, dev, _ string, since time.Time) (model.HistoryPage, error) {
			return byDev[dev].first(since), nil
		},
		HistoryNextFn: func(_ context.Context, link string) (model.HistoryPage, error) {
			for dev, s := range byDev {
				if strings.Contains(link, "/devices/"+dev+"/") {
					return s.next(link)
				}
			}
			return model.HistoryPage{}, fmt.Errorf("unknown link %q", link)
		},
	}
}

func historySyncer(api *fakeAPI, st *fakeStore, devs ...model.Device) (*jobs.Syncer, *clock.Fake) {
	st.homeDevices = map[string][]model.Device{"h1": devs}
	clk := clock.NewFake(hnow)
	return &jobs.Syncer{
		API: api, Store: st, Clock: clk,
		HistoryResolutions: []string{model.ResolutionHour, model.ResolutionDay},
		BackfillDays:       30,
		Lookback:           48 * time.Hour,
	}, clk
}

func hourDevice(id string, retention int) model.Device {
	return model.Device{ID: id, SupportedResolutions: []string{model.ResolutionHour}, MaxRetentionDays: retention}
}

func TestHistoryFirstRunBackfillsToRetention(t *testing.T) {
	short, long := newSeries("short", 60, 50), newSeries("long", 60, 50)
	api := historyAPI(short, long)
	st := newFakeStore(api)
	s, _ := historySyncer(api, st, hourDevice("short", 10), hourDevice("long", 0),
		model.Device{ID: "nohistory", SupportedResolutions: nil})
	run, err := s.RunHistory(context.Background())
	if err != nil || run.Status != jobs.StatusOK {
		t.Fatalf("run = %+v, err = %v", run, err)
	}
	if got, want := short.Sinces(), []time.Time{hnow.AddDate(0, 0, -10)}; !slices.EqualFunc(got, want, time.Time.Equal) {
		t.Fatalf("short-retention since = %v, want %v (retention caps backfill)", got, want)
	}
	if got, want := long.Sinces(), []time.Time{hnow.AddDate(0, 0, -30)}; !slices.EqualFunc(got, want, time.Time.Equal) {
		t.Fatalf("since = %v, want %v (backfill_days)", got, want)
	}
	for _, c := range api.Calls() {
		if strings.Contains(c, "nohistory") {
			t.Fatalf("a device without history was fetched: %s", c)
		}
	}
	periods, maxSaves := st.Periods("long", model.ResolutionHour)
	if want := 30 * 24; len(periods) != want || maxSaves != 1 {
		t.Fatalf("stored %d periods (max saves %d), want %d once each", len(periods), maxSaves, want)
	}
	cp := st.Checkpoint("long", model.ResolutionHour)
	if !cp.BackfillDone || cp.NextURL != "" || cp.HomeID != "h1" || cp.LastError != "" {
		t.Fatalf("checkpoint = %+v, want backfill done", cp)
	}
	if want := hnow.Truncate(time.Hour).Add(-time.Hour); !cp.LastPeriod.Equal(want) {
		t.Fatalf("LastPeriod = %v, want %v", cp.LastPeriod, want)
	}
	// 1 first page + 14 next pages for 720 items, 5 pages for 240.
	if got, want := run.Requests, 15+5; got != want {
		t.Fatalf("Requests = %d, want %d", got, want)
	}
	if got, want := run.RowsWritten, 30*24+10*24; got != want {
		t.Fatalf("RowsWritten = %d, want %d", got, want)
	}
	if runs := st.Runs(); len(runs) != 1 || runs[0].Job != jobs.JobHistory || runs[0].Status != jobs.StatusOK {
		t.Fatalf("recorded runs = %+v", runs)
	}
	st.assertNoOverlap(t)
}

func TestHistoryResumesAfterCrashFromLastCommittedPage(t *testing.T) {
	ser := newSeries("bat", 30, 40) // 720 items: 18 pages
	api := historyAPI(ser)
	serve := api.HistoryNextFn
	const failAfter = 5 // the 6th fetch dies
	fetches := 0
	var failedLink string
	api.HistoryNextFn = func(ctx context.Context, link string) (model.HistoryPage, error) {
		fetches++
		if fetches == failAfter {
			failedLink = link
			return model.HistoryPage{}, &tibber.APIError{Status: http.StatusServiceUnavailable, Attempts: 5}
		}
		return serve(ctx, link)
	}
	st := newFakeStore(api)
	s, clk := historySyncer(api, st, hourDevice("bat", 0))
	run, err := s.RunHistory(context.Background())
	if err != nil || run.Status != jobs.StatusPartial {
		t.Fatalf("first run = %+v, err = %v; want partial", run, err)
	}
	cp := st.Checkpoint("bat", model.ResolutionHour)
	if cp.NextURL != failedLink || cp.BackfillDone || cp.LastError == "" {
		t.Fatalf("checkpoint after the failure = %+v, want NextURL %q and the problem", cp, failedLink)
	}
	stored, _ := st.Periods("bat", model.ResolutionHour)
	if want := failAfter * 40; len(stored) != want {
		t.Fatalf("stored %d periods before the failure, want %d", len(stored), want)
	}

	clk.Advance(10 * time.Minute)
	calls := len(api.Calls())
	run, err = s.RunHistory(context.Background())
	if err != nil || run.Status != jobs.StatusOK {
		t.Fatalf("second run = %+v, err = %v", run, err)
	}
	if first := api.Calls()[calls]; first != "next "+failedLink {
		t.Fatalf("second run began with %q, want the saved next link", first)
	}
	if len(ser.Sinces()) != 1 {
		t.Fatalf("History(since) called %d times, want only by the first run", len(ser.Sinces()))
	}
	periods, maxSaves := st.Periods("bat", model.ResolutionHour)
	if !slices.Equal(periods, ser.times()) || maxSaves != 1 {
		t.Fatalf("union of both runs: %d periods (max saves %d), want the full %d, each once",
			len(periods), maxSaves, len(ser.times()))
	}
	if cp := st.Checkpoint("bat", model.ResolutionHour); !cp.BackfillDone || cp.LastError != "" {
		t.Fatalf("checkpoint = %+v, want done and clean", cp)
	}
}

func TestHistoryLaterRunUsesLookback(t *testing.T) {
	ser := newSeries("bat", 30, 100)
	api := historyAPI(ser)
	st := newFakeStore(api)
	s, clk := historySyncer(api, st, hourDevice("bat", 0))
	if _, err := s.RunHistory(context.Background()); err != nil {
		t.Fatal(err)
	}
	last := st.Checkpoint("bat", model.ResolutionHour).LastPeriod

	clk.Advance(3 * time.Hour)
	ser.end = ser.end.Add(3 * time.Hour)
	run, err := s.RunHistory(context.Background())
	if err != nil || run.Status != jobs.StatusOK {
		t.Fatalf("run = %+v, err = %v", run, err)
	}
	sinces := ser.Sinces()
	if got, want := sinces[len(sinces)-1], last.Add(-48*time.Hour); !got.Equal(want) {
		t.Fatalf("incremental since = %v, want LastPeriod - lookback = %v", got, want)
	}
	// 48 h re-fetched (unchanged values) + 3 new hours.
	if run.RowsWritten != 3 || run.Requests != 1 {
		t.Fatalf("RowsWritten = %d, Requests = %d; want 3 new rows in 1 request", run.RowsWritten, run.Requests)
	}
	if got := st.Checkpoint("bat", model.ResolutionHour).LastPeriod; !got.Equal(last.Add(3 * time.Hour)) {
		t.Fatalf("LastPeriod = %v, want %v", got, last.Add(3*time.Hour))
	}
}

func TestHistoryLoopingNextLinkStops(t *testing.T) {
	for name, loopTo := range map[string]func(self, prev string) string{
		"SameLink":    func(self, _ string) string { return self },
		"EarlierLink": func(_, prev string) string { return prev },
	} {
		t.Run(name, func(t *testing.T) {
			ser := newSeries("bat", 30, 24)
			api := historyAPI(ser)
			serve := api.HistoryNextFn
			var links []string
			api.HistoryNextFn = func(ctx context.Context, link string) (model.HistoryPage, error) {
				links = append(links, link)
				p, err := serve(ctx, link)
				if len(links) == 3 { // the 4th page points back
					prev := links[len(links)-2]
					p.Next = loopTo(link, prev)
				}
				return p, err
			}
			st := newFakeStore(api)
			s, _ := historySyncer(api, st, hourDevice("bat", 0))
			run, err := s.RunHistory(context.Background())
			if err != nil || run.Status != jobs.StatusPartial || !strings.Contains(run.Error, "loops") {
				t.Fatalf("run = %+v, err = %v; want partial naming the loop", run, err)
			}
			if len(links) != 3 {
				t.Fatalf("followed %d links, want 3 (stop at the loop)", len(links))
			}
			cp := st.Checkpoint("bat", model.ResolutionHour)
			if cp.NextURL != "" || !strings.Contains(cp.LastError, "loops") {
				t.Fatalf("checkpoint = %+v, want the loop recorded and no link kept", cp)
			}
			if periods, _ := st.Periods("bat", model.ResolutionHour); len(periods) != 4*24 {
				t.Fatalf("stored %d periods, want the 4 pages fetched", len(periods))
			}
			// The next run does not follow the loop: it asks from the last
			// stored period again and finishes.
			run, err = s.RunHistory(context.Background())
			if err != nil || run.Status != jobs.StatusOK {
				t.Fatalf("run after loop = %+v, err = %v", run, err)
			}
			sinces := ser.Sinces()
			if got, want := sinces[len(sinces)-1], cp.LastPeriod.Add(-48*time.Hour); !got.Equal(want) {
				t.Fatalf("since after loop = %v, want %v", got, want)
			}
		})
	}
}

func TestHistoryPageCap(t *testing.T) {
	// A server that always has one more page, with fresh links.
	n := 0
	endless := func() model.HistoryPage {
		n++
		t := hnow.Add(-200 * time.Hour).Add(time.Duration(n) * time.Hour)
		return model.HistoryPage{
			Items: []model.HistoryItem{{Time: t, Metrics: map[string]float64{"m": 1}}},
			Next:  fmt.Sprintf("https://data-api.test/next?cursor=%d", n),
		}
	}
	api := &fakeAPI{
		HistoryFn: func(context.Context, string, string, string, time.Time) (model.HistoryPage, error) {
			return endless(), nil
		},
		HistoryNextFn: func(context.Context, string) (model.HistoryPage, error) { return endless(), nil },
	}
	t.Run("Explicit", func(t *testing.T) {
		n = 0
		st := newFakeStore(api)
		s, _ := historySyncer(api, st, hourDevice("bat", 0))
		s.MaxPagesPerStream = 7
		run, err := s.RunHistory(context.Background())
		if err != nil || run.Status != jobs.StatusPartial || !strings.Contains(run.Error, "page cap") {
			t.Fatalf("run = %+v, err = %v", run, err)
		}
		if n != 7 {
			t.Fatalf("fetched %d pages, want the cap of 7", n)
		}
		if cp := st.Checkpoint("bat", model.ResolutionHour); cp.NextURL == "" || cp.BackfillDone {
			t.Fatalf("checkpoint = %+v, want the next link kept so the next run continues", cp)
		}
	})
	t.Run("Derived", func(t *testing.T) {
		n = 0
		st := newFakeStore(api)
		s, _ := historySyncer(api, st, hourDevice("bat", 1)) // a one-day window
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.RunHistory(context.Background())
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("history never stopped following next links")
		}
		if n < 24 || n > 2*24+100 {
			t.Fatalf("fetched %d pages for a one-day hourly window, want a cap near 2×24+100", n)
		}
	})
}

func TestHistoryBadRequestSkipsStreamOthersContinue(t *testing.T) {
	ser := newSeries("bat", 30, 200)
	api := historyAPI(ser)
	serve := api.HistoryFn
	api.HistoryFn = func(ctx context.Context, home, dev, res string, since time.Time) (model.HistoryPage, error) {
		if res == model.ResolutionDay {
			return model.HistoryPage{}, &tibber.APIError{Status: http.StatusBadRequest, Problem: tibber.Problem{Detail: "unsupported resolution"}}
		}
		return serve(ctx, home, dev, res, since)
	}
	st := newFakeStore(api)
	dev := model.Device{ID: "bat", SupportedResolutions: []string{model.ResolutionDay, model.ResolutionHour}}
	s, _ := historySyncer(api, st, dev)
	run, err := s.RunHistory(context.Background())
	if err != nil || run.Status != jobs.StatusPartial {
		t.Fatalf("run = %+v, err = %v; want partial", run, err)
	}
	if cp := st.Checkpoint("bat", model.ResolutionDay); !strings.Contains(cp.LastError, "rejected") {
		t.Fatalf("day checkpoint = %+v, want the 400 recorded", cp)
	}
	if periods, _ := st.Periods("bat", model.ResolutionHour); len(periods) != 30*24 {
		t.Fatalf("hour stream stored %d periods, want all %d", len(periods), 30*24)
	}
}

func TestHistoryMalformedPageKeepsWhatCameBefore(t *testing.T) {
	ser := newSeries("bat", 30, 100)
	api := historyAPI(ser)
	serve := api.HistoryNextFn
	calls := 0
	var badLink string
	api.HistoryNextFn = func(ctx context.Context, link string) (model.HistoryPage, error) {
		calls++
		if calls == 2 {
			badLink = link
			return model.HistoryPage{}, errors.New("GET /v1/homes/h1/devices/bat/history: decode history page: invalid character '<'")
		}
		return serve(ctx, link)
	}
	st := newFakeStore(api)
	s, _ := historySyncer(api, st, hourDevice("bat", 0))
	run, err := s.RunHistory(context.Background())
	if err != nil || run.Status != jobs.StatusPartial || !strings.Contains(run.Error, "invalid character") {
		t.Fatalf("run = %+v, err = %v; want partial naming the bad page", run, err)
	}
	if periods, _ := st.Periods("bat", model.ResolutionHour); len(periods) != 200 {
		t.Fatalf("stored %d periods, want the 2 good pages (200)", len(periods))
	}
	cp := st.Checkpoint("bat", model.ResolutionHour)
	if cp.NextURL != badLink || !strings.Contains(cp.LastError, "invalid character") {
		t.Fatalf("checkpoint = %+v, want the bad page's link kept and the problem recorded", cp)
	}
}

func TestHistoryItemsOutsideWindowAndInvalidValues(t *testing.T) {
	end := hnow.Truncate(time.Hour)
	page := model.HistoryPage{
		EffectiveStart: end.Add(-3 * time.Hour),
		EffectiveEnd:   end,
		Items: []model.HistoryItem{
			{Time: end.Add(-3 * time.Hour), Metrics: map[string]float64{"m": 1}},
			{Time: end.Add(-time.Hour), Metrics: map[string]float64{"m": 2}},
			{Time: end, Metrics: map[string]float64{"m": 3}},                      // the unfinished period
			{Time: end.Add(-10 * time.Hour), Metrics: map[string]float64{"m": 4}}, // before the window
		},
		Problems: []string{`item 2026-09-14T07:00:00Z: energyFlow.gridImport: not a number: "n/a"`},
	}
	api := &fakeAPI{HistoryFn: func(context.Context, string, string, string, time.Time) (model.HistoryPage, error) { return page, nil }}
	st := newFakeStore(api)
	s, _ := historySyncer(api, st, hourDevice("bat", 0))
	run, err := s.RunHistory(context.Background())
	if err != nil || run.Status != jobs.StatusPartial {
		t.Fatalf("run = %+v, err = %v; want partial", run, err)
	}
	if !strings.Contains(run.Error, "2 items skipped (outside") || !strings.Contains(run.Error, "not a number") {
		t.Fatalf("Error = %q, want both problems recorded", run.Error)
	}
	cp := st.Checkpoint("bat", model.ResolutionHour)
	if want := end.Add(-time.Hour); !cp.LastPeriod.Equal(want) {
		t.Fatalf("LastPeriod = %v, want %v (items outside the window must not move it)", cp.LastPeriod, want)
	}
	if periods, _ := st.Periods("bat", model.ResolutionHour); len(periods) != 2 {
		t.Fatalf("stored %d periods, want 2", len(periods))
	}
}

func TestHistoryNotAuthorizedStopsAtOnce(t *testing.T) {
	a, b := newSeries("a", 30, 100), newSeries("b", 30, 100)
	api := historyAPI(a, b)
	serve := api.HistoryNextFn
	notAuth := fmt.Errorf("access token: %w", model.ErrNotAuthorized)
	calls := 0
	api.HistoryNextFn = func(ctx context.Context, link string) (model.HistoryPage, error) {
		calls++
		if calls == 2 {
			return model.HistoryPage{}, notAuth
		}
		return serve(ctx, link)
	}
	st := newFakeStore(api)
	s, _ := historySyncer(api, st, hourDevice("a", 0), hourDevice("b", 0))
	run, err := s.RunHistory(context.Background())
	if !errors.Is(err, model.ErrNotAuthorized) || run.Status != jobs.StatusPartial {
		t.Fatalf("run = %+v, err = %v; want partial (pages were stored) with the error", run, err)
	}
	if got := len(api.Calls()); got != 3 {
		t.Fatalf("API calls = %v, want none after the refusal", api.Calls())
	}
	if cp := st.Checkpoint("a", model.ResolutionHour); cp.NextURL == "" || cp.LastError != "" {
		t.Fatalf("checkpoint = %+v, want the resume link kept and no stream error", cp)
	}

	// Refused before any page: skipped.
	api2 := &fakeAPI{HistoryFn: func(context.Context, string, string, string, time.Time) (model.HistoryPage, error) {
		return model.HistoryPage{}, notAuth
	}}
	st2 := newFakeStore(api2)
	s2, _ := historySyncer(api2, st2, hourDevice("a", 0), hourDevice("b", 0))
	run, err = s2.RunHistory(context.Background())
	if !errors.Is(err, model.ErrNotAuthorized) || run.Status != jobs.StatusSkipped || len(api2.Calls()) != 1 {
		t.Fatalf("run = %+v, err = %v, calls %v; want skipped after one call", run, err, api2.Calls())
	}
}

func TestHistoryAllStreamsFailingIsFailed(t *testing.T) {
	api := &fakeAPI{HistoryFn: func(context.Context, string, string, string, time.Time) (model.HistoryPage, error) {
		return model.HistoryPage{}, &tibber.APIError{Status: http.StatusServiceUnavailable, RetryAfter: time.Minute}
	}}
	st := newFakeStore(api)
	s, _ := historySyncer(api, st, hourDevice("a", 0), hourDevice("b", 0))
	run, err := s.RunHistory(context.Background())
	if err == nil || run.Status != jobs.StatusFailed {
		t.Fatalf("run = %+v, err = %v; want failed", run, err)
	}
	if jobs.RetryAfter(err) != time.Minute {
		t.Fatalf("RetryAfter = %v, want 1m", jobs.RetryAfter(err))
	}
}

func TestHistoryDeviceUnderTwoHomesSyncedOnce(t *testing.T) {
	ser := newSeries("car", 5, 500)
	api := historyAPI(ser)
	st := newFakeStore(api)
	s, _ := historySyncer(api, st)
	st.homeDevices = map[string][]model.Device{"h2": {hourDevice("car", 0)}, "h1": {hourDevice("car", 0)}}
	if _, err := s.RunHistory(context.Background()); err != nil {
		t.Fatal(err)
	}
	if calls := api.Calls(); len(calls) != 1 || !strings.HasPrefix(calls[0], "history h1 car") {
		t.Fatalf("calls = %v, want one stream through h1", calls)
	}
}

func TestHistoryProgressMonotonic(t *testing.T) {
	a, b := newSeries("a", 10, 30), newSeries("b", 10, 50)
	api := historyAPI(a, b)
	st := newFakeStore(api)
	s, _ := historySyncer(api, st, hourDevice("a", 0), hourDevice("b", 0))
	logs := &logBuffer{}
	s.Logger = newLogger(logs)
	var got []jobs.HistoryProgress
	s.Progress = func(p jobs.HistoryProgress) { got = append(got, p) }
	if _, err := s.RunHistory(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantPages := map[string]int{"a": 8, "b": 5} // 240 items in pages of 30 and 50
	last := map[string]jobs.HistoryProgress{}
	for _, p := range got {
		prev, seen := last[p.DeviceID]
		if seen && prev.Done {
			t.Fatalf("report after Done: %+v", p)
		}
		if seen && (p.Pages < prev.Pages || p.Points < prev.Points || p.Reached.Before(prev.Reached)) {
			t.Fatalf("progress went back: %+v after %+v", p, prev)
		}
		if p.Start.IsZero() || p.Target.IsZero() || p.Reached.After(p.Target) {
			t.Fatalf("bad bounds: %+v", p)
		}
		last[p.DeviceID] = p
	}
	for dev, pages := range wantPages {
		p := last[dev]
		if !p.Done || p.Pages != pages || p.Points != 240 {
			t.Fatalf("final progress of %s = %+v, want done after %d pages and 240 points", dev, p, pages)
		}
	}
	if logs.Lines("history stream synced") != 2 {
		t.Fatalf("want one summary line per stream:\n%s", logs)
	}
}

func TestHistoryProgressLogRate(t *testing.T) {
	ser := newSeries("a", 30, 1) // 720 one-item pages
	api := historyAPI(ser)
	serve := api.HistoryNextFn
	st := newFakeStore(api)
	s, clk := historySyncer(api, st, hourDevice("a", 0))
	api.HistoryNextFn = func(ctx context.Context, link string) (model.HistoryPage, error) {
		clk.Advance(time.Second) // each page takes a second
		return serve(ctx, link)
	}
	logs := &logBuffer{}
	s.Logger = newLogger(logs)
	if _, err := s.RunHistory(context.Background()); err != nil {
		t.Fatal(err)
	}
	// 720 s of paging: one line per 10 s, give or take.
	if n := logs.Lines("history progress"); n < 60 || n > 80 {
		t.Fatalf("%d progress lines for 720 pages over 12 minutes, want about 72", n)
	}
}

func TestHistoryRefusedStoredLinkRestartsFromLastPeriod(t *testing.T) {
	ser := newSeries("bat", 30, 500)
	api := historyAPI(ser)
	api.HistoryNextFn = func(context.Context, string) (model.HistoryPage, error) {
		return model.HistoryPage{}, &tibber.APIError{Status: http.StatusBadRequest, Problem: tibber.Problem{Detail: "invalid cursor"}}
	}
	st := newFakeStore(api)
	last := hnow.Add(-100 * time.Hour).Truncate(time.Hour)
	st.checkpoints["bat/hour"] = model.HistoryCheckpoint{DeviceID: "bat", HomeID: "h1", Resolution: "hour",
		NextURL: "https://data-api.test/v1/stale?cursor=1.1", LastPeriod: last}
	s, _ := historySyncer(api, st, hourDevice("bat", 0))

	run, err := s.RunHistory(context.Background())
	if err != nil || run.Status != jobs.StatusPartial || !strings.Contains(run.Error, "invalid cursor") {
		t.Fatalf("run = %+v, err = %v; want partial naming the refusal", run, err)
	}
	cp := st.Checkpoint("bat", "hour")
	if cp.NextURL != "" || !cp.LastPeriod.Equal(last) || cp.LastError == "" {
		t.Fatalf("checkpoint = %+v, want the stale link dropped and the rest kept", cp)
	}
	run, err = s.RunHistory(context.Background())
	if err != nil || run.Status != jobs.StatusOK {
		t.Fatalf("second run = %+v, err = %v", run, err)
	}
	if got := ser.Sinces(); len(got) != 1 || !got[0].Equal(last.Add(-48*time.Hour)) {
		t.Fatalf("since = %v, want LastPeriod - lookback = %v", got, last.Add(-48*time.Hour))
	}
}
