package e2e

import (
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/simulator"
)

// TestBackfillMemoryFlat: a 400-day hourly backfill of several devices in
// small pages, with runtime.ReadMemStats sampled after every page through
// the Progress callback. The heap in use stays below a generous bound and
// does not grow with the number of pages: the largest sample of the last
// quarter of the pages is within 2x of the largest of the first quarter.
// (The simulator, serving the pages, shares the heap.)
func TestBackfillMemoryFlat(t *testing.T) {
	started := time.Now()
	const bound = 48 << 20
	days, pageSize := 400, 100
	if testing.Short() {
		days, pageSize = 120, 40
	}
	var (
		mu      sync.Mutex
		samples []uint64
	)
	sample := func(jobs.HistoryProgress) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		mu.Lock()
		samples = append(samples, ms.HeapInuse)
		mu.Unlock()
	}
	names := backfillDevices()
	e := newEnv(t, envConfig{
		sim:          simulator.Options{PageSize: pageSize},
		backfillDays: days,
		resolutions:  []string{"hour"},
		wrap:         func(api jobs.API) jobs.API { return &hookAPI{API: api, devices: keepDevices(names...)} },
		progress:     sample,
	})
	e.mustRun(jobs.JobDevices, jobs.StatusOK)
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	res := e.mustRun(jobs.JobHistory, jobs.StatusOK)

	mu.Lock()
	got := slices.Clone(samples)
	mu.Unlock()
	pages := countEndpoint(res.reqs, "history")
	devs := keepNames(historyDevices(e.sim.Account(), "hour"), names)
	if len(got) < 100 || pages < 100 {
		t.Fatalf("%d samples over %d pages; too few to judge growth", len(got), pages)
	}
	rows := e.count(`SELECT count(*) FROM device_history`)
	q := len(got) / 4
	peak, first, last := slices.Max(got), slices.Max(got[:q]), slices.Max(got[len(got)-q:])
	const mib = 1 << 20
	if peak > bound {
		t.Errorf("heap in use peaked at %.1f MiB, above %d MiB", float64(peak)/mib, bound/mib)
	}
	if last > 2*first {
		t.Errorf("heap in use grows with the pages: first-quarter max %.1f MiB, last-quarter max %.1f MiB", float64(first)/mib, float64(last)/mib)
	}
	writeSummary(t, "e2e memory: %d-day hourly backfill of %d devices, %d pages, %d rows: HeapInuse max %.1f MiB (bound %d), first-quarter max %.1f MiB, last-quarter max %.1f MiB (baseline %.1f MiB), %.1fs",
		days, len(devs), pages, rows, float64(peak)/mib, bound/mib, float64(first)/mib, float64(last)/mib, float64(base.HeapInuse)/mib, time.Since(started).Seconds())
}
