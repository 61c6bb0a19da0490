package harness

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/tibbersync/tibbersync/internal/cisummary"
	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/daemon"
	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/simulator"
	"github.com/tibbersync/tibbersync/internal/tibber"
)

// Soak parameters.
const (
	soakSeed     = 27
	soakTick     = 30 * time.Second // the scheduler's default tick
	soakBackfill = 2                // days
	soakPageSize = 48
	// soakMaxAttempts is tibber.DefaultMaxAttempts: attempts per API call.
	soakMaxAttempts = tibber.DefaultMaxAttempts
	// minTokenBackoff is auth's first token-endpoint backoff (R25).
	minTokenBackoff = time.Minute
	// refreshMargin is when a 1-hour token is refreshed: max(60 s, 10 %).
	refreshMargin = 6 * time.Minute
	// retryGap splits a URI's requests into calls: retries inside one call
	// wait at most BackoffCap (15 s) or a Retry-After (≤ 3.25 s here); the
	// next call of the same URI comes a schedule slot (≥ 5 min) later.
	retryGap = time.Minute
)

// soakFaults are the seeded random faults of the soak (R27, §11): 429 with
// both Retry-After forms, 5xx (problem+json and an HTML proxy page), dropped
// connections, malformed JSON and latency on the Data API, 503s and exactly
// one rotate-then-drop on the token endpoint.
// rotateP is the probability that a token request gets the one
// rotate-then-drop: 0.5 makes it land at a random refresh of the day and
// still fire with near certainty (0.5^25); the 6-hour -short run, with
// about 6 token requests, uses 1 so that it always fires.
func soakFaults(rotateP float64) []simulator.Fault {
	return []simulator.Fault{
		{Endpoint: "*", Kind: simulator.KindLatency, Delay: time.Millisecond, Probability: 0.1},
		{Endpoint: "api", Kind: simulator.Kind429, RetryAfter: "2", Probability: 0.02},
		// RetryAfter "" takes the simulator's RetryAfterForm: an HTTP-date 3 s ahead.
		{Endpoint: "api", Kind: simulator.Kind429, Delay: 3 * time.Second, Probability: 0.02},
		{Endpoint: "api", Kind: simulator.KindStatus, Status: 503, Probability: 0.03},
		{Endpoint: "api", Kind: simulator.KindStatus, Status: 500, Probability: 0.01},
		{Endpoint: "api", Kind: simulator.KindStatusHTML, Status: 502, Probability: 0.01},
		{Endpoint: "api", Kind: simulator.KindDrop, Probability: 0.02},
		{Endpoint: "api", Kind: simulator.KindMalformedJSON, Probability: 0.01},
		{Endpoint: "token", Kind: simulator.KindRotateThenDrop, Count: 1, Probability: rotateP},
		{Endpoint: "token", Kind: simulator.KindStatus, Status: 503, Probability: 0.1},
	}
}

