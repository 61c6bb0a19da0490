// Command tibbersync-bench is `make bench`: it measures tibbersync's
// performance and memory figures against the built-in simulator and prints
// them as a table (metric | value | target | ok), then the machine they ran
// on. A missed target is flagged in the table; the exit status is non-zero
// only when a figure could not be measured. See docs/benchmarks.md.
//
// Usage:
//
//	tibbersync-bench [-binary dist/tibbersync] [-quick]
//
// The driver re-executes itself (`tibbersync-bench child <role>`) for the
// scenarios whose memory and I/O must be measured in a process of their own.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tibbersync/tibbersync/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == bench.ChildArg {
		return bench.ChildMain(ctx, args[1:], stdin, stdout, stderr)
	}
	o := bench.DefaultOptions()
	fs := flag.NewFlagSet("tibbersync-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Binary, "binary", o.Binary, "the tibbersync release binary (make build)")
	fs.StringVar(&o.TempDir, "tmp", "", "directory for the state directories (default $TMPDIR)")
	fs.IntVar(&o.Unchanged, "cycles", o.Unchanged, "unchanged devices cycles to measure after the first")
	fs.BoolVar(&o.DefaultRateCycle, "default-rate", o.DefaultRateCycle, "also time one cycle at the client's default rate limit (about 105 s, in the background)")
	fs.IntVar(&o.BackfillDays, "backfill-days", o.BackfillDays, "days of the backfill child (peak RSS, bytes per value)")
	fs.IntVar(&o.BackfillDevices, "backfill-devices", o.BackfillDevices, "devices of the backfill child")
	fs.IntVar(&o.BackfillDaemonDays, "daemon-backfill-days", o.BackfillDaemonDays, "days of the release binary's backfill (idle RSS, /metrics time)")
	fs.IntVar(&o.IngestDays, "ingest-days", o.IngestDays, "days of the ingest/raw pairs")
	fs.IntVar(&o.BigHomes, "big-homes", o.BigHomes, "homes of the large devices cycle (peak RSS)")
	fs.IntVar(&o.BigDevicesPerHome, "big-devices", o.BigDevicesPerHome, "devices per home of the large devices cycle")
	quiet := fs.Bool("q", false, "no progress lines on stderr")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tibbersync-bench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if o.Unchanged < 1 {
		fmt.Fprintln(stderr, "tibbersync-bench: -cycles must be at least 1")
		return 2
	}
	if !*quiet {
		o.Progress = stderr
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	rep, err := bench.Run(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "tibbersync-bench: %v\n", err)
		return 1
	}
	if err := bench.WriteTable(stdout, rep.Rows); err != nil {
		fmt.Fprintf(stderr, "tibbersync-bench: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "\n%s\nbench took %s\n", rep.Machine, bench.FormatDuration(rep.Took))
	return 0
}
