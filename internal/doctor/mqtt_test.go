package doctor

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestMQTTCheck(t *testing.T) {
	// Off: no mqtt line, and the probe is never called.
	o := healthy(t)
	o.MQTTProbe = func(context.Context) error { t.Error("probe called with MQTT off"); return nil }
	if cs := find(Run(context.Background(), o), "mqtt"); len(cs) != 0 {
		t.Errorf("mqtt check with MQTT off: %+v", cs)
	}

	o = healthy(t)
	o.Config.MQTT.URL = "mqtt://broker.lan:1883"
	o.MQTTProbe = func(context.Context) error { return nil }
	if out := report(Run(context.Background(), o)); !strings.Contains(out, "mqtt://broker.lan:1883 accepts the connection") {
		t.Errorf("report lacks the mqtt check:\n%s", out)
	}

	o.MQTTProbe = func(context.Context) error {
		return errors.New(`broker refused user "tibbersync" (not Authorized): check mqtt.username and the password`)
	}
	cs := expectFail(t, o, "mqtt", "docs/mqtt.md")
	if c := find(cs, "mqtt")[0]; !strings.Contains(c.Detail, "refused user") {
		t.Errorf("detail %q", c.Detail)
	}
}
