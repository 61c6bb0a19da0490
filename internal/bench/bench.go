// Package bench measures tibbersync's performance and memory figures for
// `make bench`: a devices cycle against the critical-path bound, history
// ingest against a raw insert loop, idle and peak RSS, bytes written per
// unchanged cycle, start-up time and binary size.
//
// Each figure comes from a separate process running the real code, so that
// VmHWM and the /proc I/O counters belong to it alone: the scenarios that
// need measuring hooks (cycles, backfill) run in a child process that the
// bench driver re-executes itself as (ChildMain); idle memory and start-up
// time come from the release binary's `run` command. The simulators live in
// the driver process and are reached over loopback HTTP.
//
// docs/benchmarks.md explains every figure and records the latest run.
package bench

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tibbersync/tibbersync/internal/simulator"
	"github.com/tibbersync/tibbersync/internal/tibber"
)

// Targets from the issues (5, 6 and 14).
const (
	// TargetCycleFactor: a cycle takes at most this multiple of the
	// pipelined bound (PipelinedBound).
	TargetCycleFactor = 1.15
	// TargetCycleRSS is the peak RSS of the cycles process, and of the
	// 50 × 50 cycles process.
	TargetCycleRSS = 40 << 20
	// TargetBytesPerValue is data.db bytes per stored history value after
	// the 400-day backfill; CeilingBytesPerValue the hard ceiling.
	TargetBytesPerValue  = 32
	CeilingBytesPerValue = 40
	// TargetIdleRSS is the daemon's idle RSS after its 400-day backfill.
	TargetIdleRSS = 20 << 20
	// TargetScrape is a warm GET /metrics at about 2.6 M history values.
	TargetScrape = 20 * time.Millisecond
	// TargetBytesPerCycle is the file bytes written per unchanged cycle.
	TargetBytesPerCycle = 32 << 10
	// TargetIngestRatio is the least end-to-end ingest rate as a share of the raw rate.
	TargetIngestRatio = 0.5
	// TargetBackfillRSS is the peak RSS of the backfill process.
	TargetBackfillRSS = 64 << 20
	// TargetStatusPage is the slowest status page render after the long
	// backfill: it reads only the chart windows, never the whole history.
	TargetStatusPage = time.Second
)

// Options configure Run. DefaultOptions has the values of the issues.
type Options struct {
	// Binary is the tibbersync release binary (make build: dist/tibbersync).
	Binary string
	// Self is the executable that runs the child roles (ChildMain); empty
	// means os.Executable().
	Self string
	// TempDir is where the state directories go (empty: os.TempDir()).
	TempDir string
	// Seed seeds every simulator.
	Seed int64

	// Homes and DevicesPerHome size the generated account of the cycle
	// and daemon scenarios.
	Homes, DevicesPerHome int
	// Latency is injected on every Data API request of the cycle scenario.
	Latency time.Duration
	// Concurrency is [sync].concurrency.
	Concurrency int
	// RateLimit is [tibber].requests_per_second for every scenario but the
	// default-rate cycle.
	RateLimit float64
	// Unchanged is how many unchanged cycles are measured after the first.
	Unchanged int
	// DefaultRateCycle also times one cycle at the client's default rate
	// limit (about 105 s for 211 requests; it runs alongside the others).
	DefaultRateCycle bool

	// BackfillDevices, BackfillDays and PageSize shape the backfill whose
	// peak RSS is measured.
	BackfillDevices, BackfillDays, PageSize int
	// IngestDays is the window of the ingest run that is paired with the
	// raw insert loop (the same devices and page size).
	IngestDays int
	// IngestRuns is how many ingest/raw pairs run; the best rate of each
	// side counts.
	IngestRuns int

	// DaemonBackfillDays is [history].backfill_days of the daemon scenario.
	DaemonBackfillDays int
	// Idle is how long the daemon idles before its memory is read.
	Idle time.Duration
	// WarmStarts is how many restarts are timed.
	WarmStarts int

	// BackfillDaemonHomes × BackfillDaemonDevicesPerHome is the generated
	// account of the second run of the release binary, whose first history
	// run backfills BackfillDaemonDays of the default resolutions; its idle
	// RSS, peak RSS, bytes per value and /metrics time are measured.
	BackfillDaemonHomes, BackfillDaemonDevicesPerHome, BackfillDaemonDays int
	// Scrapes is how many GET /metrics are timed on that daemon (plus one
	// that warms up).
	Scrapes int

	// BigHomes × BigDevicesPerHome is the account of the devices cycles
	// whose peak RSS is measured (no latency).
	BigHomes, BigDevicesPerHome int

	// Progress receives one line per step (nil: discarded).
	Progress io.Writer
}

