package main

import (
	"errors"
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
		fmt.Fprintln(env.stderr, err)
		if errors.Is(err, config.ErrConfig) {
			return cfg, exitConfig, false
		}
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
