package mqtt_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/mqtt"
	"github.com/tibbersync/tibbersync/internal/secret"
	"github.com/tibbersync/tibbersync/internal/testutil"
)

// wait bounds every wait on the broker or the publisher: generous for a
// loaded 2-core machine, and only reached when something is broken.
const wait = 60 * time.Second

// fakeSource is data.db as the publisher reads it, under test control.
type fakeSource struct {
	mu      sync.Mutex
	devices []model.DeviceState
	auth    model.AuthStatus
	reads   int
}

func (f *fakeSource) DeviceStates(context.Context) ([]model.DeviceState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	out := make([]model.DeviceState, len(f.devices))
	for i, d := range f.devices {
		d.Capabilities = slices.Clone(d.Capabilities)
		out[i] = d
	}
	return out, nil
}

func (f *fakeSource) AuthStatus(context.Context) (model.AuthStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.auth, nil
}

func (f *fakeSource) update(fn func(*fakeSource)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func num(v float64) *float64 { return &v }
func text(s string) *string  { return &s }

var obs = time.Date(2026, 9, 14, 8, 0, 0, 0, time.UTC)

func vehicle() model.DeviceState {
	return model.DeviceState{
		ID: "dmVoaWNsZS1pZA", Name: "Model Y", Brand: "Tesla", Model: "Model Y", ExternalID: "VIN123",
		Category: model.CategoryVehicle, ObservedAt: obs,
		Homes: []model.HomeRef{{ID: "home-1", Name: "Home"}},
		Capabilities: []model.CapabilityState{
			{ID: "storage.stateOfCharge", Num: num(81), Unit: "%", ObservedAt: obs},
			{ID: "range.remaining", Num: num(348300), Unit: "m", ObservedAt: obs},
			{ID: "charging.status", Text: text("idle"), ObservedAt: obs},
			{ID: "connectivity.online", Num: num(1), Text: text("true"), ObservedAt: obs},
			{ID: "storage.targetStateOfCharge", Unit: "%", Missing: true, ObservedAt: obs},
		},
	}
}

func battery() model.DeviceState {
	return model.DeviceState{
		ID: "YmF0dGVyeS1pZA", Name: "Powerwall", Brand: "Tesla", Model: "Powerwall 2",
		Category: model.CategoryEnergySystem, ObservedAt: obs,
		Homes: []model.HomeRef{{ID: "home-1", Name: "Home"}},
		Capabilities: []model.CapabilityState{
			{ID: "storage.stateOfCharge", Num: num(55.5), Unit: "%", ObservedAt: obs},
			{ID: "powerFlow.grid.power", Num: num(-1200.5), Unit: "W", ObservedAt: obs},
			{ID: "energyFlow.day.gridImport", Num: num(4200), Unit: "Wh", ObservedAt: obs},
			{ID: "storage.availableEnergy", Num: num(7600), Unit: "Wh", ObservedAt: obs},
			{ID: "temp.current", Num: num(21.5), Unit: "°C", ObservedAt: obs},
		},
	}
}

type rig struct {
	t      *testing.T
	src    *fakeSource
	pub    *mqtt.Publisher
	logs   *testutil.SyncBuffer
	status string
	cancel context.CancelFunc
	done   chan error
}

// startPublisher runs a publisher against src until the test ends.
func startPublisher(t *testing.T, src *fakeSource, o mqtt.Options) *rig {
	t.Helper()
	r := &rig{t: t, src: src, logs: &testutil.SyncBuffer{}, done: make(chan error, 1)}
	o.Source = src
	o.Logger = slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if o.TopicPrefix == "" {
		o.TopicPrefix = "tibbersync"
	}
	if o.ClientID == "" {
		o.ClientID = "tibbersync-test-" + strings.ReplaceAll(t.Name(), "/", "-")
	}
	o.MinBackoff, o.MaxBackoff = 20*time.Millisecond, 300*time.Millisecond
	o.ConnectTimeout, o.PublishTimeout = 20*time.Second, 20*time.Second
	o.Version = "test"
	r.status = filepath.Join(t.TempDir(), "mqtt-status.json")
	o.StatusFile = r.status
	p, err := mqtt.New(o)
	if err != nil {
		t.Fatal(err)
	}
	r.pub = p
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- p.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

// stop ends Run and waits for it (bounded).
func (r *rig) stop() {
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			r.t.Errorf("Run: %v", err)
		}
		if ok {
			close(r.done)
		}
	case <-time.After(wait):
		r.t.Errorf("Run did not return within %s of cancel", wait)
	}
}

