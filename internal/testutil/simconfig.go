package testutil

import (
	"fmt"
	"os"
	"strconv"
	"testing"
)

// SimConfig is the config.toml of a daemon that talks to the simulator on
// loopback. The four Tibber URLs derive from SimURL; what differs between
// the tests that run a daemon is a field. Zero fields take the defaults
// named below.
type SimConfig struct {
	ClientID    string // the simulator's client id (required; testutil does not import the simulator)
	SecretFile  string
	RedirectURL string
	SimURL      string
	StateDir    string
	Listen      string // host:port of [web].listen

	RequestsPerSecond float64 // default 100
	// Schedules; default "@every 1m", "@every 1h", "@every 1h". Jitter is 0.
	Devices, Homes, History string
	BackfillDays            int    // default 1
	LogLevel                string // default "debug"; the format is json
	// Extra is appended as it is: further sections ([notify], [mqtt], ...).
	Extra string
}

// TOML renders the configuration.
func (c SimConfig) TOML() string {
	or := func(v, def string) string {
		if v == "" {
			return def
		}
		return v
	}
	rps := c.RequestsPerSecond
	if rps == 0 {
		rps = 100
	}
	days := c.BackfillDays
	if days == 0 {
		days = 1
	}
	s := fmt.Sprintf(`[tibber]
client_id = %q
client_secret_file = %q
redirect_url = %q
auth_url = %q
token_url = %q
userinfo_url = %q
api_url = %q
requests_per_second = %s

[storage]
dir = %q

[web]
listen = %q

[schedule]
devices = %q
homes = %q
history = %q
jitter = "0s"

[history]
backfill_days = %d

[log]
format = "json"
level = %q
`, c.ClientID, c.SecretFile, c.RedirectURL, c.SimURL+"/connect/authorize", c.SimURL+"/connect/token",
		c.SimURL+"/connect/userinfo", c.SimURL, strconv.FormatFloat(rps, 'f', 1, 64),
		c.StateDir, c.Listen,
		or(c.Devices, "@every 1m"), or(c.Homes, "@every 1h"), or(c.History, "@every 1h"),
		days, or(c.LogLevel, "debug"))
	if c.Extra != "" {
		s += "\n" + c.Extra
	}
	return s
}

// Write writes the configuration to path (mode 0600).
func (c SimConfig) Write(t testing.TB, path string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(c.TOML()), 0o600); err != nil {
		t.Fatal(err)
	}
}
