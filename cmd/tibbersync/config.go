package main

import (
	"fmt"
	"log/slog"

	"github.com/tibbersync/tibbersync/internal/config"
	"github.com/tibbersync/tibbersync/internal/logging"
)

// loadConfig loads and validates the configuration. Every load or
// validation error is a configuration error (78): restarting cannot fix
// it. The message names one bad key per line; nothing is written.
func loadConfig(g globalFlags, env *environment) (config.Config, error) {
	cfg, err := config.LoadAt(g.ConfigPath, env.environ, env.configLocations())
	if err != nil {
		return cfg, withCode(exitConfig, err)
	}
	if g.LogLevel != "" {
		if _, err := logging.ParseLevel(g.LogLevel); err != nil {
			return cfg, usageErrorf("--log-level %q: %v", g.LogLevel, err)
		}
		cfg.Log.Level = g.LogLevel
	}
	return cfg, nil
}

// loadConfigAndLogger loads the configuration and builds the process logger
// from it, for the subcommands that log.
func loadConfigAndLogger(g globalFlags, env *environment) (config.Config, *slog.Logger, error) {
	cfg, err := loadConfig(g, env)
	if err != nil {
		return cfg, nil, err
	}
	log, err := logging.New(env.stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return cfg, nil, withCode(exitConfig, fmt.Errorf("tibbersync: %w", err))
	}
	return cfg, log, nil
}