// waitPasses waits until the publisher completed more than n passes.
func (r *rig) waitPasses(n uint64) {
	r.t.Helper()
	waitUntil(r.t, "a publisher pass", func() bool { return r.pub.Passes() > n })
}

// waitUntil polls cond every few milliseconds, bounded by wait.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", wait, what)
		}
		time.Sleep(10 * time.Millisecond) // poll interval; the deadline bounds the wait
	}
}

func newSource() *fakeSource {
	return &fakeSource{devices: []model.DeviceState{vehicle(), battery()}, auth: model.AuthStatus{State: model.AuthOK}}
}

func discoveryCount(src *fakeSource) int {
	n := 1 // the auth sensor
	for _, d := range src.devices {
		n += len(d.Capabilities)
	}
	return n
}

// ready reports whether status, auth, every state and every discovery
// config have arrived.
func ready(src *fakeSource, prefix, disc string) func([]received) bool {
	return func(msgs []received) bool {
		got := map[string]string{}
		for _, m := range msgs {
			got[m.Topic] = m.Payload
		}
		if got[prefix+"/status"] != "online" || got[prefix+"/auth"] == "" {
			return false
		}
		for _, d := range src.devices {
			if got[prefix+"/devices/"+d.ID+"/state"] == "" {
				return false
			}
		}
		n := 0
		for t, p := range got {
			if strings.HasPrefix(t, disc+"/") && p != "" {
				n++
			}
		}
		return disc == "" || n == discoveryCount(src)
	}
}

