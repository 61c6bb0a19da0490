package testutil_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/config"
	"github.com/tibbersync/tibbersync/internal/testutil"
)

// TestSimConfigLoads: the rendered file passes the product's own config
// validation, defaults and overrides land where they should, and Extra
// sections are read.
func TestSimConfigLoads(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "client_secret")
	if err := writeFile(secret, "s3cret\n"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		c       testutil.SimConfig
		devices string
		days    int
		level   string
		rps     float64
	}{
		{testutil.SimConfig{}, "@every 1m", 1, "debug", 100},
		{testutil.SimConfig{Devices: "@every 2s", BackfillDays: 3, LogLevel: "info", RequestsPerSecond: 50,
			Extra: "[notify]\nwebhook_url = \"http://127.0.0.1:9/hook\"\n"}, "@every 2s", 3, "info", 50},
	} {
		c := tc.c
		c.ClientID, c.SecretFile, c.RedirectURL = "client", secret, "http://localhost:8765/callback"
		c.SimURL, c.StateDir, c.Listen = "http://127.0.0.1:9", filepath.Join(dir, "state"), "127.0.0.1:8765"
		path := filepath.Join(dir, "config.toml")
		c.Write(t, path)
		cfg, err := config.LoadAt(path, nil, config.Locations{})
		if err != nil {
			t.Fatalf("%+v: %v\n%s", c, err, c.TOML())
		}
		if cfg.Schedule.Devices != tc.devices || cfg.History.BackfillDays != tc.days || cfg.Log.Level != tc.level ||
			cfg.Tibber.RequestsPerSecond != tc.rps || cfg.Schedule.Jitter != 0*time.Second ||
			cfg.Tibber.TokenURL != "http://127.0.0.1:9/connect/token" || cfg.Web.Listen != "127.0.0.1:8765" {
			t.Errorf("loaded %+v from\n%s", cfg, c.TOML())
		}
		if (c.Extra != "") != (cfg.Notify.WebhookURL != "") {
			t.Errorf("Extra %q, webhook %q", c.Extra, cfg.Notify.WebhookURL)
		}
	}
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }
