package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/simulator"
	"github.com/tibbersync/tibbersync/internal/tibber"
)

// faultKind is one kind of injected fault with what the client must do.
type faultKind struct {
	name  string
	fault simulator.Fault // Endpoint is filled in per case
	// attempts is how many requests the faulted URL gets in the run.
	attempts int
	// recovers: the client retries it away and the run is ok. Otherwise
	// the faulted item is skipped (partial), or the run fails when the
	// homes list itself is affected.
	recovers bool
	// retryAfter: the retry must wait the server's Retry-After (2 s) plus
	// at most 250 ms of jitter.
	retryAfter bool
}

var faultKinds = []faultKind{
	{name: "500", fault: simulator.Fault{Kind: simulator.KindStatus, Status: 500, Count: 1}, attempts: 2, recovers: true},
	{name: "503x2", fault: simulator.Fault{Kind: simulator.KindStatus, Status: 503, Count: 2}, attempts: 3, recovers: true},
	{name: "drop", fault: simulator.Fault{Kind: simulator.KindDrop, Count: 1}, attempts: 2, recovers: true},
	{name: "malformed-json", fault: simulator.Fault{Kind: simulator.KindMalformedJSON, Count: 1}, attempts: 1},
	{name: "429", fault: simulator.Fault{Kind: simulator.Kind429, RetryAfter: "2", Count: 1}, attempts: 2, recovers: true, retryAfter: true},
	{name: "404", fault: simulator.Fault{Kind: simulator.KindStatus, Status: 404, Count: 1}, attempts: 1},
}

// TestFaultMatrix injects each fault kind into each Data API endpoint
// (homes, devices, device, history), runs the job, and checks that the
// database is consistent (integrity_check ok, no foreign key violation),
// that the run's status follows the rules (retried faults: ok; a skipped
// device list, detail or history stream: partial; no homes list: failed),
// that nothing is half written (the failed or skipped part wrote no rows,
// everything else equals the simulator's ground truth), that the client
// obeyed Tibber's rules (4xx and bad bodies never retried, Retry-After
// honoured on the fake clock, every other URL requested once), and that a
// clean run afterwards stores everything.
func TestFaultMatrix(t *testing.T) {
	started := time.Now()
	endpoints := []string{"homes", "devices", "device", "history"}
	cases, passed, requests := 0, 0, 0
	for _, ep := range endpoints {
		for _, k := range faultKinds {
			cases++
			ok := t.Run(ep+"/"+k.name, func(t *testing.T) {
				requests += runFaultCase(t, ep, k)
			})
			if ok {
				passed++
			}
		}
	}
	writeSummary(t, "e2e fault matrix: %d/%d cases consistent and recovered (4 endpoints x %d fault kinds), 0 integrity errors, %d API requests, 0 User-Agent violations, %.1fs",
		passed, cases, len(faultKinds), requests, time.Since(started).Seconds())
}

// runFaultCase runs one endpoint × fault case and returns the API requests made.
func runFaultCase(t *testing.T, ep string, k faultKind) int {
	w := newWindows()
	e := newEnv(t, envConfig{
		sim:          simulator.Options{PageSize: 24},
		backfillDays: 2,
		resolutions:  []string{"hour"},
		progress:     w.progress,
	})
	job := jobs.JobDevices
	if ep == "history" {
		e.mustRun(jobs.JobDevices, jobs.StatusOK)
		job = jobs.JobHistory
	}
	before := e.tableCounts()
	sleeps := len(e.clk.Sleeps())
	stats0 := e.sim.Stats()

	f := k.fault
	f.Endpoint = ep
	e.sim.Faults().Add(f)
	res := e.run(job)
	at := e.clk.Now()

	e.checkIntegrity()
	if got := e.sim.Stats().Faults[f.Kind] - stats0.Faults[f.Kind]; got != max(1, f.Count) {
		t.Fatalf("fault %s applied %d times, want %d", f, got, max(1, f.Count))
	}
	if left := e.sim.Faults().Pending(); len(left) != 0 {
		t.Fatalf("faults left unused: %v", left)
	}

	// The run's status and its sync_runs row.
	want := jobs.StatusOK
	switch {
	case k.recovers:
	case ep == "homes":
		want = jobs.StatusFailed
	default:
		want = jobs.StatusPartial
	}
	if res.run.Status != want {
		t.Fatalf("status %q (error %q), want %q", res.run.Status, res.run.Error, want)
	}
	if (want == jobs.StatusOK) != (res.run.Error == "") {
		t.Errorf("status %s with error text %q", res.run.Status, res.run.Error)
	}
	if (want == jobs.StatusFailed) != (res.err != nil) {
		t.Errorf("status %s returned err %v", res.run.Status, res.err)
	}
	last := e.lastRun()
	if last.Job != job || last.Status != res.run.Status || last.Error != res.run.Error || last.Requests != res.run.Requests {
		t.Errorf("sync_runs row %+v does not match the run %+v", last, res.run)
	}

	// Client rules, from the requests the simulator saw in this run.
	api := apiRequests(res.reqs)
	perURL := map[string][]int{}
	var order []string
	for _, r := range api {
		if _, seen := perURL[r.URL]; !seen {
			order = append(order, r.URL)
		}
		perURL[r.URL] = append(perURL[r.URL], r.Status)
	}
	retries := 0
	for _, u := range order {
		statuses := perURL[u]
		for i, s := range statuses {
			if s >= 400 && s < 500 && s != http.StatusTooManyRequests && i < len(statuses)-1 {
				t.Errorf("%s answered %d and was retried (statuses %v)", u, s, statuses)
			}
		}
		if len(statuses) > tibber.DefaultMaxAttempts {
			t.Errorf("%s requested %d times, more than %d attempts", u, len(statuses), tibber.DefaultMaxAttempts)
		}
		if len(statuses) == 1 {
			continue
		}
		retries += len(statuses) - 1
		if got := endpointOfURL(api, u); got != ep {
			t.Errorf("%s (a %s request) was requested %d times (%v); only the faulted %s endpoint may be retried", u, got, len(statuses), statuses, ep)
		}
		if !k.recovers {
			t.Errorf("%s was requested %d times (%v); a %s fault must not be retried", u, len(statuses), statuses, k.name)
		} else if statuses[len(statuses)-1] != http.StatusOK {
			t.Errorf("retried URL %s: statuses %v, want the last attempt to succeed", u, statuses)
		}
	}
	if want := k.attempts - 1; retries != want {
		t.Errorf("%d retries in the run, want %d for a %s fault", retries, want, k.name)
	}
	if f.Kind == simulator.KindStatus && f.Status == 404 {
		if n := e.sim.Stats().EndpointStatuses[ep][404] - stats0.EndpointStatuses[ep][404]; n != 1 {
			t.Errorf("%d 404 answers on %s, want exactly 1 (no retry)", n, ep)
		}
	}
	newSleeps := e.clk.Sleeps()[sleeps:]
	if k.retryAfter {
		// The retry waits out the Retry-After (2 s plus jitter). The rate
		// gate binds every request of the installation, so a request of
		// another worker that reaches the closed gate before the retry's
		// sleep moved the fake clock waits out the same deadline: a second
		// sleep of the same length, and no extra request (the retries are
		// counted above). Which happens depends only on the scheduling of
		// the goroutines, so both are right.
		ok := len(newSleeps) >= 1 && slices.Max(newSleeps) >= 2*time.Second
		for _, d := range newSleeps {
			ok = ok && d > 0 && d <= 2*time.Second+tibber.RetryAfterJitter
		}
		if !ok {
			t.Errorf("retry sleeps %v, want waits of at most 2s..2.25s for Retry-After: 2, the longest at least 2s", newSleeps)
		}
	} else if !k.recovers && len(newSleeps) != 0 {
		t.Errorf("retry sleeps %v for a fault that must not be retried", newSleeps)
	}
	// Each attempt the client made is counted in the run; a drop may also
	// be retried by net/http itself on a reused connection, which the
	// simulator sees but the client does not count.
	if k.name == "drop" {
		if res.run.Requests < len(api)-1 || res.run.Requests > len(api) {
			t.Errorf("run recorded %d requests, the simulator saw %d", res.run.Requests, len(api))
		}
	} else if res.run.Requests != len(api) {
		t.Errorf("run recorded %d requests, the simulator saw %d", res.run.Requests, len(api))
	}

	// Nothing half written.
	after := e.tableCounts()
	switch {
	case k.recovers && ep != "history":
		e.checkInventory()
		for _, d := range uniqueDevices(e.sim.Account()) {
			e.checkLatest(d.HomeID, d.Dev.ID, at)
		}
	case k.recovers:
		checkAllSeries(e, w)
	case ep == "homes":
		for tbl, n := range after {
			if tbl != "sync_runs" && n != before[tbl] {
				t.Errorf("failed run changed %s: %d rows, before %d", tbl, n, before[tbl])
			}
		}
		if after["sync_runs"] != before["sync_runs"]+1 {
			t.Errorf("failed run left %d sync_runs rows, want %d", after["sync_runs"], before["sync_runs"]+1)
		}
		if !strings.Contains(res.run.Error, "fetch homes") {
			t.Errorf("error %q does not say the homes list failed", res.run.Error)
		}
	case ep == "devices":
		checkSkippedHome(e, api, res.run, at)
	case ep == "device":
		checkSkippedDevice(e, res.run, at)
	default:
		checkSkippedStream(e, w, res.run)
	}

	// A clean run stores everything.
	e.mustRun(job, jobs.StatusOK)
	e.checkIntegrity()
	if ep == "history" {
		checkAllSeries(e, w)
	} else {
		e.checkInventory()
		at := e.clk.Now()
		for _, d := range uniqueDevices(e.sim.Account()) {
			e.checkLatest(d.HomeID, d.Dev.ID, at)
			if n := e.snapshotCount(d.Dev.ID); n != 1 {
				t.Errorf("device %s has %d snapshots, want 1 (state unchanged since the first stored one)", d.Dev.Name, n)
			}
		}
	}
	return len(api)
}

// apiRequests keeps the Data API requests of a log.
func apiRequests(reqs []reqRecord) []reqRecord {
	var out []reqRecord
	for _, r := range reqs {
		switch r.Endpoint {
		case "homes", "devices", "device", "history":
			out = append(out, r)
		}
	}
	return out
}

func endpointOfURL(reqs []reqRecord, u string) string {
	for _, r := range reqs {
		if r.URL == u {
			return r.Endpoint
		}
	}
	return ""
}

// checkAllSeries compares every hour stream with the simulator's series in
// the window the syncer reported.
func checkAllSeries(e *env, w *windows) {
	e.t.Helper()
	for _, d := range historyDevices(e.sim.Account(), "hour") {
		start, end, ok := w.window(d.ID, "hour")
		if !ok {
			e.t.Errorf("no history progress reported for %s", d.Name)
			continue
		}
		if n := e.checkSeries(d.ID, "hour", start, end); n == 0 {
			e.t.Errorf("no history stored for %s", d.Name)
		}
	}
}

// checkSkippedHome checks a devices run whose first device list failed:
// that home got no links, every device of the other home is stored as
// served, and the error names the home.
func checkSkippedHome(e *env, api []reqRecord, run model.Run, at time.Time) {
	e.t.Helper()
	failedHome := ""
	for _, r := range api {
		if r.Endpoint == "devices" {
			failedHome = strings.Split(strings.TrimPrefix(r.Path, "/v1/homes/"), "/")[0]
			break
		}
	}
	if !strings.Contains(run.Error, "device list of home "+failedHome) {
		e.t.Errorf("error %q does not name the home %s", run.Error, failedHome)
	}
	if n := e.count(`SELECT count(*) FROM home_devices WHERE home_id = ?`, failedHome); n != 0 {
		e.t.Errorf("home %s whose list failed got %d links", failedHome, n)
	}
	if n := e.count(`SELECT count(*) FROM homes`); n != len(e.sim.Account().Homes) {
		e.t.Errorf("%d homes stored, want all %d", n, len(e.sim.Account().Homes))
	}
	stored := 0
	for _, h := range e.sim.Account().Homes {
		for _, d := range h.Devices {
			listedElsewhere := slices.ContainsFunc(d.HomeIDs, func(id string) bool { return id != failedHome })
			if !listedElsewhere {
				if n := e.count(`SELECT count(*) FROM devices WHERE id = ?`, d.ID); n != 0 {
					e.t.Errorf("device %s only under the failed home was stored", d.Name)
				}
				continue
			}
			if h.ID == failedHome {
				continue
			}
			stored++
			e.checkLatest(h.ID, d.ID, at)
			if n := e.snapshotCount(d.ID); n != 1 {
				e.t.Errorf("device %s of the good home has %d snapshots, want 1", d.Name, n)
			}
		}
	}
	if stored == 0 {
		e.t.Errorf("no device of the other home was checked")
	}
}