// DefaultOptions returns the configuration of `make bench`.
func DefaultOptions() Options {
	return Options{
		Binary: "dist/tibbersync", Seed: 1,
		Homes: 10, DevicesPerHome: 20, Latency: 50 * time.Millisecond, Concurrency: 4,
		RateLimit: 1000, Unchanged: 5, DefaultRateCycle: true,
		BackfillDevices: 50, BackfillDays: 400, PageSize: 500, IngestDays: 60, IngestRuns: 2,
		DaemonBackfillDays: 30, Idle: 5 * time.Second, WarmStarts: 3,
		BackfillDaemonHomes: 10, BackfillDaemonDevicesPerHome: 10, BackfillDaemonDays: 400, Scrapes: 11,
		BigHomes: 50, BigDevicesPerHome: 50,
	}
}

// validate rejects options that leave a figure unmeasurable.
func (o Options) validate() error {
	for _, c := range []struct {
		name string
		v    int
	}{
		{"Homes", o.Homes}, {"DevicesPerHome", o.DevicesPerHome}, {"Concurrency", o.Concurrency},
		{"Unchanged", o.Unchanged}, {"BackfillDevices", o.BackfillDevices}, {"BackfillDays", o.BackfillDays},
		{"IngestDays", o.IngestDays}, {"IngestRuns", o.IngestRuns}, {"PageSize", o.PageSize}, {"DaemonBackfillDays", o.DaemonBackfillDays},
		{"BackfillDaemonHomes", o.BackfillDaemonHomes}, {"BackfillDaemonDevicesPerHome", o.BackfillDaemonDevicesPerHome},
		{"BackfillDaemonDays", o.BackfillDaemonDays}, {"Scrapes", o.Scrapes}, {"BigHomes", o.BigHomes}, {"BigDevicesPerHome", o.BigDevicesPerHome},
	} {
		if c.v < 1 {
			return fmt.Errorf("bench: option %s is %d, want at least 1", c.name, c.v)
		}
	}
	if o.RateLimit <= 0 || o.Latency < 0 || o.Idle < 0 || o.WarmStarts < 0 {
		return errors.New("bench: RateLimit must be positive; Latency, Idle and WarmStarts not negative")
	}
	return nil
}

// Report is the outcome of Run.
type Report struct {
	Rows    []Row
	Machine Machine
	// Took is the wall time of the whole run.
	Took time.Duration
}

