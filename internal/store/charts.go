package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
)

// chartMetric reports whether metric is one of the main metrics the status
// page draws: energy flows, state of charge and temperatures.
func chartMetric(metric string) bool {
	return strings.HasPrefix(metric, "energyFlow.") || metric == "storage.stateOfCharge" || strings.HasPrefix(metric, "temp.")
}

// HistorySeries returns, per device that is not removed and per main metric
// (energy flows, state of charge, temperatures), the stored history of
// resolution with period starts in [from, to), oldest first. It reads each
// device's window through device_history's primary key (device, resolution,
// period_start), never the whole table, so its cost follows the window, not
// the years stored.
func (db *DB) HistorySeries(ctx context.Context, resolution string, from, to time.Time) ([]model.HistorySeries, error) {
	tx, err := db.beginRead(ctx)
	if err != nil {
		return nil, fmt.Errorf("history series: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	type dev struct{ id, name string }
	rows, err := tx.QueryContext(ctx, `SELECT id, name FROM devices WHERE removed_at IS NULL ORDER BY name, id`)
	if err != nil {
		return nil, fmt.Errorf("history series: devices: %w", err)
	}
	var devs []dev
	for rows.Next() {
		var d dev
		if err := rows.Scan(&d.id, &d.name); err != nil {
			_ = rows.Close()
			return nil, fmt.Errorf("history series: devices: %w", err)
		}
		devs = append(devs, d)
	}
	_ = rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("history series: devices: %w", err)
	}
	var out []model.HistorySeries
	for _, d := range devs {
		pts, err := tx.QueryContext(ctx, `SELECT metric, period_start, utc_offset_s, value
FROM device_history
WHERE device_id = ?1 AND resolution = ?2 AND period_start >= ?3 AND period_start < ?4
ORDER BY period_start`, d.id, resolution, from.UnixMilli(), to.UnixMilli())
		if err != nil {
			return nil, fmt.Errorf("history series of %s: %w", d.id, err)
		}
		index := map[string]int{}
		var series []model.HistorySeries
		for pts.Next() {
			var (
				metric string
				start  int64
				off    int64
				v      sql.NullFloat64
			)
			if err := pts.Scan(&metric, &start, &off, &v); err != nil {
				_ = pts.Close()
				return nil, fmt.Errorf("history series of %s: %w", d.id, err)
			}
			if !v.Valid || !chartMetric(metric) {
				continue
			}
			i, ok := index[metric]
			if !ok {
				i = len(series)
				index[metric] = i
				series = append(series, model.HistorySeries{DeviceID: d.id, DeviceName: d.name, Resolution: resolution, Metric: metric})
			}
			series[i].Points = append(series[i].Points, model.HistoryPoint{
				Start: time.UnixMilli(start).UTC(), Offset: time.Duration(off) * time.Second, Value: v.Float64,
			})
		}
		_ = pts.Close()
		if err := pts.Err(); err != nil {
			return nil, fmt.Errorf("history series of %s: %w", d.id, err)
		}
		out = append(out, series...)
	}
	return out, nil
}
