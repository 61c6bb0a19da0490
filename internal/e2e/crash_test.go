package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/simulator"
)

// crashStats counts what the crash harness did.
type crashStats struct {
	kills, resumes, cursorResumes, checks int
	// inTx counts kills that fired while a page was being saved; the kill
	// timers run on their own goroutines.
	inTx atomic.Int64
}

// TestKillMidBackfillResumes kills history backfills mid-stream and
// restarts them, several times per sequence, until one run completes. A
// kill cancels the run's context after a page arrived: at once (the page's
// transaction never starts), a few hundred microseconds into the page's
// save (inside its transaction), or a few milliseconds later (in the next
// fetch).
// After each kill the components are closed and new ones opened on the
// same files, as after a restart, and the test checks:
//
//   - integrity_check ok, no foreign key violation, the run recorded failed;
//   - no partial page: each stream's rows are exactly the simulator's series
//     up to its checkpoint's last period, and that period ends a page;
//   - the resumed run's first request for an interrupted stream is the
//     stored next link (a cursor request), not a new since request.
//
// The completed backfill equals the simulator's series: no gap, no
// duplicate.
func TestKillMidBackfillResumes(t *testing.T) {
	started := time.Now()
	sequences := 5
	switch {
	case testing.Short():
		sequences = 2
	case raceEnabled:
		sequences = 3
	}
	rng := rand.New(rand.NewPCG(20260914, 7))
	var st crashStats
	for seq := range sequences {
		t.Run(fmt.Sprintf("sequence%d", seq+1), func(t *testing.T) {
			crashSequence(t, rng.Uint64(), &st)
		})
	}
	if st.kills == 0 || st.cursorResumes == 0 {
		t.Errorf("the harness killed %d runs and saw %d cursor resumes; it proved nothing", st.kills, st.cursorResumes)
	}
	writeSummary(t, "e2e crash harness: %d/%d kills recovered (%d inside a page transaction), 0 integrity errors, %d resumes (%d from the stored next link), %d prefix checks, %d sequences, %.1fs",
		st.kills, st.kills, st.inTx.Load(), st.resumes, st.cursorResumes, st.checks, sequences, time.Since(started).Seconds())
}

