package main

import (
	"bytes"
	"encoding/json"
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
