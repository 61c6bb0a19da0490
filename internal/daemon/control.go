package daemon

import (
	"context"
	"sync"

	"github.com/tibbersync/tibbersync/internal/auth"
	"github.com/tibbersync/tibbersync/internal/control"
)

// openControl opens the control socket (<state dir>/control.sock, see
// internal/control) through which `tibbersync setup` hands an
// authorization to this daemon. Only a service daemon opens it. A failure
// is logged and the daemon runs on without it: the setup page still works.
func (d *Daemon) openControl() {
	if !d.opts.Service {
		return
	}
	o := control.Options{
		Dir:           d.cfg.Storage.Dir,
		ConfigHint:    ConfigHint(d.cfg),
		Status:        d.source.Status,
		ParseRedirect: auth.ParseRedirect,
		IsConfigError: auth.IsConfigError,
		// Not d.authorized: the server counts its own authorizations.
		OnAuthorized: d.startJobs,
		RedirectURL:  d.cfg.Tibber.RedirectURL,
		SetupURL:     "http://" + d.cfg.Web.Listen + "/setup",
		Logger:       d.log.With("component", "control"),
	}
	if d.flow != nil {
		o.Flow = d.flow
	}
	srv, err := control.Listen(o)
	if err != nil {
		d.log.Warn("control socket unavailable; 'tibbersync setup' cannot reach this daemon (the setup page still works)", "err", err)
		return
	}
	d.ctl = srv
}

// serveControl serves the control socket until ctx is done.
func (d *Daemon) serveControl(ctx context.Context, wg *sync.WaitGroup) {
	if d.ctl != nil {
		wg.Go(func() { d.ctl.Serve(ctx) })
	}
}
