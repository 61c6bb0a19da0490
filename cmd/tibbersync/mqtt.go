package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/tibbersync/tibbersync/internal/config"
	"github.com/tibbersync/tibbersync/internal/daemon"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/mqtt"
)

// mqttReport is the "mqtt" object of `status --json` (present only when
// [mqtt].url is set).
type mqttReport struct {
	model.MQTTStatus
	// Note explains a status that is not live (daemon stopped, no status yet).
	Note string `json:"note,omitempty"`
}

// readMQTTReport reads the daemon's MQTT status file. It never creates a
// file in the state directory.
func readMQTTReport(cfg config.Config) *mqttReport {
	if !cfg.MQTT.Enabled() {
		return nil
	}
	st, err := mqtt.ReadStatusFile(daemon.MQTTStatusFile(cfg))
	rep := &mqttReport{MQTTStatus: st}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		rep.Broker = cfg.MQTT.URL
		rep.Note = "no MQTT status yet: the daemon has not run since [mqtt] was configured"
		return rep
	case err != nil:
		rep.Broker = cfg.MQTT.URL
		rep.Note = "MQTT status unreadable: " + err.Error()
		return rep
	}
	switch running, known := daemonRunning(cfg.Storage.Dir); {
	case !known:
		rep.Note = "cannot tell whether the daemon runs (daemon.lock is not readable for this user); this is its last reported MQTT state"
	case !running:
		rep.Connected = false
		rep.Note = "the daemon is not running; this is its last MQTT state"
	}
	return rep
}

// daemonRunning reports whether a daemon holds daemon.lock in dir. known
// is false when this user may not open the lock file (it is 0600, the
// service user's), so the answer is unknown rather than "not running".
func daemonRunning(dir string) (running, known bool) {
	f, err := os.Open(filepath.Join(dir, "daemon.lock"))
	if err != nil {
		return false, !errors.Is(err, fs.ErrPermission)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK), true
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false, true
}

// printMQTT is the MQTT part of `tibbersync status`.
func printMQTT(w io.Writer, r *mqttReport) {
	if r == nil {
		return
	}
	state := "not connected"
	if r.Connected {
		state = "connected"
	}
	fmt.Fprintf(w, "\nmqtt: %s to %s", state, r.Broker)
	if !r.Since.IsZero() {
		fmt.Fprintf(w, " since %s", fmtTime(r.Since))
	}
	fmt.Fprintf(w, ", %d messages published\n", r.MessagesPublished)
	if r.LastError != "" {
		fmt.Fprintf(w, "  last error (%s, %d since start): %s\n", fmtTime(r.LastErrorAt), r.Errors, r.LastError)
	}
	if r.Note != "" {
		fmt.Fprintf(w, "  note: %s\n", r.Note)
	}
}