// Run measures every figure and returns the table. Missed targets are
// flagged in the rows; an error means a figure could not be measured.
func Run(ctx context.Context, o Options) (Report, error) {
	start := time.Now()
	rep := Report{Machine: ReadMachine()}
	progress := func(format string, args ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "bench: "+format+"\n", args...)
		}
	}
	if err := o.validate(); err != nil {
		return rep, err
	}
	if o.Self == "" {
		exe, err := os.Executable()
		if err != nil {
			return rep, fmt.Errorf("bench: %w", err)
		}
		o.Self = exe
	}
	bin, err := inspectBinary(o.Binary)
	if err != nil {
		return rep, fmt.Errorf("bench: %w", err)
	}
	tmp, err := os.MkdirTemp(o.TempDir, "tibbersync-bench-")
	if err != nil {
		return rep, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(tmp)
	dir := func(name string) (string, error) {
		p := filepath.Join(tmp, name)
		if err := os.MkdirAll(p, 0o750); err != nil {
			return "", fmt.Errorf("bench: %w", err)
		}
		return p, nil
	}
	frozen := FrozenNow(time.Now())

	// The default-rate cycle mostly waits for its rate limiter, so it runs
	// in its own process alongside the other scenarios.
	var (
		defWG   sync.WaitGroup
		defRes  CycleResult
		defErr  error
		defSim  *SimServer
		devices int
	)
	// On an early return the background child is stopped and waited for
	// before its simulator closes and its directory is removed.
	bgCtx, bgCancel := context.WithCancel(ctx)
	defer func() {
		bgCancel()
		defWG.Wait()
		if defSim != nil {
			defSim.Close()
		}
	}()
	cycleOpts := simulator.Options{Seed: o.Seed, Homes: o.Homes, DevicesPerHome: o.DevicesPerHome, Now: frozen, AutoConsent: true}
	if o.DefaultRateCycle {
		defSim, err = startLatencySim(cycleOpts, o.Latency)
		if err != nil {
			return rep, err
		}
		d, err := dir("default-rate")
		if err != nil {
			return rep, err
		}
		progress("one devices cycle at the default rate limit (about %s), in the background", FormatDuration(RateBound(1+o.Homes+o.Homes*o.DevicesPerHome, tibber.DefaultRateLimit, tibber.DefaultBurst)))
		defWG.Add(1)
		go func() {
			defer defWG.Done()
			_, defErr = spawn(bgCtx, o.Self, RoleCycles, CycleParams{SimURL: defSim.URL, Dir: d, Concurrency: o.Concurrency}, &defRes)
		}()
	}

	// 1. The release binary: start-up, first runs, idle memory.
	progress("tibbersync run: start-up, authorization, first runs, %s idle, %d restarts", o.Idle, o.WarmStarts)
	port, err := FreePort()
	if err != nil {
		return rep, err
	}
	daemonSim, err := StartSim(simulator.Options{
		Seed: o.Seed, Homes: o.Homes, DevicesPerHome: o.DevicesPerHome,
		AutoConsent: true, RedirectURIs: []string{RedirectURL(port)},
	})
	if err != nil {
		return rep, err
	}
	defer daemonSim.Close()
	d, err := dir("daemon")
	if err != nil {
		return rep, err
	}
	dres, err := RunDaemon(ctx, DaemonParams{
		Binary: o.Binary, Dir: d, SimURL: daemonSim.URL, Port: port, RateLimit: o.RateLimit,
		BackfillDays: o.DaemonBackfillDays, Idle: o.Idle, WarmStarts: o.WarmStarts,
	})
	daemonSim.Close()
	if err != nil {
		return rep, fmt.Errorf("bench: %w", err)
	}
	// Scenario directories go as soon as they are measured: the 400-day
	// backfill alone leaves a data.db of about 400 MiB.
	if err := os.RemoveAll(d); err != nil {
		return rep, fmt.Errorf("bench: %w", err)
	}

	// 1b. The release binary again, on an account whose first history run
	// is a long backfill: idle memory after it, /metrics time at that size,
	// bytes per stored value.
	progress("tibbersync run: %d homes × %d devices, %d-day backfill, %s idle, %d /metrics scrapes", o.BackfillDaemonHomes, o.BackfillDaemonDevicesPerHome, o.BackfillDaemonDays, o.Idle, o.Scrapes)
	if port, err = FreePort(); err != nil {
		return rep, err
	}
	bdSim, err := StartSim(simulator.Options{
		Seed: o.Seed, Homes: o.BackfillDaemonHomes, DevicesPerHome: o.BackfillDaemonDevicesPerHome, Now: frozen,
		AutoConsent: true, RedirectURIs: []string{RedirectURL(port)},
	})
	if err != nil {
		return rep, err
	}
	defer bdSim.Close()
	if d, err = dir("daemon-backfill"); err != nil {
		return rep, err
	}
	bdres, err := RunDaemon(ctx, DaemonParams{
		Binary: o.Binary, Dir: d, SimURL: bdSim.URL, Port: port, RateLimit: o.RateLimit,
		BackfillDays: o.BackfillDaemonDays, Idle: o.Idle, Scrapes: o.Scrapes, FirstRunsTimeout: 20 * time.Minute,
	})
	bdSim.Close()
	if err != nil {
		return rep, fmt.Errorf("bench: backfill daemon: %w", err)
	}
	if err := os.RemoveAll(d); err != nil {
		return rep, fmt.Errorf("bench: %w", err)
	}

	// 2. Devices cycles with latency.
	progress("devices cycles: %d homes × %d devices, %s latency, concurrency %d, 1 + %d unchanged", o.Homes, o.DevicesPerHome, o.Latency, o.Concurrency, o.Unchanged)
	cycleSim, err := startLatencySim(cycleOpts, o.Latency)
	if err != nil {
		return rep, err
	}
	defer cycleSim.Close()
	for _, h := range cycleSim.Sim.Account().Homes {
		devices += len(h.Devices)
	}
	d, err = dir("cycles")
	if err != nil {
		return rep, err
	}
	var cres CycleResult
	warn, err := spawn(ctx, o.Self, RoleCycles, CycleParams{
		SimURL: cycleSim.URL, Dir: d, RateLimit: o.RateLimit, Concurrency: o.Concurrency, Unchanged: o.Unchanged,
	}, &cres)
	cycleSim.Close()
	if err != nil {
		return rep, fmt.Errorf("bench: %w", err)
	}
	showWarnings(o.Progress, "cycles", warn)
	if err := os.RemoveAll(d); err != nil {
		return rep, fmt.Errorf("bench: %w", err)
	}

	// 2b. Devices cycles of a large account, for the peak RSS.
	progress("devices cycles: %d homes × %d devices, no latency, concurrency %d, 1 + 1 unchanged", o.BigHomes, o.BigDevicesPerHome, o.Concurrency)
	bigSim, err := startLatencySim(simulator.Options{Seed: o.Seed, Homes: o.BigHomes, DevicesPerHome: o.BigDevicesPerHome, Now: frozen, AutoConsent: true}, 0)
	if err != nil {
		return rep, err
	}
	defer bigSim.Close()
	if d, err = dir("cycles-big"); err != nil {
		return rep, err
	}
	var bigres CycleResult
	warn, err = spawn(ctx, o.Self, RoleCycles, CycleParams{
		SimURL: bigSim.URL, Dir: d, RateLimit: o.RateLimit, Concurrency: o.Concurrency, Unchanged: 1,
	}, &bigres)
	bigSim.Close()
	if err != nil {
		return rep, fmt.Errorf("bench: %w", err)
	}
	showWarnings(o.Progress, "cycles-big", warn)
	if err := os.RemoveAll(d); err != nil {
		return rep, fmt.Errorf("bench: %w", err)
	}

	// 3. A long backfill, for the peak RSS of the history job.
	bfOpts, ids, err := backfillAccount(o)
	if err != nil {
		return rep, err
	}
	progress("history backfill for peak RSS: %d devices × %d days hourly, pages of %d", len(ids), o.BackfillDays, o.PageSize)
	bfSim, err := StartSim(bfOpts)
	if err != nil {
		return rep, err
	}
	defer bfSim.Close()
	d, err = dir("backfill")
	if err != nil {
		return rep, err
	}
	var bres BackfillResult
	warn, err = spawn(ctx, o.Self, RoleBackfill, BackfillParams{
		SimURL: bfSim.URL, Dir: d, DeviceIDs: ids, Resolution: "hour",
		BackfillDays: o.BackfillDays, PageSize: o.PageSize, RateLimit: o.RateLimit,
	}, &bres)
	if err != nil {
		return rep, fmt.Errorf("bench: %w", err)
	}
	showWarnings(o.Progress, "backfill", warn)
	if err := os.RemoveAll(d); err != nil {
		return rep, fmt.Errorf("bench: %w", err)
	}

	// 4. History ingest against the raw insert loop on the same rows, each
	// pair in a fresh process and fresh databases; the best rate of each
	// side counts, which keeps other load on the machine out of the ratio.
	progress("history ingest: %d devices × %d days hourly, then the raw insert loop on the same rows (%d runs)", len(ids), o.IngestDays, o.IngestRuns)
	var ires []BackfillResult
	for i := range o.IngestRuns {
		d, err := dir(fmt.Sprintf("ingest-%d", i+1))
		if err != nil {
			return rep, err
		}
		raw, err := dir(fmt.Sprintf("raw-%d", i+1))
		if err != nil {
			return rep, err
		}
		var r BackfillResult
		warn, err := spawn(ctx, o.Self, RoleBackfill, BackfillParams{
			SimURL: bfSim.URL, Dir: d, RawDir: raw, DeviceIDs: ids, Resolution: "hour",
			BackfillDays: o.IngestDays, PageSize: o.PageSize, RateLimit: o.RateLimit, Raw: true,
		}, &r)
		if err != nil {
			return rep, fmt.Errorf("bench: %w", err)
		}
		showWarnings(o.Progress, "ingest", warn)
		ires = append(ires, r)
		for _, p := range []string{d, raw} {
			if err := os.RemoveAll(p); err != nil {
				return rep, fmt.Errorf("bench: %w", err)
			}
		}
	}
	bfSim.Close()

	if o.DefaultRateCycle {
		progress("waiting for the default-rate cycle")
		defWG.Wait()
		if defErr != nil {
			return rep, fmt.Errorf("bench: default-rate cycle: %w", defErr)
		}
	}

	rows, err := buildRows(o, devices, bin, dres, cres, bres, ires, defRes, bdres, bigres)
	if err != nil {
		return rep, err
	}
	rep.Rows = rows
	rep.Took = time.Since(start)
	return rep, nil
}

