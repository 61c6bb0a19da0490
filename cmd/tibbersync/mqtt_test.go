package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tibbersync/tibbersync/internal/config"
	"github.com/tibbersync/tibbersync/internal/daemon"
	"github.com/tibbersync/tibbersync/internal/model"
)

func TestMQTTReport(t *testing.T) {
	cfg := config.Default()
	cfg.Storage.Dir = t.TempDir()
	if r := readMQTTReport(cfg); r != nil {
		t.Fatalf("MQTT off, report %+v", r)
	}

	cfg.MQTT.URL = "mqtt://broker.lan:1883"
	r := readMQTTReport(cfg)
	if r == nil || r.Connected || !strings.Contains(r.Note, "no MQTT status yet") || r.Broker != cfg.MQTT.URL {
		t.Fatalf("no status file: %+v", r)
	}

	// A status file written by a daemon that is no longer running.
	st := model.MQTTStatus{Broker: "mqtt://broker.lan:1883", Connected: true, MessagesPublished: 17, Errors: 1,
		LastError: "cannot reach the broker: connection refused", LastErrorAt: time.Date(2026, 9, 14, 8, 0, 0, 0, time.UTC)}
	b, _ := json.Marshal(st)
	if err := os.WriteFile(daemon.MQTTStatusFile(cfg), b, 0o640); err != nil {
		t.Fatal(err)
	}
	r = readMQTTReport(cfg)
	if r.Connected || r.MessagesPublished != 17 || !strings.Contains(r.Note, "not running") {
		t.Errorf("stale file: %+v", r)
	}

	// The daemon holds its lock: the file is live.
	lock, err := os.OpenFile(filepath.Join(cfg.Storage.Dir, "daemon.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	r = readMQTTReport(cfg)
	lock.Close()
	if !r.Connected || r.Note != "" {
		t.Errorf("live file: %+v", r)
	}

	var out bytes.Buffer
	printMQTT(&out, r)
	for _, want := range []string{"mqtt: connected to mqtt://broker.lan:1883", "17 messages published", "last error", "connection refused"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status text lacks %q:\n%s", want, out.String())
		}
	}
	// status never creates a file in the state dir.
	entries, _ := os.ReadDir(cfg.Storage.Dir)
	for _, e := range entries {
		if n := e.Name(); n != "mqtt-status.json" && n != "daemon.lock" {
			t.Errorf("unexpected file %s", filepath.Join(cfg.Storage.Dir, n))
		}
	}
}

// TestBadMQTTConfigExits78: every bad [mqtt] key on its own line, exit 78,
// nothing written, the password never shown.
func TestBadMQTTConfigExits78(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	cfg := filepath.Join(dir, "config.toml")
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("CANARY-mqtt-pw-0c1d"), 0o644); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`
[storage]
dir = %q
[mqtt]
url = "tcp://broker:1883"
username = "u"
password_file = %q
topic_prefix = "a/#"
qos = 5
`, state, pw)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCmd(t, testCtx(t, 10*time.Second), nil, "", "-c", cfg, "run")
	if code != exitConfig {
		t.Fatalf("exit %d, want 78; stderr %q", code, errOut)
	}
	for _, key := range []string{"mqtt.url", "mqtt.password_file", "mqtt.topic_prefix", "mqtt.qos"} {
		if n := strings.Count(errOut, "config: "+key+" "); n != 1 {
			t.Errorf("stderr names %s %d times, want once:\n%s", key, n, errOut)
		}
	}
	if strings.Contains(errOut, "CANARY") {
		t.Error("the password is on stderr")
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Fatalf("state dir was created by a bad config: %v", err)
	}
}
