package web

import (
	"context"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
)

// StatusSource is the read-only view of the daemon's state behind the status
// page, /readyz and /metrics. *store.DB plus token expiry estimates from the
// wiring in cmd/tibbersync implement it.
type StatusSource interface {
	// Summary returns the current state: auth, jobs, row counts, file sizes
	// and devices.
	Summary(ctx context.Context) (model.Summary, error)
	// CapabilitySeries returns, per device, the values of one capability
	// observed since the given time, oldest first.
	CapabilitySeries(ctx context.Context, capabilityID string, since time.Time) ([]model.Series, error)
	// HistorySeries returns the stored history of the main metrics of
	// every device at one resolution, period starts in [from, to), reading
	// only that window.
	HistorySeries(ctx context.Context, resolution string, from, to time.Time) ([]model.HistorySeries, error)
}

// UserMessager is implemented by errors that carry a message written for the
// person at the browser. The setup pages show it instead of Error().
type UserMessager interface {
	UserMessage() string
}

// StatusCoder is implemented by errors that know which HTTP status the page
// reporting them should carry (for example 502 when Tibber's token endpoint
// failed). Without it, a failed authorization is a 400.
type StatusCoder interface {
	HTTPStatus() int
}

// ChartWindow is how far back the status page charts reach.
const ChartWindow = 24 * time.Hour

// ChartSpec is one chart of the status page: one capability, one line per
// device that has it.
type ChartSpec struct {
	// Title is the chart's heading.
	Title string
	// CapabilityID is the capability to plot, e.g. storage.stateOfCharge.
	CapabilityID string
	// Fixed pins the value axis to Min..Max (0..100 for percentages);
	// otherwise the axis follows the data.
	Fixed    bool
	Min, Max float64
}

// DefaultCharts returns the charts shown when Options.Charts is nil: the
// state of charge of batteries and vehicles, thermostat temperatures and the
// grid power of energy systems. A chart without data is left out.
func DefaultCharts() []ChartSpec {
	return []ChartSpec{
		{Title: "State of charge", CapabilityID: "storage.stateOfCharge", Fixed: true, Min: 0, Max: 100},
		{Title: "Temperature", CapabilityID: "temp.current"},
		{Title: "Grid power", CapabilityID: "powerFlow.grid.power"},
	}
}
