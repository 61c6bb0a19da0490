package config_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tibbersync/tibbersync/internal/config"
)

const mqttCanary = "CANARY-mqtt-password-91c2"

func TestMQTTOffByDefault(t *testing.T) {
	cfg := mustLoad(t, "")
	if cfg.MQTT.Enabled() {
		t.Fatalf("MQTT enabled without a url: %+v", cfg.MQTT)
	}
	want := config.MQTT{TopicPrefix: "tibbersync", DiscoveryPrefix: "homeassistant", QoS: 1}
	if cfg.MQTT != want {
		t.Errorf("defaults = %+v, want %+v", cfg.MQTT, want)
	}
	if !cfg.MQTTPassword.Empty() || cfg.MQTTPasswordSource != "" {
		t.Errorf("password resolved while MQTT is off: source %q", cfg.MQTTPasswordSource)
	}
}

func TestMQTTGoodConfig(t *testing.T) {
	pw := writeFile(t, "mqtt_password", mqttCanary+"\n", 0o600)
	ca := writeFile(t, "ca.pem", testCAPEM(t), 0o644)
	cfg := mustLoad(t, fmt.Sprintf(`
[mqtt]
url = "mqtts://broker.lan:8883"
ca_file = %q
username = "tibber"
password_file = %q
topic_prefix = "home/tibber"
discovery_prefix = ""
qos = 2
`, ca, pw))
	m := cfg.MQTT
	if !m.Enabled() || m.URL != "mqtts://broker.lan:8883" || m.Username != "tibber" || m.TopicPrefix != "home/tibber" || m.DiscoveryPrefix != "" || m.QoS != 2 {
		t.Errorf("loaded %+v", m)
	}
	if cfg.MQTTPassword.Reveal() != mqttCanary || cfg.MQTTPasswordSource != config.SourceFile {
		t.Errorf("password source %q, password ok = %v", cfg.MQTTPasswordSource, cfg.MQTTPassword.Reveal() == mqttCanary)
	}
	if !regexp.MustCompile(`^tibbersync-[0-9a-f]{8}$`).MatchString(m.ClientID) {
		t.Errorf("default client id = %q, want tibbersync-<8 hex>", m.ClientID)
	}
	// Stable across loads (a new id per start would leave stale sessions).
	if again := mustLoad(t, "[mqtt]\nurl = \"mqtt://b\"\n"); again.MQTT.ClientID != m.ClientID {
		t.Errorf("client id changed between loads: %q then %q", m.ClientID, again.MQTT.ClientID)
	}
}

func TestMQTTPasswordFromCredentials(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, config.MQTTCredentialName), []byte("from-credentials\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	pw := writeFile(t, "pw", "from-file", 0o600)
	path := writeFile(t, "config.toml", fmt.Sprintf("[mqtt]\nurl = \"mqtt://b\"\nusername = \"u\"\npassword_file = %q\n", pw), 0o644)
	cfg, err := config.Load(path, []string{"CREDENTIALS_DIRECTORY=" + dir})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MQTTPassword.Reveal() != "from-credentials" || cfg.MQTTPasswordSource != config.SourceCredentials {
		t.Errorf("password from %q", cfg.MQTTPasswordSource)
	}
}

// TestMQTTEveryBadKeyAtOnce: one line per bad key, each naming the key,
// all wrapping ErrConfig (exit 78), none repeating the password.
func TestMQTTEveryBadKeyAtOnce(t *testing.T) {
	pw := writeFile(t, "pw", mqttCanary, 0o644)
	notPEM := writeFile(t, "ca.pem", "not a certificate", 0o644)
	path := writeFile(t, "config.toml", fmt.Sprintf(`
[mqtt]
url = "http://user:%s@broker:1883"
ca_file = %q
username = "bad\u0007user"
password_file = %q
client_id = "two words"
topic_prefix = "home/#"
discovery_prefix = "/homeassistant"
qos = 3
`, mqttCanary, notPEM, pw), 0o644)
	_, err := config.Load(path, nil)
	ve := validationError(t, err)
	if !errors.Is(err, config.ErrConfig) {
		t.Errorf("error does not wrap ErrConfig: %v", err)
	}
	want := map[string]error{
		"mqtt.url":              config.ErrBadURL,
		"mqtt.ca_file":          config.ErrBadValue,
		"mqtt.username":         config.ErrBadValue,
		"mqtt.password_file":    config.ErrPasswordFile,
		"mqtt.client_id":        config.ErrBadValue,
		"mqtt.topic_prefix":     config.ErrBadValue,
		"mqtt.discovery_prefix": config.ErrBadValue,
		"mqtt.qos":              config.ErrOutOfRange,
	}
	got := map[string]bool{}
	for _, f := range ve.Fields {
		got[f.Key] = true
		if s, ok := want[f.Key]; !ok {
			t.Errorf("unexpected problem: %v", f)
		} else if !errors.Is(f, s) {
			t.Errorf("%s: %v does not wrap %v", f.Key, f, s)
		}
	}
	for k := range want {
		if !got[k] {
			t.Errorf("no problem reported for %s; got:\n%v", k, err)
		}
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(ve.Fields) {
		t.Errorf("%d lines for %d keys:\n%v", len(lines), len(ve.Fields), err)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "config: mqtt.") {
			t.Errorf("line does not name its key: %q", l)
		}
	}
	if strings.Contains(err.Error(), mqttCanary) {
		t.Errorf("the password leaked into the error:\n%v", err)
	}
}

