// Command tibbersync keeps a local SQLite copy of what a Tibber customer
// shares through the Tibber Data API. See README.md and docs/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/tibbersync/tibbersync/internal/auth"
	"github.com/tibbersync/tibbersync/internal/config"
	"github.com/tibbersync/tibbersync/internal/daemon"
	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/sdnotify"
)

func main() {
	daemon.SetMemoryLimit()
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		// The first signal starts a graceful shutdown; a second one aborts it.
		<-sigs
		cancel()
		<-sigs
		fmt.Fprintln(os.Stderr, "tibbersync: second signal, exiting now")
		os.Exit(exitError)
	}()
	env := &environment{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, environ: os.Environ(),
		inherited: func() ([]net.Listener, error) { return sdnotify.Listeners(os.Environ(), os.Getpid()) }}
	code := runMain(ctx, os.Args[1:], env)
	signal.Stop(sigs)
	cancel()
	os.Exit(code)
}

// Exit codes shared by every subcommand. status adds its own (see status.go).
const (
	exitOK     = 0
	exitError  = 1
	exitUsage  = 2
	exitConfig = 78 // EX_CONFIG: bad config, config_error or reauth_required; systemd's RestartPreventExitStatus covers it
)

// codeError is a command's failure with the exit code it calls for. Its
// message, when there is one, is printed as it is; a nil err exits
// silently (the command already said what was wrong, or the exit code is
// the answer, as for `status`).
type codeError struct {
	code int
	err  error
}

func (e *codeError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}

func (e *codeError) Unwrap() error { return e.err }

// withCode makes err exit with code.
func withCode(code int, err error) error { return &codeError{code: code, err: err} }

// usageErrorf is a usage error (exit 2) with a message.
func usageErrorf(format string, args ...any) error {
	return withCode(exitUsage, fmt.Errorf(format, args...))
}

// exitCode maps a command's error to the process exit code: the one place
// that decides. A daemon.ConfigError (bad configuration, nothing a restart
// fixes) and a client configuration Tibber rejected are 78, any other
// unclassified error 1.
func exitCode(err error) int {
	var ce *codeError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ce):
		return ce.code
	case daemon.IsConfigError(err), auth.IsConfigError(err):
		return exitConfig
	default:
		return exitError
	}
}

// runMain runs the command line and turns its error into an exit code,
// printing the error's message once on stderr.
func runMain(ctx context.Context, args []string, env *environment) int {
	err := runWith(ctx, args, env)
	if err != nil {
		if msg := err.Error(); msg != "" {
			// Errors may quote Tibber text (names, error details).
			fmt.Fprintln(env.stderr, logging.DisplayText(msg))
		}
	}
	return exitCode(err)
}

// command is one subcommand: it gets the global flags and the arguments
// after its name.
type command func(ctx context.Context, g globalFlags, args []string, env *environment) error

// environment is what every subcommand gets from main: streams and the
// process environment, injected so that tests can run commands in-process.
type environment struct {
	stdin   io.Reader
	stdout  io.Writer
	stderr  io.Writer
	environ []string
	// inherited returns the sockets passed by socket activation
	// (LISTEN_FDS); only `run` asks. nil: none.
	inherited func() ([]net.Listener, error)
	// locations replaces the default config search and state directory
	// (tests); the zero value means config.DefaultLocations.
	locations config.Locations
}

func (env *environment) configLocations() config.Locations {
	if env.locations == (config.Locations{}) {
		return config.DefaultLocations()
	}
	return env.locations
}

var usage = `tibbersync keeps a local SQLite copy of your Tibber Data API data.

Usage:
  tibbersync [-c config.toml] [--log-level LEVEL] <command> [flags]

Commands:
  run          the daemon: setup/status web page and scheduled jobs
  setup        one-time authorization (--paste for headless hosts)
  sync         run jobs once now: homes | devices | history | all
  status       auth state, jobs and row counts (--json); non-zero exit when unhealthy
  simulate     a local fake Tibber (authorization server + Data API)
  demo         simulator + daemon wired together: a few sync cycles and a summary
  backup FILE  consistent, checked copy of data.db
  doctor       check the installation (config, state dir, secret, redirect URI, clock, network, daemon, auth) and print fixes
  healthcheck  exit status for Docker HEALTHCHECK
  version      version, commit and Go version

Run 'tibbersync <command> -h' for the flags of a command.
`

// usageOnError is the usage text as the end of an error message (the
// message gets its line end when printed).
func usageOnError() string { return strings.TrimSuffix(usage, "\n") }

var commands = map[string]command{
	"run":         cmdRun,
	"setup":       cmdSetup,
	"sync":        cmdSync,
	"status":      cmdStatus,
	"simulate":    cmdSimulate,
	"demo":        cmdDemo,
	"backup":      cmdBackup,
	"doctor":      cmdDoctor,
	"healthcheck": cmdHealthcheck,
	"version":     cmdVersion,
}

func runWith(ctx context.Context, args []string, env *environment) error {
	global, rest, err := parseGlobal(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(env.stdout, usage)
		return nil
	}
	if err != nil {
		return usageErrorf("tibbersync: %v\n\n%s", err, usageOnError())
	}
	if len(rest) == 0 {
		return usageErrorf("%s", usageOnError())
	}
	name := rest[0]
	switch name {
	case "help", "-h", "--help":
		fmt.Fprint(env.stdout, usage)
		return nil
	}
	cmd, ok := commands[name]
	if !ok {
		return usageErrorf("tibbersync: unknown command %q\n\n%s", name, usageOnError())
	}
	return cmd(ctx, global, rest[1:], env)
}
