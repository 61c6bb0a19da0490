package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/simulator"
)

// simStringList is a repeatable string flag.
type simStringList []string

func (l *simStringList) String() string     { return strings.Join(*l, ",") }
func (l *simStringList) Set(v string) error { *l = append(*l, v); return nil }

// simulateFlags are the parsed flags of `tibbersync simulate`.
type simulateFlags struct {
	listen     string
	secretFile string
	latency    time.Duration
	faults     []simulator.Fault
	opts       simulator.Options
	quiet      bool
}

// parseSimulateFlags parses and validates the flags; errors are usage errors.
func parseSimulateFlags(args []string, stderr io.Writer) (*simulateFlags, error) {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: tibbersync simulate [flags]\n\nA local fake Tibber (authorization server + Data API) on a loopback address.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	f := &simulateFlags{}
	o := &f.opts
	var faultSpecs, redirects simStringList
	var noRotate bool
	fs.StringVar(&f.listen, "listen", "127.0.0.1:9000", "loopback address to listen on (port 0 picks a free port)")
	fs.IntVar(&o.Homes, "homes", 0, "0 serves the fixture account (2 homes); N > 0 generates N homes")
	fs.IntVar(&o.DevicesPerHome, "devices-per-home", 0, "devices per generated home (default 6)")
	fs.Int64Var(&o.Seed, "seed", 1, "seed for state, history, ids and tokens")
	fs.BoolVar(&o.AutoConsent, "auto-consent", false, "redirect from /connect/authorize at once instead of showing the consent page")
	fs.BoolVar(&o.Deny, "deny", false, "deny every authorization (error=access_denied)")
	fs.BoolVar(&noRotate, "no-rotate", false, "return the same refresh token on refresh")
	fs.BoolVar(&o.OmitRefreshToken, "omit-refresh-token", false, "leave refresh_token out of refresh responses")
	fs.BoolVar(&o.HostileNames, "hostile-names", false, "fixture names carry terminal escapes and a bidi override (try tibbersync status); schema drift: --fault history:drift:count=3")
	fs.DurationVar(&o.ReuseGrace, "reuse-grace", 0, "grace window for re-presenting a rotated-out refresh token")
	fs.DurationVar(&o.AccessTTL, "access-ttl", simulator.DefaultAccessTTL, "access-token lifetime")
	fs.DurationVar(&o.RefreshTTL, "refresh-ttl", simulator.DefaultRefreshTTL, "refresh-token lifetime")
	fs.IntVar(&o.PageSize, "page-size", 0, "history page size for every device (0: per-device fixture sizes)")
	fs.Float64Var(&o.RateLimit, "rate-limit", 0, "requests per second per client (token bucket); 0 is unlimited")
	fs.IntVar(&o.RateBurst, "rate-burst", 0, "token-bucket size (default: the rate, at least 1)")
	fs.Var(&faultSpecs, "fault", "scripted fault endpoint:kind[:key=value...], repeatable (e.g. history:429:count=2:retry-after=3)")
	fs.DurationVar(&f.latency, "latency", 0, "extra latency on every request")
	fs.StringVar(&o.ClientID, "client-id", simulator.DefaultClientID, "registered client id")
	fs.StringVar(&f.secretFile, "client-secret-file", "", "file holding the client secret (default: the fixed secret "+simulator.DefaultClientSecret+", written to a temporary file)")
	fs.Var(&redirects, "redirect-uri", "registered redirect URI, repeatable (default "+simulator.DefaultRedirectURI+")")
	fs.BoolVar(&f.quiet, "quiet", false, "do not log requests")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := checkLoopback(f.listen); err != nil {
		return nil, err
	}
	switch {
	case o.Homes < 0:
		return nil, fmt.Errorf("--homes %d: must not be negative", o.Homes)
	case o.DevicesPerHome < 0 || o.DevicesPerHome > 0xffff:
		return nil, fmt.Errorf("--devices-per-home %d: must be 0..65535", o.DevicesPerHome)
	case o.PageSize < 0:
		return nil, fmt.Errorf("--page-size %d: must not be negative", o.PageSize)
	case o.RateLimit < 0 || o.RateBurst < 0:
		return nil, errors.New("--rate-limit and --rate-burst must not be negative")
	case o.AccessTTL <= 0 || o.RefreshTTL <= 0 || o.ReuseGrace < 0 || f.latency < 0:
		return nil, errors.New("durations must be positive")
	case o.ClientID == "":
		return nil, errors.New("--client-id must not be empty")
	}
	for _, spec := range faultSpecs {
		ft, err := simulator.ParseFault(spec)
		if err != nil {
			return nil, fmt.Errorf("--fault: %w", err)
		}
		f.faults = append(f.faults, ft)
	}
	o.DisableRotation = noRotate
	o.RedirectURIs = redirects
	if f.secretFile != "" {
		b, err := os.ReadFile(f.secretFile)
		if err != nil {
			return nil, fmt.Errorf("--client-secret-file: %w", err)
		}
		o.ClientSecret = strings.TrimSpace(string(b))
		if o.ClientSecret == "" {
			return nil, fmt.Errorf("--client-secret-file %s is empty", f.secretFile)
		}
	}
	return f, nil
}

