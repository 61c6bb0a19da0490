package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/tibbersync/tibbersync/internal/daemon"
	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/logging"
)

// cmdSync runs jobs once, through the same code path as the scheduler, and
// exits non-zero when a job did not complete.
func cmdSync(ctx context.Context, g globalFlags, args []string, env *environment) error {
	fs := newFlagSet("sync", &g, env)
	fs.Usage = func() {
		fmt.Fprintln(env.stderr, "usage: tibbersync sync [homes|devices|history|all] [-c config.toml]")
		fs.PrintDefaults()
	}
	noProgress := fs.Bool("no-progress", false, "no progress bar for history, even on a terminal")
	if err := parseFlags(fs, args, 1); err != nil {
		return err
	}
	which := "all"
	if fs.NArg() == 1 {
		which = fs.Arg(0)
	}
	var names []string
	switch which {
	case "all":
		names = daemon.JobNames
	case jobs.JobHomes, jobs.JobDevices, jobs.JobHistory:
		names = []string{which}
	default:
		return usageErrorf("tibbersync sync: unknown job %q (want homes, devices, history or all)", which)
	}
	cfg, log, err := loadConfigAndLogger(g, env)
	if err != nil {
		return err
	}
	// The secret was read above; the databases are opened as the state
	// dir's owner when root runs this (no root-owned files left behind).
	restore, err := actAsStateOwner(cfg.Storage.Dir, "sync")
	if err != nil {
		return err
	}
	defer restore()
	o := daemon.Options{Logger: log}
	if !*noProgress && isTerminal(env.stderr) {
		o.Progress = jobs.NewProgressBar(env.stderr, nil)
	}
	d, err := daemon.Open(ctx, cfg, o)
	if err != nil {
		return fmt.Errorf("tibbersync: %w", err)
	}
	defer d.Close()
	return runOnce(ctx, d, names, env)
}

// runOnce runs the named jobs in order and prints one line per run.
func runOnce(ctx context.Context, d *daemon.Daemon, names []string, env *environment) error {
	var failed error
	for _, name := range names {
		r, err := d.RunJob(ctx, name)
		line := fmt.Sprintf("%-8s %-8s requests=%d rows=%d", name, r.Status, r.Requests, r.RowsWritten)
		if r.Error != "" {
			line += " error=" + strings.ReplaceAll(r.Error, "\n", "; ")
		} else if err != nil {
			line += " error=" + err.Error()
		}
		fmt.Fprintln(env.stdout, logging.Display(line))
		switch {
		case daemon.IsAuthStop(err) || r.Status == jobs.StatusSkipped:
			st, _ := d.Auth().Status(ctx)
			return withCode(exitConfig, fmt.Errorf("tibbersync: not authorized (%s%s): run 'tibbersync setup' or open the setup page", st.State, reasonSuffix(st.Reason)))
		case r.Status == jobs.StatusFailed || r.Status == jobs.StatusPartial || (err != nil && r.Status == ""):
			failed = withCode(exitError, nil)
		}
		if ctx.Err() != nil {
			return withCode(exitError, nil)
		}
	}
	return failed
}

func reasonSuffix(r string) string {
	if r == "" {
		return ""
	}
	return ": " + r
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
