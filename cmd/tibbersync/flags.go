package main

import (
	"errors"
	"flag"
	"io"
	"strings"
)

// globalFlags are accepted before the subcommand and by every subcommand.
type globalFlags struct {
	ConfigPath string
	LogLevel   string
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
// flags after the subcommand name (tibbersync run -c x.toml); they update
// *g.
func newFlagSet(name string, g *globalFlags, env *environment) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.StringVar(&g.ConfigPath, "c", g.ConfigPath, "config file (default /etc/tibbersync/config.toml if it exists, else ./config.toml)")
	fs.StringVar(&g.ConfigPath, "config", g.ConfigPath, "config file")
	fs.StringVar(&g.LogLevel, "log-level", g.LogLevel, "log level: debug, info, warn, error (overrides [log].level)")
	return fs
}

// errHelp stops a command after -h printed its flags: exit 0.
var errHelp = withCode(exitOK, nil)

// parseFlags parses a subcommand's flags and allows at most maxArgs
// positional arguments (-1: any). The flag package has already printed
// what was wrong, so a parse error exits 2 silently; -h exits 0.
//
// Flags may follow positional arguments, as the usage lines show
// (tibbersync sync devices -c FILE, tibbersync backup FILE --force); "--"
// ends the flags.
func parseFlags(fs *flag.FlagSet, args []string, maxArgs int) error {
	var pos []string
	rest := args
	for len(rest) > 0 {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return errHelp
			}
			return withCode(exitUsage, nil)
		}
		left := fs.Args()
		if n := len(rest) - len(left); n > 0 && rest[n-1] == "--" {
			pos = append(pos, left...) // everything after "--" is positional
			break
		}
		i := 0
		for i < len(left) && (!strings.HasPrefix(left[i], "-") || left[i] == "-") {
			i++
		}
		pos = append(pos, left[:i]...)
		rest = left[i:]
	}
	// Leave the positional arguments where fs.Args and fs.Arg find them.
	if err := fs.Parse(append([]string{"--"}, pos...)); err != nil {
		return withCode(exitUsage, nil)
	}
	if maxArgs >= 0 && fs.NArg() > maxArgs {
		return usageErrorf("tibbersync %s: unexpected arguments: %s", fs.Name(), strings.Join(fs.Args()[maxArgs:], " "))
	}
	return nil
}
