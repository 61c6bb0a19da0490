package config

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tibbersync/tibbersync/internal/logging"
)

// maxClientIDLen bounds mqtt.client_id. MQTT 3.1.1 only guarantees 23
// characters; brokers in use (mosquitto, EMQX, HiveMQ) accept far more.
const maxClientIDLen = 128

// maxCAFileBytes bounds mqtt.ca_file; a CA bundle is a few hundred KiB.
const maxCAFileBytes = 4 << 20

// resolveMQTT sets cfg.MQTTPassword from $CREDENTIALS_DIRECTORY/mqtt_password
// or mqtt.password_file (which must be 0600, like the client secret), and
// fills in the default client id. It does nothing when MQTT is off.
func resolveMQTT(cfg *Config, environ []string, probs *problems) {
	m := &cfg.MQTT
	if !m.Enabled() {
		return
	}
	if m.ClientID == "" {
		m.ClientID = "tibbersync-" + shortHostID()
	}
	if dir := lookupEnv(environ, "CREDENTIALS_DIRECTORY"); dir != "" {
		path := filepath.Join(dir, MQTTCredentialName)
		if _, err := os.Stat(path); err == nil || !errors.Is(err, fs.ErrNotExist) {
			s, err := readSecretFile(path, false)
			if err != nil {
				probs.add("$CREDENTIALS_DIRECTORY/"+MQTTCredentialName, path, passwordFileErr(err))
				return
			}
			cfg.MQTTPassword, cfg.MQTTPasswordSource = logging.NewSecret(s), SourceCredentials
			return
		}
	}
	if path := m.PasswordFile; path != "" && m.Username != "" { // without a user, validate says so

		s, err := readSecretFile(path, true)
		if err != nil {
			probs.add("mqtt.password_file", path, passwordFileErr(err))
			return
		}
		cfg.MQTTPassword, cfg.MQTTPasswordSource = logging.NewSecret(s), SourceFile
	}
}

// passwordFileErr re-labels a secret-file error for the MQTT password.
func passwordFileErr(err error) error {
	msg := strings.TrimPrefix(err.Error(), ErrSecretFile.Error()+": ")
	msg = strings.ReplaceAll(msg, "not a client secret", "not a password")
	return fmt.Errorf("%w: %s", ErrPasswordFile, msg)
}

// shortHostID is 8 hex digits derived from /etc/machine-id (or the host
// name), stable across restarts, so that two hosts never share a client id.
func shortHostID() string {
	seed := ""
	for _, p := range []string{"/etc/machine-id", "/var/lib/dbus/machine-id"} {
		if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) != "" {
			seed = strings.TrimSpace(string(b))
			break
		}
	}
	if seed == "" {
		seed, _ = os.Hostname()
	}
	sum := sha256.Sum256([]byte("tibbersync-mqtt:" + seed))
	return hex.EncodeToString(sum[:4])
}

