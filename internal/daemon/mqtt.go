package daemon

import (
	"context"
	"path/filepath"
	"slices"

	"github.com/tibbersync/tibbersync/internal/config"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/mqtt"
	"github.com/tibbersync/tibbersync/internal/version"
)

// MQTTStatusFile is where the daemon keeps the MQTT bridge's state for
// `tibbersync status` (another process).
func MQTTStatusFile(cfg config.Config) string {
	return filepath.Join(cfg.Storage.Dir, "mqtt-status.json")
}

// buildMQTT creates the MQTT bridge of the long-running daemon when
// [mqtt].url is set, and registers it as an observer: every homes and
// devices run and every auth change tells it to publish what changed. The
// calls only set a flag, so a slow or absent broker never delays a run.
func (d *Daemon) buildMQTT() error {
	if !d.opts.Service || !d.cfg.MQTT.Enabled() {
		return nil
	}
	m := d.cfg.MQTT
	pub, err := mqtt.New(mqtt.Options{
		URL:             m.URL,
		CAFile:          m.CAFile,
		Username:        m.Username,
		Password:        d.cfg.MQTTPassword,
		ClientID:        m.ClientID,
		TopicPrefix:     m.TopicPrefix,
		DiscoveryPrefix: m.DiscoveryPrefix,
		QoS:             byte(m.QoS),
		Source:          d.data,
		Logger:          d.log.With("component", "mqtt"),
		Clock:           d.clk,
		Version:         version.String(),
		StatusFile:      MQTTStatusFile(d.cfg),
	})
	if err != nil {
		return err
	}
	d.mqtt = pub
	// A copy: the caller's slice is never written to.
	d.opts.Observers = append(slices.Clip(d.opts.Observers), ObserverFuncs{
		Run: func(_ context.Context, r model.Run, _ error) {
			if r.Job == "devices" || r.Job == "homes" {
				pub.DevicesChanged()
			}
		},
		Auth: func(context.Context, model.AuthStatus) { pub.AuthChanged() },
	})
	return nil
}

// MQTT returns the MQTT bridge; nil unless [mqtt].url is set and the
// daemon is the service (`tibbersync run`).
func (d *Daemon) MQTT() *mqtt.Publisher { return d.mqtt }