// startLatencySim serves a simulator whose Data API answers every request
// after latency.
func startLatencySim(opts simulator.Options, latency time.Duration) (*SimServer, error) {
	s, err := StartSim(opts)
	if err != nil {
		return nil, err
	}
	if latency > 0 {
		s.Sim.Faults().Add(simulator.Fault{Endpoint: "api", Kind: simulator.KindLatency, Delay: latency})
	}
	return s, nil
}

// backfillAccount picks a generated account (o.DevicesPerHome devices per
// home, as many homes as needed) with at least o.BackfillDevices devices
// that keep hour history for o.BackfillDays days, and returns the first
// o.BackfillDevices of them in account order.
func backfillAccount(o Options) (simulator.Options, []string, error) {
	per := max(o.DevicesPerHome, 1)
	for homes := 1; homes <= 1000; homes++ {
		opts := simulator.Options{Seed: o.Seed, Homes: homes, DevicesPerHome: per, PageSize: o.PageSize, Now: FrozenNow(time.Now()), AutoConsent: true}
		ids := EligibleDevices(simulator.New(opts).Account(), "hour", o.BackfillDays)
		if len(ids) >= o.BackfillDevices {
			return opts, ids[:o.BackfillDevices], nil
		}
	}
	return simulator.Options{}, nil, fmt.Errorf("bench: no generated account has %d devices with %d days of hour history", o.BackfillDevices, o.BackfillDays)
}

