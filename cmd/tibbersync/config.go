package main

import (
	"fmt"
	"log/slog"

	"github.com/tibbersync/tibbersync/internal/config"
	"github.com/tibbersync/tibbersync/internal/logging"
)

// loadConfig loads and validates the configuration. On failure it prints
// one line per bad key and returns exitConfig (78), having written nothing.
func loadConfig(g *globalFlags, env *environment) (config.Config, int, bool) {
	cfg, err := config.Load(g.ConfigPath, env.environ)
	if err != nil {
		// Every load or validation error is a configuration error (78):
		// restarting cannot fix it.
		fmt.Fprintln(env.stderr, err)
		return cfg, exitConfig, false
	}
	if g.LogLevel != "" {
		if _, err := logging.ParseLevel(g.LogLevel); err != nil {
			fmt.Fprintf(env.stderr, "--log-level %q: %v\n", g.LogLevel, err)
			return cfg, exitUsage, false
		}
		cfg.Log.Level = g.LogLevel
	}
	return cfg, exitOK, true
}

// newLogger builds the process logger from the config.
func newLogger(cfg config.Config, env *environment) (*slog.Logger, error) {
	return logging.New(env.stderr, cfg.Log.Level, cfg.Log.Format)
}

// loadConfigAndLogger loads the configuration and builds the process logger
// from it, for the subcommands that log.
func loadConfigAndLogger(g *globalFlags, env *environment) (config.Config, *slog.Logger, int, bool) {
	cfg, code, ok := loadConfig(g, env)
	if !ok {
		return cfg, nil, code, false
	}
	log, err := newLogger(cfg, env)
	if err != nil {
		fmt.Fprintf(env.stderr, "tibbersync: %v\n", err)
		return cfg, nil, exitConfig, false
	}
	return cfg, log, exitOK, true
}
