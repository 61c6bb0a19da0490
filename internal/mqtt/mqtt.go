// Package mqtt publishes what tibbersync holds to an MQTT broker: a retained
// online/offline status with a last will, the auth state, one state JSON
// per device (only when it changed, and once per connection), and Home
// Assistant discovery configs. It reads the state from data.db through
// Source after each devices run, so what it publishes is what
// latest_capabilities shows.
//
// The sync never waits on the broker: DevicesChanged and AuthChanged only
// set a flag. While the broker is down nothing queues up; on (re)connect
// the newest state of every device is read and published. Broker errors are
// logged once per outage, counted, and kept in Status; they never fail a
// sync run.
package mqtt

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/tibbersync/tibbersync/internal/clock"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/secret"
)

// Payloads of <prefix>/status (also Home Assistant's default availability payloads).
const (
	PayloadOnline  = "online"
	PayloadOffline = "offline"
)

// Source is data.db as the publisher reads it. *store.DB implements it.
type Source interface {
	// DeviceStates returns every known device (removed ones with Removed
	// set) with its latest_capabilities rows.
	DeviceStates(ctx context.Context) ([]model.DeviceState, error)
	// AuthStatus returns the current authorization state.
	AuthStatus(ctx context.Context) (model.AuthStatus, error)
}

// Options configure a Publisher. URL, TopicPrefix and Source are required.
type Options struct {
	URL             string // mqtt://host[:1883] or mqtts://host[:8883]
	CAFile          string // PEM CAs for mqtts:// instead of the system's
	Username        string
	Password        secret.Secret
	ClientID        string
	TopicPrefix     string
	DiscoveryPrefix string // "" disables Home Assistant discovery
	QoS             byte
	Source          Source
	Logger          *slog.Logger
	Clock           clock.Clock
	// Version is tibbersync's version, shown in Home Assistant.
	Version string
	// StatusFile, when set, receives the bridge status as JSON on every
	// change of connection state and after each batch of publishes, for
	// `tibbersync status` (another process).
	StatusFile string

	// MinBackoff and MaxBackoff bound the wait between connection
	// attempts (defaults 1s and 2m); it doubles per failure.
	MinBackoff, MaxBackoff time.Duration
	// ConnectTimeout bounds one connection attempt (default 15s).
	ConnectTimeout time.Duration
	// PublishTimeout bounds the wait for the broker to take one message
	// (default 15s); a timeout drops the connection and reconnects.
	PublishTimeout time.Duration
	// AuthPoll is how often the auth state is re-read (default 1m), so a
	// state change made while no job runs is still published.
	AuthPoll time.Duration
	// KeepAlive is the MQTT keep-alive (default 30s).
	KeepAlive time.Duration
}

// Publisher is the MQTT bridge. Create it with New and start Run once.
type Publisher struct {
	o         Options
	log       *slog.Logger
	tls       *tls.Config
	brokerURL string

	devicesCh chan struct{}
	authCh    chan struct{}

	mu        sync.Mutex
	st        model.MQTTStatus
	loggedErr string // the error logged at WARN in the current outage
	fileErr   string // the last status-file error logged

	passes atomic.Uint64 // completed read-and-publish passes

	// Owned by the Run goroutine.
	devices map[string]message // discovery and state topics
	auth    map[string]message // <prefix>/auth and its discovery
	sent    map[string][]byte  // what the current connection has published
	// cleared holds the device topics whose delete (empty payload) this
	// process has published and that a removed device in data.db still
	// yields; readDevices keeps them from being deleted again. Only those
	// are kept, so it never holds more than data.db's removed devices.
	cleared map[string]struct{}
}

// message is one retained message the broker should hold.
type message struct {
	rank    int // publish order: status, auth, discovery, state
	payload []byte
}

const (
	rankStatus = iota
	rankAuth
	rankDiscovery
	rankState
)

// stableConnection is how long a connection must last before a drop
// resets the reconnect backoff.
const stableConnection = time.Minute

// shortConnection is a connection the broker dropped right away.
const shortConnection = 5 * time.Second