// EligibleDevices lists, in account order, the devices with history at
// resolution that the server keeps for at least days (0 retention means
// no limit).
func EligibleDevices(acct simulator.Account, resolution string, days int) []string {
	var out []string
	seen := map[string]bool{}
	for _, h := range acct.Homes {
		for _, d := range h.Devices {
			if seen[d.ID] || !slices.Contains(d.Resolutions, resolution) {
				continue
			}
			if d.MaxRetentionDays != 0 && d.MaxRetentionDays < days {
				continue
			}
			seen[d.ID] = true
			out = append(out, d.ID)
		}
	}
	return out
}

func showWarnings(w io.Writer, role, text string) {
	text = strings.TrimSpace(text)
	if w == nil || text == "" {
		return
	}
	for _, line := range strings.Split(text, "\n") {
		fmt.Fprintf(w, "bench: %s: %s\n", role, line)
	}
}

// binaryInfo is the size, linkage and symbol table of the release binary.
type binaryInfo struct {
	size             int64
	static, stripped bool
}

// inspectBinary stats the binary and tells a static from a dynamic ELF
// (one with a PT_INTERP program header) and a stripped one (no .symtab).
func inspectBinary(path string) (binaryInfo, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return binaryInfo{}, fmt.Errorf("release binary (run make build first): %w", err)
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return binaryInfo{}, fmt.Errorf("release binary %s is not an executable file", path)
	}
	f, err := elf.Open(path)
	if err != nil {
		return binaryInfo{}, fmt.Errorf("release binary %s: %w", path, err)
	}
	defer f.Close()
	info := binaryInfo{size: fi.Size(), static: true, stripped: f.Section(".symtab") == nil}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			info.static = false
		}
	}
	return info, nil
}

