package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strings"

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
	if err := checkStateDir(cfg, env); err != nil {
		return err
	}
	file := cfg.Path
	if file == "" {
		file = "none (built-in defaults and TIBBERSYNC_* environment)"
	}
	log.Info("configuration", "file", file, "storage_dir", cfg.Storage.Dir)
	ln, err := inheritedListener(env)
	if err != nil {
		return withCode(exitConfig, fmt.Errorf("tibbersync run: %w", err))
	}
	if ln != nil {
		// The socket systemd (or a test) bound and passed: it replaces
		// [web].listen, also for the redirect check and the setup URL.
		if addr := ln.Addr().String(); addr != cfg.Web.Listen {
			log.Info("web: serving on the socket passed by socket activation instead of [web].listen", "address", addr, "configured", cfg.Web.Listen)
			cfg.Web.Listen = addr
		}
	}
	return serve(ctx, cfg, log, env, daemon.Options{Listener: ln}, nil)
}

// inheritedListener returns the one socket passed by socket activation
// (systemd's LISTEN_FDS), or nil when none was passed.
func inheritedListener(env *environment) (net.Listener, error) {
	if env.inherited == nil {
		return nil, nil
	}
	lns, err := env.inherited()
	if err != nil || len(lns) <= 1 {
		if len(lns) == 1 {
			return lns[0], nil
		}
		return nil, err
	}
	for _, ln := range lns {
		ln.Close()
	}
	return nil, fmt.Errorf("socket activation passed %d sockets; tibbersync serves one (its web page): give the socket unit one ListenStream=", len(lns))
}

// checkStateDir refuses to start with no config file at all when the
// default storage directory does not exist: creating /var/lib/tibbersync
// (as root, by accident) from built-in defaults is never what was meant.
// A directory named by the environment (Docker) or a config file is used,
// and created, as given.
func checkStateDir(cfg config.Config, env *environment) error {
	if cfg.Path != "" {
		return nil
	}
	for _, kv := range env.environ {
		if strings.HasPrefix(kv, "TIBBERSYNC_STORAGE_DIR=") {
			return nil
		}
	}
	if _, err := os.Stat(cfg.Storage.Dir); !errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	loc := env.configLocations()
	return withCode(exitConfig, fmt.Errorf("tibbersync run: no config file (-c FILE, %s or ./%s) and the default storage directory %s does not exist; "+
		"refusing to create it from built-in defaults: pass -c FILE (see config.example.toml), set TIBBERSYNC_STORAGE_DIR, or create the directory "+
		"(the systemd unit's StateDirectory= does)", loc.System, loc.Local, cfg.Storage.Dir))
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
	stopped := make(chan struct{})
	defer close(stopped)
	if ready != nil {
		go func() {
			select {
			case <-d.Ready():
				ready(d)
			case <-stopped: // Run failed before it served
			}
		}()
	}
	if err := d.Run(ctx); err != nil {
		return fmt.Errorf("tibbersync: %w", err)
	}
	return nil
}
