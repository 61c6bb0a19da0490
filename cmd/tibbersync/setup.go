package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/tibbersync/tibbersync/internal/auth"
	"github.com/tibbersync/tibbersync/internal/daemon"
	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/web"
)

// setupTimeout is how long `tibbersync setup` waits for the browser: the
// pending attempt's own lifetime.
const setupTimeout = 10 * time.Minute

// cmdSetup runs the one-time authorization from a terminal. Without --paste
// it serves /callback on [web].listen for the duration of the attempt only
// (R2); with --paste it reads the redirected URL from stdin (headless).
func cmdSetup(ctx context.Context, g globalFlags, args []string, env *environment) error {
	fs := newFlagSet("setup", &g, env)
	paste := fs.Bool("paste", false, "headless: print the authorize URL and read the redirected URL from stdin")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	cfg, log, err := loadConfigAndLogger(g, env)
	if err != nil {
		return err
	}
	for _, w := range auth.CheckRedirectURL(cfg.Tibber.RedirectURL, cfg.Web.Listen) {
		fmt.Fprintf(env.stderr, "warning: %s\n", w)
	}
	// A running daemon owns the attempt (control.go); only without one does
	// this process open the state dir itself.
	if handled, err := setupThroughDaemon(ctx, cfg, *paste, env); handled {
		return err
	}
	restore, err := actAsStateOwner(cfg.Storage.Dir, "setup")
	if err != nil {
		return err
	}
	defer restore()
	d, err := daemon.Open(ctx, cfg, daemon.Options{Logger: log})
	if err != nil {
		if hint := permissionHint(cfg, err); hint != "" {
			return withCode(exitConfig, fmt.Errorf("tibbersync setup: %w\n%s", err, hint))
		}
		return fmt.Errorf("tibbersync: %w", err)
	}
	defer d.Close()
	if !d.ClientConfigured() || d.Flow() == nil {
		return withCode(exitConfig, fmt.Errorf("tibbersync setup: the Tibber client is not configured: %s", daemon.ConfigHint(cfg)))
	}
	if *paste {
		return setupPaste(ctx, d, env)
	}
	return setupBrowser(ctx, d, log, env)
}

func setupPaste(ctx context.Context, d *daemon.Daemon, env *environment) error {
	authURL, err := d.Flow().Start(ctx)
	if err != nil {
		return fmt.Errorf("tibbersync setup: %w", err)
	}
	fmt.Fprintf(env.stdout, pasteInstructions, authURL, d.Config().Tibber.RedirectURL)
	line, err := readLine(ctx, env.stdin)
	if err != nil {
		return fmt.Errorf("\ntibbersync setup: %w", err)
	}
	u, err := auth.ParseRedirect(line)
	if err != nil {
		return fmt.Errorf("tibbersync setup: %w", err)
	}
	cctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := d.Flow().Complete(cctx, u)
	if err != nil {
		return fmt.Errorf("tibbersync setup: %w", err)
	}
	printAuthorized(env.stdout, st)
	return nil
}

// pasteInstructions are printed by `setup --paste`, with the authorize URL
// and the redirect URL.
const pasteInstructions = `1. Open this URL in a browser on any machine and log in to Tibber:

%s

2. After you approve, the browser goes to %s...
   That page may fail to load (nothing listens there): that is fine.
3. Copy the whole URL from the browser's address bar and paste it here, then press Enter.
   The attempt is valid for 10 minutes.

URL: `

// readLine reads one line from r, giving up when ctx is done.
func readLine(ctx context.Context, r io.Reader) (string, error) {
	type result struct {
		s   string
		err error
	}
	ch := make(chan result, 1)
	go func() {
		s, err := bufio.NewReaderSize(r, 16<<10).ReadString('\n')
		if err == io.EOF && strings.TrimSpace(s) != "" {
			err = nil
		}
		ch <- result{s, err}
	}()
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case res := <-ch:
		if res.err != nil {
			return "", fmt.Errorf("read pasted URL: %w", res.err)
		}
		return res.s, nil
	}
}

// setupBrowser serves /callback on [web].listen for the attempt only.
// It is not the daemon's web server: no status page, no jobs.
func setupBrowser(ctx context.Context, d *daemon.Daemon, log *slog.Logger, env *environment) error {
	cfg := d.Config()
	done := make(chan model.AuthStatus, 1)
	srv, err := web.New(web.Options{
		Listen:           cfg.Web.Listen,
		AllowRemote:      cfg.Web.AllowRemote,
		RedirectURL:      cfg.Tibber.RedirectURL,
		ClientID:         cfg.Tibber.ClientID,
		Scopes:           cfg.Tibber.Scopes,
		ClientConfigured: true,
		Flow:             d.Flow(),
		Logger:           log.With("component", "web"),
		ParseRedirect:    auth.ParseRedirect,
		OnAuthorized: func(st model.AuthStatus) {
			select {
			case done <- st:
			default:
			}
		},
	})
	if err != nil {
		return withCode(exitConfig, fmt.Errorf("tibbersync setup: %w", err))
	}
	if err := srv.Open(); err != nil {
		return fmt.Errorf("tibbersync setup: %w\n(is the daemon running? then open its /setup page, or use 'tibbersync setup --paste')", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Close(cctx)
	}()
	fmt.Fprintf(env.stdout, "Open %s/setup/start in a browser on this machine (or through an SSH tunnel: ssh -L %s:%s <this host>).\nWaiting up to %s for the authorization...\n",
		srv.URL(), portOf(cfg.Web.Listen), cfg.Web.Listen, setupTimeout)
	select {
	case st := <-done:
		printAuthorized(env.stdout, st)
		return nil
	case <-time.After(setupTimeout):
		return errors.New("tibbersync setup: timed out waiting for the browser; nothing was stored")
	case <-ctx.Done():
		return errors.New("tibbersync setup: interrupted; nothing was stored")
	}
}

func portOf(listen string) string {
	if i := strings.LastIndex(listen, ":"); i >= 0 {
		return listen[i+1:]
	}
	return listen
}

func printAuthorized(w io.Writer, st model.AuthStatus) {
	w = logging.DisplayWriter(w) // the email and scopes come from Tibber
	fmt.Fprintln(w, "Authorized.")
	if st.Email != "" {
		fmt.Fprintf(w, "  account: %s\n", st.Email)
	}
	if len(st.GrantedScopes) == 0 {
		fmt.Fprintln(w, "  granted scopes: unknown (Tibber's answer did not list them)")
		return
	}
	fmt.Fprintf(w, "  granted scopes: %s\n", strings.Join(st.GrantedScopes, " "))
	if missing := model.MissingCategories(st.GrantedScopes); len(missing) > 0 {
		var names []string
		for _, c := range missing {
			names = append(names, string(c))
		}
		fmt.Fprintf(w, "  not granted (these devices stay invisible): %s\n", strings.Join(names, ", "))
	}
}
