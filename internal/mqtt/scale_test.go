package mqtt_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/mqtt"
)

// TestLargeAccountFullPublish: 250 devices with 10 capabilities each (2,751
// retained messages) are published completely on connect, and an unchanged
// cycle of that account publishes nothing.
func TestLargeAccountFullPublish(t *testing.T) {
	if testing.Short() {
		t.Skip("publishes 2,751 messages")
	}
	b := startBroker(t)
	src := &fakeSource{auth: model.AuthStatus{State: model.AuthOK}}
	for i := range 250 {
		d := battery()
		d.ID = fmt.Sprintf("device-%03d", i)
		d.Name = fmt.Sprintf("Battery %d", i)
		for j := range 5 {
			d.Capabilities = append(d.Capabilities, model.CapabilityState{ID: fmt.Sprintf("extra.metric%d", j), Num: num(float64(j)), Unit: "W", ObservedAt: obs})
		}
		src.devices = append(src.devices, d)
	}
	sub := subscribe(t, b.Plain, "tibbersync/devices/+/state")
	began := time.Now()
	r := startPublisher(t, src, mqtt.Options{URL: "mqtt://" + b.Plain, DiscoveryPrefix: "homeassistant", QoS: 1})
	waitUntil(t, "the full publish", func() bool { return r.pub.Passes() >= 1 })
	took := time.Since(began)
	published := r.pub.Status().MessagesPublished
	if want := int64(1 + 1 + 1 + 250 + 250*10); published != want {
		t.Errorf("published %d messages, want %d", published, want)
	}
	sub.waitFor(wait, "250 states", func(msgs []received) bool {
		n := 0
		for _, m := range msgs {
			if strings.HasSuffix(m.Topic, "/state") {
				n++
			}
		}
		return n == 250
	})
	n := r.pub.Passes()
	r.pub.DevicesChanged()
	r.waitPasses(n)
	if got := r.pub.Status().MessagesPublished; got != published {
		t.Errorf("an unchanged cycle of 250 devices published %d messages", got-published)
	}
	t.Logf("full publish of %d messages (QoS 1) in %s", published, took.Round(time.Millisecond))
}