func TestPublishesStatusAuthStateAndDiscovery(t *testing.T) {
	b := startBroker(t)
	src := newSource()
	startPublisher(t, src, mqtt.Options{URL: "mqtt://" + b.Plain, DiscoveryPrefix: "homeassistant", QoS: 1})
	sub := subscribe(t, b.Plain, "tibbersync/#", "homeassistant/#")
	sub.waitFor(wait, "status, auth, states and discovery", ready(src, "tibbersync", "homeassistant"))

	// A late subscriber gets all of it retained.
	late := subscribe(t, b.Plain, "tibbersync/#", "homeassistant/#")
	msgs := late.waitFor(wait, "retained copies", ready(src, "tibbersync", "homeassistant"))
	for _, m := range msgs {
		if !m.Retained {
			t.Errorf("%s arrived without the retained flag", m.Topic)
		}
	}
	got := late.latest()
	if got["tibbersync/auth"] != "ok" {
		t.Errorf("auth = %q, want ok", got["tibbersync/auth"])
	}
	for _, d := range src.devices {
		checkState(t, got["tibbersync/devices/"+d.ID+"/state"], d)
	}

	// Discovery: one config per capability, each pointing at its device's
	// state topic with a device block, classes where known.
	wantClass := map[string][2]string{ // capability id -> device_class, state_class (vehicle's and battery's)
		"storage.stateOfCharge":     {"battery", "measurement"},
		"range.remaining":           {"distance", "measurement"},
		"powerFlow.grid.power":      {"power", "measurement"},
		"energyFlow.day.gridImport": {"energy", "total_increasing"},
		"storage.availableEnergy":   {"energy_storage", "measurement"},
		"temp.current":              {"temperature", "measurement"},
		"connectivity.online":       {"connectivity", ""},
		"charging.status":           {"", ""},
	}
	seen := map[string]bool{}
	uniq := map[string]bool{}
	for topic, payload := range got {
		if !strings.HasPrefix(topic, "homeassistant/") || payload == "" {
			continue
		}
		parts := strings.Split(topic, "/")
		if len(parts) != 4 || parts[3] != "config" || (parts[1] != "sensor" && parts[1] != "binary_sensor") {
			t.Errorf("discovery topic %q is not <prefix>/<component>/<object_id>/config", topic)
			continue
		}
		var cfg struct {
			Name              string
			UniqueID          string `json:"unique_id"`
			StateTopic        string `json:"state_topic"`
			ValueTemplate     string `json:"value_template"`
			AvailabilityTopic string `json:"availability_topic"`
			Unit              string `json:"unit_of_measurement"`
			DeviceClass       string `json:"device_class"`
			StateClass        string `json:"state_class"`
			Device            struct {
				Identifiers               []string
				Name, Manufacturer, Model string
				ViaDevice                 string `json:"via_device"`
			}
		}
		if err := json.Unmarshal([]byte(payload), &cfg); err != nil {
			t.Errorf("%s: %v", topic, err)
			continue
		}
		if cfg.UniqueID == "" || cfg.UniqueID != parts[2] || uniq[cfg.UniqueID] {
			t.Errorf("%s: unique_id %q (object id %q) missing, different or repeated", topic, cfg.UniqueID, parts[2])
		}
		uniq[cfg.UniqueID] = true
		if cfg.AvailabilityTopic != "tibbersync/status" || len(cfg.Device.Identifiers) == 0 || cfg.Device.Name == "" {
			t.Errorf("%s: availability %q, device %+v", topic, cfg.AvailabilityTopic, cfg.Device)
		}
		if cfg.StateTopic == "tibbersync/auth" {
			continue
		}
		var dev *model.DeviceState
		for i := range src.devices {
			if cfg.StateTopic == "tibbersync/devices/"+src.devices[i].ID+"/state" {
				dev = &src.devices[i]
			}
		}
		if dev == nil {
			t.Errorf("%s: state_topic %q names no device", topic, cfg.StateTopic)
			continue
		}
		if cfg.Device.Identifiers[0] != "tibbersync_"+dev.ID || cfg.Device.Name != dev.Name || cfg.Device.Manufacturer != dev.Brand || cfg.Device.Model != dev.Model {
			t.Errorf("%s: device block %+v does not describe %s", topic, cfg.Device, dev.Name)
		}
		var capID string
		for _, c := range dev.Capabilities {
			if strings.Contains(cfg.ValueTemplate, `["`+c.ID+`"]`) {
				capID = c.ID
			}
		}
		if capID == "" {
			t.Errorf("%s: value_template %q reads no capability of %s", topic, cfg.ValueTemplate, dev.Name)
			continue
		}
		seen[dev.ID+"/"+capID] = true
		if w, ok := wantClass[capID]; ok && (cfg.DeviceClass != w[0] || cfg.StateClass != w[1]) {
			t.Errorf("%s (%s): device_class %q state_class %q, want %q %q", topic, capID, cfg.DeviceClass, cfg.StateClass, w[0], w[1])
		}
		if capID == "connectivity.online" && parts[1] != "binary_sensor" {
			t.Errorf("boolean %s published as %s", capID, parts[1])
		}
		if capID == "storage.stateOfCharge" && cfg.Unit != "%" {
			t.Errorf("%s: unit %q", capID, cfg.Unit)
		}
	}
	for _, d := range src.devices {
		for _, c := range d.Capabilities {
			if !seen[d.ID+"/"+c.ID] {
				t.Errorf("no discovery config for %s %s", d.Name, c.ID)
			}
		}
	}
}

