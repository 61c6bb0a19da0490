package bench

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/model"
)

// CycleParams configures RunCycles: devices cycles against a simulator.
type CycleParams struct {
	// SimURL is the simulator's base URL.
	SimURL string
	// Dir is a fresh state directory.
	Dir string
	// RateLimit is [tibber].requests_per_second (0: the client default).
	RateLimit float64
	// Concurrency is [sync].concurrency.
	Concurrency int
	// Unchanged is how many cycles run after the first one. The simulator's
	// clock stands still, so they see exactly the state the first one saved.
	Unchanged int
}

// CycleStat is what one devices cycle did, the scheduler's bookkeeping
// (job_state) included.
type CycleStat struct {
	// Wall is the wall time from the trigger to the end of the run, the
	// save of the batch and of the job state included.
	Wall time.Duration
	// Status, Requests and RowsWritten are the run as recorded in sync_runs.
	Status      string
	Requests    int
	RowsWritten int
	// FileBytes is wchar minus the bytes written to sockets: what the
	// process handed to write(2)/pwrite(2) for files (data.db, its WAL).
	FileBytes int64
	// WriteBytes is write_bytes: what reached the block layer (0 on tmpfs,
	// and it may lag when the kernel writes back later).
	WriteBytes int64
	// DBGrowth is the growth of data.db plus data.db-wal.
	DBGrowth int64
}

// CycleResult is the outcome of RunCycles.
type CycleResult struct {
	First     CycleStat
	Unchanged []CycleStat
	// Checkpoint is what the WAL checkpoint after the unchanged cycles
	// wrote: each page they touched, once more, into data.db.
	Checkpoint int64
	// Memory is the process's VmRSS and VmHWM at the end.
	Memory Status
}

// RunCycles authorizes against the simulator, runs one devices cycle, a
// WAL checkpoint, then p.Unchanged more cycles and a last checkpoint,
// measuring each. A cycle goes through jobs.Scheduler as in the daemon:
// Trigger, RunDue, and the scheduler saves the job's state after the run.
// Nothing may write to stdout or stderr meanwhile: wchar counts those
// writes too. It returns an error when a cycle failed or was skipped.
func RunCycles(ctx context.Context, p CycleParams, log *slog.Logger) (CycleResult, error) {
	var res CycleResult
	st, err := OpenStack(ctx, StackConfig{Dir: p.Dir, SimURL: p.SimURL, RateLimit: p.RateLimit, Concurrency: p.Concurrency, Logger: log})
	if err != nil {
		return res, fmt.Errorf("cycles: %w", err)
	}
	defer st.Close()
	if err := st.Authorize(ctx); err != nil {
		return res, fmt.Errorf("cycles: %w", err)
	}
	var (
		last    model.Run
		lastErr error
	)
	sched := &jobs.Scheduler{
		Jobs:   []jobs.Job{{Name: jobs.JobDevices, Spec: "*/5 * * * *"}},
		Runner: st.Daemon.Scheduler().Runner, // the product's runner: cycle deadline, quiet skips
		Store:  st.Data,
		Clock:  clock.Real{},
		Logger: log,
		// Called in the job's goroutine before Wait returns.
		OnRun: func(r model.Run, err error) { last, lastErr = r, err },
	}
	if err := sched.Validate(); err != nil {
		return res, fmt.Errorf("cycles: %w", err)
	}
	cycle := func() (model.Run, error) {
		sched.Trigger(jobs.JobDevices)
		if started := sched.RunDue(ctx); !slices.Contains(started, jobs.JobDevices) {
			return model.Run{}, fmt.Errorf("scheduler did not start the devices job (started %v)", started)
		}
		sched.Wait()
		return last, lastErr
	}

	if res.First, err = measureCycle(ctx, st, cycle); err != nil {
		return res, fmt.Errorf("cycles: first cycle: %w", err)
	}
	// Start the unchanged cycles from an empty WAL, as after the daemon's
	// idle checkpoint (R17).
	if _, err := st.Data.Checkpoint(ctx); err != nil {
		return res, fmt.Errorf("cycles: %w", err)
	}
	for i := range p.Unchanged {
		c, err := measureCycle(ctx, st, cycle)
		if err != nil {
			return res, fmt.Errorf("cycles: unchanged cycle %d: %w", i+1, err)
		}
		res.Unchanged = append(res.Unchanged, c)
	}
	if p.Unchanged > 0 {
		if res.Checkpoint, err = measureCheckpoint(ctx, st); err != nil {
			return res, fmt.Errorf("cycles: %w", err)
		}
	}
	if res.Memory, err = ReadStatus(Self); err != nil {
		return res, fmt.Errorf("cycles: %w", err)
	}
	if err := st.Close(); err != nil {
		return res, fmt.Errorf("cycles: %w", err)
	}
	return res, nil
}

