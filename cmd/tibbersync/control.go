package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"syscall"
	"time"

	"github.com/tibbersync/tibbersync/internal/config"
	"github.com/tibbersync/tibbersync/internal/control"
	"github.com/tibbersync/tibbersync/internal/tokenstore"
)

// setupThroughDaemon hands `tibbersync setup` to the daemon running on the
// configured state dir. handled is false when no daemon runs: the caller
// then authorizes in-process, as before.
func setupThroughDaemon(ctx context.Context, cfg config.Config, paste bool, env *environment) (handled bool, err error) {
	c := control.NewClient(cfg.Storage.Dir)
	st, err := c.Probe(ctx)
	switch {
	case errors.Is(err, control.ErrNoDaemon):
		return false, nil
	case errors.Is(err, control.ErrPermission):
		return true, fmt.Errorf("tibbersync setup: a daemon may be running, but %w", err)
	case err != nil:
		return true, controlErr(fmt.Errorf("tibbersync setup: ask the running daemon: %w", err))
	}
	fmt.Fprintf(env.stderr, "tibbersync setup: handing the authorization to the running daemon (pid %d, uid %d); it stores the tokens\n", st.PID, st.UID)
	start, err := c.Do(ctx, control.Request{Op: control.OpStart})
	if err != nil {
		return true, controlErr(fmt.Errorf("tibbersync setup: %w", err))
	}
	if paste {
		fmt.Fprintf(env.stdout, pasteInstructions, start.AuthorizeURL, start.RedirectURL)
		line, err := readLine(ctx, env.stdin)
		if err != nil {
			return true, fmt.Errorf("\ntibbersync setup: %w", err)
		}
		done, err := c.Do(ctx, control.Request{Op: control.OpComplete, Redirect: line, After: &start.Generation})
		if err != nil {
			return true, controlErr(fmt.Errorf("tibbersync setup: %w", err))
		}
		printAuthorized(env.stdout, *done.Status)
		fmt.Fprintln(env.stdout, "The daemon stored the tokens and starts the jobs now (no restart needed).")
		return true, nil
	}
	fmt.Fprintf(env.stdout, `Open this URL in a browser and log in to Tibber:

%s

Tibber then sends the browser to %s, which the running daemon serves
(from another machine, tunnel first: ssh -L %s:%s <this host>).
Waiting up to %s for the authorization...
`, start.AuthorizeURL, start.RedirectURL, portOf(cfg.Web.Listen), cfg.Web.Listen, setupTimeout)
	done, err := c.Do(ctx, control.Request{Op: control.OpWait, After: &start.Generation, TimeoutSeconds: int(setupTimeout / time.Second)})
	if err != nil {
		return true, controlErr(fmt.Errorf("tibbersync setup: %w", err))
	}
	printAuthorized(env.stdout, *done.Status)
	fmt.Fprintln(env.stdout, "The daemon stored the tokens and starts the jobs now (no restart needed).")
	return true, nil
}

// controlErr gives a daemon's answer its exit code: a client configuration
// problem is 78, like the in-process setup.
func controlErr(err error) error {
	var ce *control.Error
	if errors.As(err, &ce) && (ce.Code == control.CodeConfig || ce.Code == control.CodeNotConfigured) {
		return withCode(exitConfig, err)
	}
	return err
}

// permissionHint turns a permission failure on the state dir into what to
// do, when no daemon runs to hand the setup to.
func permissionHint(cfg config.Config, err error) string {
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
