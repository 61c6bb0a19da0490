package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/tibbersync/tibbersync/internal/config"
	"github.com/tibbersync/tibbersync/internal/control"
	"github.com/tibbersync/tibbersync/internal/daemon"
	"github.com/tibbersync/tibbersync/internal/doctor"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/mqtt"
	"github.com/tibbersync/tibbersync/internal/store"
)

// systemSecret is where the packaged unit's LoadCredential= reads the
// client secret.
const systemSecret = "/etc/tibbersync/client_secret"

// cmdDoctor checks what breaks installations and prints each failed
// check's fix; it exits 1 when something is wrong. It writes nothing.
func cmdDoctor(ctx context.Context, g globalFlags, args []string, env *environment) error {
	fs := newFlagSet("doctor", &g, env)
	offline := fs.Bool("offline", false, "skip the DNS and TLS checks of the Tibber hosts")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	loc := env.configLocations()
	path := g.ConfigPath
	if path == "" {
		path = loc.System
		if _, err := os.Stat(path); err != nil {
			path = loc.Local
		}
	}
	cfg, cfgErr := config.LoadAt(g.ConfigPath, env.environ, loc)
	o := doctor.Options{
		Config:       cfg,
		ConfigPath:   path,
		ConfigErr:    cfgErr,
		SystemSecret: systemSecret,
		ServiceUser:  "tibbersync",
		Now:          time.Now,
		NotBefore:    daemon.BuildTime(),
		Resolver:     net.DefaultResolver,
		DialTLS:      doctor.DialTLS,
		Daemon:       control.NewClient(cfg.Storage.Dir).Probe,
		StoredAuth: func(ctx context.Context) (model.AuthStatus, error) {
			// Read-only, as the state dir's owner when root (no -shm left
			// behind for root).
			restore, err := actAsStateOwner(cfg.Storage.Dir, "doctor")
			if err != nil {
				return model.AuthStatus{}, err
			}
			defer restore()
			db, err := store.OpenReadOnly(ctx, filepath.Join(cfg.Storage.Dir, "data.db"))
			if err != nil {
				return model.AuthStatus{}, err
			}
			defer db.Close()
			return db.AuthStatus(ctx)
		},
	}
	if cfg.MQTT.Enabled() {
		m := cfg.MQTT
		o.MQTTProbe = func(ctx context.Context) error {
			return mqtt.Probe(ctx, mqtt.Options{URL: m.URL, CAFile: m.CAFile, Username: m.Username,
				Password: cfg.MQTTPassword, ClientID: m.ClientID, TopicPrefix: m.TopicPrefix,
				QoS: byte(m.QoS), ConnectTimeout: 8 * time.Second})
		}
	}
	if *offline {
		o.Resolver = offlineResolver{}
	}
	checks := doctor.Run(ctx, o)
	doctor.Print(env.stdout, checks)
	if cfgErr != nil {
		return withCode(exitConfig, nil)
	}
	if doctor.Failed(checks) {
		return withCode(exitError, nil)
	}
	return nil
}

// offlineResolver answers like a machine without a DNS server.
type offlineResolver struct{}

func (offlineResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	return nil, &net.DNSError{Err: "skipped (--offline)", Name: host, IsTemporary: true}
}
