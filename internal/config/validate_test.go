package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/tibbersync/tibbersync/internal/config"
)

func TestEveryValidationErrorAtOnce(t *testing.T) {
	path := writeFile(t, "config.toml", `
[tibber]
redirect_url = "http://localhost:8765"
auth_url = "thewall.tibber.com/connect/authorize"
token_url = "ftp://thewall.tibber.com/connect/token"
userinfo_url = "https:///connect/userinfo"
api_url = "https://data-api.tibber.com:99999"
scopes = ["openid", "profile"]
request_timeout = "0s"
requests_per_second = 0.0
max_response_bytes = -1

[storage]
dir = ""

[web]
listen = "8765"

[schedule]
devices = "*/5 * *"
homes = "@fortnightly"
history = "61 * * * *"
jitter = "-30s"

[history]
resolutions = ["hour", "week", "Day"]
backfill_days = 0
lookback = "-48h"

[sync]
concurrency = 65
cycle_timeout = "-5m"

[notify]
webhook_url = "gotify.local/message?token=GOTIFYTOKEN"
command = [""]
reminder = "-1h"

[log]
level = "verbose"
format = "xml"
`, 0o644)
	_, err := config.Load(path, nil)
	ve := validationError(t, err)

	type want struct {
		value    string
		sentinel error
	}
	wants := map[string]want{
		"tibber.redirect_url":        {"http://localhost:8765", config.ErrBadURL},
		"tibber.auth_url":            {"thewall.tibber.com/connect/authorize", config.ErrBadURL},
		"tibber.token_url":           {"ftp://thewall.tibber.com/connect/token", config.ErrBadURL},
		"tibber.userinfo_url":        {"https:///connect/userinfo", config.ErrBadURL},
		"tibber.api_url":             {"https://data-api.tibber.com:99999", config.ErrBadURL},
		"tibber.scopes":              {`["openid", "profile"]`, config.ErrBadValue},
		"tibber.request_timeout":     {"0s", config.ErrOutOfRange},
		"tibber.requests_per_second": {"0", config.ErrOutOfRange},
		"tibber.max_response_bytes":  {"-1", config.ErrOutOfRange},
		"storage.dir":                {"", config.ErrEmpty},
		"web.listen":                 {"8765", config.ErrBadValue},
		"schedule.devices":           {"*/5 * *", config.ErrBadCron},
		"schedule.homes":             {"@fortnightly", config.ErrBadCron},
		"schedule.history":           {"61 * * * *", config.ErrBadCron},
		"schedule.jitter":            {"-30s", config.ErrNegativeDuration},
		"history.resolutions":        {`["hour", "week", "Day"]`, config.ErrUnknownResolution},
		"history.backfill_days":      {"0", config.ErrOutOfRange},
		"history.lookback":           {"-48h0m0s", config.ErrNegativeDuration},
		"sync.concurrency":           {"65", config.ErrOutOfRange},
		"sync.cycle_timeout":         {"-5m0s", config.ErrNegativeDuration},
		"notify.webhook_url":         {"gotify.local/message?token=REDACTED", config.ErrBadURL},
		"notify.command":             {`[""]`, config.ErrEmpty},
		"notify.reminder":            {"-1h0m0s", config.ErrNegativeDuration},
		"log.level":                  {"verbose", config.ErrBadValue},
		"log.format":                 {"xml", config.ErrBadValue},
	}
	seen := map[string]bool{}
	for _, f := range ve.Fields {
		if seen[f.Key] {
			t.Errorf("key %s reported twice", f.Key)
		}
		seen[f.Key] = true
		w, ok := wants[f.Key]
		if !ok {
			t.Errorf("unexpected error for %s: %v", f.Key, f)
			continue
		}
		if f.Value != w.value {
			t.Errorf("%s: Value = %q, want %q", f.Key, f.Value, w.value)
		}
		if !errors.Is(f, w.sentinel) {
			t.Errorf("%s: %v does not wrap %v", f.Key, f.Err, w.sentinel)
		}
		// One line per key, naming key and value.
		line := f.Error()
		if !strings.HasPrefix(line, "config: "+f.Key+" = ") || strings.Contains(line, "\n") {
			t.Errorf("%s: line %q is not `config: key = \"value\": problem`", f.Key, line)
		}
	}
	for k := range wants {
		if !seen[k] {
			t.Errorf("no error for %s", k)
		}
	}
	if got, want := strings.Count(err.Error(), "\n")+1, len(wants); got != want {
		t.Errorf("error has %d lines, want %d:\n%v", got, want, err)
	}
	msg := err.Error()
	for _, s := range []string{
		`config: schedule.devices = "*/5 * *": bad cron spec: `,
		`"week", "Day" (want quarterHour, hour, day or month)`,
		"must contain offline_access",
		"must have a path",
	} {
		if !strings.Contains(msg, s) {
			t.Errorf("error lacks %q:\n%s", s, msg)
		}
	}
	if strings.Contains(msg, "GOTIFYTOKEN") {
		t.Errorf("error repeats the webhook token:\n%s", msg)
	}
	for _, sentinel := range []error{config.ErrConfig, config.ErrBadCron, config.ErrBadURL, config.ErrUnknownResolution, config.ErrNegativeDuration} {
		if !errors.Is(err, sentinel) {
			t.Errorf("errors.Is(err, %v) = false", sentinel)
		}
	}
}