// checkState compares a published state JSON with the device it describes.
func checkState(t *testing.T, payload string, d model.DeviceState) {
	t.Helper()
	var st struct {
		ID, Name, Category string
		Homes              []model.HomeRef
		ObservedAt         time.Time `json:"observed_at"`
		Capabilities       map[string]struct {
			Value any
			Unit  string
		}
	}
	if err := json.Unmarshal([]byte(payload), &st); err != nil {
		t.Fatalf("state of %s: %v\n%s", d.Name, err, payload)
	}
	if st.ID != d.ID || st.Name != d.Name || st.Category != string(d.Category) || !st.ObservedAt.Equal(d.ObservedAt) || !slices.Equal(st.Homes, d.Homes) {
		t.Errorf("state of %s: %+v", d.Name, st)
	}
	if len(st.Capabilities) != len(d.Capabilities) {
		t.Errorf("state of %s has %d capabilities, want %d", d.Name, len(st.Capabilities), len(d.Capabilities))
	}
	for _, c := range d.Capabilities {
		got, ok := st.Capabilities[c.ID]
		if !ok {
			t.Errorf("%s: %s missing", d.Name, c.ID)
			continue
		}
		var want any
		switch b, isBool := c.Bool(); {
		case isBool:
			want = b
		case c.Missing:
			want = nil
		case c.Num != nil:
			want = *c.Num
		default:
			want = *c.Text
		}
		if got.Value != want || got.Unit != c.Unit {
			t.Errorf("%s %s = %v %q, want %v %q", d.Name, c.ID, got.Value, got.Unit, want, c.Unit)
		}
	}
}

func TestOnlyChangesArePublished(t *testing.T) {
	b := startBroker(t)
	src := newSource()
	r := startPublisher(t, src, mqtt.Options{URL: "mqtt://" + b.Plain, DiscoveryPrefix: "homeassistant", QoS: 1})
	sub := subscribe(t, b.Plain, "#")
	sub.waitFor(wait, "the first full publish", ready(src, "tibbersync", "homeassistant"))
	waitUntil(t, "the first pass", func() bool { return r.pub.Passes() >= 1 })
	before := sub.count()
	published := r.pub.Status().MessagesPublished

	// Three unchanged cycles: no message at all.
	for range 3 {
		n := r.pub.Passes()
		r.pub.DevicesChanged()
		r.pub.AuthChanged()
		r.waitPasses(n)
	}
	if got := r.pub.Status().MessagesPublished; got != published {
		t.Errorf("unchanged cycles published %d messages", got-published)
	}

	// One value of one device changes: exactly its state is published.
	src.update(func(f *fakeSource) {
		f.devices[1].Capabilities[0].Num = num(56)
		f.devices[1].ObservedAt = obs.Add(5 * time.Minute)
	})
	r.pub.DevicesChanged()
	topic := "tibbersync/devices/" + src.devices[1].ID + "/state"
	sub.waitFor(wait, "the changed state", func(msgs []received) bool {
		return len(msgs) > before && strings.Contains(msgs[len(msgs)-1].Payload, `"value":56`)
	})
	after := sub.all()[before:]
	if len(after) != 1 || after[0].Topic != topic {
		t.Errorf("a change of one value sent %d messages, want 1 on %s: %+v", len(after), topic, after)
	}

	// The auth state changes: only <prefix>/auth.
	before = sub.count()
	src.update(func(f *fakeSource) {
		f.auth = model.AuthStatus{State: model.AuthReauthRequired, Reason: "refresh token revoked"}
	})
	r.pub.AuthChanged()
	sub.waitFor(wait, "reauth_required", hasPayload("tibbersync/auth", "reauth_required"))
	if after := sub.all()[before:]; len(after) != 1 {
		t.Errorf("auth change sent %d messages: %+v", len(after), after)
	}
}

