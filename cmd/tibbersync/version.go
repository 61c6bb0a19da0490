package main

import (
	"context"
	"fmt"

	"github.com/tibbersync/tibbersync/internal/version"
)

func cmdVersion(ctx context.Context, args []string, env *environment) int {
	fs, _ := newFlagSet(ctx, "version", env)
	if code, ok := parseFlags(fs, args, 0, env); !ok {
		return code
	}
	fmt.Fprintln(env.stdout, version.String())
	return exitOK
}
