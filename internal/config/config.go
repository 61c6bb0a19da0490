package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/knadh/koanf/parsers/toml/v2"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
)

// Where Load looks for the config file when no path is given, in order. A
// missing file in the default search is fine: defaults and the environment
// then make the whole configuration.
const (
	SystemPath = "/etc/tibbersync/config.toml"
	LocalPath  = "config.toml"
)

// EnvPrefix starts every environment variable Load reads:
// TIBBERSYNC_<SECTION>_<KEY>, e.g. TIBBERSYNC_TIBBER_CLIENT_ID.
const EnvPrefix = "TIBBERSYNC_"

// SecretEnv is the last-resort environment variable for the client secret.
// The caller should log a WARN when ClientSecretSource is "environment":
// the environment of a process is visible to more than its owner expects.
const SecretEnv = EnvPrefix + "TIBBER_CLIENT_SECRET"

// CredentialName is the systemd credential (LoadCredential=client_secret:...)
// read from $CREDENTIALS_DIRECTORY.
const CredentialName = "client_secret"

// MQTTCredentialName is the systemd credential
// (LoadCredential=mqtt_password:...) read from $CREDENTIALS_DIRECTORY for
// the broker password.
const MQTTCredentialName = "mqtt_password"

// The values of Config.ClientSecretSource.
const (
	SourceCredentials = "credentials"
	SourceFile        = "file"
	SourceEnvironment = "environment"
)

// defaultScopes are the 11 scopes requested by default: the baseline scopes,
// data-api-homes-read and the five device-category scopes.
var defaultScopes = [...]string{
	"openid", "profile", "email", "offline_access", "data-api-user-read",
	"data-api-homes-read", "data-api-vehicles-read", "data-api-chargers-read",
	"data-api-thermostats-read", "data-api-energy-systems-read", "data-api-inverters-read",
}

// Default returns the built-in defaults (the values documented in
// config.example.toml). Each call returns fresh slices.
func Default() Config {
	return Config{
		Tibber: Tibber{
			RedirectURL:       "http://localhost:8765/callback",
			AuthURL:           "https://thewall.tibber.com/connect/authorize",
			TokenURL:          "https://thewall.tibber.com/connect/token",
			UserinfoURL:       "https://thewall.tibber.com/connect/userinfo",
			APIURL:            "https://data-api.tibber.com",
			Scopes:            slices.Clone(defaultScopes[:]),
			RequestTimeout:    30 * time.Second,
			RequestsPerSecond: 2,
			MaxResponseBytes:  8 << 20,
		},
		Storage: Storage{Dir: "/var/lib/tibbersync"},
		Web:     Web{Listen: "127.0.0.1:8765"},
		Schedule: Schedule{
			Devices: "*/5 * * * *",
			Homes:   "0 * * * *",
			History: "7 * * * *",
			Jitter:  30 * time.Second,
		},
		History: History{
			Resolutions:  []string{"hour", "day"},
			BackfillDays: 30,
			Lookback:     48 * time.Hour,
		},
		Sync: Sync{
			Concurrency:  4,
			CycleTimeout: 5 * time.Minute,
		},
		Notify: Notify{
			Command:  []string{},
			Reminder: 24 * time.Hour,
		},
		Log:  Log{Level: "info", Format: "auto"},
		MQTT: MQTT{TopicPrefix: "tibbersync", DiscoveryPrefix: "homeassistant", QoS: 1},
	}
}

// Load builds the configuration: defaults, then the TOML file at path, then
// TIBBERSYNC_<SECTION>_<KEY> variables from environ (os.Environ() style),
// then the client secret (see resolveSecret), then Validate.
//
// With path == "", Load reads SystemPath when it exists, else LocalPath
// when it exists, else no file. An explicitly given path must exist.
//
// Every error wraps ErrConfig. Problems with individual keys (unknown key,
// wrong type, invalid value, bad secret file) are all reported at once in a
// *ValidationError; errors that stop loading early (unreadable or
// unparsable file) are plain wrapped errors. On error the Config is zero.
func Load(path string, environ []string) (Config, error) {
	return LoadAt(path, environ, DefaultLocations())
}

// Locations are the places a bare installation uses: the config files
// searched when no path is given (System, then Local) and the default
// storage directory. Tests point them at a temporary directory so that
// what the machine has under /etc and /var/lib does not matter.
type Locations struct {
	System   string
	Local    string
	StateDir string
}