// buildRows turns the results into the table.
func buildRows(o Options, devices int, bin binaryInfo, d DaemonResult, c CycleResult, b BackfillResult, ingest []BackfillResult, def CycleResult, bd DaemonResult, big CycleResult) ([]Row, error) {
	cs, err := Summarize(c.Unchanged)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	bound := PipelinedBound(o.Homes, devices, o.Concurrency, o.Latency)
	limit := time.Duration(float64(bound) * TargetCycleFactor)
	factor := float64(cs.Median) / float64(bound)
	requests := 1 + o.Homes + devices

	var rows []Row
	add := func(metric, value, target string, ok Verdict) {
		rows = append(rows, Row{Metric: metric, Value: value, Target: target, OK: ok})
	}
	add(fmt.Sprintf("devices cycle, %d homes × %d devices, %s latency, concurrency %d (median of %d unchanged)", o.Homes, o.DevicesPerHome, o.Latency, o.Concurrency, len(c.Unchanged)),
		fmt.Sprintf("%s (%.2f× bound; range %s–%s)", FormatDuration(cs.Median), factor, FormatDuration(cs.Min), FormatDuration(cs.Max)),
		fmt.Sprintf("≤ %.2f× bound = %s", TargetCycleFactor, FormatDuration(limit)), Check(cs.Median <= limit))
	add(fmt.Sprintf("  pipelined bound (1 + max(2, ⌈(%d + %d)/%d⌉)) × %s", o.Homes, devices, o.Concurrency, o.Latency),
		fmt.Sprintf("%s (%d latency rounds)", FormatDuration(bound), int(bound/max(o.Latency, 1))), "", Info)
	add("  serialized bound of the old cycle (lists one by one, then details)",
		fmt.Sprintf("%s (%.2f× the pipelined bound)", FormatDuration(CriticalPath(o.Homes, devices, o.Concurrency, o.Latency)),
			float64(CriticalPath(o.Homes, devices, o.Concurrency, o.Latency))/float64(bound)), "", Info)
	add(fmt.Sprintf("  requests per cycle (client limit %g req/s, so the limiter never waits)", o.RateLimit),
		fmt.Sprint(cs.Requests), fmt.Sprintf("%d = 1 + %d + %d", requests, o.Homes, devices), Check(cs.Requests == requests))
	add("  first devices cycle (empty data.db)",
		fmt.Sprintf("%s, %d rows, %s written", FormatDuration(c.First.Wall), c.First.RowsWritten, FormatBytes(c.First.FileBytes)), "", Info)
	if o.DefaultRateCycle {
		add(fmt.Sprintf("  first devices cycle at the default limit (%g req/s, burst %d)", tibber.DefaultRateLimit, tibber.DefaultBurst),
			fmt.Sprintf("%s (rate bound %s)", FormatDuration(def.First.Wall), FormatDuration(RateBound(def.First.Requests, tibber.DefaultRateLimit, tibber.DefaultBurst))), "", Info)
	}
	add("peak RSS (VmHWM), cycles process", FormatBytes(c.Memory.HWM), "≤ "+FormatBytes(TargetCycleRSS), Check(c.Memory.HWM <= TargetCycleRSS))
	add(fmt.Sprintf("peak RSS (VmHWM), devices cycles of %d homes × %d devices (first + 1 unchanged, no latency)", o.BigHomes, o.BigDevicesPerHome),
		FormatBytes(big.Memory.HWM), "≤ "+FormatBytes(TargetCycleRSS), Check(big.Memory.HWM <= TargetCycleRSS))
	add("  that first cycle", fmt.Sprintf("%s, %d requests, %d rows, %s written", FormatDuration(big.First.Wall), big.First.Requests, big.First.RowsWritten, FormatBytes(big.First.FileBytes)), "", Info)
	add("bytes written per unchanged cycle (wchar − socket writes)", FormatBytes(cs.FileBytes), "≤ "+FormatBytes(TargetBytesPerCycle), Check(cs.FileBytes <= TargetBytesPerCycle))
	add("  block-layer writes per unchanged cycle (write_bytes)", FormatBytes(cs.WriteBytes), "", Info)
	add("  data.db + WAL growth per unchanged cycle", FormatBytes(cs.DBGrowth), "", Info)
	add(fmt.Sprintf("  WAL checkpoint after the %d unchanged cycles (wchar)", len(c.Unchanged)), FormatBytes(c.Checkpoint), "", Info)
	add("  rows written by the unchanged cycles (sync_runs.rows_written)", fmt.Sprint(cs.RowsWritten), "", Info)

	in, rawIn, err := bestIngest(ingest)
	if err != nil {
		return nil, err
	}
	e2eRows := rate(in.Rows, in.Wall)
	rawRows := rate(rawIn.RawRows, rawIn.RawWall)
	ratio := 0.0
	if rawRows > 0 {
		ratio = e2eRows / rawRows
	}
	best := ""
	if len(ingest) > 1 {
		best = fmt.Sprintf(", best of %d", len(ingest))
	}
	add(fmt.Sprintf("history ingest, loopback, no latency (%d devices × %d days hourly, pages of %d%s)", in.Devices, o.IngestDays, o.PageSize, best),
		fmt.Sprintf("%s, %s (%d points, %d rows in %s)", FormatRate(rate(in.Points, in.Wall), "points"), FormatRate(e2eRows, "rows"), in.Points, in.Rows, FormatDuration(in.Wall)), "", Info)
	add(fmt.Sprintf("  raw INSERT loop, same rows, same driver, 1 transaction per page%s", best),
		fmt.Sprintf("%s (%d rows, %d pages in %s)", FormatRate(rawRows, "rows"), rawIn.RawRows, rawIn.RawPages, FormatDuration(rawIn.RawWall)), "", Info)
	add("ingest / raw insert rate (rows per second)", fmt.Sprintf("%.2f", ratio), fmt.Sprintf("≥ %.1f", TargetIngestRatio), Check(ratio >= TargetIngestRatio))
	add(fmt.Sprintf("peak RSS (VmHWM), %d-day hourly backfill of %d devices", o.BackfillDays, b.Devices), FormatBytes(b.Memory.HWM), "≤ "+FormatBytes(TargetBackfillRSS), Check(b.Memory.HWM <= TargetBackfillRSS))
	add(fmt.Sprintf("status page with history charts after that backfill (%s, slowest of 3)", FormatBytes(int64(b.StatusPageBytes))), FormatDuration(b.StatusPage),
		"≤ "+FormatDuration(TargetStatusPage), Check(b.StatusPage > 0 && b.StatusPage <= TargetStatusPage))
	add("  that backfill", fmt.Sprintf("%d points, %d rows, %d requests in %s (%s); data.db + WAL %s", b.Points, b.Rows, b.Requests, FormatDuration(b.Wall), FormatRate(rate(b.Points, b.Wall), "points"), FormatBytes(b.DBBytes)), "", Info)
	bpv := 0.0
	if b.Rows > 0 {
		bpv = float64(b.DBBytes) / float64(b.Rows)
	}
	add("data.db bytes per stored history value, that backfill", fmt.Sprintf("%.1f B (%s for %d values)", bpv, FormatBytes(b.DBBytes), b.Rows),
		fmt.Sprintf("≤ %d B (ceiling %d)", TargetBytesPerValue, CeilingBytesPerValue), Check(b.Rows > 0 && bpv <= TargetBytesPerValue))

	bdName := fmt.Sprintf("tibbersync run, %d homes × %d devices, %d-day backfill", o.BackfillDaemonHomes, o.BackfillDaemonDevicesPerHome, o.BackfillDaemonDays)
	add(fmt.Sprintf("idle RSS (VmRSS), %s + %s idle", bdName, o.Idle), fmt.Sprintf("%s (anon %s, file %s; Go heap in use %s)", FormatBytes(bd.Idle.RSS), FormatBytes(bd.Idle.Anon), FormatBytes(bd.Idle.File), FormatBytes(bd.HeapInuse)),
		"≤ "+FormatBytes(TargetIdleRSS), Check(bd.Idle.RSS > 0 && bd.Idle.RSS <= TargetIdleRSS))
	add("peak RSS (VmHWM) of that daemon, backfill included", FormatBytes(bd.Idle.HWM), "≤ "+FormatBytes(TargetBackfillRSS), Check(bd.Idle.HWM > 0 && bd.Idle.HWM <= TargetBackfillRSS))
	add("  its first runs (status, requests, rows)", firstRunsText(bd.FirstRuns), "", Info)
	if len(bd.Scrapes) > 0 {
		sc := slices.Clone(bd.Scrapes)
		slices.Sort(sc)
		med := sc[len(sc)/2]
		add(fmt.Sprintf("warm GET /metrics at %d history values (median of %d)", bd.HistoryValues, len(sc)),
			fmt.Sprintf("%s (range %s–%s)", FormatDuration(med), FormatDuration(sc[0]), FormatDuration(sc[len(sc)-1])),
			"≤ "+FormatDuration(TargetScrape), Check(med <= TargetScrape))
	}
	if bd.HistoryValues > 0 {
		add("  data.db bytes per history value, that daemon (all tables)", fmt.Sprintf("%.1f B (%s)", float64(bd.DBBytes)/float64(bd.HistoryValues), FormatBytes(bd.DBBytes)), "", Info)
	}

	add(fmt.Sprintf("idle RSS (VmRSS), tibbersync run after its first runs (%d × %d, %d-day backfill) + %s idle", o.Homes, o.DevicesPerHome, o.DaemonBackfillDays, o.Idle), FormatBytes(d.Idle.RSS), "", Info)
	add("  peak RSS (VmHWM) of that daemon, first runs included", FormatBytes(d.Idle.HWM), "", Info)
	add("start-up to /healthz 200, empty state directory", FormatDuration(d.ColdStart), "", Info)
	if len(d.WarmStarts) > 0 {
		ws := slices.Clone(d.WarmStarts)
		slices.Sort(ws)
		add(fmt.Sprintf("start-up to /healthz 200, populated state directory (median of %d)", len(ws)), FormatDuration(ws[len(ws)/2]), "", Info)
	}
	add("authorization done → first devices run done", fmt.Sprintf("%s (exec → devices done: %s, automated setup included)", FormatDuration(d.AuthToDevices), FormatDuration(d.ExecToDevices)), "", Info)
	add("  first runs after authorization (status, requests, rows)", firstRunsText(d.FirstRuns), "", Info)
	kind := "stripped"
	if !bin.stripped {
		kind = "not stripped"
	}
	if bin.static {
		kind += ", static"
	} else {
		kind += ", dynamically linked"
	}
	add(fmt.Sprintf("binary size (%s)", filepath.Base(o.Binary)), FormatBytes(bin.size)+", "+kind, "static", Check(bin.static))
	return rows, nil
}

