package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/tibbersync/tibbersync/internal/store"
)

// cmdBackup writes a consistent, integrity-checked copy of data.db with
// VACUUM INTO. It works while the daemon runs.
func cmdBackup(ctx context.Context, g globalFlags, args []string, env *environment) error {
	fs := newFlagSet("backup", &g, env)
	force := fs.Bool("force", false, "overwrite FILE if it exists")
	fs.Usage = func() {
		fmt.Fprintln(env.stderr, "usage: tibbersync backup [--force] FILE")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return withCode(exitUsage, nil)
	}
	dest, err := filepath.Abs(fs.Arg(0))
	if err != nil {
		return usageErrorf("tibbersync backup: %v", err)
	}
	cfg, err := loadConfig(g, env)
	if err != nil {
		return err
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
		return fmt.Errorf("tibbersync backup: %w", err)
	}
	defer db.Close()
	if err := db.Backup(ctx, dest, *force); err != nil {
		return fmt.Errorf("tibbersync backup: %w", err)
	}
	fmt.Fprintf(env.stdout, "backup written and checked: %s\n", dest)
	return nil
}