// New checks the options and prepares TLS. It does not connect.
func New(o Options) (*Publisher, error) {
	if o.Source == nil {
		return nil, errors.New("mqtt: no source")
	}
	if o.TopicPrefix == "" {
		return nil, errors.New("mqtt: empty topic prefix")
	}
	if o.QoS > 2 {
		return nil, fmt.Errorf("mqtt: qos %d: want 0, 1 or 2", o.QoS)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	o.MinBackoff = cmp.Or(o.MinBackoff, time.Second)
	o.MaxBackoff = max(cmp.Or(o.MaxBackoff, 2*time.Minute), o.MinBackoff)
	o.ConnectTimeout = cmp.Or(o.ConnectTimeout, 15*time.Second)
	o.PublishTimeout = cmp.Or(o.PublishTimeout, 15*time.Second)
	o.AuthPoll = cmp.Or(o.AuthPoll, time.Minute)
	o.KeepAlive = cmp.Or(o.KeepAlive, 30*time.Second)
	if o.ClientID == "" {
		o.ClientID = "tibbersync"
	}
	u, err := url.Parse(o.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("mqtt: bad broker url %q", o.URL)
	}
	p := &Publisher{
		o:         o,
		log:       o.Logger,
		devicesCh: make(chan struct{}, 1),
		authCh:    make(chan struct{}, 1),
		devices:   map[string]message{},
		auth:      map[string]message{},
		cleared:   map[string]struct{}{},
	}
	switch u.Scheme {
	case "mqtt":
		if u.Port() == "" {
			u.Host = net.JoinHostPort(u.Hostname(), "1883")
		}
		p.brokerURL = "tcp://" + u.Host
	case "mqtts":
		if u.Port() == "" {
			u.Host = net.JoinHostPort(u.Hostname(), "8883")
		}
		p.brokerURL = "ssl://" + u.Host
		p.tls = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: u.Hostname()}
		if o.CAFile != "" {
			pem, err := os.ReadFile(o.CAFile)
			if err != nil {
				return nil, fmt.Errorf("mqtt: read ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("mqtt: ca_file %s holds no PEM certificate", o.CAFile)
			}
			p.tls.RootCAs = pool
		}
	default:
		return nil, fmt.Errorf("mqtt: broker url %q: want mqtt:// or mqtts://", o.URL)
	}
	p.st.Broker = u.Scheme + "://" + u.Host
	return p, nil
}

// DevicesChanged tells the publisher that a devices run finished. It never
// blocks: the publisher re-reads data.db when it gets to it and publishes
// what changed.
func (p *Publisher) DevicesChanged() { signal(p.devicesCh) }

// AuthChanged tells the publisher that the auth state may have changed.
func (p *Publisher) AuthChanged() { signal(p.authCh) }

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Status returns the bridge's current state.
func (p *Publisher) Status() model.MQTTStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st
}

// Passes counts the completed passes of reading data.db and publishing
// what changed (one per connection, one per signal handled), so that a
// caller can tell a signal was handled even when it published nothing.
func (p *Publisher) Passes() uint64 { return p.passes.Load() }

// Topic returns <prefix>/<rest>.
func (p *Publisher) Topic(rest string) string { return p.o.TopicPrefix + "/" + rest }

// StateTopic is the state topic of a device.
func (p *Publisher) StateTopic(deviceID string) string {
	return p.Topic("devices/" + topicLevel(deviceID) + "/state")
}

// Run connects, publishes, and reconnects with backoff until ctx ends; then
// it publishes "offline", disconnects cleanly and returns nil.
func (p *Publisher) Run(ctx context.Context) error {
	backoff := p.o.MinBackoff
	for ctx.Err() == nil {
		client, lost, err := p.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			p.failed(err)
			if p.o.Clock.Sleep(ctx, jittered(backoff)) != nil {
				break
			}
			backoff = min(backoff*2, p.o.MaxBackoff)
			continue
		}
		p.connected()
		since := p.o.Clock.Now()
		err = p.serve(ctx, client, lost)
		if ctx.Err() != nil {
			p.goodbye(client)
			break
		}
		client.Disconnect(0)
		lasted := p.o.Clock.Now().Sub(since)
		if lasted >= stableConnection {
			backoff = p.o.MinBackoff
		}
		// A connection the broker drops at once (a second client with the
		// same id, an ACL that refuses our topics) must not turn into a
		// reconnect-and-republish loop: below stableConnection the backoff
		// keeps growing, and a very short one says what to check.
		if lasted < shortConnection {
			err = fmt.Errorf("%w (dropped within %s of connecting; if this repeats, check that no other client uses mqtt.client_id %q and that the user may publish under %s/#)",
				err, shortConnection, p.o.ClientID, p.o.TopicPrefix)
		}
		p.failed(err)
		if p.o.Clock.Sleep(ctx, jittered(backoff)) != nil {
			break
		}
		backoff = min(backoff*2, p.o.MaxBackoff)
	}
	p.mu.Lock()
	p.st.Connected, p.st.Stopped = false, true
	p.st.Since = p.o.Clock.Now().UTC()
	p.mu.Unlock()
	p.writeStatus()
	return nil
}

