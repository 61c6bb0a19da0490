package daemon

import (
	"context"
	"os"
	"runtime/debug"

	"github.com/tibbersync/tibbersync/internal/memtrim"
)

// memoryLimit is the process's soft memory limit (debug.SetMemoryLimit)
// unless GOMEMLIMIT is set: the Go runtime collects harder as its memory
// approaches it, which keeps the peak of a long backfill low. The daemon
// idles far below it.
const memoryLimit = 40 << 20

// SetMemoryLimit applies memoryLimit to the process. The tibbersync binary
// calls it first thing in main; it is process-wide, so tests that run
// daemons inside a larger test binary never do.
func SetMemoryLimit() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
}

// releaseMemory hands what a job used back to the system: SQLite's caches,
// the Go heap the job left behind (debug.FreeOSMemory runs a GC and returns
// the freed pages at once instead of over minutes) and the pages of the
// binary's code that the job ran (see internal/memtrim). The service runs
// it after every job; at idle-heap sizes it costs a few milliseconds.
func (d *Daemon) releaseMemory(ctx context.Context) {
	if !d.opts.Service || d.data == nil {
		return
	}
	if err := d.data.ReleaseMemory(ctx); err != nil && ctx.Err() == nil {
		d.log.Debug("release memory", "err", err)
	}
	if _, err := memtrim.Release(); err != nil {
		d.log.Debug("release memory", "err", err)
	}
}
