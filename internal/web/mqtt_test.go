package web_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
)

func TestStatusPageShowsMQTT(t *testing.T) {
	opts := baseOptions(&syncBuffer{})
	// Off: no MQTT section at all.
	_, ts := handlerServer(t, opts)
	if r := get(t, noRedirect(), ts.URL+"/"); r.status != http.StatusOK || strings.Contains(r.body, `id="mqtt"`) {
		t.Fatalf("MQTT off: status %d, section shown: %v", r.status, strings.Contains(r.body, `id="mqtt"`))
	}

	st := model.MQTTStatus{
		Broker: "mqtt://broker.lan:1883", Connected: false, Since: t0.Add(-10 * time.Minute),
		MessagesPublished: 1234, Errors: 7,
		LastError: `broker refused user "tibbersync" (not Authorized): check mqtt.username and the password`, LastErrorAt: t0.Add(-time.Minute),
	}
	opts.MQTT = func() model.MQTTStatus { return st }
	_, ts = handlerServer(t, opts)
	r := get(t, noRedirect(), ts.URL+"/")
	if r.status != http.StatusOK {
		t.Fatalf("status %d", r.status)
	}
	mustContain(t, r.body, `id="mqtt"`, "mqtt://broker.lan:1883", "not connected", "1234",
		"broker refused user &#34;tibbersync&#34;", "7 errors since start", "syncing is not affected")

	st = model.MQTTStatus{Broker: "mqtts://broker.lan:8883", Connected: true, Since: t0, MessagesPublished: 99}
	_, ts = handlerServer(t, opts)
	r = get(t, noRedirect(), ts.URL+"/")
	mustContain(t, r.body, "mqtts://broker.lan:8883", ">connected<", "99")
	if strings.Contains(r.body, "Last error") {
		t.Error("a last error is shown although there was none")
	}
}