func jittered(d time.Duration) time.Duration {
	return d + time.Duration(rand.Int64N(int64(d)/5+1))
}

// connect makes one connection attempt, bounded by ConnectTimeout. lost
// receives the error when the connection drops later.
func (p *Publisher) connect(ctx context.Context) (paho.Client, <-chan error, error) {
	lost := make(chan error, 1)
	opts := paho.NewClientOptions().
		AddBroker(p.brokerURL).
		SetClientID(p.o.ClientID).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(p.o.ConnectTimeout).
		SetWriteTimeout(p.o.PublishTimeout).
		SetKeepAlive(p.o.KeepAlive).
		SetPingTimeout(min(p.o.KeepAlive, 10*time.Second)).
		SetWill(p.Topic("status"), PayloadOffline, p.o.QoS, true).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case lost <- err:
			default:
			}
		})
	if p.o.Username != "" {
		opts.SetUsername(p.o.Username)
		if !p.o.Password.Empty() {
			opts.SetPassword(p.o.Password.Reveal())
		}
	}
	if p.tls != nil {
		opts.SetTLSConfig(p.tls.Clone())
	}
	client := paho.NewClient(opts)
	tok := client.Connect()
	t := time.NewTimer(p.o.ConnectTimeout + 5*time.Second)
	defer t.Stop()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		client.Disconnect(0)
		return nil, nil, ctx.Err()
	case <-t.C:
		client.Disconnect(0)
		return nil, nil, fmt.Errorf("no answer from %s within %s", p.st.Broker, p.o.ConnectTimeout)
	}
	if err := tok.Error(); err != nil {
		return nil, nil, err
	}
	return client, lost, nil
}

// serve publishes the full state once, then what changes, until the
// connection drops (returning why) or ctx ends (returning nil).
func (p *Publisher) serve(ctx context.Context, client paho.Client, lost <-chan error) error {
	p.sent = map[string][]byte{}
	// A signal that arrived while disconnected is covered by the full read below.
	drain(p.devicesCh)
	drain(p.authCh)
	p.readAuth(ctx)
	p.readDevices(ctx)
	if err := p.flush(ctx, client); err != nil {
		return err
	}
	p.passes.Add(1)
	poll := time.NewTicker(p.o.AuthPoll)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-lost:
			return fmt.Errorf("connection lost: %w", err)
		case <-p.devicesCh:
			p.readAuth(ctx)
			p.readDevices(ctx)
		case <-p.authCh:
			p.readAuth(ctx)
		case <-poll.C:
			p.readAuth(ctx)
		}
		if err := p.flush(ctx, client); err != nil {
			return err
		}
		p.passes.Add(1)
	}
}

