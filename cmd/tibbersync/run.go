package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/tibbersync/tibbersync/internal/config"
	"github.com/tibbersync/tibbersync/internal/daemon"
)

func cmdRun(ctx context.Context, g globalFlags, args []string, env *environment) error {
	fs := newFlagSet("run", &g, env)
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	cfg, log, err := loadConfigAndLogger(g, env)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, log, env, daemon.Options{}, nil)
}

// serve opens the daemon as a service (lock, metrics, sd_notify) and runs
// it until ctx is done. ready, when set, is called once it serves.
func serve(ctx context.Context, cfg config.Config, log *slog.Logger, env *environment, o daemon.Options, ready func(*daemon.Daemon)) error {
	o.Logger = log
	o.Service = true
	o.Metrics = true
	o.Environ = env.environ
	d, err := daemon.Open(ctx, cfg, o)
	if err != nil {
		return fmt.Errorf("tibbersync: %w", err)
	}
	defer d.Close()
	if ready != nil {
		go func() {
			select {
			case <-d.Ready():
				ready(d)
			case <-ctx.Done():
			}
		}()
	}
	if err := d.Run(ctx); err != nil {
		return fmt.Errorf("tibbersync: %w", err)
	}
	return nil
}
