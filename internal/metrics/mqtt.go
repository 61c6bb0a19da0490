package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tibbersync/tibbersync/internal/model"
)

// mqttCollector reads the MQTT bridge's status on each scrape.
type mqttCollector struct {
	status                               func() model.MQTTStatus
	connected, published, errs, lastErrT *prometheus.Desc
}

// ObserveMQTT exports the MQTT bridge's state (connected, messages
// published, errors, time of the last error), read from status on every
// scrape. Call it once, only when MQTT is configured; without it no
// tibbersync_mqtt_* metric exists.
func (m *Metrics) ObserveMQTT(status func() model.MQTTStatus) {
	if m == nil || status == nil {
		return
	}
	m.Registry.MustRegister(&mqttCollector{
		status: status,
		connected: prometheus.NewDesc(Namespace+"_mqtt_connected",
			"1 while the MQTT bridge is connected to the broker, else 0.", nil, nil),
		published: prometheus.NewDesc(Namespace+"_mqtt_messages_published_total",
			"MQTT messages the broker acknowledged since the process started.", nil, nil),
		errs: prometheus.NewDesc(Namespace+"_mqtt_errors_total",
			"Failed broker connection attempts, lost connections and failed publishes since the process started.", nil, nil),
		lastErrT: prometheus.NewDesc(Namespace+"_mqtt_last_error_timestamp_seconds",
			"Unix time of the last MQTT broker error; absent while there was none.", nil, nil),
	})
}

func (c *mqttCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.connected
	ch <- c.published
	ch <- c.errs
	ch <- c.lastErrT
}

func (c *mqttCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.status()
	conn := 0.0
	if st.Connected {
		conn = 1
	}
	ch <- prometheus.MustNewConstMetric(c.connected, prometheus.GaugeValue, conn)
	ch <- prometheus.MustNewConstMetric(c.published, prometheus.CounterValue, float64(st.MessagesPublished))
	ch <- prometheus.MustNewConstMetric(c.errs, prometheus.CounterValue, float64(st.Errors))
	if !st.LastErrorAt.IsZero() {
		ch <- prometheus.MustNewConstMetric(c.lastErrT, prometheus.GaugeValue, unixSeconds(st.LastErrorAt))
	}
}