func drain(ch chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

// flush publishes, in rank order, every message whose payload differs from
// what this connection already published. A device topic's delete, once
// published, is dropped from the tracked topics (see readDevices).
func (p *Publisher) flush(ctx context.Context, client paho.Client) error {
	want := map[string]message{p.Topic("status"): {rankStatus, []byte(PayloadOnline)}}
	for t, m := range p.auth {
		want[t] = m
	}
	for t, m := range p.devices {
		want[t] = m
	}
	var todo []string
	for t, m := range want {
		if old, ok := p.sent[t]; !ok || !bytes.Equal(old, m.payload) {
			todo = append(todo, t)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	slices.SortFunc(todo, func(a, b string) int {
		return cmp.Or(cmp.Compare(want[a].rank, want[b].rank), strings.Compare(a, b))
	})
	defer p.writeStatus()
	for _, t := range todo {
		if ctx.Err() != nil {
			return nil
		}
		payload := want[t].payload
		if err := p.publish(ctx, client, t, payload); err != nil {
			return err
		}
		if _, dev := p.devices[t]; dev && len(payload) == 0 {
			// Deleted at the broker: neither this connection nor a later
			// one needs to send it again.
			delete(p.devices, t)
			delete(p.sent, t)
			p.cleared[t] = struct{}{}
			continue
		}
		p.sent[t] = payload
	}
	return nil
}

// publish sends one retained message and waits, bounded, for the broker.
func (p *Publisher) publish(ctx context.Context, client paho.Client, topic string, payload []byte) error {
	tok := client.Publish(topic, p.o.QoS, true, payload)
	t := time.NewTimer(p.o.PublishTimeout)
	defer t.Stop()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return nil
	case <-t.C:
		return fmt.Errorf("publish %s: the broker did not confirm within %s", topic, p.o.PublishTimeout)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	p.mu.Lock()
	p.st.MessagesPublished++
	p.mu.Unlock()
	return nil
}

// goodbye publishes "offline" (a clean shutdown sends no last will) and
// disconnects.
func (p *Publisher) goodbye(client paho.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), min(p.o.PublishTimeout, 5*time.Second))
	defer cancel()
	if err := p.publish(ctx, client, p.Topic("status"), []byte(PayloadOffline)); err != nil {
		p.log.Warn("mqtt: publish offline on shutdown", "err", err)
	}
	client.Disconnect(250)
	p.log.Info("mqtt: disconnected", "broker", p.st.Broker)
}

// readAuth rebuilds the auth messages from the source.
func (p *Publisher) readAuth(ctx context.Context) {
	st, err := p.o.Source.AuthStatus(ctx)
	if err != nil {
		if ctx.Err() == nil {
			p.log.Warn("mqtt: read auth state", "err", err)
		}
		return
	}
	p.auth = p.authMessages(st)
}

// readDevices rebuilds the device messages from the source. Topics that
// disappear (a capability gone, a device removed) get an empty retained
// payload, which deletes them at the broker and in Home Assistant. Such a
// delete is published once: flush then stops tracking the topic, and the
// deletes a removed device in data.db yields on every read are skipped for
// the topics in p.cleared. A topic that comes back is published again.
func (p *Publisher) readDevices(ctx context.Context) {
	devs, err := p.o.Source.DeviceStates(ctx)
	if err != nil {
		if ctx.Err() == nil {
			p.log.Warn("mqtt: read device states", "err", err)
		}
		return
	}
	next := map[string]message{}
	cleared := map[string]struct{}{}
	for _, d := range devs {
		for t, m := range p.deviceMessages(d) {
			if _, done := p.cleared[t]; done && len(m.payload) == 0 {
				cleared[t] = struct{}{}
				continue
			}
			next[t] = m
		}
	}
	for t, m := range p.devices {
		if _, ok := next[t]; !ok {
			next[t] = message{m.rank, []byte{}}
		}
	}
	p.devices, p.cleared = next, cleared
}

// connected records a successful connection.
func (p *Publisher) connected() {
	p.mu.Lock()
	recovered := p.loggedErr != ""
	p.loggedErr = ""
	p.st.Connected, p.st.Stopped = true, false
	p.st.Since = p.o.Clock.Now().UTC()
	p.mu.Unlock()
	if recovered {
		p.log.Info("mqtt: connected again", "broker", p.st.Broker, "client_id", p.o.ClientID)
	} else {
		p.log.Info("mqtt: connected", "broker", p.st.Broker, "client_id", p.o.ClientID)
	}
	p.writeStatus()
}

// failed records a broker problem. The first error of an outage is logged
// at WARN, a different error later in the same outage at INFO, repeats
// (every retry) at DEBUG; a connection ends the outage.
func (p *Publisher) failed(err error) {
	msg := p.describe(err)
	now := p.o.Clock.Now().UTC()
	p.mu.Lock()
	if p.st.Connected || p.st.Since.IsZero() {
		p.st.Since = now
	}
	p.st.Connected = false
	p.st.Errors++
	p.st.LastError, p.st.LastErrorAt = msg, now
	firstOfOutage, changed := p.loggedErr == "", p.loggedErr != msg
	p.loggedErr = msg
	p.mu.Unlock()
	switch {
	case firstOfOutage:
		p.log.Warn("mqtt: "+msg+"; retrying with backoff, syncing continues", "broker", p.st.Broker)
	case changed:
		p.log.Info("mqtt: still not connected: "+msg, "broker", p.st.Broker)
	default:
		p.log.Debug("mqtt: "+msg, "broker", p.st.Broker)
	}
	p.writeStatus()
}

// describe turns a connection error into a sentence that says what to do.
// It never contains the password (paho's errors do not carry it).
func (p *Publisher) describe(err error) string {
	var certErr *tls.CertificateVerificationError
	var uaErr x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	switch {
	case errors.Is(err, packets.ErrorRefusedNotAuthorised), errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword):
		who := "anonymous connections"
		if p.o.Username != "" {
			who = fmt.Sprintf("user %q", p.o.Username)
		}
		return fmt.Sprintf("broker refused %s (%v): check mqtt.username and the password in mqtt.password_file or $CREDENTIALS_DIRECTORY/mqtt_password", who, err)
	case errors.Is(err, packets.ErrorRefusedIDRejected):
		return fmt.Sprintf("broker rejected client id %q: set another mqtt.client_id", p.o.ClientID)
	case errors.As(err, &uaErr), errors.As(err, &hostErr), errors.As(err, &certErr):
		return fmt.Sprintf("TLS: the broker's certificate is not trusted (%v): set mqtt.ca_file to the CA that signed it", err)
	case errors.Is(err, packets.ErrorNetworkError):
		return "cannot reach the broker: " + strings.TrimPrefix(err.Error(), packets.ErrorNetworkError.Error()+" : ")
	}
	return err.Error()
}