// bestIngest returns the run with the fastest ingest and the one with the
// fastest raw loop. Every run must have stored and re-inserted the same
// number of rows.
func bestIngest(runs []BackfillResult) (ingest, raw BackfillResult, err error) {
	if len(runs) == 0 {
		return ingest, raw, errors.New("bench: no ingest runs")
	}
	ingest, raw = runs[0], runs[0]
	for _, r := range runs {
		if r.Rows == 0 || r.RawRows != r.Rows || r.Rows != runs[0].Rows {
			return ingest, raw, fmt.Errorf("bench: ingest run stored %d rows, raw loop inserted %d (first run: %d)", r.Rows, r.RawRows, runs[0].Rows)
		}
		if r.Wall < ingest.Wall {
			ingest = r
		}
		if r.RawWall < raw.RawWall {
			raw = r
		}
	}
	return ingest, raw, nil
}

// firstRunsText formats the daemon's first runs in job order.
func firstRunsText(runs map[string]RunInfo) string {
	var parts []string
	for _, job := range daemonJobs {
		if r, ok := runs[job]; ok {
			parts = append(parts, fmt.Sprintf("%s %s %d/%d", job, r.Status, r.Requests, r.Rows))
		}
	}
	return strings.Join(parts, ", ")
}

// rate is n per second of d.
func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}
