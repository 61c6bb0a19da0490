package e2e

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/simulator"
)

// TestSchemaDriftNoGap: Tibber renames the history page's "items" member
// for three responses, starting in the middle of the first stream's
// backfill. Those pages must not be read as empty: the run is not ok and
// names the endpoint, the drifted streams keep their checkpoints (no
// backfill marked done), and once the API is fine again the next run
// fetches exactly what was missed: every stream equals the simulator's
// series over its whole window, without a gap.
func TestSchemaDriftNoGap(t *testing.T) {
	w := newWindows()
	var (
		mu      sync.Mutex
		armed   bool
		drifted string // the stream whose third page drifts
		sim     *simulator.Simulator
	)
	progress := func(p jobs.HistoryProgress) {
		w.progress(p)
		mu.Lock()
		defer mu.Unlock()
		if !armed && !p.Done && p.Pages == 2 {
			// Synchronous: the syncer asks for the third page only after
			// this returns.
			armed, drifted = true, p.DeviceID
			sim.Faults().Add(simulator.Fault{Endpoint: "history", Kind: simulator.KindDrift, Count: 3})
		}
	}
	e := newEnv(t, envConfig{sim: simulator.Options{PageSize: 24}, backfillDays: 5, resolutions: []string{"hour"}, progress: progress})
	sim = e.sim
	e.mustRun(jobs.JobDevices, jobs.StatusOK)

	res := e.run(jobs.JobHistory)
	if !armed {
		t.Fatal("no stream reached a second page; the test needs several pages per stream")
	}
	if res.run.Status == jobs.StatusOK {
		t.Fatalf("history run with drifted pages is ok (error %q); want partial or failed", res.run.Error)
	}
	if !strings.Contains(res.run.Error, "Tibber's response format changed") || !strings.Contains(res.run.Error, "/history") ||
		!strings.Contains(res.run.Error, `"itemsV2"`) {
		t.Errorf("run error %q does not say the format changed at the history endpoint with the members seen", res.run.Error)
	}
	if p := sim.Faults().Pending(); len(p) != 0 {
		t.Fatalf("drift fault not used up: %+v", p)
	}
	cp, ok := e.checkpointOf(drifted, "hour")
	if !ok || cp.Done || cp.NextURL == "" || !strings.Contains(cp.LastError, "format changed") {
		t.Errorf("checkpoint of the drifted stream: %+v (stored %v); want the third page's link kept, backfill not done, the problem recorded", cp, ok)
	}
	failedStreams := 0
	for _, d := range historyDevices(e.sim.Account(), "hour") {
		if cp, ok := e.checkpointOf(d.ID, "hour"); ok && strings.Contains(cp.LastError, "format changed") {
			failedStreams++
			if cp.Done {
				t.Errorf("stream %s marked backfilled after a drifted page", d.Name)
			}
		}
	}
	if failedStreams != 3 {
		t.Errorf("%d streams record the drift, want 3 (one mid-backfill, two on their first page)", failedStreams)
	}

	// Tibber is fine again: the next run completes every stream.
	e.clk.Advance(time.Hour)
	e.mustRun(jobs.JobHistory, jobs.StatusOK)
	checkAllSeries(e, w)
	for _, d := range historyDevices(e.sim.Account(), "hour") {
		if cp, ok := e.checkpointOf(d.ID, "hour"); !ok || !cp.Done || cp.LastError != "" {
			t.Errorf("after recovery, checkpoint of %s: %+v (stored %v)", d.Name, cp, ok)
		}
	}
	e.checkIntegrity()
}
