package simulator

import (
	"github.com/tibbersync/tibbersync/internal/config"
	"github.com/tibbersync/tibbersync/internal/logging"
)

// Configure points cfg's [tibber] section at a simulator serving at
// baseURL: its authorization, token, userinfo and Data API endpoints, its
// default client id and published secret, and redirectURL
// (DefaultRedirectURI when empty). The demo and every test harness
// configure the daemon with it.
func Configure(cfg *config.Config, baseURL, redirectURL string) {
	if redirectURL == "" {
		redirectURL = DefaultRedirectURI
	}
	cfg.Tibber.ClientID = DefaultClientID
	cfg.ClientSecret = logging.NewSecret(DefaultClientSecret)
	cfg.ClientSecretSource = "simulator"
	cfg.Tibber.RedirectURL = redirectURL
	cfg.Tibber.AuthURL = baseURL + "/connect/authorize"
	cfg.Tibber.TokenURL = baseURL + "/connect/token"
	cfg.Tibber.UserinfoURL = baseURL + "/connect/userinfo"
	cfg.Tibber.APIURL = baseURL
}
