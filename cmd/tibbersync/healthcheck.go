package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/tibbersync/tibbersync/internal/version"
)

// cmdHealthcheck asks the running daemon's /healthz on [web].listen. It is
// the Docker HEALTHCHECK: distroless images have no curl.
func cmdHealthcheck(ctx context.Context, args []string, env *environment) int {
	fs, g := newFlagSet(ctx, "healthcheck", env)
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the daemon")
	ready := fs.Bool("ready", false, "check /readyz (authorized, jobs fresh) instead of /healthz")
	if code, ok := parseFlags(fs, args, 0, env); !ok {
		return code
	}
	cfg, code, ok := loadConfig(g, env)
	if !ok {
		return code
	}
	host, port, err := net.SplitHostPort(cfg.Web.Listen)
	if err != nil {
		fmt.Fprintf(env.stderr, "healthcheck: web.listen %q: %v\n", cfg.Web.Listen, err)
		return exitError
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	path := "/healthz"
	if *ready {
		path = "/readyz"
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	u := "http://" + net.JoinHostPort(host, port) + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		fmt.Fprintf(env.stderr, "healthcheck: %v\n", err)
		return exitError
	}
	req.Header.Set("User-Agent", version.UserAgent())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(env.stderr, "healthcheck: %s: %v\n", u, err)
		return exitError
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(env.stderr, "healthcheck: %s: %s\n", u, resp.Status)
		return exitError
	}
	fmt.Fprintf(env.stdout, "ok %s\n", u)
	return exitOK
}