// TestFaultSoak is R27's chaos run: a compressed day of the default
// schedule on a fake clock shared by the simulator, auth, the Data API
// client (whose retry sleeps advance it at once) and the scheduler, which is
// driven tick by tick. Random faults are seeded. At the end: no refresh
// token reused, no duplicate rows, a consistent database, auth state ok,
// request counts within the bound the schedule allows, and no retry sooner
// than the rules allow.
func TestFaultSoak(t *testing.T) {
	hours, rotateP := 24, 0.5
	if testing.Short() {
		hours, rotateP = 6, 1
	}
	started := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	clk := clock.NewFake(time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC))
	sim := simulator.New(simulator.Options{
		Now: clk.Now, Seed: soakSeed, AutoConsent: true, PageSize: soakPageSize,
		RetryAfterForm: "http-date",
		// The rotate-then-drop fault loses a rotation. The client's one
		// re-send of the old token (R7) comes after the token backoff
		// (≥ 1 min, R25) with the next job that needs a token: the devices
		// job every 5 minutes. The soak's own faults can hit that re-send
		// too (a 503 is not an answer, so it is sent again after a doubled
		// backoff, at the next devices run): each hit costs one more
		// 5-minute slot. The grace is derived from that: 6 slots, so the
		// day ends in state ok unless 6 token requests in a row fail
		// (about 0.12^6 at the soak's fault rate). A 10-minute grace
		// covered only one such hit and failed about one soak in three.
		// Without grace, R7's outcome is reauth_required ("refresh response
		// lost"): that is TestTokenPowerLoss and internal/auth's R7 test.
		ReuseGrace: 6 * 5 * time.Minute,
	})
	rec := &recorder{next: sim, clk: clk}
	srv := httptest.NewServer(rec)
	sim.SetBaseURL(srv.URL)
	defer srv.Close()
	defer sim.Close()

	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir := t.TempDir()
	var runsMu sync.Mutex
	runs := map[string]int{}
	statuses := map[string]int{}
	counter := daemon.ObserverFuncs{Run: func(_ context.Context, run model.Run, _ error) {
		runsMu.Lock()
		runs[run.Job]++
		statuses[run.Status]++
		runsMu.Unlock()
	}}
	// The daemon as the product wires it (its scheduler, runner policy and
	// history-after-devices chain), driven tick by tick on the fake clock.
	r, err := openRig(ctx, rigOptions{dir: dir, simURL: srv.URL, clock: clk, log: log, backfillDays: soakBackfill,
		wrapTransport: func(rt http.RoundTripper) http.RoundTripper { return jobTransport{base: rt} },
		wrapRunner:    func(next jobs.Runner) jobs.Runner { return jobRunner{next: next} },
		observers:     []daemon.Observer{counter}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	if _, err := r.authorize(ctx); err != nil {
		t.Fatal(err)
	}
	sim.ResetStats()
	rec.reset()
	for _, f := range soakFaults(rotateP) {
		sim.Faults().Add(f)
	}

	cfg := r.Config()
	specs := map[string]string{jobs.JobHomes: cfg.Schedule.Homes, jobs.JobDevices: cfg.Schedule.Devices, jobs.JobHistory: cfg.Schedule.History}
	rng := rand.New(rand.NewPCG(soakSeed, 1))
	var rngMu sync.Mutex
	sched := r.Scheduler()
	sched.Rand = func() float64 {
		rngMu.Lock()
		defer rngMu.Unlock()
		return rng.Float64()
	}

	begin := clk.Now()
	end := begin.Add(time.Duration(hours) * time.Hour)
	ticks := 0
	for clk.Now().Before(end) {
		if ctx.Err() != nil {
			t.Fatalf("soak did not finish in time: simulated %s of %dh", clk.Now().Sub(begin), hours)
		}
		sched.RunDue(ctx)
		sched.Wait()
		if ticks%2 == 0 { // the daemon's maintenance loop runs every minute
			r.Maintain(ctx)
		}
		clk.Advance(soakTick)
		ticks++
	}
	simulated := clk.Now().Sub(begin)

	// Final state ok, no refresh-token reuse.
	st, err := r.Auth().Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != model.AuthOK {
		t.Errorf("final auth state %s (%s), want ok", st.State, st.Reason)
	}
	ss := sim.Stats()
	if ss.RefreshReuse != 0 || ss.GrantsRevoked != 0 {
		t.Errorf("refresh-token reuse: %d reuses, %d grants revoked", ss.RefreshReuse, ss.GrantsRevoked)
	}
	if ss.Faults[simulator.KindRotateThenDrop] != 1 || ss.RefreshReuseGrace != 1 {
		t.Errorf("rotate-then-drop fired %d times and %d re-sends were answered in grace; want 1 and 1",
			ss.Faults[simulator.KindRotateThenDrop], ss.RefreshReuseGrace)
	}

	// Consistent database, no duplicate rows, one sync_runs row per run.
	r.close()
	dc, err := checkDataDB(ctx, filepath.Join(dir, "data.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range dc.problems {
		t.Error(p)
	}
	db, err := openReadOnly(filepath.Join(dir, "data.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var storedRuns int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sync_runs`).Scan(&storedRuns); err != nil {
		t.Fatal(err)
	}
	totalRuns := runs[jobs.JobHomes] + runs[jobs.JobDevices] + runs[jobs.JobHistory]
	if storedRuns != totalRuns {
		t.Errorf("sync_runs has %d rows for %d runs", storedRuns, totalRuns)
	}

	// Request counts within the bound the schedule allows.
	reqs := rec.requests()
	bound := soakBound(t, sim.Account(), specs, begin, end, cfg.Schedule.Jitter, cfg.History.Lookback)
	var apiReqs, tokenReqs int
	for _, q := range reqs {
		switch {
		case strings.HasPrefix(q.URI, "/v1/"):
			apiReqs++
		case strings.HasPrefix(q.URI, "/connect/token"):
			tokenReqs++
		}
	}
	tokenFaults := ss.EndpointStatuses["token"][0] + ss.EndpointStatuses["token"][503]
	refreshBound := int(simulated/(time.Hour-refreshMargin)) + 1
	// Transport replays (see checkRetrySpacing) are not client attempts.
	spacing := checkRetrySpacing(reqs)
	if apiReqs-spacing.replays > bound.api {
		t.Errorf("%d Data API requests (%d of them transport replays), bound %d (%s)", apiReqs, spacing.replays, bound.api, bound.formula)
	}
	if ss.Refreshes > refreshBound {
		t.Errorf("%d refreshes in %s of 1-hour tokens, bound %d", ss.Refreshes, simulated, refreshBound)
	}
	if tokenReqs > refreshBound+tokenFaults {
		t.Errorf("%d token requests, bound %d refreshes + %d failed token requests", tokenReqs, refreshBound, tokenFaults)
	}

	// No retry faster than the rules allow.
	for _, p := range spacing.problems {
		t.Error(p)
	}
	if spacing.after429[0] == 0 || spacing.after429[1] == 0 {
		t.Errorf("retries after 429 seen: %d with delta-seconds, %d with an HTTP-date; want both forms exercised", spacing.after429[0], spacing.after429[1])
	}
	if t.Failed() {
		t.Logf("warnings logged during the soak:\n%s", tail(logs.String(), 6000))
	}

	summary := fmt.Sprintf("fault soak: %s simulated in %d ticks, %d runs (%d ok, %d partial, %d failed), %d API requests (bound %d), %d token requests, %d refreshes (bound %d), %d faults injected, %d retries after 429 (%d delta-seconds, %d HTTP-date), %d transport replays of dropped GETs, %d token retries (≥ %s apart), %d retry-rule violations, %d reuses, %d grace re-send, state %s, %s",
		simulated.Round(time.Second), ticks, totalRuns, statuses[jobs.StatusOK], statuses[jobs.StatusPartial], statuses[jobs.StatusFailed],
		apiReqs, bound.api, tokenReqs, ss.Refreshes, refreshBound, sumFaults(ss.Faults), spacing.after429[0]+spacing.after429[1],
		spacing.after429[0], spacing.after429[1], spacing.replays, spacing.tokenRetries, minTokenBackoff, len(spacing.problems), ss.RefreshReuse, ss.RefreshReuseGrace, st.State,
		time.Since(started).Round(100*time.Millisecond))
	t.Log(summary)
	if err := cisummary.Append(summary); err != nil {
		t.Error(err)
	}
}

func sumFaults(m map[string]int) int {
	n := 0
	for k, v := range m {
		if k != simulator.KindLatency {
			n += v
		}
	}
	return n
}

// soakBoundResult is the request bound of the soak and how it was derived.
type soakBoundResult struct {
	api     int
	formula string
}

// soakBound derives the most Data API requests the schedule allows:
// Σ over jobs of (cycles × first attempts per cycle) × MaxAttempts, where
// cycles are the cron slots in the window plus the immediate first run
// (and, for history, the run chained after the first devices run), and
// first attempts come from the account: homes 1 + H, devices 1 + H + D
// (details), history, per (home, device, resolution) stream, the pages its
// window can span at PageSize periods per page, plus one.
func soakBound(t *testing.T, acct simulator.Account, specs map[string]string, begin, end time.Time, jitter, lookback time.Duration) soakBoundResult {
	t.Helper()
	cycles := map[string]int{}
	for job, spec := range specs {
		s, err := cron.ParseStandard(spec)
		if err != nil {
			t.Fatal(err)
		}
		n := 1 // the first start runs every job at once
		for at := s.Next(begin); at.Add(jitter).Before(end); at = s.Next(at) {
			n++
		}
		cycles[job] = n
	}
	// The daemon runs history once more right after the first devices run
	// stored the inventory (internal/daemon's history-after-devices chain).
	cycles[jobs.JobHistory]++
	homes, unique := len(acct.Homes), map[string]bool{}
	pagesPerRun := 0
	window := max(time.Duration(soakBackfill)*24*time.Hour, lookback+time.Hour)
	for _, h := range acct.Homes {
		for _, d := range h.Devices {
			unique[d.ID] = true
			for _, res := range d.Resolutions {
				var step time.Duration
				switch res {
				case model.ResolutionHour:
					step = time.Hour
				case model.ResolutionDay:
					step = 24 * time.Hour
				default:
					continue // not in [history].resolutions
				}
				periods := int(window/step) + 2 // partial periods at both ends
				pagesPerRun += int(math.Ceil(float64(periods)/soakPageSize)) + 1
			}
		}
	}
	perCycle := map[string]int{
		jobs.JobHomes:   1 + homes,
		jobs.JobDevices: 1 + homes + len(unique),
		jobs.JobHistory: pagesPerRun,
	}
	total := 0
	var parts []string
	for _, job := range []string{jobs.JobHomes, jobs.JobDevices, jobs.JobHistory} {
		total += cycles[job] * perCycle[job] * soakMaxAttempts
		parts = append(parts, fmt.Sprintf("%s %d×%d", job, cycles[job], perCycle[job]))
	}
	return soakBoundResult{api: total, formula: "(" + strings.Join(parts, " + ") + ") × " + strconv.Itoa(soakMaxAttempts) + " attempts"}
}

// spacingResult is what checkRetrySpacing found.
type spacingResult struct {
	after429     [2]int // retries after a 429 with delta-seconds, with an HTTP-date
	tokenRetries int    // token requests that followed a failed one
	replays      int    // transport-level replays of a dropped GET (not client retries)
	problems     []string
}

// checkRetrySpacing checks the recorded requests against the retry rules:
//
//	S1 after a 429 with Retry-After, the next request of the same URI by the
//	   same job comes no sooner than Retry-After allows (R23);
//	S2 after a failed token request (no answer, 429, 5xx), the next token
//	   request comes no sooner than the token backoff's first step, 1 min (R25);
//	S3 one call makes at most MaxAttempts requests: consecutive requests of
//	   one URI less than retryGap apart, each after a failure, are one call.
//
// A request that follows a dropped one of the same job and URI at the same
// fake instant is not a client retry but Go's http.Transport replaying the
// idempotent GET on a fresh connection; it is counted apart (replays).
func checkRetrySpacing(reqs []request) spacingResult {
	var res spacingResult
	byURI := map[string][]request{}
	var token []request
	for _, q := range reqs {
		if strings.HasPrefix(q.URI, "/connect/token") {
			token = append(token, q)
			continue
		}
		if strings.HasPrefix(q.URI, "/v1/") {
			key := q.Job + " " + q.URI
			byURI[key] = append(byURI[key], q)
		}
	}
	failed := func(q request) bool { return q.Status == 0 || q.Status == 429 || q.Status >= 500 }
	for uri, qs := range byURI {
		attempts := 1
		for i := 1; i < len(qs); i++ {
			prev, cur := qs[i-1], qs[i]
			if prev.Status == 0 && cur.At.Equal(prev.At) {
				// Go's http.Transport replays an idempotent GET at once when
				// a reused keep-alive connection closes before any answer
				// (the drop fault): the same client attempt, sent twice.
				res.replays++
				continue
			}
			if prev.Status == 429 && prev.RetryAfter != "" {
				earliest, form, ok := retryAfterEarliest(prev)
				if ok {
					res.after429[form]++
					if cur.At.Before(earliest) {
						res.problems = append(res.problems, fmt.Sprintf("S1 %s retried at %s after a 429 at %s with Retry-After %q (earliest %s); requests of this job and URI: %s",
							uri, cur.At.Format(time.StampMilli), prev.At.Format(time.StampMilli), prev.RetryAfter, earliest.Format(time.StampMilli), describe(qs)))
					}
				}
			}
			if failed(prev) && cur.At.Sub(prev.At) < retryGap {
				attempts++
				if attempts > soakMaxAttempts {
					res.problems = append(res.problems, fmt.Sprintf("S3 %s: %d attempts in one call (max %d)", uri, attempts, soakMaxAttempts))
				}
			} else {
				attempts = 1
			}
		}
	}
	for i := 1; i < len(token); i++ {
		prev, cur := token[i-1], token[i]
		if !failed(prev) {
			continue
		}
		res.tokenRetries++
		if gap := cur.At.Sub(prev.At); gap < minTokenBackoff {
			res.problems = append(res.problems, fmt.Sprintf("S2 token request %s after a failed one (status %d): want ≥ %s", gap, prev.Status, minTokenBackoff))
		}
	}
	return res
}

// retryAfterEarliest is the earliest time a 429's Retry-After allows the
// next request: form 0 is delta-seconds, form 1 an HTTP-date.
func retryAfterEarliest(q request) (time.Time, int, bool) {
	if n, err := strconv.Atoi(q.RetryAfter); err == nil {
		return q.At.Add(time.Duration(n) * time.Second), 0, true
	}
	if at, err := http.ParseTime(q.RetryAfter); err == nil {
		return at, 1, true
	}
	return time.Time{}, 0, false
}

// describe lists requests as "time status" pairs, for failure messages.
func describe(qs []request) string {
	var b strings.Builder
	for i, q := range qs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s→%d", q.At.Format(time.StampMilli), q.Status)
	}
	return b.String()
}
