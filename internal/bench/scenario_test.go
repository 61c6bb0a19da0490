package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/cisummary"
	"github.com/tibbersync/tibbersync/internal/simulator"
)

// TestMain lets the test binary act as the bench driver's child: Run
// re-executes Options.Self with ChildArg.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == ChildArg {
		os.Exit(ChildMain(context.Background(), os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestCyclesInProcess runs the cycle scenario on a small account with
// latency: the first cycle stores the account, the unchanged ones store no
// rows and write little, and no cycle beats the critical-path bound.
func TestCyclesInProcess(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	const homes, per, latency = 2, 5, 20 * time.Millisecond
	sim, err := startLatencySim(simulator.Options{Seed: 3, Homes: homes, DevicesPerHome: per, AutoConsent: true, Now: FrozenNow(time.Now())}, latency)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	res, err := RunCycles(ctx, CycleParams{SimURL: sim.URL, Dir: t.TempDir(), RateLimit: 1000, Concurrency: 4, Unchanged: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bound := CriticalPath(homes, homes*per, 4, latency)
	if res.First.Status != "ok" || res.First.Requests != 1+homes+homes*per || res.First.RowsWritten == 0 || res.First.FileBytes <= 0 {
		t.Fatalf("first cycle %+v: want ok, %d requests, rows and file writes", res.First, 1+homes+homes*per)
	}
	if len(res.Unchanged) != 2 {
		t.Fatalf("%d unchanged cycles, want 2", len(res.Unchanged))
	}
	for i, c := range res.Unchanged {
		if c.Wall < bound {
			t.Errorf("cycle %d took %v, less than the critical-path bound %v: the bound is wrong", i+1, c.Wall, bound)
		}
		if c.Status != "ok" || c.RowsWritten != 0 {
			t.Errorf("unchanged cycle %d: %+v, want ok and 0 rows", i+1, c)
		}
		if c.FileBytes >= res.First.FileBytes {
			t.Errorf("unchanged cycle %d wrote %d bytes, the first %d: socket writes not subtracted?", i+1, c.FileBytes, res.First.FileBytes)
		}
	}
	if res.Checkpoint <= 0 {
		t.Errorf("the checkpoint after the unchanged cycles wrote %d bytes", res.Checkpoint)
	}
	if res.Memory.HWM <= 0 {
		t.Errorf("memory %+v", res.Memory)
	}
	if got := sim.Sim.Stats().UserAgentViolations; got != 0 {
		t.Errorf("%d User-Agent violations", got)
	}
}

// TestBackfillAndRawLoop runs a short backfill with the raw loop: the raw
// loop inserts exactly the rows and pages the history job stored.
func TestBackfillAndRawLoop(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	opts := simulator.Options{Seed: 5, Homes: 2, DevicesPerHome: 8, PageSize: 48, AutoConsent: true, Now: FrozenNow(time.Now())}
	ids := EligibleDevices(simulator.New(opts).Account(), "hour", 400)
	if len(ids) < 3 {
		t.Fatalf("only %d eligible devices in the test account", len(ids))
	}
	ids = ids[:3]
	sim, err := StartSim(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	res, err := RunBackfill(ctx, BackfillParams{
		SimURL: sim.URL, Dir: t.TempDir(), RawDir: t.TempDir(), DeviceIDs: ids, Resolution: "hour",
		BackfillDays: 4, PageSize: 48, RateLimit: 1000, Raw: true,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Devices != 3 || res.Status != "ok" {
		t.Fatalf("backfill %+v: want 3 devices, ok", res)
	}
	// 4 days of hours is 96 periods per device (±1 for the window's ends).
	if res.Points < 3*95 || res.Points > 3*97 || res.Pages < 3*2 || res.Pages > 3*3 {
		t.Errorf("backfill fetched %d points in %d pages, want about 3 × 96 in 3 × 2", res.Points, res.Pages)
	}
	if res.Rows < res.Points || res.RawRows != res.Rows || res.RawPages != res.Pages {
		t.Errorf("raw loop inserted %d rows in %d pages; the job stored %d rows from %d pages", res.RawRows, res.RawPages, res.Rows, res.Pages)
	}
	if res.Wall <= 0 || res.RawWall <= 0 || res.Memory.HWM <= 0 || res.DBBytes <= 0 || res.StatusPage <= 0 || res.StatusPageBytes < 1000 {
		t.Errorf("measurements missing: %+v", res)
	}
	if got := sim.Sim.Stats().Requests["history"]; got != res.Pages {
		t.Errorf("simulator served %d history requests, the job counted %d pages", got, res.Pages)
	}
}

func TestFrozenNow(t *testing.T) {
	for _, s := range []string{"2026-03-01T10:00:00Z", "2026-03-01T10:14:59Z", "2026-03-01T10:59:30Z", "2026-03-29T01:07:30Z"} {
		now, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		got := FrozenNow(now)()
		if age := now.Sub(got); age < 7*time.Minute+30*time.Second || age >= 22*time.Minute+30*time.Second {
			t.Errorf("FrozenNow(%s) = %s: %v before now, want 7½ to 22½ minutes", s, got, age)
		}
		if got.Minute()%15 != 7 || got.Second() != 30 {
			t.Errorf("FrozenNow(%s) = %s: not 7½ minutes into a quarter hour", s, got)
		}
		if FrozenNow(now)() != got {
			t.Errorf("FrozenNow(%s) moves", s)
		}
	}
}

func TestEligibleDevices(t *testing.T) {
	acct := simulator.Account{Homes: []simulator.Home{
		{ID: "h1", Devices: []simulator.Device{
			{ID: "a", Resolutions: []string{"hour", "day"}, MaxRetentionDays: 730},
			{ID: "b", Resolutions: []string{"hour"}, MaxRetentionDays: 365},
			{ID: "c", Resolutions: []string{"day"}, MaxRetentionDays: 730},
			{ID: "d"},
		}},
		{ID: "h2", Devices: []simulator.Device{
			{ID: "a", Resolutions: []string{"hour"}, MaxRetentionDays: 730},
			{ID: "e", Resolutions: []string{"quarterHour", "hour"}},
		}},
	}}
	got := EligibleDevices(acct, "hour", 400)
	if strings.Join(got, ",") != "a,e" {
		t.Fatalf("EligibleDevices = %v, want [a e]: hour history kept ≥ 400 days (0 = unlimited), each device once", got)
	}
}

func TestRunRejectsBadOptions(t *testing.T) {
	o := DefaultOptions()
	o.Unchanged = 0
	if _, err := Run(testCtx(t, 10*time.Second), o); err == nil || !strings.Contains(err.Error(), "Unchanged") {
		t.Errorf("Unchanged 0: %v", err)
	}
	o = DefaultOptions()
	o.Binary = filepath.Join(t.TempDir(), "missing")
	if _, err := Run(testCtx(t, 10*time.Second), o); err == nil || !strings.Contains(err.Error(), "make build") {
		t.Errorf("missing binary: %v", err)
	}
}

func TestBestIngest(t *testing.T) {
	runs := []BackfillResult{
		{Rows: 100, RawRows: 100, Wall: 3 * time.Second, RawWall: time.Second},
		{Rows: 100, RawRows: 100, Wall: 2 * time.Second, RawWall: 2 * time.Second},
	}
	in, raw, err := bestIngest(runs)
	if err != nil || in.Wall != 2*time.Second || raw.RawWall != time.Second {
		t.Fatalf("bestIngest = %v, %v, %v: want the 2 s ingest and the 1 s raw loop", in.Wall, raw.RawWall, err)
	}
	if _, _, err := bestIngest(nil); err == nil {
		t.Error("no runs: want an error")
	}
	runs[1].RawRows = 99
	if _, _, err := bestIngest(runs); err == nil {
		t.Error("a raw loop that missed rows: want an error")
	}
}

func TestChildMainErrors(t *testing.T) {
	ctx := testCtx(t, 10*time.Second)
	var out, errb bytes.Buffer
	if code := ChildMain(ctx, nil, strings.NewReader(""), &out, &errb); code != 2 {
		t.Errorf("no role: exit %d, want 2", code)
	}
	errb.Reset()
	if code := ChildMain(ctx, []string{"frobnicate"}, strings.NewReader("{}"), &out, &errb); code != 1 || !strings.Contains(errb.String(), "unknown role") {
		t.Errorf("unknown role: exit %d, stderr %q", code, errb.String())
	}
	errb.Reset()
	if code := ChildMain(ctx, []string{RoleCycles}, strings.NewReader(`{"Bogus": 1}`), &out, &errb); code != 1 || !strings.Contains(errb.String(), "unknown field") {
		t.Errorf("unknown parameter: exit %d, stderr %q", code, errb.String())
	}
	if out.Len() != 0 {
		t.Errorf("failed children printed a result: %q", out.String())
	}
}

// buildDaemon builds cmd/tibbersync into dir, with the race detector when
// this test binary has it (so that it links from already compiled packages).
func buildDaemon(t *testing.T, ctx context.Context, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the daemon")
	}
	out := filepath.Join(dir, "tibbersync")
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "github.com/tibbersync/tibbersync/cmd/tibbersync")
	cmd := exec.CommandContext(ctx, goBin, args...)
	if !raceEnabled {
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return out
}

// TestRunSmall runs the whole bench on a small scale: the daemon binary
// built here, this test binary as the child, every scenario. It checks that
// every figure was measured and that the counts line up; the timing and
// memory targets are not asserted (a loaded CI machine and -race change
// them). It appends one summary line for CI.
func TestRunSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the daemon and runs every scenario")
	}
	started := time.Now()
	ctx := testCtx(t, 4*time.Minute)
	bin := buildDaemon(t, ctx, t.TempDir())
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	o := Options{
		Binary: bin, Self: self, TempDir: t.TempDir(), Seed: 2,
		Homes: 2, DevicesPerHome: 4, Latency: 10 * time.Millisecond, Concurrency: 4, RateLimit: 1000,
		Unchanged: 2, DefaultRateCycle: true,
		BackfillDevices: 2, BackfillDays: 20, PageSize: 100, IngestDays: 5, IngestRuns: 2,
		DaemonBackfillDays: 2, Idle: 200 * time.Millisecond, WarmStarts: 1,
		BackfillDaemonHomes: 2, BackfillDaemonDevicesPerHome: 3, BackfillDaemonDays: 10, Scrapes: 3,
		BigHomes: 3, BigDevicesPerHome: 3,
		Progress: &progress,
	}
	rep, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
	}
	var table bytes.Buffer
	if err := WriteTable(&table, rep.Rows); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s\n%s", table.String(), rep.Machine)
	find := func(prefix string) Row {
		t.Helper()
		for _, r := range rep.Rows {
			if strings.HasPrefix(strings.TrimSpace(r.Metric), prefix) {
				return r
			}
		}
		t.Fatalf("no row %q in\n%s", prefix, table.String())
		return Row{}
	}
	if r := find("requests per cycle"); r.OK != Pass || r.Value != "11" {
		t.Errorf("requests per cycle: %+v, want 11 = 1 + 2 + 8", r)
	}
	if r := find("pipelined bound"); !strings.HasPrefix(r.Value, "40 ms (4 latency rounds)") {
		t.Errorf("bound: %+v, want (1 + max(2, ⌈(2 + 8)/4⌉)) × 10 ms = 40 ms", r)
	}
	if r := find("serialized bound"); !strings.HasPrefix(r.Value, "50 ms") {
		t.Errorf("old bound: %+v, want (1 + 2 + ⌈8/4⌉) × 10 ms = 50 ms", r)
	}
	// Bytes per value is a byte count: the compact layout's target holds
	// at any size.
	if r := find("data.db bytes per stored history value"); r.Value == "" || strings.HasPrefix(r.Value, "0.0 B") {
		t.Errorf("bytes per value not measured: %+v", r)
	}
	if r := find("warm GET /metrics at"); strings.HasPrefix(r.Metric, "warm GET /metrics at 0 ") {
		t.Errorf("/metrics scrape saw no history values: %+v", r)
	}
	if r := find("its first runs"); !strings.Contains(r.Value, "history ok") || strings.Contains(r.Value, "history ok 0/0") {
		t.Errorf("backfill daemon's history run: %+v", r)
	}
	if r := find("rows written by the unchanged cycles"); r.Value != "0" {
		t.Errorf("unchanged cycles wrote rows: %+v", r)
	}
	// R19's SD-card budget is a byte count, not a timing, so the smoke run
	// enforces it: an unchanged cycle writes at most 32 KiB.
	if r := find("bytes written per unchanged cycle"); r.OK != Pass {
		t.Errorf("bytes per unchanged cycle over the R19 budget: %+v", r)
	}
	if r := find("first runs after authorization"); !strings.Contains(r.Value, "devices ok 11/") {
		t.Errorf("daemon's first runs: %+v", r)
	}
	if r := find("first devices cycle at the default limit"); !strings.Contains(r.Value, "rate bound 3.50 s") {
		t.Errorf("default-rate cycle: %+v, want a rate bound of (11 − 4) / 2 s", r)
	}
	// The raw loop must have inserted exactly what the job stored.
	ratio := find("ingest / raw insert rate")
	if ratio.Value == "0.00" {
		t.Errorf("ingest ratio: %+v", ratio)
	}
	raw, ingest := find("raw INSERT loop"), find("history ingest")
	var rawRows, jobRows, points int
	fmt.Sscanf(raw.Value[strings.Index(raw.Value, "(")+1:], "%d rows", &rawRows)
	fmt.Sscanf(ingest.Value[strings.Index(ingest.Value, "(")+1:], "%d points, %d rows", &points, &jobRows)
	// The window is "now − 5 days" up to the current hour, and battery
	// energy series have holes by design (tibber-data-api.md §6.3), so the
	// point count is at most one period more per device and a little less.
	if rawRows == 0 || rawRows != jobRows || points < 2*5*24*9/10 || points > 2*(5*24+1) {
		t.Errorf("raw %d rows, job %d rows, %d points (want about 2 devices × 5 days × 24)", rawRows, jobRows, points)
	}
	if r := find("binary size"); !raceEnabled && !strings.Contains(r.Value, "not stripped, static") {
		t.Errorf("binary row %+v: want a static binary with symbols (built without -s -w)", r)
	}
	for _, prefix := range []string{"peak RSS (VmHWM), cycles", "peak RSS (VmHWM), devices cycles of 3 homes", "peak RSS (VmHWM), 20-day", "idle RSS", "peak RSS (VmHWM) of that daemon, backfill", "start-up to /healthz 200, empty", "binary size"} {
		if r := find(prefix); r.Value == "" || strings.HasPrefix(r.Value, "0 ") {
			t.Errorf("row %q not measured: %+v", prefix, r)
		}
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Fatal(err)
	}
	cycle := find("devices cycle,").Value
	if i := strings.Index(cycle, ";"); i > 0 {
		cycle = cycle[:i] + ")"
	}
	line := fmt.Sprintf("bench smoke: every scenario measured (%d rows); small account: cycle %s, %s per unchanged cycle, ingest/raw %s; %s",
		len(rep.Rows), cycle, find("bytes written per unchanged cycle").Value, ratio.Value, time.Since(started).Round(100*time.Millisecond))
	if err := cisummary.Append(line); err != nil {
		t.Error(err)
	}
}
