package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/tibbersync/tibbersync/internal/jobs"
)

// cmdSync runs jobs once, through the same code path as the scheduler, and
// exits non-zero when a job did not complete.
func cmdSync(ctx context.Context, args []string, env *environment) int {
	fs, g := newFlagSet(ctx, "sync", env)
	fs.Usage = func() {
		fmt.Fprintln(env.stderr, "usage: tibbersync sync [homes|devices|history|all] [-c config.toml]")
		fs.PrintDefaults()
	}
	noProgress := fs.Bool("no-progress", false, "no progress bar for history, even on a terminal")
	if code, ok := parseFlags(fs, args, 1, env); !ok {
		return code
	}
	which := "all"
	if fs.NArg() == 1 {
		which = fs.Arg(0)
	}
	var names []string
	switch which {
	case "all":
		names = jobNames
	case "homes", "devices", "history":
		names = []string{which}
	default:
		fmt.Fprintf(env.stderr, "tibbersync sync: unknown job %q (want homes, devices, history or all)\n", which)
		return exitUsage
	}
	cfg, log, code, ok := loadConfigAndLogger(g, env)
	if !ok {
		return code
	}
	// The secret was read above; the databases are opened as the state
	// dir's owner when root runs this (no root-owned files left behind).
	restore, ok := actAsStateOwner(cfg.Storage.Dir, "sync", env)
	if !ok {
		return exitError
	}
	defer restore()
	o := appOptions{}
	if !*noProgress && isTerminal(env.stderr) {
		o.progress = jobs.NewProgressBar(env.stderr, nil)
	}
	a, err := openApp(ctx, cfg, log, o)
	if err != nil {
		fmt.Fprintf(env.stderr, "tibbersync: %v\n", err)
		return exitConfig
	}
	defer a.close()
	if err := a.source.Init(ctx); err != nil {
		fmt.Fprintf(env.stderr, "tibbersync: read token state: %v\n", err)
		return exitError
	}
	return runOnce(ctx, a, names, env)
}

// runOnce runs the named jobs in order and prints one line per run.
func runOnce(ctx context.Context, a *app, names []string, env *environment) int {
	code := exitOK
	for _, name := range names {
		r, err := a.runJob(ctx, name)
		line := fmt.Sprintf("%-8s %-8s requests=%d rows=%d", name, r.Status, r.Requests, r.RowsWritten)
		if r.Error != "" {
			line += " error=" + strings.ReplaceAll(r.Error, "\n", "; ")
		} else if err != nil {
			line += " error=" + err.Error()
		}
		fmt.Fprintln(env.stdout, line)
		switch {
		case isAuthStop(err) || r.Status == "skipped":
			st, _ := a.source.Status(ctx)
			fmt.Fprintf(env.stderr, "tibbersync: not authorized (%s%s): run 'tibbersync setup' or open the setup page\n", st.State, reasonSuffix(st.Reason))
			return exitConfig
		case r.Status == "failed" || (err != nil && r.Status == ""):
			code = exitError
		case r.Status == "partial" && code == exitOK:
			code = exitError
		}
		if ctx.Err() != nil {
			return exitError
		}
	}
	return code
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