func TestRemovedDeviceClearsItsTopics(t *testing.T) {
	b := startBroker(t)
	src := newSource()
	r := startPublisher(t, src, mqtt.Options{URL: "mqtt://" + b.Plain, DiscoveryPrefix: "homeassistant", QoS: 1})
	sub := subscribe(t, b.Plain, "#")
	sub.waitFor(wait, "the first full publish", ready(src, "tibbersync", "homeassistant"))
	var vehicleTopics []string
	for topic, payload := range sub.latest() {
		if strings.Contains(payload, src.devices[0].ID) {
			vehicleTopics = append(vehicleTopics, topic)
		}
	}
	if len(vehicleTopics) != 1+len(src.devices[0].Capabilities) {
		t.Fatalf("vehicle topics: %v", vehicleTopics)
	}
	src.update(func(f *fakeSource) { f.devices[0].Removed = true })
	n := r.pub.Passes()
	r.pub.DevicesChanged()
	r.waitPasses(n)
	sub.waitFor(wait, "empty retained payloads", func([]received) bool {
		got := sub.latest()
		for _, topic := range vehicleTopics {
			if got[topic] != "" {
				return false
			}
		}
		return true
	})
	// The broker no longer holds them; the battery is untouched.
	late := subscribe(t, b.Plain, "#")
	msgs := late.waitFor(wait, "the battery's retained state", func(msgs []received) bool {
		return hasPayloadPrefix(msgs, "tibbersync/devices/"+src.devices[1].ID+"/state", "{")
	})
	for _, m := range msgs {
		if slices.Contains(vehicleTopics, m.Topic) {
			t.Errorf("removed device's %s is still retained: %.80q", m.Topic, m.Payload)
		}
	}
}

// TestDeletesArePublishedOnce: when a device disappears (flagged removed
// in data.db, or not listed at all any more), each of its topics gets one
// empty retained payload. Later passes and a reconnect publish no delete
// for it again, and the publisher stops tracking those topics; a device
// that comes back is published again, and deleted once more when it goes.
func TestDeletesArePublishedOnce(t *testing.T) {
	for _, tc := range []struct {
		name       string
		gone, back func(*fakeSource)
	}{
		{"Removed",
			func(f *fakeSource) { f.devices[0].Removed = true },
			func(f *fakeSource) { f.devices[0].Removed = false }},
		{"Vanished",
			func(f *fakeSource) { f.devices = f.devices[1:] },
			func(f *fakeSource) { f.devices = append([]model.DeviceState{vehicle()}, f.devices...) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := startBroker(t)
			src := newSource()
			vehicleID := src.devices[0].ID
			r := startPublisher(t, src, mqtt.Options{URL: "mqtt://" + b.Plain, DiscoveryPrefix: "homeassistant", QoS: 1})
			sub := subscribe(t, b.Plain, "#")
			sub.waitFor(wait, "the first full publish", ready(src, "tibbersync", "homeassistant"))
			waitUntil(t, "the first pass", func() bool { return r.pub.Passes() >= 1 })
			full := r.pub.Status().MessagesPublished
			var vehicleTopics []string
			for topic, payload := range sub.latest() {
				if strings.Contains(payload, vehicleID) {
					vehicleTopics = append(vehicleTopics, topic)
				}
			}
			if len(vehicleTopics) != 1+len(vehicle().Capabilities) {
				t.Fatalf("vehicle topics: %v", vehicleTopics)
			}
			pass := func() {
				t.Helper()
				n := r.pub.Passes()
				r.pub.DevicesChanged()
				r.waitPasses(n)
			}
			published := func() int64 { return r.pub.Status().MessagesPublished }

			// The device goes: one delete per topic.
			src.update(tc.gone)
			pass()
			if got := published() - full; got != int64(len(vehicleTopics)) {
				t.Errorf("the device's removal published %d messages, want %d deletes", got, len(vehicleTopics))
			}
			sub.waitFor(wait, "empty retained payloads", func([]received) bool {
				got := sub.latest()
				for _, topic := range vehicleTopics {
					if got[topic] != "" {
						return false
					}
				}
				return true
			})

			// Later passes publish nothing.
			before := published()
			for range 3 {
				pass()
			}
			if got := published() - before; got != 0 {
				t.Errorf("%d messages in 3 unchanged passes after the delete", got)
			}

			// A reconnect publishes the full state without the deleted
			// topics.
			n := r.pub.Passes()
			b.stop()
			waitUntil(t, "the publisher to notice the broker is gone", func() bool {
				st := r.pub.Status()
				return !st.Connected && st.LastError != ""
			})
			b.restart()
			r.waitPasses(n)
			if got, want := published()-before, full-int64(len(vehicleTopics)); got != want {
				t.Errorf("the reconnect published %d messages, want %d (the full state without the %d deleted topics)", got, want, len(vehicleTopics))
			}

			// The device comes back: its topics are published again; it
			// goes again: deleted again, once.
			before = published()
			src.update(tc.back)
			pass()
			if got := published() - before; got != int64(len(vehicleTopics)) {
				t.Errorf("the device's return published %d messages, want %d", got, len(vehicleTopics))
			}
			before = published()
			src.update(tc.gone)
			pass()
			pass()
			if got := published() - before; got != int64(len(vehicleTopics)) {
				t.Errorf("the second removal published %d messages, want %d deletes", got, len(vehicleTopics))
			}

			// Nothing of the gone device is kept: only the battery's state
			// and discovery topics are tracked.
			r.stop()
			tracked, deletes := mqtt.DeviceTopics(r.pub)
			if want := 1 + len(battery().Capabilities); tracked != want || deletes != 0 {
				t.Errorf("the publisher tracks %d device topics (%d of them deletes), want %d (none)", tracked, deletes, want)
			}
		})
	}
}