// validate checks the [mqtt] keys. Everything but the URL may be left at
// its default; with no URL the section is off and only the shape of the
// other keys is checked.
func (m MQTT) validate(p *problems) {
	if m.URL != "" {
		checkMQTTURL(p, m)
	}
	if m.CAFile != "" {
		checkCAFile(p, m)
	}
	if strings.IndexFunc(m.Username, unicode.IsControl) >= 0 || !utf8.ValidString(m.Username) {
		p.addf("mqtt.username", m.Username, ErrBadValue, "must not contain control characters")
	}
	if m.PasswordFile != "" && m.Username == "" {
		p.addf("mqtt.password_file", m.PasswordFile, ErrBadValue, "needs mqtt.username (MQTT sends no password without a user name)")
	}
	if id := m.ClientID; id != "" {
		switch {
		case !utf8.ValidString(id) || strings.IndexFunc(id, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
			p.addf("mqtt.client_id", id, ErrBadValue, "must not contain white space or control characters")
		case len(id) > maxClientIDLen:
			p.addf("mqtt.client_id", id, ErrOutOfRange, "longer than %d bytes", maxClientIDLen)
		}
	}
	if m.TopicPrefix == "" {
		p.addf("mqtt.topic_prefix", m.TopicPrefix, ErrEmpty, "every topic starts with it; the default is tibbersync")
	} else if msg := topicPrefixProblem(m.TopicPrefix); msg != "" {
		p.addf("mqtt.topic_prefix", m.TopicPrefix, ErrBadValue, "%s", msg)
	}
	if m.DiscoveryPrefix != "" {
		if msg := topicPrefixProblem(m.DiscoveryPrefix); msg != "" {
			p.addf("mqtt.discovery_prefix", m.DiscoveryPrefix, ErrBadValue, "%s", msg)
		}
	}
	if m.QoS < 0 || m.QoS > 2 {
		p.addf("mqtt.qos", strconv.Itoa(m.QoS), ErrOutOfRange, "must be 0, 1 or 2")
	}
}

// checkMQTTURL requires mqtt://host[:port] or mqtts://host[:port] and
// nothing else: no credentials (they belong in username and
// password_file), no path, no query.
func checkMQTTURL(p *problems, m MQTT) {
	const key = "mqtt.url"
	shown := redactURL(m.URL)
	u, err := url.Parse(m.URL)
	if err != nil {
		p.addf(key, shown, ErrBadURL, "does not parse; want mqtt://host:1883 or mqtts://host:8883")
		return
	}
	switch {
	case u.Scheme != "mqtt" && u.Scheme != "mqtts":
		p.addf(key, shown, ErrBadURL, "must start with mqtt:// (plain) or mqtts:// (TLS)")
	case u.User != nil:
		p.addf(key, shown, ErrBadURL, "must not contain a user or password; set mqtt.username and mqtt.password_file")
	case u.Host == "" || u.Hostname() == "":
		p.addf(key, shown, ErrBadURL, "has no host")
	case u.Port() != "" && (!validPort(u.Port()) || u.Port() == "0"):
		p.addf(key, shown, ErrBadURL, "bad port %q", u.Port())
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(m.URL, "?#"):
		p.addf(key, shown, ErrBadURL, "must be only scheme, host and port, e.g. mqtt://192.168.1.10:1883")
	}
}

// checkCAFile requires a readable PEM file with at least one certificate,
// and a TLS URL to use it with.
func checkCAFile(p *problems, m MQTT) {
	const key = "mqtt.ca_file"
	if m.URL != "" && !strings.HasPrefix(m.URL, "mqtts://") {
		p.addf(key, m.CAFile, ErrBadValue, "only used with an mqtts:// url")
		return
	}
	fi, err := os.Stat(m.CAFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		p.addf(key, m.CAFile, ErrBadValue, "does not exist")
		return
	case err != nil:
		p.addf(key, m.CAFile, ErrBadValue, "%v", errWithoutPath(err))
		return
	case !fi.Mode().IsRegular():
		p.addf(key, m.CAFile, ErrBadValue, "not a regular file")
		return
	case fi.Size() > maxCAFileBytes:
		p.addf(key, m.CAFile, ErrBadValue, "larger than %d MiB, not a CA file", maxCAFileBytes>>20)
		return
	}
	b, err := os.ReadFile(m.CAFile)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			p.addf(key, m.CAFile, ErrBadValue, "not readable by this user")
			return
		}
		p.addf(key, m.CAFile, ErrBadValue, "%v", errWithoutPath(err))
		return
	}
	if !x509.NewCertPool().AppendCertsFromPEM(b) {
		p.addf(key, m.CAFile, ErrBadValue, "holds no PEM certificate")
	}
}

// topicPrefixProblem describes what makes s unusable as the start of a
// topic name, or returns "".
func topicPrefixProblem(s string) string {
	switch {
	case !utf8.ValidString(s) || strings.IndexFunc(s, unicode.IsControl) >= 0:
		return "must not contain control characters"
	case strings.ContainsAny(s, "+#"):
		return "must not contain the MQTT wildcards + or #"
	case strings.HasPrefix(s, "$"):
		return "must not start with $ (reserved for the broker)"
	case strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/"):
		return "must not start or end with /"
	case strings.Contains(s, "//"):
		return "must not contain an empty level (//)"
	case len(s) > 1024:
		return "longer than 1024 bytes"
	}
	return ""
}