// checkSkippedDevice checks a devices run in which one detail failed:
// exactly that device has no snapshot and no values, it is named in the
// error, and every other device is stored as served.
func checkSkippedDevice(e *env, run model.Run, at time.Time) {
	e.t.Helper()
	devs := uniqueDevices(e.sim.Account())
	var skipped []string
	for _, d := range devs {
		if e.snapshotCount(d.Dev.ID) == 0 {
			skipped = append(skipped, d.Dev.Name)
			if n := e.count(`SELECT count(*) FROM capability_values WHERE device_id = ?`, d.Dev.ID); n != 0 {
				e.t.Errorf("skipped device %s has %d capability values", d.Dev.Name, n)
			}
			if !strings.Contains(run.Error, d.Dev.ID) {
				e.t.Errorf("error %q does not name the skipped device %s", run.Error, d.Dev.ID)
			}
			continue
		}
		e.checkLatest(d.HomeID, d.Dev.ID, at)
	}
	if len(skipped) != 1 {
		e.t.Errorf("devices without a snapshot: %v, want exactly one", skipped)
	}
	if want := fmt.Sprintf("1 of %d device details skipped", len(devs)); !strings.Contains(run.Error, want) {
		e.t.Errorf("error %q does not say %q", run.Error, want)
	}
	// The lists still stored every device and link; the skipped device
	// has no category yet, since only a detail tells it.
	var ids []string
	for _, d := range devs {
		if slices.Contains(skipped, d.Dev.Name) {
			ids = append(ids, d.Dev.ID)
		}
	}
	e.checkInventory(ids...)
}

// checkSkippedStream checks a history run whose first stream failed on its
// first page: that stream stored nothing and its checkpoint records the
// problem; every other stream equals the simulator's series.
func checkSkippedStream(e *env, w *windows, run model.Run) {
	e.t.Helper()
	devs := historyDevices(e.sim.Account(), "hour")
	first := devs[0]
	if n := e.count(`SELECT count(*) FROM device_history WHERE device_id = ?`, first.ID); n != 0 {
		e.t.Errorf("failed stream %s stored %d rows", first.Name, n)
	}
	cp, ok := e.checkpointOf(first.ID, "hour")
	if !ok || cp.LastError == "" || cp.NextURL != "" || cp.Done {
		e.t.Errorf("checkpoint of the failed stream %s = %+v (found %v), want its problem recorded and no progress", first.Name, cp, ok)
	}
	if !strings.Contains(run.Error, first.ID+"/hour") {
		e.t.Errorf("error %q does not name the stream %s/hour", run.Error, first.ID)
	}
	for _, d := range devs[1:] {
		start, end, ok := w.window(d.ID, "hour")
		if !ok {
			e.t.Errorf("stream %s was not synced after the failed one", d.Name)
			continue
		}
		e.checkSeries(d.ID, "hour", start, end)
	}
}