func hasPayloadPrefix(msgs []received, topic, prefix string) bool {
	for _, m := range msgs {
		if m.Topic == topic && strings.HasPrefix(m.Payload, prefix) {
			return true
		}
	}
	return false
}

// TestBrokerDownNeverBlocksAndNewestWins: while the broker is down the
// caller never waits, nothing piles up, and on restart exactly the newest
// state of every device is published (retained), with online.
func TestBrokerDownNeverBlocksAndNewestWins(t *testing.T) {
	b := startBroker(t)
	src := newSource()
	r := startPublisher(t, src, mqtt.Options{URL: "mqtt://" + b.Plain, DiscoveryPrefix: "homeassistant", QoS: 1})
	sub := subscribe(t, b.Plain, "tibbersync/#")
	sub.waitFor(wait, "the first full publish", ready(src, "tibbersync", ""))

	b.stop()
	waitUntil(t, "the publisher to notice the broker is gone", func() bool {
		st := r.pub.Status()
		return !st.Connected && st.LastError != ""
	})
	// Many cycles while down: each call returns at once (it only sets a flag).
	for i := range 200 {
		src.update(func(f *fakeSource) { f.devices[0].Capabilities[0].Num = num(float64(i)) })
		r.pub.DevicesChanged()
		r.pub.AuthChanged()
	}
	readsWhileDown := func() int { src.mu.Lock(); defer src.mu.Unlock(); return src.reads }()

	b.restart()
	sub2 := subscribe(t, b.Plain, "tibbersync/#")
	topic := "tibbersync/devices/" + src.devices[0].ID + "/state"
	msgs := sub2.waitFor(wait, "the newest state after the restart", func(msgs []received) bool {
		return hasPayload("tibbersync/status", "online")(msgs) && hasPayloadPrefix(msgs, topic, "{")
	})
	var st mqtt.StatePayload
	for _, m := range msgs {
		if m.Topic == topic {
			if err := json.Unmarshal([]byte(m.Payload), &st); err != nil {
				t.Fatal(err)
			}
		}
	}
	if v := st.Caps["storage.stateOfCharge"].Value; v != 199.0 {
		t.Errorf("after the outage the state holds %v, want the newest 199", v)
	}
	// The 200 cycles while down caused no reads at all (nothing queued).
	if readsWhileDown > 2 {
		t.Errorf("the source was read %d times while the broker was down", readsWhileDown)
	}
	stat := r.pub.Status()
	if !stat.Connected || stat.Errors == 0 || stat.LastError == "" || stat.LastErrorAt.IsZero() {
		t.Errorf("status after the outage: %+v", stat)
	}
	// The status file tells `tibbersync status` the same.
	fileSt, err := mqtt.ReadStatusFile(r.status)
	if err != nil || fileSt.Errors == 0 || fileSt.LastError == "" {
		t.Errorf("status file: %+v, %v", fileSt, err)
	}
	// One WARN for the outage, however many retries.
	if n := r.logs.Lines("level=WARN"); n != 1 {
		t.Errorf("%d WARN lines for one outage:\n%s", n, r.logs.String())
	}
	if r.logs.Lines("connected again") != 1 {
		t.Errorf("no 'connected again' line:\n%s", r.logs.String())
	}
}