// DefaultLocations are SystemPath, LocalPath and /var/lib/tibbersync.
func DefaultLocations() Locations {
	return Locations{System: SystemPath, Local: LocalPath, StateDir: Default().Storage.Dir}
}

// LoadAt is Load with the default locations replaced by loc.
func LoadAt(path string, environ []string, loc Locations) (Config, error) {
	defaults := Default()
	if loc.StateDir != "" {
		defaults.Storage.Dir = loc.StateDir
	}
	var search []string
	for _, p := range []string{loc.System, loc.Local} {
		if p != "" {
			search = append(search, p)
		}
	}
	return load(path, environ, search, defaults)
}

func load(path string, environ []string, search []string, defaults Config) (Config, error) {
	specs := keySpecs()
	var probs problems

	k := koanf.New(".")
	if err := k.Load(confmap.Provider(flatValues(defaults), "."), nil); err != nil {
		return Config{}, fmt.Errorf("%w: load defaults: %w", ErrConfig, err)
	}

	found, err := findFile(path, search)
	if err != nil {
		return Config{}, err
	}
	if found != "" {
		vals, err := readFile(found, specs, &probs)
		if err != nil {
			return Config{}, err
		}
		if err := k.Load(confmap.Provider(vals, "."), nil); err != nil {
			return Config{}, fmt.Errorf("%w: load %s: %w", ErrConfig, found, err)
		}
	}

	if err := loadEnv(k, environ, specs, &probs); err != nil {
		return Config{}, err
	}

	cfg, err := decode(k, specs, &probs)
	if err != nil {
		return Config{}, err
	}
	cfg.Path = found

	resolveSecret(&cfg, environ, &probs)
	resolveMQTT(&cfg, environ, &probs)
	cfg.validate(&probs)
	if err := probs.err(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// findFile returns the config file to read, or "" when the default search
// finds none.
func findFile(path string, search []string) (string, error) {
	if path != "" {
		fi, err := os.Stat(path)
		if err != nil {
			return "", fmt.Errorf("%w: config file: %w", ErrConfig, err)
		}
		if fi.IsDir() {
			return "", fmt.Errorf("%w: config file %s is a directory", ErrConfig, path)
		}
		return path, nil
	}
	for _, p := range search {
		fi, err := os.Stat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			// Exists but cannot be examined (e.g. permission denied on
			// /etc/tibbersync): silently falling back would hide the file
			// the user wrote.
			return "", fmt.Errorf("%w: config file: %w", ErrConfig, err)
		case fi.IsDir():
			return "", fmt.Errorf("%w: config file %s is a directory", ErrConfig, p)
		}
		return p, nil
	}
	return "", nil
}

// readFile parses the TOML file and returns the values of known keys, flat.
// Unknown keys, misshapen sections and a client_secret key are recorded in
// probs.
func readFile(path string, specs []keySpec, probs *problems) (map[string]any, error) {
	b, err := file.Provider(path).ReadBytes()
	if err != nil {
		return nil, fmt.Errorf("%w: read config file: %w", ErrConfig, err)
	}
	raw, err := toml.Parser().Unmarshal(b)
	if err != nil {
		return nil, fmt.Errorf("%w: parse %s: %s", ErrConfig, path, parseErrorText(err))
	}

	known := map[string]bool{}
	sections := map[string]bool{}
	for _, s := range specs {
		known[s.key] = true
		sections[s.section] = true
	}

	vals := map[string]any{}
	for _, top := range sortedKeys(raw) {
		v := raw[top]
		if !sections[top] {
			probs.add(top, "", unknownKeyErr(top, specs, "no such section"))
			continue
		}
		table, ok := v.(map[string]any)
		if !ok {
			// The value of a misshapen section is not repeated: it could
			// be anything, a pasted secret included.
			probs.addf(top, "", ErrWrongType, "expected a table [%s], got %s", top, typeName(v))
			continue
		}
		for _, name := range sortedKeys(table) {
			key := top + "." + name
			switch {
			case key == "tibber.client_secret":
				probs.add(key, "", fmt.Errorf("%w: put it in a file named by tibber.client_secret_file (mode 0600) or pass it with systemd LoadCredential=%s:PATH", ErrSecretInConfig, CredentialName))
			case key == "mqtt.password":
				probs.add(key, "", fmt.Errorf("%w: put it in a file named by mqtt.password_file (mode 0600) or pass it with systemd LoadCredential=%s:PATH", ErrPasswordInConfig, MQTTCredentialName))
			case !known[key]:
				probs.add(key, "", unknownKeyErr(key, specs, "no such key"))
			default:
				vals[key] = table[name]
			}
		}
	}
	return vals, nil
}

// parseErrorText describes a TOML syntax error by position. It keeps only
// the parser's short message, never the offending line, which could hold a
// secret the user pasted.
func parseErrorText(err error) string {
	msg := strings.TrimPrefix(err.Error(), "toml: ")
	var pe interface{ Position() (int, int) }
	if errors.As(err, &pe) {
		row, col := pe.Position()
		return fmt.Sprintf("line %d, column %d: %s", row, col, msg)
	}
	return msg
}

func unknownKeyErr(key string, specs []keySpec, what string) error {
	if s := suggest(key, specs); s != "" {
		return fmt.Errorf("%w: %s (did you mean %s?)", ErrUnknownKey, what, s)
	}
	return fmt.Errorf("%w: %s", ErrUnknownKey, what)
}

// loadEnv merges TIBBERSYNC_<SECTION>_<KEY> variables. Variables whose
// section is not a config section are not ours and are ignored; an unknown
// key in a known section is reported (it is almost always a typo).
func loadEnv(k *koanf.Koanf, environ []string, specs []keySpec, probs *problems) error {
	byKey := map[string]keySpec{}
	sections := map[string]bool{}
	for _, s := range specs {
		byKey[s.key] = s
		sections[s.section] = true
	}
	var unknown []string
	transform := func(name, value string) (string, any) {
		section, rest, ok := strings.Cut(strings.TrimPrefix(name, EnvPrefix), "_")
		if !ok || section == "" || rest == "" {
			return "", nil
		}
		section, rest = strings.ToLower(section), strings.ToLower(rest)
		if !sections[section] || name == SecretEnv {
			// The secret is handled by resolveSecret, never as a key.
			return "", nil
		}
		key := section + "." + rest
		s, ok := byKey[key]
		if !ok {
			if !slices.Contains(unknown, name) {
				unknown = append(unknown, name)
			}
			return "", nil
		}
		if s.isList() {
			return key, splitList(value)
		}
		return key, value
	}
	p := env.Provider(".", env.Opt{
		Prefix:        EnvPrefix,
		TransformFunc: transform,
		EnvironFunc:   func() []string { return environ },
	})
	if err := k.Load(p, nil); err != nil {
		return fmt.Errorf("%w: load environment: %w", ErrConfig, err)
	}
	for _, name := range unknown {
		section, rest, _ := strings.Cut(strings.TrimPrefix(name, EnvPrefix), "_")
		key := strings.ToLower(section) + "." + strings.ToLower(rest)
		hint := "no such key"
		if s := suggest(key, specs); s != "" {
			hint = fmt.Sprintf("no such key (did you mean %s%s?)", EnvPrefix, strings.ToUpper(strings.Replace(s, ".", "_", 1)))
		}
		probs.add(name, "", fmt.Errorf("%w: %s", ErrUnknownKey, hint))
	}
	return nil
}

// decode converts every known key to its Go type (recording wrong types and
// keeping the default for them) and unmarshals the result into a Config.
func decode(k *koanf.Koanf, specs []keySpec, probs *problems) (Config, error) {
	defaults := flatValues(Default())
	canon := make(map[string]any, len(specs))
	for _, s := range specs {
		raw := k.Get(s.key)
		if raw == nil {
			canon[s.key] = defaults[s.key]
			continue
		}
		v, err := convert(s, raw)
		if err != nil {
			probs.add(s.key, showValue(raw), err)
			v = defaults[s.key]
		}
		canon[s.key] = v
	}
	ck := koanf.New(".")
	if err := ck.Load(confmap.Provider(canon, "."), nil); err != nil {
		return Config{}, fmt.Errorf("%w: load values: %w", ErrConfig, err)
	}
	var cfg Config
	if err := ck.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{Tag: "koanf"}); err != nil {
		return Config{}, fmt.Errorf("%w: unmarshal: %w", ErrConfig, err)
	}
	return cfg, nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