// TestPersistent503 checks the attempt limit: a homes list that always
// answers 503 gets exactly five attempts with growing full-jitter sleeps,
// the run fails, and nothing but its sync_runs row is written; then a
// device detail that always answers 503 gets five attempts per device
// tried, the storm ends the run after two such devices (plus those already
// in flight), and the failed run stores no snapshot.
func TestPersistent503(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.sim.Faults().Add(simulator.Fault{Endpoint: "homes", Kind: simulator.KindStatus, Status: 503})
	sleeps := len(e.clk.Sleeps())
	res := e.run(jobs.JobDevices)
	if res.run.Status != jobs.StatusFailed || res.err == nil {
		t.Fatalf("status %q err %v, want failed", res.run.Status, res.err)
	}
	if n := countEndpoint(res.reqs, "homes"); n != tibber.DefaultMaxAttempts {
		t.Errorf("homes requested %d times, want %d", n, tibber.DefaultMaxAttempts)
	}
	got := e.clk.Sleeps()[sleeps:]
	if len(got) != tibber.DefaultMaxAttempts-1 {
		t.Errorf("%d retry sleeps (%v), want %d", len(got), got, tibber.DefaultMaxAttempts-1)
	}
	for i, d := range got {
		if ceil := min(tibber.BackoffCap, tibber.BackoffBase<<i); d < 0 || d > ceil {
			t.Errorf("sleep %d = %v, want full jitter in [0, %v]", i, d, ceil)
		}
	}
	counts := e.tableCounts()
	for tbl, n := range counts {
		if tbl != "sync_runs" && n != 0 {
			t.Errorf("failed run wrote %d rows into %s", n, tbl)
		}
	}
	if counts["sync_runs"] != 1 || e.lastRun().Status != jobs.StatusFailed {
		t.Errorf("sync_runs = %d rows, last %+v; want the failed run recorded", counts["sync_runs"], e.lastRun())
	}
	e.checkIntegrity()

	e.sim.Faults().Clear()
	e.sim.Faults().Add(simulator.Fault{Endpoint: "device", Kind: simulator.KindStatus, Status: 503})
	res = e.run(jobs.JobDevices)
	e.sim.Faults().Clear()
	devs := uniqueDevices(e.sim.Account())
	if res.run.Status != jobs.StatusFailed {
		t.Errorf("every detail failing: status %q, want failed", res.run.Status)
	}
	// A storm ends the run (issue 17): once two details have failed after
	// all their retries, no new detail is requested; the ones already in
	// flight (concurrency) finish their five attempts.
	n := countEndpoint(res.reqs, "device")
	if bound := (2 + e.app.Config().Sync.Concurrency - 1) * tibber.DefaultMaxAttempts; n > bound || n >= len(devs)*tibber.DefaultMaxAttempts || n%tibber.DefaultMaxAttempts != 0 {
		t.Errorf("details requested %d times, want at most %d (the storm stops the run), 5 per device tried", n, bound)
	}
	if n := e.count(`SELECT count(*) FROM device_snapshots`) + e.count(`SELECT count(*) FROM capability_values`); n != 0 {
		t.Errorf("failed devices run wrote %d snapshot or value rows", n)
	}
	// The lists themselves were fine and are stored (no category without
	// a detail).
	var ids []string
	for _, d := range devs {
		ids = append(ids, d.Dev.ID)
	}
	e.checkInventory(ids...)
	e.checkIntegrity()
	e.mustRun(jobs.JobDevices, jobs.StatusOK)
	for _, d := range devs {
		e.checkLatest(d.HomeID, d.Dev.ID, e.clk.Now())
	}
}