// checkLoopback refuses anything but a loopback listen address: the
// simulator is a test fake with a published secret.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("--listen %q: only loopback addresses (127.0.0.1, [::1], localhost) are allowed", addr)
}

// cmdSimulate runs `tibbersync simulate`: it serves the simulator until ctx
// is done. Exit codes: 0 after a clean shutdown, 1 on a runtime error, 2 on
// bad flags.
func cmdSimulate(ctx context.Context, g globalFlags, args []string, env *environment) error {
	stdout, stderr := env.stdout, env.stderr
	f, err := parseSimulateFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return usageErrorf("tibbersync simulate: %v", err)
	}
	secretFile := f.secretFile
	if secretFile == "" {
		// The simulator's secret is public; a temporary file lets the config
		// lines below work as printed.
		dir, err := os.MkdirTemp("", "tibbersync-sim-")
		if err != nil {
			return fmt.Errorf("tibbersync simulate: %w", err)
		}
		defer os.RemoveAll(dir)
		secretFile = filepath.Join(dir, "client_secret")
		if err := os.WriteFile(secretFile, []byte(simulator.DefaultClientSecret+"\n"), 0o600); err != nil {
			return fmt.Errorf("tibbersync simulate: write secret file: %w", err)
		}
	}
	if !f.quiet {
		level := "info"
		if g.LogLevel != "" {
			level = g.LogLevel
		}
		log, err := logging.New(stderr, level, "auto")
		if err != nil {
			return usageErrorf("tibbersync simulate: %v", err)
		}
		f.opts.Logger = log.With("component", "simulator")
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("tibbersync simulate: listen: %w", err)
	}
	sim := simulator.New(f.opts)
	if f.latency > 0 {
		sim.Faults().Add(simulator.Fault{Endpoint: "*", Kind: simulator.KindLatency, Delay: f.latency})
	}
	for _, ft := range f.faults {
		sim.Faults().Add(ft)
	}
	base := "http://" + ln.Addr().String()
	sim.SetBaseURL(base)
	printSimulateBanner(stdout, sim, base, secretFile, f)

	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		sim.Close()
		return fmt.Errorf("tibbersync simulate: serve: %w", err)
	case <-ctx.Done():
	}
	// Release stalled and trickling requests, then shut down gracefully.
	sim.Close()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-serveErr
	fmt.Fprintln(stdout, "simulator stopped")
	return nil
}

func printSimulateBanner(w io.Writer, sim *simulator.Simulator, base, secretFile string, f *simulateFlags) {
	o := sim.Options()
	account := "fixture (2 homes: Europe/Oslo and Europe/London, every device category)"
	if o.Homes > 0 {
		account = fmt.Sprintf("generated: %d homes × %d devices (seed %d)", o.Homes, o.DevicesPerHome, o.Seed)
	}
	fmt.Fprintf(w, "tibbersync simulator listening on %s\n", base)
	fmt.Fprintf(w, "  account:       %s\n", account)
	fmt.Fprintf(w, "  client_id:     %s\n", o.ClientID)
	// A local fake's secret is not a secret; printing it is the point.
	fmt.Fprintf(w, "  client_secret: %s\n", o.ClientSecret)
	fmt.Fprintf(w, "  redirect_uris: %s\n", strings.Join(o.RedirectURIs, " "))
	consent := "consent page"
	switch {
	case o.Deny:
		consent = "deny every authorization"
	case o.AutoConsent:
		consent = "automatic"
	}
	fmt.Fprintf(w, "  consent:       %s\n", consent)
	rot := "rotating"
	if o.DisableRotation {
		rot = "not rotating"
	}
	fmt.Fprintf(w, "  refresh:       %s, grace %s, access %s, refresh lifetime %s\n", rot, o.ReuseGrace, o.AccessTTL, o.RefreshTTL)
	for _, ft := range sim.Faults().Pending() {
		fmt.Fprintf(w, "  fault:         %s\n", ft)
	}
	fmt.Fprintf(w, "\nPoint tibbersync at it with:\n\n")
	fmt.Fprintf(w, "[tibber]\n")
	fmt.Fprintf(w, "auth_url = %q\n", base+"/connect/authorize")
	fmt.Fprintf(w, "token_url = %q\n", base+"/connect/token")
	fmt.Fprintf(w, "userinfo_url = %q\n", base+"/connect/userinfo")
	fmt.Fprintf(w, "api_url = %q\n", base)
	fmt.Fprintf(w, "client_id = %q\n", o.ClientID)
	fmt.Fprintf(w, "client_secret_file = %q\n", secretFile)
	fmt.Fprintf(w, "redirect_url = %q\n\n", o.RedirectURIs[0])
}
