// Package web serves the local setup and status pages: /setup, /setup/start,
// /callback, /, /healthz, /readyz and /metrics. It binds loopback by default,
// checks the Host header against DNS rebinding, and never caches a page.
package web

import (
	"context"
	"net/url"

	"github.com/tibbersync/tibbersync/internal/model"
)

// AuthFlow runs one authorization attempt. *auth.Flow implements it.
type AuthFlow interface {
	// Start creates a fresh attempt (new state and PKCE verifier, persisted,
	// replacing any pending one) and returns the authorize URL to redirect to.
	Start(ctx context.Context) (authorizeURL string, err error)
	// Complete handles the redirect back from Tibber: the /callback request
	// URL or a URL pasted by the user. It checks state before anything else,
	// handles error=..., exchanges the code exactly once, fetches userinfo,
	// stores the token, and sets the auth status to ok.
	Complete(ctx context.Context, redirected *url.URL) (model.AuthStatus, error)
}
