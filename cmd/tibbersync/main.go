// Command tibbersync keeps a local SQLite copy of what a Tibber customer
// shares through the Tibber Data API. See README.md and docs/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
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
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
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

// command is one subcommand: it gets the arguments after its name.
type command func(ctx context.Context, args []string, env *environment) int

// environment is what every subcommand gets from main: streams and the
// process environment, injected so that tests can run commands in-process.
type environment struct {
	stdin   io.Reader
	stdout  io.Writer
	stderr  io.Writer
	environ []string
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
  healthcheck  exit status for Docker HEALTHCHECK
  version      version, commit and Go version

Run 'tibbersync <command> -h' for the flags of a command.
`

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	env := &environment{stdin: stdin, stdout: stdout, stderr: stderr, environ: os.Environ()}
	return runWith(ctx, args, env)
}

func runWith(ctx context.Context, args []string, env *environment) int {
	global, rest, err := parseGlobal(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(env.stdout, usage)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(env.stderr, "tibbersync: %v\n\n%s", err, usage)
		return exitUsage
	}
	if len(rest) == 0 {
		fmt.Fprint(env.stderr, usage)
		return exitUsage
	}
	commands := map[string]command{
		"run":         cmdRun,
		"setup":       cmdSetup,
		"sync":        cmdSync,
		"status":      cmdStatus,
		"simulate":    cmdSimulateEnv,
		"demo":        cmdDemo,
		"backup":      cmdBackup,
		"healthcheck": cmdHealthcheck,
		"version":     cmdVersion,
	}
	name := rest[0]
	switch name {
	case "help", "-h", "--help":
		fmt.Fprint(env.stdout, usage)
		return exitOK
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(env.stderr, "tibbersync: unknown command %q\n\n%s", name, usage)
		return exitUsage
	}
	return cmd(withGlobal(ctx, global), rest[1:], env)
}

// cmdSimulateEnv adapts cmdSimulate (simulate.go) to the command signature.
func cmdSimulateEnv(ctx context.Context, args []string, env *environment) int {
	return cmdSimulate(ctx, args, env.stdout, env.stderr)
}