func TestValidateAcceptsGoodValues(t *testing.T) {
	cases := map[string]func(c *config.Config){
		"EveryDescriptor":   func(c *config.Config) { c.Schedule.Devices = "@every 5m" },
		"HourlyDescriptor":  func(c *config.Config) { c.Schedule.Homes = "@hourly" },
		"CronTZ":            func(c *config.Config) { c.Schedule.History = "CRON_TZ=UTC 7 * * * *" },
		"ZeroDurations":     func(c *config.Config) { c.Schedule.Jitter, c.History.Lookback, c.Notify.Reminder = 0, 0, 0 },
		"AllResolutions":    func(c *config.Config) { c.History.Resolutions = []string{"quarterHour", "hour", "day", "month"} },
		"BackfillMax":       func(c *config.Config) { c.History.BackfillDays = 3650 },
		"ConcurrencyBounds": func(c *config.Config) { c.Sync.Concurrency = 64 },
		"IPv6Loopback":      func(c *config.Config) { c.Web.Listen = "[::1]:8765" },
		"LocalhostPort0":    func(c *config.Config) { c.Web.Listen = "localhost:0" },
		"RemoteAllowed":     func(c *config.Config) { c.Web.Listen, c.Web.AllowRemote = ":8765", true },
		"WebhookWithQuery":  func(c *config.Config) { c.Notify.WebhookURL = "https://gotify.example/message?token=abc" },
		"HTTPSRedirect":     func(c *config.Config) { c.Tibber.RedirectURL = "https://tibber.example.org/oauth/callback" },
		"Command":           func(c *config.Config) { c.Notify.Command = []string{"/bin/true"} },
		"LevelsFormats":     func(c *config.Config) { c.Log.Level, c.Log.Format = "error", "logfmt" },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			c := config.Default()
			mutate(&c)
			if err := c.Validate(); err != nil {
				t.Errorf("Validate() = %v", err)
			}
		})
	}
}

func TestValidateRejects(t *testing.T) {
	cases := map[string]struct {
		mutate   func(c *config.Config)
		key      string
		sentinel error
	}{
		"RemoteWithoutOptIn": {func(c *config.Config) { c.Web.Listen = "0.0.0.0:8765" }, "web.listen", config.ErrBadValue},
		"EmptyHostNoOptIn":   {func(c *config.Config) { c.Web.Listen = ":8765" }, "web.listen", config.ErrBadValue},
		"NoScopes":           {func(c *config.Config) { c.Tibber.Scopes = nil }, "tibber.scopes", config.ErrEmpty},
		"ScopeWithSpace":     {func(c *config.Config) { c.Tibber.Scopes = []string{"openid offline_access"} }, "tibber.scopes", config.ErrBadValue},
		"NoResolutions":      {func(c *config.Config) { c.History.Resolutions = nil }, "history.resolutions", config.ErrEmpty},
		"BackfillTooLarge":   {func(c *config.Config) { c.History.BackfillDays = 3651 }, "history.backfill_days", config.ErrOutOfRange},
		"ConcurrencyZero":    {func(c *config.Config) { c.Sync.Concurrency = 0 }, "sync.concurrency", config.ErrOutOfRange},
		"EmptyCron":          {func(c *config.Config) { c.Schedule.Devices = " " }, "schedule.devices", config.ErrBadCron},
		"EveryNegative":      {func(c *config.Config) { c.Schedule.Homes = "@every -5m" }, "schedule.homes", config.ErrBadCron},
		"SixFieldCron":       {func(c *config.Config) { c.Schedule.Devices = "0 */5 * * * *" }, "schedule.devices", config.ErrBadCron},
		"RedirectRootPath":   {func(c *config.Config) { c.Tibber.RedirectURL = "http://localhost:8765/" }, "tibber.redirect_url", config.ErrBadURL},
		"URLFragment":        {func(c *config.Config) { c.Tibber.APIURL = "https://data-api.tibber.com/#x" }, "tibber.api_url", config.ErrBadURL},
		"RateNaN":            {func(c *config.Config) { c.Tibber.RequestsPerSecond = nan() }, "tibber.requests_per_second", config.ErrOutOfRange},
		"BadWebhookScheme":   {func(c *config.Config) { c.Notify.WebhookURL = "mailto:me@example.org" }, "notify.webhook_url", config.ErrBadURL},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := config.Default()
			c.mutate(&cfg)
			ve := validationError(t, cfg.Validate())
			if len(ve.Fields) != 1 || ve.Fields[0].Key != c.key || !errors.Is(ve.Fields[0], c.sentinel) {
				t.Errorf("got %v, want one %v error on %s", ve, c.sentinel, c.key)
			}
		})
	}
}

func nan() float64 {
	zero := 0.0
	return zero / zero
}
