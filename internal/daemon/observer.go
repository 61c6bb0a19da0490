package daemon

import (
	"context"

	"github.com/tibbersync/tibbersync/internal/model"
)

// Observer is the extension point for features that publish what the
// daemon learns (an MQTT bridge, a push API): pass one in
// Options.Observers. Its methods are called synchronously on the goroutine
// that did the work, so they must return quickly (queue, then publish on
// a goroutine of their own) and must not call back into the scheduler.
type Observer interface {
	// RunFinished is called after every job run: scheduled runs (also the
	// quiet skips while authorization is blocked) and RunJob. By then the
	// run and what it stored are committed in data.db: after a devices run
	// with Status ok or partial, Store() has the new device snapshots and
	// capability values (e.g. the view latest_capabilities) to publish.
	RunFinished(ctx context.Context, r model.Run, err error)
	// AuthChanged is called on every authorization state change (setup
	// completed, re-authorization required, configuration error,
	// recovery), after it was recorded, with the new status. It never
	// carries a token.
	AuthChanged(ctx context.Context, st model.AuthStatus)
}

// ObserverFuncs adapts two functions to an Observer; either may be nil.
type ObserverFuncs struct {
	Run  func(ctx context.Context, r model.Run, err error)
	Auth func(ctx context.Context, st model.AuthStatus)
}

// RunFinished implements Observer.
func (f ObserverFuncs) RunFinished(ctx context.Context, r model.Run, err error) {
	if f.Run != nil {
		f.Run(ctx, r, err)
	}
}

// AuthChanged implements Observer.
func (f ObserverFuncs) AuthChanged(ctx context.Context, st model.AuthStatus) {
	if f.Auth != nil {
		f.Auth(ctx, st)
	}
}