func TestMQTTRejects(t *testing.T) {
	cases := map[string]struct {
		toml     string
		key      string
		sentinel error
		text     string
	}{
		"NoScheme":        {`url = "broker:1883"`, "mqtt.url", config.ErrBadURL, "mqtt://"},
		"TCPScheme":       {`url = "tcp://broker:1883"`, "mqtt.url", config.ErrBadURL, "mqtts://"},
		"NoHost":          {`url = "mqtt://:1883"`, "mqtt.url", config.ErrBadURL, "no host"},
		"BadPort":         {`url = "mqtt://broker:70000"`, "mqtt.url", config.ErrBadURL, "port"},
		"Path":            {`url = "mqtt://broker:1883/x"`, "mqtt.url", config.ErrBadURL, "only scheme, host and port"},
		"CAWithPlain":     {"url = \"mqtt://b\"\nca_file = \"/etc/hostname\"", "mqtt.ca_file", config.ErrBadValue, "mqtts://"},
		"CAMissing":       {"url = \"mqtts://b\"\nca_file = \"/nonexistent/ca.pem\"", "mqtt.ca_file", config.ErrBadValue, "does not exist"},
		"PasswordNoUser":  {"url = \"mqtt://b\"\npassword_file = \"/nonexistent\"", "mqtt.password_file", config.ErrBadValue, "needs mqtt.username"},
		"PasswordMissing": {"url = \"mqtt://b\"\nusername = \"u\"\npassword_file = \"/nonexistent/pw\"", "mqtt.password_file", config.ErrPasswordFile, "does not exist"},
		"EmptyPrefix":     {`topic_prefix = ""`, "mqtt.topic_prefix", config.ErrEmpty, "tibbersync"},
		"PlusPrefix":      {`topic_prefix = "a/+/b"`, "mqtt.topic_prefix", config.ErrBadValue, "wildcards"},
		"DollarPrefix":    {`topic_prefix = "$SYS"`, "mqtt.topic_prefix", config.ErrBadValue, "$"},
		"EmptyLevel":      {`discovery_prefix = "a//b"`, "mqtt.discovery_prefix", config.ErrBadValue, "empty level"},
		"NegativeQoS":     {`qos = -1`, "mqtt.qos", config.ErrOutOfRange, "0, 1 or 2"},
		"QoSAsText":       {`qos = "1"`, "mqtt.qos", nil, ""}, // a string holding an integer is accepted (as from the environment)
		"LongClientID":    {`client_id = "` + strings.Repeat("x", 200) + `"`, "mqtt.client_id", config.ErrOutOfRange, "128"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			path := writeFile(t, "config.toml", "[mqtt]\n"+c.toml+"\n", 0o644)
			_, err := config.Load(path, nil)
			if c.sentinel == nil {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			ve := validationError(t, err)
			if len(ve.Fields) != 1 || ve.Fields[0].Key != c.key || !errors.Is(ve.Fields[0], c.sentinel) {
				t.Fatalf("want one %s problem wrapping %v, got:\n%v", c.key, c.sentinel, err)
			}
			if !strings.Contains(err.Error(), c.text) {
				t.Errorf("%q does not say %q", err, c.text)
			}
		})
	}
}

func TestMQTTPasswordFileMode(t *testing.T) {
	pw := writeFile(t, "pw", mqttCanary, 0o640)
	path := writeFile(t, "config.toml", fmt.Sprintf("[mqtt]\nurl = \"mqtt://b\"\nusername = \"u\"\npassword_file = %q\n", pw), 0o644)
	_, err := config.Load(path, nil)
	ve := validationError(t, err)
	if len(ve.Fields) != 1 || !errors.Is(ve.Fields[0], config.ErrPasswordFile) || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("want a chmod 600 hint for mqtt.password_file, got:\n%v", err)
	}
	if strings.Contains(err.Error(), mqttCanary) || strings.Contains(err.Error(), "client secret") {
		t.Errorf("error leaks the password or talks about the client secret:\n%v", err)
	}
}

func TestMQTTPasswordInFileRejected(t *testing.T) {
	path := writeFile(t, "config.toml", "[mqtt]\nurl = \"mqtt://b\"\npassword = \""+mqttCanary+"\"\n", 0o644)
	_, err := config.Load(path, nil)
	ve := validationError(t, err)
	if len(ve.Fields) != 1 || ve.Fields[0].Key != "mqtt.password" || !errors.Is(ve.Fields[0], config.ErrPasswordInConfig) {
		t.Fatalf("want mqtt.password rejected, got:\n%v", err)
	}
	if strings.Contains(err.Error(), mqttCanary) {
		t.Errorf("the password leaked: %v", err)
	}
	if !strings.Contains(err.Error(), "mqtt.password_file") {
		t.Errorf("no hint where the password goes: %v", err)
	}
}

func TestMQTTFromEnvironment(t *testing.T) {
	path := writeFile(t, "config.toml", "", 0o644)
	cfg, err := config.Load(path, []string{"TIBBERSYNC_MQTT_URL=mqtt://127.0.0.1:1883", "TIBBERSYNC_MQTT_QOS=0"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MQTT.URL != "mqtt://127.0.0.1:1883" || cfg.MQTT.QoS != 0 {
		t.Errorf("from environment: %+v", cfg.MQTT)
	}
}