// writeStatus saves the status for `tibbersync status` (atomically: a
// temporary file renamed over the old one).
func (p *Publisher) writeStatus() {
	if p.o.StatusFile == "" {
		return
	}
	p.mu.Lock()
	st := p.st
	p.mu.Unlock()
	st.UpdatedAt = p.o.Clock.Now().UTC()
	b, _ := json.MarshalIndent(st, "", "  ") // plain fields always marshal
	err := writeFileAtomic(p.o.StatusFile, append(b, '\n'))
	p.mu.Lock()
	report := err != nil && err.Error() != p.fileErr
	if err != nil {
		p.fileErr = err.Error()
	} else {
		p.fileErr = ""
	}
	p.mu.Unlock()
	if report {
		p.log.Warn("mqtt: write status file", "err", err)
	}
}

func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if err := tmp.Chmod(0o640); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// ReadStatusFile reads a status file written by a running publisher. A
// missing file (MQTT off, or the daemon never ran) is fs.ErrNotExist.
func ReadStatusFile(path string) (model.MQTTStatus, error) {
	var st model.MQTTStatus
	b, err := os.ReadFile(path)
	if err != nil {
		return st, err
	}
	if len(b) > 1<<20 {
		return st, fmt.Errorf("%s: too large for a status file", path)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

// Probe connects to the broker once, as the bridge would (TLS, user,
// password), and disconnects, publishing nothing; `tibbersync doctor` uses
// it. It connects as <client id>-doctor so that it never kicks a running
// bridge off the broker. The error says what to fix.
func Probe(ctx context.Context, o Options) error {
	if o.Source == nil {
		o.Source = noSource{}
	}
	if o.TopicPrefix == "" {
		o.TopicPrefix = "tibbersync"
	}
	o.ClientID = cmp.Or(o.ClientID, "tibbersync") + "-doctor"
	p, err := New(o)
	if err != nil {
		return err
	}
	client, _, err := p.connect(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("no answer from %s in time (%w)", p.st.Broker, ctx.Err())
		}
		return errors.New(p.describe(err))
	}
	client.Disconnect(250)
	return nil
}

// noSource is the Source of a Probe, which reads nothing.
type noSource struct{}

func (noSource) DeviceStates(context.Context) ([]model.DeviceState, error) { return nil, nil }
func (noSource) AuthStatus(context.Context) (model.AuthStatus, error)      { return model.AuthStatus{}, nil }
