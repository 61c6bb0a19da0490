package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// globalFlags are accepted before the subcommand and by every subcommand.
type globalFlags struct {
	ConfigPath string
	LogLevel   string
}

type globalKey struct{}

func withGlobal(ctx context.Context, g globalFlags) context.Context {
	return context.WithValue(ctx, globalKey{}, g)
}

func globalFrom(ctx context.Context) globalFlags {
	g, _ := ctx.Value(globalKey{}).(globalFlags)
	return g
}

// parseGlobal reads -c/--config and --log-level up to the first non-flag
// argument, which is the subcommand.
func parseGlobal(args []string) (globalFlags, []string, error) {
	var g globalFlags
	fs := flag.NewFlagSet("tibbersync", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&g.ConfigPath, "c", "", "config file")
	fs.StringVar(&g.ConfigPath, "config", "", "config file")
	fs.StringVar(&g.LogLevel, "log-level", "", "log level")
	if err := fs.Parse(args); err != nil {
		return g, nil, err
	}
	return g, fs.Args(), nil
}

// newFlagSet makes a subcommand's flag set that also accepts the global
// flags after the subcommand name (tibbersync run -c x.toml).
func newFlagSet(ctx context.Context, name string, env *environment) (*flag.FlagSet, *globalFlags) {
	g := globalFrom(ctx)
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.StringVar(&g.ConfigPath, "c", g.ConfigPath, "config file (default /etc/tibbersync/config.toml if it exists, else ./config.toml)")
	fs.StringVar(&g.ConfigPath, "config", g.ConfigPath, "config file")
	fs.StringVar(&g.LogLevel, "log-level", g.LogLevel, "log level: debug, info, warn, error (overrides [log].level)")
	return fs, &g
}

// parseFlags parses a subcommand's flags. It returns ok=false with the exit
// code to use when parsing failed or -h was asked for.
func parseFlags(fs *flag.FlagSet, args []string, maxArgs int, env *environment) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	if maxArgs >= 0 && fs.NArg() > maxArgs {
		fmt.Fprintf(env.stderr, "tibbersync %s: unexpected arguments: %s\n", fs.Name(), strings.Join(fs.Args()[maxArgs:], " "))
		return exitUsage, false
	}
	return 0, true
}
