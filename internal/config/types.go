// Package config loads tibbersync's configuration: built-in defaults, then a
// TOML file, then TIBBERSYNC_<SECTION>_<KEY> environment variables, into one
// typed struct, validated once. Only cmd/tibbersync imports this package;
// components receive plain values.
package config

import (
	"time"

	"github.com/tibbersync/tibbersync/internal/logging"
)

// Config is the whole configuration. The koanf tags are the TOML key names,
// which are fixed (outside tooling relies on them).
type Config struct {
	Tibber   Tibber   `koanf:"tibber"`
	Storage  Storage  `koanf:"storage"`
	Web      Web      `koanf:"web"`
	Schedule Schedule `koanf:"schedule"`
	History  History  `koanf:"history"`
	Sync     Sync     `koanf:"sync"`
	Notify   Notify   `koanf:"notify"`
	Log      Log      `koanf:"log"`
	MQTT     MQTT     `koanf:"mqtt"`

	// ClientSecret is resolved after loading from, in order,
	// $CREDENTIALS_DIRECTORY/client_secret, tibber.client_secret_file, and
	// (last resort, with a warning) TIBBERSYNC_TIBBER_CLIENT_SECRET. It is
	// never read from the TOML file or a flag.
	ClientSecret logging.Secret `koanf:"-"`
	// ClientSecretSource says where ClientSecret came from ("credentials",
	// "file", "environment", or "" when unset), for logs and status.
	ClientSecretSource string `koanf:"-"`
	// MQTTPassword is the broker password, resolved after loading from
	// $CREDENTIALS_DIRECTORY/mqtt_password or mqtt.password_file (mode
	// 0600). It is never read from the TOML file, a flag or the environment.
	MQTTPassword logging.Secret `koanf:"-"`
	// MQTTPasswordSource says where MQTTPassword came from ("credentials",
	// "file", or "" when unset).
	MQTTPasswordSource string `koanf:"-"`
	// Path is the config file that was loaded ("" when none existed).
	Path string `koanf:"-"`
}

// Tibber is the [tibber] section.
type Tibber struct {
	ClientID         string   `koanf:"client_id"`
	ClientSecretFile string   `koanf:"client_secret_file"`
	RedirectURL      string   `koanf:"redirect_url"`
	AuthURL          string   `koanf:"auth_url"`
	TokenURL         string   `koanf:"token_url"`
	UserinfoURL      string   `koanf:"userinfo_url"`
	APIURL           string   `koanf:"api_url"`
	Scopes           []string `koanf:"scopes"`
	// RequestTimeout bounds every HTTP request (default 30s).
	RequestTimeout time.Duration `koanf:"request_timeout"`
	// RequestsPerSecond is the global client-side rate limit (default 2).
	RequestsPerSecond float64 `koanf:"requests_per_second"`
	// MaxResponseBytes caps every response body (default 8 MiB).
	MaxResponseBytes int64 `koanf:"max_response_bytes"`
}

// Storage is the [storage] section.
type Storage struct {
	// Dir holds data.db and secrets/ (0700) with tokens.db (0600).
	Dir string `koanf:"dir"`
}

// Web is the [web] section.
type Web struct {
	Listen string `koanf:"listen"`
	// AllowRemote must be true to listen on a non-loopback address; /setup
	// then also needs the one-time pairing code printed to the log.
	AllowRemote bool `koanf:"allow_remote"`
}

// Schedule is the [schedule] section: robfig/cron specs ("@every 5m" allowed).
type Schedule struct {
	Devices string        `koanf:"devices"`
	Homes   string        `koanf:"homes"`
	History string        `koanf:"history"`
	Jitter  time.Duration `koanf:"jitter"`
}

// History is the [history] section.
type History struct {
	Resolutions  []string      `koanf:"resolutions"`
	BackfillDays int           `koanf:"backfill_days"`
	Lookback     time.Duration `koanf:"lookback"`
}

// Sync is the [sync] section.
type Sync struct {
	// Concurrency is how many device details are fetched at once (default 4).
	Concurrency int `koanf:"concurrency"`
	// CycleTimeout bounds one job run (default 5m).
	CycleTimeout time.Duration `koanf:"cycle_timeout"`
}

// Notify is the [notify] section.
type Notify struct {
	WebhookURL string `koanf:"webhook_url"`
	// Topic is sent as "topic" in the JSON body (ntfy's JSON publishing).
	Topic string `koanf:"topic"`
	// Command is run (no shell) with the message in TIBBERSYNC_* env vars.
	Command []string `koanf:"command"`
	// Reminder repeats the notification while re-authorization is pending (default 24h, 0 = off).
	Reminder time.Duration `koanf:"reminder"`
}

// Log is the [log] section.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `koanf:"level"`
	// Format is auto (tint on a terminal, logfmt otherwise), tint, logfmt or json.
	Format string `koanf:"format"`
}

// MQTT is the [mqtt] section. Publishing is off unless URL is set.
type MQTT struct {
	// URL is the broker: mqtt://host[:1883] or mqtts://host[:8883].
	URL string `koanf:"url"`
	// CAFile is a PEM file of CA certificates to trust instead of the
	// system's (mqtts:// only).
	CAFile string `koanf:"ca_file"`
	// Username is the broker user ("" for anonymous).
	Username string `koanf:"username"`
	// PasswordFile holds the broker password (mode 0600, like the client
	// secret); $CREDENTIALS_DIRECTORY/mqtt_password takes precedence.
	PasswordFile string `koanf:"password_file"`
	// ClientID is the MQTT client id; "" means tibbersync-<short host id>.
	ClientID string `koanf:"client_id"`
	// TopicPrefix starts every topic tibbersync publishes (default tibbersync).
	TopicPrefix string `koanf:"topic_prefix"`
	// DiscoveryPrefix is Home Assistant's discovery prefix (default
	// homeassistant); "" turns discovery off.
	DiscoveryPrefix string `koanf:"discovery_prefix"`
	// QoS of every publish: 0, 1 or 2 (default 1).
	QoS int `koanf:"qos"`
}

// Enabled reports whether MQTT publishing is configured.
func (m MQTT) Enabled() bool { return m.URL != "" }