func TestWrongPasswordIsReportedClearlyOnce(t *testing.T) {
	b := startBroker(t)
	src := newSource()
	r := startPublisher(t, src, mqtt.Options{URL: "mqtt://" + b.Auth, Username: brokerUser,
		Password: secret.New("CANARY-wrong-password-77aa"), QoS: 1})
	waitUntil(t, "several refused attempts", func() bool { return r.pub.Status().Errors >= 3 })
	st := r.pub.Status()
	for _, want := range []string{`refused user "tibbersync"`, "mqtt.password_file"} {
		if !strings.Contains(st.LastError, want) {
			t.Errorf("last error %q does not say %q", st.LastError, want)
		}
	}
	if st.Connected {
		t.Error("connected with a wrong password")
	}
	logs := r.logs.String()
	if n := r.logs.Lines("level=WARN"); n != 1 {
		t.Errorf("%d WARN lines for %d refused attempts, want 1:\n%s", n, st.Errors, logs)
	}
	if strings.Contains(logs, "CANARY-wrong-password") || strings.Contains(st.LastError, "CANARY") {
		t.Error("the password appears in the log or the status")
	}
	r.stop()

	// The right password connects.
	r2 := startPublisher(t, src, mqtt.Options{URL: "mqtt://" + b.Auth, Username: brokerUser, Password: secret.New(brokerPassword), QoS: 1})
	waitUntil(t, "a connection with the right password", func() bool { return r2.pub.Passes() >= 1 })
}

func TestTLSWithPrivateCA(t *testing.T) {
	b := startBroker(t)
	src := newSource()
	r := startPublisher(t, src, mqtt.Options{URL: "mqtts://localhost:" + port(b.TLS), CAFile: b.CAFile, QoS: 1})
	waitUntil(t, "a TLS connection", func() bool { return r.pub.Passes() >= 1 })
	sub := subscribe(t, b.Plain, "tibbersync/#")
	sub.waitFor(wait, "retained messages sent over TLS", ready(src, "tibbersync", ""))
	r.stop()

	// Without the CA (system roots only) the error says what to do.
	r2 := startPublisher(t, src, mqtt.Options{URL: "mqtts://localhost:" + port(b.TLS), QoS: 1})
	waitUntil(t, "a TLS error", func() bool { return r2.pub.Status().LastError != "" })
	if e := r2.pub.Status().LastError; !strings.Contains(e, "not trusted") || !strings.Contains(e, "mqtt.ca_file") {
		t.Errorf("TLS error %q does not name the fix", e)
	}
}

func TestCleanShutdownPublishesOffline(t *testing.T) {
	b := startBroker(t)
	src := newSource()
	r := startPublisher(t, src, mqtt.Options{URL: "mqtt://" + b.Plain, QoS: 1})
	sub := subscribe(t, b.Plain, "tibbersync/status")
	sub.waitFor(wait, "online", hasPayload("tibbersync/status", "online"))
	r.stop()
	sub.waitFor(wait, "offline on clean shutdown", hasPayload("tibbersync/status", "offline"))
	st, err := mqtt.ReadStatusFile(r.status)
	if err != nil || !st.Stopped || st.Connected {
		t.Errorf("status file after shutdown: %+v, %v", st, err)
	}
}

