package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/tibbersync/tibbersync/internal/store"
)

// cmdBackup writes a consistent, integrity-checked copy of data.db with
// VACUUM INTO. It works while the daemon runs.
func cmdBackup(ctx context.Context, args []string, env *environment) int {
	fs, g := newFlagSet(ctx, "backup", env)
	force := fs.Bool("force", false, "overwrite FILE if it exists")
	fs.Usage = func() {
		fmt.Fprintln(env.stderr, "usage: tibbersync backup [--force] FILE")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args, 1, env); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitUsage
	}
	dest, err := filepath.Abs(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(env.stderr, "tibbersync backup: %v\n", err)
		return exitUsage
	}
	cfg, code, ok := loadConfig(g, env)
	if !ok {
		return code
	}
	// backup stays root (its destination may be anywhere root can write);
	// whatever SQLite created in the state dir goes to the dir's owner.
	if o := stateOwnerOf(cfg.Storage.Dir); o != nil {
		defer func() {
			if err := o.chownLeftovers(); err != nil {
				fmt.Fprintf(env.stderr, "tibbersync backup: give state files back to %s: %v\n", o.name, err)
			}
		}()
	}
	db, err := store.OpenReadOnly(ctx, filepath.Join(cfg.Storage.Dir, "data.db"))
	if err != nil {
		fmt.Fprintf(env.stderr, "tibbersync backup: %v\n", err)
		return exitError
	}
	defer db.Close()
	if err := db.Backup(ctx, dest, *force); err != nil {
		fmt.Fprintf(env.stderr, "tibbersync backup: %v\n", err)
		return exitError
	}
	fmt.Fprintf(env.stdout, "backup written and checked: %s\n", dest)
	return exitOK
}