func crashSequence(t *testing.T, seed uint64, st *crashStats) {
	rng := rand.New(rand.NewPCG(seed, 1))
	const days, pageSize = 14, 24
	var (
		mu       sync.Mutex
		killAt   int // history call number whose page triggers the kill; 0: none
		mode     int // 0: before the page is saved; 1: during its save; 2: after
		delay    time.Duration
		cancel   context.CancelFunc
		fired    bool
		armed    bool                          // the next SaveHistoryPage starts the kill timer
		saving   bool                          // a SaveHistoryPage is running
		runs     int                           // numbers the runs, so a late timer counts nothing
		pageEnds = map[string]map[int64]bool{} // device → newest item of each page fetched
	)
	names := []string{"Stue", "Roof", "Heat pump"}
	hook := &hookAPI{devices: keepDevices(names...)}
	hook.after = func(_ context.Context, c historyCall, p model.HistoryPage, err error) (model.HistoryPage, error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			return p, err
		}
		var newest time.Time
		for _, it := range p.Items {
			if it.Time.After(newest) {
				newest = it.Time
			}
		}
		if pageEnds[c.DeviceID] == nil {
			pageEnds[c.DeviceID] = map[int64]bool{}
		}
		pageEnds[c.DeviceID][newest.UnixMilli()] = true
		if c.N >= killAt && killAt > 0 && !fired && p.Next != "" {
			fired = true
			if mode == 0 {
				cancel()
			} else {
				armed = true
			}
		}
		return p, err
	}
	store := &killStore{}
	store.onSave = func(begin bool) {
		mu.Lock()
		defer mu.Unlock()
		saving = begin
		if begin && armed {
			armed = false
			stop := cancel
			run := runs
			time.AfterFunc(delay, func() {
				mu.Lock()
				if saving && run == runs {
					st.inTx.Add(1)
				}
				mu.Unlock()
				stop()
			})
		}
	}
	e := newEnv(t, envConfig{
		sim:          simulator.Options{PageSize: pageSize},
		backfillDays: days,
		resolutions:  []string{"hour"},
		wrap:         func(api jobs.API) jobs.API { hook.API = api; return hook },
		wrapStore:    func(s jobs.Store) jobs.Store { store.Store = s; return store },
	})
	e.mustRun(jobs.JobDevices, jobs.StatusOK)
	now := e.clk.Now()
	start, end := floorHour(now.AddDate(0, 0, -days)), floorHour(now)
	devs := keepNames(historyDevices(e.sim.Account(), "hour"), names)
	if len(devs) != 3 {
		t.Fatalf("%d devices to backfill, want 3", len(devs))
	}

	// pending is, per device, the next link stored by the killed run.
	var pending map[string]string
	for attempt := 1; ; attempt++ {
		if attempt > 40 {
			t.Fatalf("backfill not complete after %d runs", attempt-1)
		}
		ctx, stop := e.runGuard()
		mu.Lock()
		cancel, fired, armed = stop, false, false
		runs++
		killAt = hook.count() + 2 + rng.IntN(10) // at least one page of the run is committed first
		mode = rng.IntN(3)
		switch mode {
		case 1:
			delay = time.Duration(rng.IntN(400)) * time.Microsecond
		case 2:
			delay = time.Duration(1+rng.IntN(5)) * time.Millisecond
		}
		mu.Unlock()
		res := e.runCtx(ctx, jobs.JobHistory)
		stop()
		if pending != nil {
			st.resumes++
			for devID, next := range pending {
				first, ok := firstHistoryRequest(res.reqs, devID)
				switch {
				case !ok && res.run.Status == jobs.StatusOK:
					t.Errorf("run %d: no request for %s, whose backfill was interrupted", attempt, devID)
				case !ok:
					// Killed again before it reached this stream; its
					// checkpoint stands and is checked after this kill.
				case e.srv.URL+first.URL != next || first.Query.Has("since"):
					t.Errorf("run %d: first request for %s is %s, want the stored next link %s", attempt, devID, first.URL, next)
				default:
					st.cursorResumes++
				}
			}
		}
		mu.Lock()
		killed := fired
		mu.Unlock()
		if res.run.Status == jobs.StatusOK {
			break
		}
		if !killed {
			t.Fatalf("run %d without a kill: status %q, error %q", attempt, res.run.Status, res.run.Error)
		}
		st.kills++
		// The kill cancels the run's context, as a shutdown does: the run
		// is interrupted (resumable), not failed.
		if res.run.Status != jobs.StatusInterrupted || res.run.Error == "" || res.err == nil {
			t.Errorf("killed run %d: status %q error %q (%v), want interrupted", attempt, res.run.Status, res.run.Error, res.err)
		}

		// Restart on the same files.
		e.reopen()
		e.checkIntegrity()
		if last := e.lastRun(); last.Status != jobs.StatusInterrupted {
			t.Errorf("killed run %d recorded as %q", attempt, last.Status)
		}
		pending = map[string]string{}
		for _, d := range devs {
			st.checks++
			cp, ok := e.checkpointOf(d.ID, "hour")
			rows := e.storedHistory(d.ID, "hour")
			if !ok {
				if len(rows) != 0 {
					t.Errorf("run %d: %s has %d rows but no checkpoint", attempt, d.Name, len(rows))
				}
				continue
			}
			last := time.UnixMilli(cp.LastPeriod)
			want := seriesRows(e.sim.HistorySeries(d.ID, "hour", start, last.Add(time.Nanosecond)))
			if diff := diffRows(rows, want); diff != "" {
				t.Errorf("run %d: %s is not the series prefix up to its checkpoint %s: %s", attempt, d.Name, last.UTC(), diff)
			}
			mu.Lock()
			boundary := pageEnds[d.ID][cp.LastPeriod]
			mu.Unlock()
			if !boundary {
				t.Errorf("run %d: %s checkpoint %s is not the end of a page: a partial page was stored", attempt, d.Name, last.UTC())
			}
			if cp.NextURL != "" && !cp.Done {
				pending[d.ID] = cp.NextURL
			}
		}
	}

	e.checkIntegrity()
	for _, d := range devs {
		rows := e.checkSeriesRows(d.ID, "hour", start, end)
		if n := distinctPeriods(rows); n != int(end.Sub(start)/time.Hour) {
			t.Errorf("%s: %d periods after the backfill, want %d", d.Name, n, int(end.Sub(start)/time.Hour))
		}
		if cp, _ := e.checkpointOf(d.ID, "hour"); !cp.Done || cp.NextURL != "" || cp.LastError != "" {
			t.Errorf("%s: final checkpoint %+v, want the backfill done", d.Name, cp)
		}
	}
}

// firstHistoryRequest returns the first history request of a device.
func firstHistoryRequest(reqs []reqRecord, deviceID string) (reqRecord, bool) {
	for _, r := range reqs {
		if r.Endpoint == "history" && containsSegment(r.Path, deviceID) {
			return r, true
		}
	}
	return reqRecord{}, false
}

// killStore is data.db as the syncer sees it, with a hook that runs when
// saving a history page begins and ends.
type killStore struct {
	jobs.Store
	onSave func(begin bool)
}

func (k *killStore) SaveHistoryPage(ctx context.Context, deviceID, resolution string, page model.HistoryPage, cp model.HistoryCheckpoint) (model.HistoryResult, error) {
	k.onSave(true)
	defer k.onSave(false)
	return k.Store.SaveHistoryPage(ctx, deviceID, resolution, page, cp)
}
