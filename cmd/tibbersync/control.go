package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"strconv"
	"syscall"
	"time"

	"github.com/tibbersync/tibbersync/internal/auth"
	"github.com/tibbersync/tibbersync/internal/control"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/tokenstore"
)

// openControl opens the daemon's control socket (<state dir>/control.sock)
// through which `tibbersync setup` hands an authorization to this daemon.
// A failure is logged and the daemon runs on without it: the setup page
// still works.
func openControl(cfg cfgT, a *app, log *slog.Logger, setupURL string, onAuthorized func(model.AuthStatus)) *control.Server {
	o := control.Options{
		Dir:           cfg.Storage.Dir,
		ConfigHint:    configHint(cfg),
		Status:        a.source.Status,
		ParseRedirect: auth.ParseRedirect,
		IsConfigError: func(err error) bool { return exitCodeForAuthError(err) == exitConfig },
		OnAuthorized:  onAuthorized,
		RedirectURL:   cfg.Tibber.RedirectURL,
		SetupURL:      setupURL,
		Logger:        log.With("component", "control"),
	}
	if a.flow != nil {
		o.Flow = a.flow
	}
	srv, err := control.Listen(o)
	if err != nil {
		log.Warn("control socket unavailable; 'tibbersync setup' cannot reach this daemon (the setup page still works)", "err", err)
		return nil
	}
	return srv
}

// setupThroughDaemon hands `tibbersync setup` to the daemon running on the
// configured state dir. handled is false when no daemon runs: the caller
// then authorizes in-process, as before.
func setupThroughDaemon(ctx context.Context, cfg cfgT, paste bool, env *environment) (code int, handled bool) {
	c := control.NewClient(cfg.Storage.Dir)
	st, err := c.Probe(ctx)
	switch {
	case errors.Is(err, control.ErrNoDaemon):
		return 0, false
	case errors.Is(err, control.ErrPermission):
		fmt.Fprintf(env.stderr, "tibbersync setup: a daemon may be running, but %v\n", err)
		return exitError, true
	case err != nil:
		fmt.Fprintf(env.stderr, "tibbersync setup: ask the running daemon: %v\n", err)
		return controlExit(err), true
	}
	fmt.Fprintf(env.stderr, "tibbersync setup: handing the authorization to the running daemon (pid %d, uid %d); it stores the tokens\n", st.PID, st.UID)
	start, err := c.Do(ctx, control.Request{Op: control.OpStart})
	if err != nil {
		fmt.Fprintf(env.stderr, "tibbersync setup: %v\n", err)
		return controlExit(err), true
	}
	if paste {
		fmt.Fprintf(env.stdout, pasteInstructions, start.AuthorizeURL, start.RedirectURL)
		line, err := readLine(ctx, env.stdin)
		if err != nil {
			fmt.Fprintf(env.stderr, "\ntibbersync setup: %v\n", err)
			return exitError, true
		}
		done, err := c.Do(ctx, control.Request{Op: control.OpComplete, Redirect: line, After: &start.Generation})
		if err != nil {
			fmt.Fprintf(env.stderr, "tibbersync setup: %v\n", err)
			return controlExit(err), true
		}
		printAuthorized(env.stdout, *done.Status)
		fmt.Fprintln(env.stdout, "The daemon stored the tokens and starts the jobs now (no restart needed).")
		return exitOK, true
	}
	fmt.Fprintf(env.stdout, `Open this URL in a browser and log in to Tibber:

%s

Tibber then sends the browser to %s, which the running daemon serves
(from another machine, tunnel first: ssh -L %s:%s <this host>).
Waiting up to %s for the authorization...
`, start.AuthorizeURL, start.RedirectURL, portOf(cfg.Web.Listen), cfg.Web.Listen, setupTimeout)
	done, err := c.Do(ctx, control.Request{Op: control.OpWait, After: &start.Generation, TimeoutSeconds: int(setupTimeout / time.Second)})
	if err != nil {
		fmt.Fprintf(env.stderr, "tibbersync setup: %v\n", err)
		return controlExit(err), true
	}
	printAuthorized(env.stdout, *done.Status)
	fmt.Fprintln(env.stdout, "The daemon stored the tokens and starts the jobs now (no restart needed).")
	return exitOK, true
}

func controlExit(err error) int {
	var ce *control.Error
	if errors.As(err, &ce) && (ce.Code == control.CodeConfig || ce.Code == control.CodeNotConfigured) {
		return exitConfig
	}
	return exitError
}

// permissionHint turns a permission failure on the state dir into what to
// do, when no daemon runs to hand the setup to.
func permissionHint(cfg cfgT, err error) string {
	if !errors.Is(err, tokenstore.ErrInsecure) && !errors.Is(err, fs.ErrPermission) {
		return ""
	}
	owner := "tibbersync"
	if o := stateOwnerOf(cfg.Storage.Dir); o != nil {
		owner = o.name
	} else if fi, serr := os.Stat(cfg.Storage.Dir); serr == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			owner = strconv.Itoa(int(st.Uid))
			if u, lerr := user.LookupId(owner); lerr == nil {
				owner = u.Username
			}
		}
	}
	return fmt.Sprintf(`The state directory %s belongs to %s, and no daemon is running on it to hand the setup to. Either
  - start the service first, then run this again (the daemon does the authorization):
      sudo systemctl start tibbersync && sudo tibbersync setup --paste
  - or run the setup as root (it acts as %s) or as that user:
      sudo tibbersync setup --paste        or   sudo -u %s tibbersync setup --paste`, cfg.Storage.Dir, owner, owner, owner)
}
