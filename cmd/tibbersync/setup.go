package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tibbersync/tibbersync/internal/auth"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/web"
)

// setupTimeout is how long `tibbersync setup` waits for the browser: the
// pending attempt's own lifetime.
const setupTimeout = 10 * time.Minute

// cmdSetup runs the one-time authorization from a terminal. Without --paste
// it serves /callback on [web].listen for the duration of the attempt only
// (R2); with --paste it reads the redirected URL from stdin (headless).
func cmdSetup(ctx context.Context, args []string, env *environment) int {
	fs, g := newFlagSet(ctx, "setup", env)
	paste := fs.Bool("paste", false, "headless: print the authorize URL and read the redirected URL from stdin")
	if code, ok := parseFlags(fs, args, 0, env); !ok {
		return code
	}
	cfg, log, code, ok := loadConfigAndLogger(g, env)
	if !ok {
		return code
	}
	for _, w := range auth.CheckRedirectURL(cfg.Tibber.RedirectURL, cfg.Web.Listen) {
		fmt.Fprintf(env.stderr, "warning: %s\n", w)
	}
	// A running daemon owns the attempt (control.go); only without one does
	// this process open the state dir itself.
	if code, handled := setupThroughDaemon(ctx, cfg, *paste, env); handled {
		return code
	}
	restore, ok := actAsStateOwner(cfg.Storage.Dir, "setup", env)
	if !ok {
		return exitError
	}
	defer restore()
	a, err := openApp(ctx, cfg, log, appOptions{})
	if err != nil {
		fmt.Fprintf(env.stderr, "tibbersync setup: %v\n", err)
		if hint := permissionHint(cfg, err); hint != "" {
			fmt.Fprintln(env.stderr, hint)
		}
		return exitConfig
	}
	defer a.close()
	if !a.clientConfigured || a.flow == nil {
		fmt.Fprintf(env.stderr, "tibbersync setup: the Tibber client is not configured: %s\n", configHint(cfg))
		return exitConfig
	}
	if *paste {
		return setupPaste(ctx, a, env)
	}
	return setupBrowser(ctx, a, env)
}

func setupPaste(ctx context.Context, a *app, env *environment) int {
	authURL, err := a.flow.Start(ctx)
	if err != nil {
		fmt.Fprintf(env.stderr, "tibbersync setup: %v\n", err)
		return exitError
	}
	fmt.Fprintf(env.stdout, pasteInstructions, authURL, a.cfg.Tibber.RedirectURL)
	line, err := readLine(ctx, env.stdin)
	if err != nil {
		fmt.Fprintf(env.stderr, "\ntibbersync setup: %v\n", err)
		return exitError
	}
	u, err := auth.ParseRedirect(line)
	if err != nil {
		fmt.Fprintf(env.stderr, "tibbersync setup: %v\n", err)
		return exitError
	}
	cctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := a.flow.Complete(cctx, u)
	if err != nil {
		fmt.Fprintf(env.stderr, "tibbersync setup: %v\n", err)
		return exitCodeForAuthError(err)
	}
	printAuthorized(env.stdout, st)
	return exitOK
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

func setupBrowser(ctx context.Context, a *app, env *environment) int {
	cfg := a.cfg
	done := make(chan model.AuthStatus, 1)
	srv, err := web.New(web.Options{
		Listen:           cfg.Web.Listen,
		AllowRemote:      cfg.Web.AllowRemote,
		RedirectURL:      cfg.Tibber.RedirectURL,
		ClientID:         cfg.Tibber.ClientID,
		Scopes:           cfg.Tibber.Scopes,
		ClientConfigured: true,
		Flow:             a.flow,
		Logger:           a.log.With("component", "web"),
		ParseRedirect:    auth.ParseRedirect,
		OnAuthorized: func(st model.AuthStatus) {
			select {
			case done <- st:
			default:
			}
		},
	})
	if err != nil {
		fmt.Fprintf(env.stderr, "tibbersync setup: %v\n", err)
		return exitConfig
	}
	if err := srv.Open(); err != nil {
		fmt.Fprintf(env.stderr, "tibbersync setup: %v\n(is the daemon running? then open its /setup page, or use 'tibbersync setup --paste')\n", err)
		return exitError
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
		return exitOK
	case <-time.After(setupTimeout):
		fmt.Fprintln(env.stderr, "tibbersync setup: timed out waiting for the browser; nothing was stored")
		return exitError
	case <-ctx.Done():
		fmt.Fprintln(env.stderr, "tibbersync setup: interrupted; nothing was stored")
		return exitError
	}
}

func portOf(listen string) string {
	if i := strings.LastIndex(listen, ":"); i >= 0 {
		return listen[i+1:]
	}
	return listen
}

func printAuthorized(w io.Writer, st model.AuthStatus) {
	fmt.Fprintln(w, "Authorized.")
	if st.Email != "" {
		fmt.Fprintf(w, "  account: %s\n", st.Email)
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

// exitCodeForAuthError maps a failed Complete to an exit code: a rejected
// client configuration is 78, everything else 1.
func exitCodeForAuthError(err error) int {
	if errors.Is(err, auth.ErrConfig) || errors.Is(err, auth.ErrNoClientSecret) {
		return exitConfig
	}
	return exitError
}
