package auth_test

import (
	"github.com/tibbersync/tibbersync/internal/auth"
	"github.com/tibbersync/tibbersync/internal/tibber"
	"github.com/tibbersync/tibbersync/internal/tokenstore"
	"github.com/tibbersync/tibbersync/internal/web"
)

// The seams other packages code against.
var (
	_ tibber.Tokens   = (*auth.Source)(nil)
	_ web.AuthFlow    = (*auth.Flow)(nil)
	_ auth.TokenStore = (*tokenstore.Store)(nil)
)