func TestNoDiscoveryWhenPrefixEmpty(t *testing.T) {
	b := startBroker(t)
	src := newSource()
	r := startPublisher(t, src, mqtt.Options{URL: "mqtt://" + b.Plain, QoS: 0, TopicPrefix: "home/tibber"})
	sub := subscribe(t, b.Plain, "#")
	sub.waitFor(wait, "states under the custom prefix", ready(src, "home/tibber", ""))
	waitUntil(t, "the first pass", func() bool { return r.pub.Passes() >= 1 })
	for topic := range maps.Keys(sub.latest()) {
		if !strings.HasPrefix(topic, "home/tibber/") {
			t.Errorf("unexpected topic %s with discovery off", topic)
		}
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for name, o := range map[string]mqtt.Options{
		"NoSource": {URL: "mqtt://b", TopicPrefix: "p"},
		"BadURL":   {URL: "http://b", TopicPrefix: "p", Source: newSource()},
		"QoS3":     {URL: "mqtt://b", TopicPrefix: "p", Source: newSource(), QoS: 3},
		"CAFile":   {URL: "mqtts://b", TopicPrefix: "p", Source: newSource(), CAFile: "/nonexistent/ca.pem"},
	} {
		if _, err := mqtt.New(o); err == nil {
			t.Errorf("%s: New accepted %+v", name, o)
		}
	}
	_ = errors.New
}

// TestSameClientIDDoesNotFlap: two bridges with one client id kick each
// other off the broker; each backs off (no tight reconnect-and-republish
// loop) and the error names the likely cause.
func TestSameClientIDDoesNotFlap(t *testing.T) {
	b := startBroker(t)
	o := mqtt.Options{URL: "mqtt://" + b.Plain, ClientID: "tibbersync-twin", QoS: 1}
	r1 := startPublisher(t, newSource(), o)
	r2 := startPublisher(t, newSource(), o)
	waitUntil(t, "both bridges to have been kicked", func() bool {
		return r1.pub.Status().Errors >= 2 && r2.pub.Status().Errors >= 2
	})
	for _, r := range []*rig{r1, r2} {
		if e := r.pub.Status().LastError; !strings.Contains(e, `mqtt.client_id "tibbersync-twin"`) {
			t.Errorf("error %q does not point at the shared client id", e)
		}
	}
	// With a 20 ms minimum and a 300 ms maximum backoff, a loop that reset
	// the backoff on every short connection would reconnect ~50 times a
	// second; backing off, the two together stay far below that.
	start := r1.pub.Status().Errors + r2.pub.Status().Errors
	startPasses := r1.pub.Passes() + r2.pub.Passes()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond) // observation window; the assertion below is an upper bound
	}
	if n := r1.pub.Status().Errors + r2.pub.Status().Errors - start; n > 40 {
		t.Errorf("%d reconnects in 3 s: the bridges flap", n)
	}
	t.Logf("%d drops and %d full publishes in 3 s", r1.pub.Status().Errors+r2.pub.Status().Errors-start, r1.pub.Passes()+r2.pub.Passes()-startPasses)
}

func TestProbe(t *testing.T) {
	b := startBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := mqtt.Probe(ctx, mqtt.Options{URL: "mqtt://" + b.Auth, Username: brokerUser, Password: secret.New(brokerPassword)}); err != nil {
		t.Errorf("probe with the right password: %v", err)
	}
	err := mqtt.Probe(ctx, mqtt.Options{URL: "mqtt://" + b.Auth, Username: brokerUser, Password: secret.New("CANARY-wrong-7e")})
	if err == nil || !strings.Contains(err.Error(), `refused user "tibbersync"`) || strings.Contains(err.Error(), "CANARY") {
		t.Errorf("probe with a wrong password: %v", err)
	}
	if err := mqtt.Probe(ctx, mqtt.Options{URL: "mqtts://localhost:" + port(b.TLS), CAFile: b.CAFile}); err != nil {
		t.Errorf("TLS probe with the CA: %v", err)
	}
	// The probe never kicks a running bridge: it uses its own client id.
	r := startPublisher(t, newSource(), mqtt.Options{URL: "mqtt://" + b.Plain, ClientID: "tibbersync-live"})
	waitUntil(t, "the bridge to connect", func() bool { return r.pub.Passes() >= 1 })
	if err := mqtt.Probe(ctx, mqtt.Options{URL: "mqtt://" + b.Plain, ClientID: "tibbersync-live"}); err != nil {
		t.Fatal(err)
	}
	if st := r.pub.Status(); !st.Connected || st.Errors != 0 {
		t.Errorf("the probe disturbed the bridge: %+v", st)
	}
}
