package tibber_test

import (
	"bytes"
	"encoding/json"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/tibber"
)

// Seeds live in testdata/fuzz/<Name>/ (R28). Run one target at a time, e.g.
//
//	go test -run='^$' -fuzz=FuzzRetryAfter -fuzztime=30s ./internal/tibber

func FuzzRetryAfter(f *testing.F) {
	now := time.Date(2026, 9, 14, 8, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := tibber.ParseRetryAfter(v, now)
		if !ok {
			if d != 0 {
				t.Fatalf("ParseRetryAfter(%q) = %s with ok=false", v, d)
			}
			return
		}
		if d < 0 || d > tibber.MaxRetryAfter {
			t.Fatalf("ParseRetryAfter(%q) = %s, outside [0, 1h]", v, d)
		}
		// Round trip through both header forms.
		secs := int64(d / time.Second)
		if d2, ok2 := tibber.ParseRetryAfter(strconv.FormatInt(secs, 10), now); !ok2 || d2 != time.Duration(secs)*time.Second {
			t.Fatalf("seconds round trip of %s: %s, %v", d, d2, ok2)
		}
		if secs > 0 {
			date := now.Add(time.Duration(secs) * time.Second).Format("Mon, 02 Jan 2006 15:04:05 GMT")
			if d3, ok3 := tibber.ParseRetryAfter(date, now); !ok3 || d3 != time.Duration(secs)*time.Second {
				t.Fatalf("date round trip of %s (%q): %s, %v", d, date, d3, ok3)
			}
		}
	})
}

// checkID checks the invariants every decoded id holds.
func checkID(t *testing.T, id string) {
	t.Helper()
	if id == "" || id == "." || id == ".." || len(id) > 1024 || strings.ContainsFunc(id, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		t.Fatalf("unusable id %q", id)
	}
}

func FuzzDecodeHomes(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		homes, err := tibber.DecodeHomes(bytes.NewReader(b))
		if err != nil {
			if homes != nil {
				t.Fatalf("homes %v with error %v", homes, err)
			}
			return
		}
		// The shortest home is {"id":"x"}: nine bytes.
		if len(homes) > len(b)/9+1 {
			t.Fatalf("%d homes from %d bytes", len(homes), len(b))
		}
		seen := map[string]bool{}
		for _, h := range homes {
			checkID(t, h.ID)
			if seen[h.ID] {
				t.Fatalf("duplicate id %q", h.ID)
			}
			seen[h.ID] = true
		}
		// Round trip: encode what we decoded and decode it again.
		type wire struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		}
		var env struct {
			Homes []wire `json:"homes"`
		}
		for _, h := range homes {
			env.Homes = append(env.Homes, wire(h))
		}
		enc, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		again, err := tibber.DecodeHomes(bytes.NewReader(enc))
		if err != nil || !slices.Equal(again, homes) {
			t.Fatalf("round trip: %v, %v, want %v", again, err, homes)
		}
	})
}

func FuzzDecodeDevices(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		devices, err := tibber.DecodeDevices(bytes.NewReader(b))
		if err != nil {
			return
		}
		if len(devices) > len(b)/9+1 {
			t.Fatalf("%d devices from %d bytes", len(devices), len(b))
		}
		seen := map[string]bool{}
		for _, d := range devices {
			checkID(t, d.ID)
			if seen[d.ID] {
				t.Fatalf("duplicate id %q", d.ID)
			}
			seen[d.ID] = true
			checkDevice(t, d)
		}
	})
}

func FuzzDecodeDevice(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := tibber.DecodeDevice(bytes.NewReader(b))
		if err != nil {
			return
		}
		checkID(t, d.ID)
		checkDevice(t, d)
		if !json.Valid(d.Raw) || len(d.Raw) > len(b) {
			t.Fatalf("Raw is not the valid body: %q", d.Raw)
		}
		if d.Capabilities == nil || d.Category == "" {
			t.Fatalf("detail without capabilities slice or category: %+v", d)
		}
	})
}

func checkDevice(t *testing.T, d model.Device) {
	t.Helper()
	if d.MaxRetentionDays < 0 {
		t.Fatalf("MaxRetentionDays = %d", d.MaxRetentionDays)
	}
	for _, r := range d.SupportedResolutions {
		if r == "" {
			t.Fatal("empty resolution")
		}
	}
	for _, a := range d.Attributes {
		if !json.Valid(a) || a[0] != '{' {
			t.Fatalf("attribute %q is not a JSON object", a)
		}
	}
	for _, c := range d.Capabilities {
		if c.ID == "" {
			t.Fatal("capability without id")
		}
		if c.Num != nil && (math.IsNaN(*c.Num) || math.IsInf(*c.Num, 0)) {
			t.Fatalf("capability %q = %v", c.ID, *c.Num)
		}
		if c.Num != nil && c.Text != nil && *c.Text != "true" && *c.Text != "false" {
			t.Fatalf("capability %q has both Num and Text %q", c.ID, *c.Text)
		}
	}
	switch d.Category {
	case "", model.CategoryUnknown, model.CategoryVehicle, model.CategoryCharger, model.CategoryThermostat,
		model.CategoryEnergySystem, model.CategoryInverter:
	default:
		t.Fatalf("category %q", d.Category)
	}
}

func FuzzDecodeHistoryPage(f *testing.F) {
	base, _ := url.Parse("https://data-api.tibber.com")
	f.Fuzz(func(t *testing.T, b []byte) {
		page, err := tibber.DecodeHistoryPage(bytes.NewReader(b), base)
		if err != nil {
			return
		}
		for _, link := range []string{page.Next, page.Prev} {
			if link == "" {
				continue
			}
			u, err := url.Parse(link)
			if err != nil || !u.IsAbs() || u.Scheme != "https" || !strings.EqualFold(u.Hostname(), "data-api.tibber.com") ||
				(u.Port() != "" && u.Port() != "443") || u.User != nil {
				t.Fatalf("link %q is not absolute on the API host", link)
			}
		}
		// The shortest item is {"time":"0000-01-01T00:00:00Z"}: 31 bytes.
		if len(page.Items) > len(b)/31+1 {
			t.Fatalf("%d items from %d bytes", len(page.Items), len(b))
		}
		if len(page.Problems) > 21 {
			t.Fatalf("%d problems", len(page.Problems))
		}
		for _, p := range page.Problems {
			if len(p) > 2048 {
				t.Fatalf("problem of %d bytes", len(p))
			}
		}
		if page.PageSize < 0 {
			t.Fatalf("PageSize = %d", page.PageSize)
		}
		for _, it := range page.Items {
			if it.Metrics == nil {
				t.Fatalf("item %+v", it)
			}
			if _, off := it.Time.Zone(); off != it.UTCOffsetSeconds {
				t.Fatalf("offset %d vs zone %d", it.UTCOffsetSeconds, off)
			}
			for k, v := range it.Metrics {
				if k == "" || math.IsNaN(v) || math.IsInf(v, 0) {
					t.Fatalf("metric %q = %v", k, v)
				}
			}
		}
	})
}
