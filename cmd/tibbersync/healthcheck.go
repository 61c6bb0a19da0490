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
func cmdHealthcheck(ctx context.Context, g globalFlags, args []string, env *environment) error {
	fs := newFlagSet("healthcheck", &g, env)
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the daemon")
	ready := fs.Bool("ready", false, "check /readyz (authorized, jobs fresh) instead of /healthz")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	cfg, err := loadConfig(g, env)
	if err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(cfg.Web.Listen)
	if err != nil {
		return fmt.Errorf("healthcheck: web.listen %q: %w", cfg.Web.Listen, err)
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
		return fmt.Errorf("healthcheck: %w", err)
	}
	req.Header.Set("User-Agent", version.UserAgent())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s: %s", u, resp.Status)
	}
	fmt.Fprintf(env.stdout, "ok %s\n", u)
	return nil
}
