package tibber

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
)

// Homes lists the account's homes (GET /v1/homes).
func (c *Client) Homes(ctx context.Context) ([]model.Home, error) {
	u, err := c.apiURL(nil, "v1", "homes")
	if err != nil {
		return nil, fmt.Errorf("fetch homes: %w", err)
	}
	body, err := c.get(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("fetch homes: %w", err)
	}
	homes, skipped, err := decodeHomes(body)
	if err != nil {
		return nil, fmt.Errorf("fetch homes: %w", c.decodeFailed(ctx, u, err))
	}
	c.reportSkipped(ctx, u, skipped)
	return homes, nil
}

// Devices lists the devices of a home (GET /v1/homes/{homeId}/devices).
// List items carry identity fields only; Category is "" for them.
func (c *Client) Devices(ctx context.Context, homeID string) ([]model.Device, error) {
	if !validID(homeID) {
		return nil, fmt.Errorf("fetch devices: invalid home id %s", quoteName(homeID))
	}
	u, err := c.apiURL(nil, "v1", "homes", homeID, "devices")
	if err != nil {
		return nil, fmt.Errorf("fetch devices: %w", err)
	}
	body, err := c.get(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("fetch devices: %w", err)
	}
	devices, skipped, err := decodeDevices(body)
	if err != nil {
		return nil, fmt.Errorf("fetch devices: %w", c.decodeFailed(ctx, u, err))
	}
	c.reportSkipped(ctx, u, skipped)
	return devices, nil
}

// Device fetches one device's detail (GET /v1/homes/{homeId}/devices/{deviceId}).
// Raw holds the body exactly as received and Category is derived from the
// capability ids. A detail whose id differs from deviceID is an error.
func (c *Client) Device(ctx context.Context, homeID, deviceID string) (model.Device, error) {
	if !validID(homeID) || !validID(deviceID) {
		return model.Device{}, fmt.Errorf("fetch device: invalid id (home %s, device %s)", quoteName(homeID), quoteName(deviceID))
	}
	u, err := c.apiURL(nil, "v1", "homes", homeID, "devices", deviceID)
	if err != nil {
		return model.Device{}, fmt.Errorf("fetch device: %w", err)
	}
	body, err := c.get(ctx, u)
	if err != nil {
		return model.Device{}, fmt.Errorf("fetch device: %w", err)
	}
	d, err := decodeDevice(body)
	if err != nil {
		return model.Device{}, fmt.Errorf("fetch device: %w", c.decodeFailed(ctx, u, err))
	}
	if d.ID != deviceID {
		return model.Device{}, fmt.Errorf("fetch device: GET %s answered for device %s", u.EscapedPath(), quoteName(d.ID))
	}
	return d, nil
}

// History fetches the first page of a device's history going forward from
// since (GET …/history?resolution=R&since=T). since is sent in UTC with a Z
// suffix; Tibber cuts it to the hour.
func (c *Client) History(ctx context.Context, homeID, deviceID, resolution string, since time.Time) (model.HistoryPage, error) {
	if !validID(homeID) || !validID(deviceID) {
		return model.HistoryPage{}, fmt.Errorf("fetch history: invalid id (home %s, device %s)", quoteName(homeID), quoteName(deviceID))
	}
	if !model.ValidResolution(resolution) {
		return model.HistoryPage{}, fmt.Errorf("fetch history: invalid resolution %s", quoteName(resolution))
	}
	if since.IsZero() {
		return model.HistoryPage{}, errors.New("fetch history: since is zero")
	}
	q := url.Values{
		"resolution": {resolution},
		"since":      {since.UTC().Format("2006-01-02T15:04:05Z")},
	}
	u, err := c.apiURL(q, "v1", "homes", homeID, "devices", deviceID, "history")
	if err != nil {
		return model.HistoryPage{}, fmt.Errorf("fetch history: %w", err)
	}
	return c.historyPage(ctx, u)
}

// HistoryNext follows a next (or prev) link exactly as the server gave it.
// A relative link is resolved against the base URL; a link to another
// scheme, host or port is refused with an error wrapping ErrForeignLink and
// no request is made.
func (c *Client) HistoryNext(ctx context.Context, next string) (model.HistoryPage, error) {
	next = strings.TrimSpace(next)
	if next == "" {
		return model.HistoryPage{}, errors.New("fetch history: empty next link")
	}
	link, err := resolveLink(next, c.base)
	if err != nil {
		return model.HistoryPage{}, fmt.Errorf("fetch history: %w", err)
	}
	u, err := url.Parse(link)
	if err != nil {
		return model.HistoryPage{}, fmt.Errorf("fetch history: invalid next link: %w", err)
	}
	return c.historyPage(ctx, u)
}

func (c *Client) historyPage(ctx context.Context, u *url.URL) (model.HistoryPage, error) {
	body, err := c.get(ctx, u)
	if err != nil {
		return model.HistoryPage{}, fmt.Errorf("fetch history: %w", err)
	}
	page, err := decodeHistoryPage(body, c.base)
	if err != nil {
		return model.HistoryPage{}, fmt.Errorf("fetch history: %w", c.decodeFailed(ctx, u, err))
	}
	if len(page.Problems) > 0 {
		c.log.LogAttrs(ctx, slog.LevelDebug, "history page has skipped values",
			slog.String("path", u.EscapedPath()),
			slog.Int("problems", len(page.Problems)),
			slog.String("first", page.Problems[0]))
	}
	return page, nil
}

// apiURL builds base + "/" + escaped segments, with query q.
func (c *Client) apiURL(q url.Values, segments ...string) (*url.URL, error) {
	var b strings.Builder
	b.WriteString(c.baseStr)
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	u, err := url.Parse(b.String())
	if err != nil {
		return nil, fmt.Errorf("build url: %w", err)
	}
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	}
	return u, nil
}

func (c *Client) reportSkipped(ctx context.Context, u *url.URL, skipped int) {
	if skipped > 0 {
		c.log.LogAttrs(ctx, slog.LevelWarn, "skipped invalid or duplicate list items",
			slog.String("path", u.EscapedPath()), slog.Int("count", skipped))
	}
}
