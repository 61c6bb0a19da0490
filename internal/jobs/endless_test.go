package jobs_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/model"
)

// TestHistoryEndlessEmptyPagesStop: a server that answers empty pages with
// fresh next links forever ends the stream after a bounded number of empty
// pages (far below the page cap), recorded as a problem, without keeping
// the link; the other device still gets its history in the same run.
func TestHistoryEndlessEmptyPagesStop(t *testing.T) {
	good := newSeries("good", 3, 24)
	api := historyAPI(good)
	n := 0
	empty := func() model.HistoryPage {
		n++
		return model.HistoryPage{PageSize: 24, Next: fmt.Sprintf("https://data-api.test/v1/homes/h1/devices/aaa-endless/history?cursor=%d", n)}
	}
	first, next := api.HistoryFn, api.HistoryNextFn
	api.HistoryFn = func(ctx context.Context, h, dev, res string, since time.Time) (model.HistoryPage, error) {
		if dev == "aaa-endless" {
			return empty(), nil
		}
		return first(ctx, h, dev, res, since)
	}
	api.HistoryNextFn = func(ctx context.Context, link string) (model.HistoryPage, error) {
		if strings.Contains(link, "aaa-endless") {
			return empty(), nil
		}
		return next(ctx, link)
	}
	st := newFakeStore(api)
	s, _ := historySyncer(api, st, hourDevice("aaa-endless", 3), hourDevice("good", 3))
	run, err := s.RunHistory(context.Background())
	if err != nil || run.Status != jobs.StatusPartial || !strings.Contains(run.Error, "without items") {
		t.Fatalf("run = %+v, err = %v; want partial naming the empty pages", run, err)
	}
	// A 3-day window holds 72 hours = 3 pages of 24: a few more empty pages
	// may come (a device without data), not hundreds.
	if n < 5 || n > 10 {
		t.Fatalf("fetched %d empty pages, want the bound (5–10)", n)
	}
	cp := st.Checkpoint("aaa-endless", model.ResolutionHour)
	if cp.NextURL != "" || cp.BackfillDone || !strings.Contains(cp.LastError, "without items") {
		t.Fatalf("checkpoint = %+v, want the problem recorded, no link kept, not done", cp)
	}
	if periods, _ := st.Periods("good", model.ResolutionHour); len(periods) != 3*24 {
		t.Fatalf("the other device stored %d periods, want 72", len(periods))
	}
}

// TestHistoryFairShare: with a run budget, a stream that never ends (one
// item a page, fresh links, an advancing clock) stops at its share of the
// run's time, keeping its link to continue next run, and the devices after
// it still get their history in the same run.
func TestHistoryFairShare(t *testing.T) {
	a, b := newSeries("bbb", 2, 24), newSeries("ccc", 2, 24)
	api := historyAPI(a, b)
	var clk interface{ Advance(time.Duration) }
	n := 0
	endless := func() model.HistoryPage {
		n++
		clk.Advance(time.Second) // each page takes a second
		t := hnow.Add(-2000 * time.Hour).Add(time.Duration(n) * time.Hour)
		return model.HistoryPage{
			Items: []model.HistoryItem{{Time: t, Metrics: map[string]float64{"m": 1}}},
			Next:  fmt.Sprintf("https://data-api.test/v1/homes/h1/devices/aaa/history?cursor=%d", n),
		}
	}
	first, next := api.HistoryFn, api.HistoryNextFn
	api.HistoryFn = func(ctx context.Context, h, dev, res string, since time.Time) (model.HistoryPage, error) {
		if dev == "aaa" {
			return endless(), nil
		}
		return first(ctx, h, dev, res, since)
	}
	api.HistoryNextFn = func(ctx context.Context, link string) (model.HistoryPage, error) {
		if strings.Contains(link, "/aaa/") {
			return endless(), nil
		}
		return next(ctx, link)
	}
	st := newFakeStore(api)
	s, fc := historySyncer(api, st, hourDevice("aaa", 0), hourDevice("bbb", 0), hourDevice("ccc", 0))
	clk = fc
	s.HistoryBudget = 90 * time.Second
	run, err := s.RunHistory(context.Background())
	if err != nil || run.Status != jobs.StatusPartial || !strings.Contains(run.Error, "share") {
		t.Fatalf("run = %+v, err = %v; want partial naming the share", run, err)
	}
	if n < 29 || n > 31 {
		t.Fatalf("the endless stream fetched %d pages, want its third of 90 s (30)", n)
	}
	if cp := st.Checkpoint("aaa", model.ResolutionHour); cp.NextURL == "" || cp.BackfillDone {
		t.Fatalf("checkpoint = %+v, want the link kept to continue", cp)
	}
	for _, dev := range []string{"bbb", "ccc"} {
		if periods, _ := st.Periods(dev, model.ResolutionHour); len(periods) != 2*24 {
			t.Errorf("%s stored %d periods, want 48", dev, len(periods))
		}
	}
	// Without a budget the same stream runs to the page cap instead.
	n = 0
	st2 := newFakeStore(api)
	s2, fc2 := historySyncer(api, st2, hourDevice("aaa", 0))
	clk = fc2
	s2.MaxPagesPerStream = 50
	if run, _ := s2.RunHistory(context.Background()); !strings.Contains(run.Error, "page cap") || n != 50 {
		t.Fatalf("without a budget: %d pages, run %+v", n, run)
	}
}
