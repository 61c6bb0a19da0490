package main

import (
	"context"
	"fmt"

	"github.com/tibbersync/tibbersync/internal/version"
)

func cmdVersion(ctx context.Context, g globalFlags, args []string, env *environment) error {
	fs := newFlagSet("version", &g, env)
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	fmt.Fprintln(env.stdout, version.String())
	return nil
}
