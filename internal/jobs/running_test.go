package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/model"
)

// TestHistoryRunIsRunningThenInterrupted: with a real store, a history run
// shows as running with its progress while it works; a stop request ends it
// after the page being saved, recorded as interrupted (not failed), in the
// same row.
func TestHistoryRunIsRunningThenInterrupted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data.db")
	clk := clock.NewFake(hnow)
	db := openStore(t, clk, path)
	bat := model.Device{ID: "bat", Name: "Battery", SupportedResolutions: []string{model.ResolutionHour}, MaxRetentionDays: 730}
	if _, err := db.SaveInventory(context.Background(), model.Run{Job: jobs.JobDevices, Status: jobs.StatusOK},
		model.InventoryBatch{ObservedAt: hnow, Homes: []model.Home{{ID: "h1"}}, HomeDevices: map[string][]model.Device{"h1": {bat}}}); err != nil {
		t.Fatal(err)
	}
	ser := newSeries("bat", 30, 48)
	api := historyAPI(ser)
	third := make(chan struct{})
	release := make(chan struct{})
	next := api.HistoryNextFn
	pages := 0
	api.HistoryNextFn = func(ctx context.Context, link string) (model.HistoryPage, error) {
		pages++
		clk.Advance(2 * time.Second) // each page takes time: progress is written
		if pages == 2 {
			close(third)
			<-release
		}
		return next(ctx, link)
	}
	s := &jobs.Syncer{API: api, Store: db, Clock: clk, HistoryResolutions: []string{model.ResolutionHour}, BackfillDays: 30, ProgressEvery: time.Second}
	stop := make(chan struct{})
	ctx := jobs.WithStop(context.Background(), stop)
	type result struct {
		run model.Run
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := s.Run(ctx, jobs.JobHistory)
		done <- result{r, err}
	}()
	select {
	case <-third:
	case <-time.After(time.Minute):
		t.Fatal("history run never reached its third page")
	}
	clk.Advance(time.Second)
	sum, err := db.Summary(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var h model.JobSummary
	for _, j := range sum.Jobs {
		if j.Job == jobs.JobHistory {
			h = j
		}
	}
	if !h.Running || h.Progress == nil || h.Progress.Pages < 2 || h.Progress.StreamsTotal != 1 || h.Progress.Current != "Battery, hour" || h.Progress.Requests < 2 {
		t.Fatalf("while running: running=%v progress=%+v", h.Running, h.Progress)
	}
	close(stop)
	close(release)
	var r result
	select {
	case r = <-done:
	case <-time.After(time.Minute):
		t.Fatal("history run did not stop")
	}
	if r.run.Status != jobs.StatusInterrupted || !errors.Is(r.err, jobs.ErrStopped) {
		t.Fatalf("run %+v err %v, want interrupted by ErrStopped", r.run, r.err)
	}
	if n := queryInt(t, path, `SELECT count(*) FROM sync_runs WHERE job = 'history'`); n != 1 {
		t.Fatalf("%d history rows, want the one row finished in place", n)
	}
	if n := queryInt(t, path, `SELECT count(*) FROM sync_runs WHERE job = 'history' AND status = 'interrupted' AND finished_at IS NOT NULL`); n != 1 {
		t.Fatal("history row is not interrupted")
	}
	if n := queryInt(t, path, `SELECT count(*) FROM device_history`); n == 0 {
		t.Fatal("committed pages were lost")
	}
}

// TestRunsBeforeAuthorizationAreSkipped: every job, history included (which
// otherwise would "succeed" with no devices and no request), is skipped
// without any API call before authorization.
func TestRunsBeforeAuthorizationAreSkipped(t *testing.T) {
	api := &fakeAPI{}
	st := newFakeStore(api)
	s := &jobs.Syncer{API: api, Store: st, Clock: clock.NewFake(hnow), HistoryResolutions: []string{model.ResolutionHour},
		Authorized: func(context.Context) error { return fmt.Errorf("%w (setup_required)", model.ErrNotAuthorized) }}
	for _, job := range []string{jobs.JobHomes, jobs.JobDevices, jobs.JobHistory} {
		r, err := s.Run(context.Background(), job)
		if r.Status != jobs.StatusSkipped || !errors.Is(err, model.ErrNotAuthorized) {
			t.Errorf("%s before authorization: %s (%v), want skipped", job, r.Status, err)
		}
	}
	if calls := api.Calls(); len(calls) != 0 {
		t.Fatalf("API called before authorization: %v", calls)
	}
	for _, r := range st.Runs() {
		if r.Status != jobs.StatusSkipped {
			t.Fatalf("recorded %s run %s before authorization", r.Job, r.Status)
		}
	}
}