// measureCycle runs one devices cycle and measures it.
func measureCycle(ctx context.Context, st *Stack, cycle func() (model.Run, error)) (CycleStat, error) {
	io0, err := ReadIO(Self)
	if err != nil {
		return CycleStat{}, err
	}
	sock0, _ := st.Sockets.Written()
	db0, wal0 := st.FileSizes()
	t0 := time.Now()
	run, runErr := cycle()
	wall := time.Since(t0)
	sock1, _ := st.Sockets.Written()
	io1, err := ReadIO(Self)
	if err != nil {
		return CycleStat{}, err
	}
	db1, wal1 := st.FileSizes()
	d := io1.Sub(io0)
	c := CycleStat{
		Wall: wall, Status: run.Status, Requests: run.Requests, RowsWritten: run.RowsWritten,
		WriteBytes: d.WriteBytes,
		FileBytes:  d.WChar - (sock1 - sock0),
		DBGrowth:   (db1 + wal1) - (db0 + wal0),
	}
	if runErr != nil || run.Status == jobs.StatusFailed || run.Status == jobs.StatusSkipped {
		return c, fmt.Errorf("devices run %s: %s: %w", run.Status, run.Error, runErr)
	}
	return c, ctx.Err()
}

// measureCheckpoint runs the daemon's idle WAL checkpoint and returns the
// bytes it wrote (into data.db).
func measureCheckpoint(ctx context.Context, st *Stack) (int64, error) {
	io0, err := ReadIO(Self)
	if err != nil {
		return 0, err
	}
	if _, err := st.Data.Checkpoint(ctx); err != nil {
		return 0, err
	}
	io1, err := ReadIO(Self)
	if err != nil {
		return 0, err
	}
	return io1.Sub(io0).WChar, nil
}

// CycleSummary condenses the unchanged cycles of a CycleResult.
type CycleSummary struct {
	// Median, Min and Max are wall times.
	Median, Min, Max time.Duration
	// FileBytes, WriteBytes and DBGrowth are per-cycle means.
	FileBytes, WriteBytes, DBGrowth int64
	// Requests is the request count of the last cycle.
	Requests int
	// RowsWritten is the total over the unchanged cycles.
	RowsWritten int
	// Statuses lists the distinct run statuses.
	Statuses []string
}

// Summarize condenses cycles; it needs at least one.
func Summarize(cycles []CycleStat) (CycleSummary, error) {
	n := len(cycles)
	if n == 0 {
		return CycleSummary{}, fmt.Errorf("summarize cycles: no cycles")
	}
	walls := make([]time.Duration, n)
	var s CycleSummary
	for i, c := range cycles {
		walls[i] = c.Wall
		s.FileBytes += c.FileBytes
		s.WriteBytes += c.WriteBytes
		s.DBGrowth += c.DBGrowth
		s.RowsWritten += c.RowsWritten
		if !slices.Contains(s.Statuses, c.Status) {
			s.Statuses = append(s.Statuses, c.Status)
		}
	}
	slices.Sort(walls)
	s.Min, s.Max = walls[0], walls[n-1]
	if n%2 == 1 {
		s.Median = walls[n/2]
	} else {
		s.Median = (walls[n/2-1] + walls[n/2]) / 2
	}
	s.FileBytes /= int64(n)
	s.WriteBytes /= int64(n)
	s.DBGrowth /= int64(n)
	s.Requests = cycles[n-1].Requests
	return s, nil
}

// CriticalPath is the least wall time of the serialized devices cycle of
// earlier releases, which fetched the homes list, then each home's device
// list one after the other, then the details with concurrency in flight:
//
//	bound = (1 + homes + ceil(devices / concurrency)) × latency
func CriticalPath(homes, devices, concurrency int, latency time.Duration) time.Duration {
	if concurrency < 1 {
		concurrency = 1
	}
	rounds := (devices + concurrency - 1) / concurrency
	return time.Duration(1+homes+rounds) * latency
}

// PipelinedBound is the least wall time one devices cycle can take when
// every request waits latency on the server, the device lists of all homes
// and the details share concurrency slots, and each detail starts as soon
// as its list arrived: the homes list, then H + D requests C at a time,
// and never fewer than three rounds (homes → a list → its details):
//
//	bound = (1 + max(2, ceil((homes + devices) / concurrency))) × latency
func PipelinedBound(homes, devices, concurrency int, latency time.Duration) time.Duration {
	if concurrency < 1 {
		concurrency = 1
	}
	rounds := (homes + devices + concurrency - 1) / concurrency
	if devices > 0 {
		rounds = max(rounds, 2)
	}
	return time.Duration(1+rounds) * latency
}

// RateBound is the least wall time of requests under a token-bucket rate
// limit of rate per second with burst: the first burst go at once, the
// rest one every 1/rate.
func RateBound(requests int, rate float64, burst int) time.Duration {
	if requests <= burst || rate <= 0 {
		return 0
	}
	return time.Duration(float64(requests-burst) / rate * float64(time.Second))
}
