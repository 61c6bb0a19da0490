package tibber_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/tibber"
)

func TestDecodeHomes(t *testing.T) {
	cases := map[string]struct {
		body string
		want []model.Home
	}{
		"Envelope":  {`{"homes":[{"id":"a","name":"Huis"},{"id":"b","name":"Hytte"}]}`, []model.Home{{ID: "a", Name: "Huis"}, {ID: "b", Name: "Hytte"}}},
		"BareArray": {` [{"id":"a","name":"Huis"}] `, []model.Home{{ID: "a", Name: "Huis"}}},
		"Empty":     {`{"homes":[]}`, []model.Home{}},
		"NullList":  {`{"homes":null}`, []model.Home{}},
		"UnknownAndType": {`{"$type":"HomeList","homes":[{"$type":"Home","id":"a","name":"Huis","timeZone":"Europe/Oslo","address":{"x":1}}],"extra":[1,2]}`,
			[]model.Home{{ID: "a", Name: "Huis"}}},
		"NullName":   {`{"homes":[{"id":"a","name":null}]}`, []model.Home{{ID: "a"}}},
		"NumberName": {`{"homes":[{"id":"a","name":5}]}`, []model.Home{{ID: "a"}}},
		"InvalidItemsSkipped": {`{"homes":[{"name":"no id"},{"id":""},{"id":7},null,"x",{"id":"a","name":"ok"},{"id":"a","name":"dup"},{"id":".."}]}`,
			[]model.Home{{ID: "a", Name: "ok"}}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := tibber.DecodeHomes(strings.NewReader(tc.body))
			if err != nil {
				t.Fatalf("DecodeHomes: %v", err)
			}
			if len(got) != len(tc.want) || (len(got) > 0 && !slices.Equal(got, tc.want)) {
				t.Fatalf("homes = %+v, want %+v", got, tc.want)
			}
		})
	}
	for name, body := range map[string]string{
		"NotJSON":     `<html>maintenance</html>`,
		"Empty":       ``,
		"Truncated":   `{"homes":[{"id":"a"`,
		"NoMember":    `{"data":[{"id":"a"}]}`,
		"WrongMember": `{"homes":{"id":"a"}}`,
		"Scalar":      `"homes"`,
		"Null":        `null`,
	} {
		t.Run("Error"+name, func(t *testing.T) {
			if homes, err := tibber.DecodeHomes(strings.NewReader(body)); err == nil {
				t.Fatalf("DecodeHomes(%q) = %v, want an error", body, homes)
			}
		})
	}
}

func TestDecodeDevices(t *testing.T) {
	body := `{"devices":[
	  {"id":"ZWFzZWUg-_x","externalId":"EH123456","info":{"name":"Garage","brand":"Easee","model":"Home"},
	   "supportedHistory":{"resolutions":[],"maxRetentionDays":1}},
	  {"$type":"Device","id":"dGhlcm1v","externalId":"T-1","info":{"name":"Stue","brand":"Mill"},
	   "supportedHistory":{"resolutions":["hour","day",null,7,""],"maxRetentionDays":365.0}},
	  {"externalId":"no-id","info":{"name":"Ghost"}},
	  {"id":"weird","info":"not an object","supportedHistory":[1],"newField":{"a":1}}
	]}`
	got, err := tibber.DecodeDevices(strings.NewReader(body))
	if err != nil {
		t.Fatalf("DecodeDevices: %v", err)
	}
	if len(got) != 3 {
		t.Fatalf("devices = %+v, want 3", got)
	}
	d := got[0]
	if d.ID != "ZWFzZWUg-_x" || d.ExternalID != "EH123456" || d.Name != "Garage" || d.Brand != "Easee" || d.Model != "Home" ||
		len(d.SupportedResolutions) != 0 || d.MaxRetentionDays != 1 || d.Capabilities != nil || d.Category != "" || d.Raw != nil {
		t.Errorf("device 0 = %+v", d)
	}
	d = got[1]
	if d.Name != "Stue" || d.Model != "" || !slices.Equal(d.SupportedResolutions, []string{"hour", "day"}) || d.MaxRetentionDays != 365 {
		t.Errorf("device 1 = %+v", d)
	}
	if d = got[2]; d.ID != "weird" || d.Name != "" || d.SupportedResolutions != nil {
		t.Errorf("device 2 = %+v", d)
	}

	bare, err := tibber.DecodeDevices(strings.NewReader(`[{"id":"a","info":{"name":"A","brand":"B"}}]`))
	if err != nil || len(bare) != 1 || bare[0].Name != "A" {
		t.Fatalf("bare array: %+v, %v", bare, err)
	}
	for _, body := range []string{`{"homes":[]}`, `[1,2`, `{"devices":"x"}`} {
		if _, err := tibber.DecodeDevices(strings.NewReader(body)); err == nil {
			t.Errorf("DecodeDevices(%q) succeeded", body)
		}
	}
}

// vwDetail is the live VW ID.7 shape from tibber-data-api.md §4.3.
const vwDetail = `{
  "id": "dm9sa3N3YWdlbiBlbm9kZSB2ZWhpY2xlOjNmMmE5YzFlLTAwMDAtNDAwMC04MDAwLTAwMDAwMDAwMDAwMQ",
  "externalId": "WVWZZZAAZLD000001",
  "info": { "name": "ID.7", "brand": "Volkswagen", "model": "ID.7" },
  "supportedHistory": { "resolutions": [] },
  "status": { "lastSeen": "2026-08-21T10:00:00Z" },
  "attributes": [
    { "id": "vinNumber", "value": "WVWZZZAAZLD000001" },
    { "id": "isOnline", "value": true }
  ],
  "capabilities": [
    { "id": "storage.stateOfCharge", "description": "state of charge", "value": 74, "unit": "%" },
    { "id": "storage.targetStateOfCharge", "description": "target state of charge", "value": 80, "unit": "%" },
    { "id": "range.remaining", "description": "estimated remaining driving range", "value": 356000, "unit": "m" },
    { "id": "connector.status", "description": "vehicle plug status", "value": "disconnected",
      "availableValues": ["connected", "disconnected", "unknown"] },
    { "id": "charging.status", "description": "vehicle charging status", "value": "idle",
      "availableValues": ["charging", "idle", "unknown"] }
  ]
}
`

func TestDecodeDeviceVehicle(t *testing.T) {
	d, err := tibber.DecodeDevice(strings.NewReader(vwDetail))
	if err != nil {
		t.Fatalf("DecodeDevice: %v", err)
	}
	if d.Category != model.CategoryVehicle || d.Name != "ID.7" || d.Brand != "Volkswagen" || d.ExternalID != "WVWZZZAAZLD000001" {
		t.Fatalf("device = %+v", d)
	}
	if want := time.Date(2026, 8, 21, 10, 0, 0, 0, time.UTC); !d.LastSeen.Equal(want) || d.LastSeen.Location() != time.UTC {
		t.Errorf("LastSeen = %v, want %v", d.LastSeen, want)
	}
	if string(d.Raw) != strings.TrimSpace(vwDetail) || !json.Valid(d.Raw) {
		t.Errorf("Raw is not the body as received")
	}
	if len(d.Attributes) != 2 || string(d.Attributes[1]) != `{"id":"isOnline","value":true}` {
		t.Errorf("attributes = %s", d.Attributes)
	}
	if len(d.Capabilities) != 5 {
		t.Fatalf("capabilities = %+v", d.Capabilities)
	}
	soc := d.Capabilities[0]
	if soc.ID != "storage.stateOfCharge" || soc.Num == nil || *soc.Num != 74 || soc.Text != nil || soc.Unit != "%" || soc.Description != "state of charge" {
		t.Errorf("soc = %+v", soc)
	}
	plug := d.Capabilities[3]
	if plug.Num != nil || plug.Text == nil || *plug.Text != "disconnected" || plug.Unit != "" ||
		!slices.Equal(plug.AvailableValues, []string{"connected", "disconnected", "unknown"}) {
		t.Errorf("plug = %+v", plug)
	}
}

func TestDecodeDeviceTolerance(t *testing.T) {
	body := `{
	  "$type": "EnergySystem", "id": "aG9tZXZvbHQg", "externalId": "HV-000123",
	  "info": { "name": "Battery", "brand": "Homevolt", "model": null },
	  "supportedHistory": { "resolutions": ["quarterHour", "hour", "day", "month"], "maxRetentionDays": 730 },
	  "status": { "lastSeen": "2026-09-14T08:01:12.345Z", "mood": "happy" },
	  "attributes": [ { "$type": "StringAttribute", "id": "serialNumber", "value": "HV-000123" }, 5, {"value": "no id"},
	                  { "id": "connectivity.wifi", "status": "connected", "ssid": "x" } ],
	  "capabilities": [
	    { "$type": "IntegerCapability", "id": "storage.stateOfCharge", "value": 54, "unit": "%" },
	    { "id": "storage.ratedCapacity", "value": 13800, "unit": null },
	    { "id": "powerFlow.toGrid", "value": 0.1, "unit": "%" },
	    { "id": "energyFlow.hour.grid.imported", "value": null, "unit": "Wh" },
	    { "id": "energyFlow.day.grid.imported", "unit": "Wh" },
	    { "id": "onOff", "value": true },
	    { "id": "isCharging", "value": false },
	    { "id": "huge", "value": 1e400 },
	    { "id": "precise", "value": 12345678.123456789 },
	    { "id": "odd", "value": {"a": [1, 2]} },
	    { "id": "cellular.mode", "value": "3", "unit": "" },
	    { "description": "no id", "value": 1 },
	    "not an object",
	    { "id": "enum", "value": "on", "availableValues": ["on", 1, null, "off"] }
	  ],
	  "future": { "whatever": [1, 2, 3] }
	}`
	d, err := tibber.DecodeDevice(strings.NewReader(body))
	if err != nil {
		t.Fatalf("DecodeDevice: %v", err)
	}
	if d.Category != model.CategoryEnergySystem {
		t.Errorf("category = %q", d.Category)
	}
	if want := time.Date(2026, 9, 14, 8, 1, 12, 345e6, time.UTC); !d.LastSeen.Equal(want) {
		t.Errorf("LastSeen = %v", d.LastSeen)
	}
	if d.Model != "" || d.MaxRetentionDays != 730 || len(d.SupportedResolutions) != 4 {
		t.Errorf("device = %+v", d)
	}
	if len(d.Attributes) != 2 {
		t.Errorf("attributes = %s", d.Attributes)
	}
	caps := map[string]model.Capability{}
	for _, c := range d.Capabilities {
		caps[c.ID] = c
	}
	if len(caps) != 12 {
		t.Fatalf("capabilities = %d: %+v", len(caps), d.Capabilities)
	}
	num := func(id string, want float64) {
		t.Helper()
		if c := caps[id]; c.Num == nil || *c.Num != want {
			t.Errorf("%s = %+v, want %v", id, c, want)
		}
	}
	text := func(id, want string) {
		t.Helper()
		if c := caps[id]; c.Text == nil || *c.Text != want {
			t.Errorf("%s = %+v, want text %q", id, c, want)
		}
	}
	missing := func(id string) {
		t.Helper()
		if c, ok := caps[id]; !ok || !c.Missing() {
			t.Errorf("%s = %+v, want present but missing", id, c)
		}
	}
	num("storage.stateOfCharge", 54)
	num("storage.ratedCapacity", 13800)
	if caps["storage.ratedCapacity"].Unit != "" {
		t.Errorf("null unit = %q", caps["storage.ratedCapacity"].Unit)
	}
	num("powerFlow.toGrid", 0.1)
	missing("energyFlow.hour.grid.imported")
	missing("energyFlow.day.grid.imported")
	missing("huge")
	num("onOff", 1)
	text("onOff", "true")
	num("isCharging", 0)
	text("isCharging", "false")
	num("precise", 12345678.123456789)
	text("odd", `{"a":[1,2]}`)
	text("cellular.mode", "3")
	if caps["cellular.mode"].Num != nil {
		t.Error("a string value became a number")
	}
	if got := caps["enum"].AvailableValues; !slices.Equal(got, []string{"on", "off"}) {
		t.Errorf("availableValues = %q", got)
	}
	if caps["storage.stateOfCharge"].Text != nil {
		t.Error("a number also got a text")
	}
}

func TestDecodeDeviceLastSeenForms(t *testing.T) {
	for in, want := range map[string]time.Time{
		`"2026-07-30T06:25:23.770Z"`:       time.Date(2026, 7, 30, 6, 25, 23, 770e6, time.UTC),
		`"2026-07-30T06:25:23Z"`:           time.Date(2026, 7, 30, 6, 25, 23, 0, time.UTC),
		`"2026-07-30T08:25:23.5+02:00"`:    time.Date(2026, 7, 30, 6, 25, 23, 5e8, time.UTC),
		`"yesterday"`:                      {},
		`null`:                             {},
		`1722320723`:                       {},
		`"2026-07-30T06:25:23.770123456Z"`: time.Date(2026, 7, 30, 6, 25, 23, 770123456, time.UTC),
	} {
		d, err := tibber.DecodeDevice(strings.NewReader(`{"id":"x","status":{"lastSeen":` + in + `}}`))
		if err != nil {
			t.Fatalf("DecodeDevice(%s): %v", in, err)
		}
		if !d.LastSeen.Equal(want) {
			t.Errorf("lastSeen %s = %v, want %v", in, d.LastSeen, want)
		}
	}
}

func TestDecodeDeviceErrors(t *testing.T) {
	for _, body := range []string{``, `[]`, `{"info":{"name":"x"}}`, `{"id":null}`, `{"id":""}`, `<html/>`, `{"id":"x"`} {
		if d, err := tibber.DecodeDevice(strings.NewReader(body)); err == nil {
			t.Errorf("DecodeDevice(%q) = %+v, want an error", body, d)
		}
	}
	d, err := tibber.DecodeDevice(strings.NewReader(`{"id":"x"}`))
	if err != nil || d.Capabilities == nil || len(d.Capabilities) != 0 || d.Category != model.CategoryUnknown {
		t.Fatalf("minimal detail = %+v, %v", d, err)
	}
}

var testBase = mustURL("https://data-api.tibber.com")

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func TestDecodeHistoryPage(t *testing.T) {
	body := `{
	  "query": { "effectiveStart": "2026-07-14T00:00:00+02:00", "effectiveEnd": "2026-09-14T00:00:00+02:00", "pageSize": 500, "resolution": "day" },
	  "items": [
	    { "time": "2026-09-13T00:00:00+02:00",
	      "data": { "energyFlow": { "gridImport": 1234.0, "hole": null }, "storage": { "stateOfCharge": 54 }, "$type": "X" } },
	    { "time": "2026-10-25T00:00:00+01:00", "data": { "temp": { "average": 21.5, "unit": "°C", "flag": true, "list": [1] } } },
	    { "time": "2026-09-12T00:00:00Z", "data": { "a": { "b": 1 }, "a.b": 2 } },
	    { "time": "yesterday", "data": { "x": 1 } },
	    { "data": { "x": 1 } },
	    { "time": "2026-09-11T00:07:00+02:00", "data": null },
	    { "time": "2026-09-10T00:00:00+02:00", "data": 5 },
	    7
	  ],
	  "next": "/v1/homes/h/devices/d/history?resolution=day&cursor=abc",
	  "prev": null
	}`
	page, err := tibber.DecodeHistoryPage(strings.NewReader(body), testBase)
	if err != nil {
		t.Fatalf("DecodeHistoryPage: %v", err)
	}
	if want := time.Date(2026, 7, 13, 22, 0, 0, 0, time.UTC); !page.EffectiveStart.Equal(want) {
		t.Errorf("EffectiveStart = %v", page.EffectiveStart)
	}
	if _, off := page.EffectiveEnd.Zone(); off != 7200 {
		t.Errorf("EffectiveEnd offset = %d", off)
	}
	if page.PageSize != 500 {
		t.Errorf("PageSize = %d", page.PageSize)
	}
	if page.Next != "https://data-api.tibber.com/v1/homes/h/devices/d/history?resolution=day&cursor=abc" || page.Prev != "" {
		t.Errorf("links = %q, %q", page.Next, page.Prev)
	}
	if len(page.Items) != 5 {
		t.Fatalf("items = %+v", page.Items)
	}
	it := page.Items[0]
	if it.UTCOffsetSeconds != 7200 || !it.Time.Equal(time.Date(2026, 9, 12, 22, 0, 0, 0, time.UTC)) || it.Time.Format(time.RFC3339) != "2026-09-13T00:00:00+02:00" {
		t.Errorf("item 0 time = %v offset %d", it.Time, it.UTCOffsetSeconds)
	}
	if len(it.Metrics) != 2 || it.Metrics["energyFlow.gridImport"] != 1234 || it.Metrics["storage.stateOfCharge"] != 54 {
		t.Errorf("item 0 metrics = %v", it.Metrics)
	}
	if it := page.Items[1]; it.UTCOffsetSeconds != 3600 || len(it.Metrics) != 1 || it.Metrics["temp.average"] != 21.5 {
		t.Errorf("item 1 = %+v", it)
	}
	if it := page.Items[2]; it.UTCOffsetSeconds != 0 || len(it.Metrics) != 1 {
		t.Errorf("item 2 = %+v", it)
	}
	if it := page.Items[3]; it.Time.Minute() != 7 || len(it.Metrics) != 0 || it.Metrics == nil {
		t.Errorf("misaligned item = %+v", it)
	}
	probs := strings.Join(page.Problems, "\n")
	for _, want := range []string{`"temp.unit" is a string`, `"temp.flag" is a boolean`, `"temp.list" is an array`,
		`"a.b" appears twice`, `item 3: bad or missing time "\"yesterday\""`, "item 4: bad or missing time (missing)",
		"data is a number", "item 7: a number, not an object"} {
		if !strings.Contains(probs, want) {
			t.Errorf("problems lack %q:\n%s", want, probs)
		}
	}
	if strings.Contains(probs, "hole") || strings.Contains(probs, "$type") {
		t.Errorf("null leaves or $type reported:\n%s", probs)
	}
}

func TestDecodeHistoryLinks(t *testing.T) {
	cases := map[string]struct {
		members string
		next    string
		prev    string
		foreign bool
	}{
		"Absolute":      {`"next":"https://data-api.tibber.com/v1/x?cursor=a#frag"`, "https://data-api.tibber.com/v1/x?cursor=a", "", false},
		"AbsolutePort":  {`"next":"https://DATA-API.tibber.com:443/v1/x"`, "https://DATA-API.tibber.com:443/v1/x", "", false},
		"Relative":      {`"next":"/v1/x?cursor=a%2Bb"`, "https://data-api.tibber.com/v1/x?cursor=a%2Bb", "", false},
		"Prev":          {`"prev":"/v1/y"`, "", "https://data-api.tibber.com/v1/y", false},
		"Null":          {`"next":null,"prev":null`, "", "", false},
		"EmptyString":   {`"next":""`, "", "", false},
		"Missing":       {``, "", "", false},
		"OtherHost":     {`"next":"https://evil.example/v1/x"`, "", "", true},
		"SchemeRel":     {`"next":"//evil.example/v1/x"`, "", "", true},
		"OtherScheme":   {`"next":"http://data-api.tibber.com/v1/x"`, "", "", true},
		"OtherPort":     {`"next":"https://data-api.tibber.com:8443/v1/x"`, "", "", true},
		"UserInfo":      {`"next":"https://user:pw@data-api.tibber.com/v1/x"`, "", "", true},
		"Subdomain":     {`"prev":"https://x.data-api.tibber.com/v1/x"`, "", "", true},
		"OpaqueScheme":  {`"next":"javascript:alert(1)"`, "", "", true},
		"HostSuffixTry": {`"next":"https://data-api.tibber.com.evil.example/v1"`, "", "", true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			body := `{"items":[]` + map[bool]string{true: ",", false: ""}[tc.members != ""] + tc.members + `}`
			page, err := tibber.DecodeHistoryPage(strings.NewReader(body), testBase)
			if tc.foreign {
				if !errors.Is(err, tibber.ErrForeignLink) {
					t.Fatalf("err = %v, want ErrForeignLink (page %+v)", err, page)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeHistoryPage: %v", err)
			}
			if page.Next != tc.next || page.Prev != tc.prev {
				t.Fatalf("links = %q, %q, want %q, %q", page.Next, page.Prev, tc.next, tc.prev)
			}
		})
	}
	if _, err := tibber.DecodeHistoryPage(strings.NewReader(`{"next":5}`), testBase); err == nil {
		t.Error("a numeric link was accepted")
	}
	if _, err := tibber.DecodeHistoryPage(strings.NewReader(`{}`), nil); err == nil {
		t.Error("a nil base was accepted")
	}
}

func TestDecodeHistoryPageShapes(t *testing.T) {
	for _, body := range []string{`[]`, `{"items":{}}`, `{"items":"x"}`, `not json`, ``} {
		if _, err := tibber.DecodeHistoryPage(strings.NewReader(body), testBase); err == nil {
			t.Errorf("DecodeHistoryPage(%q) succeeded", body)
		}
	}
	for _, body := range []string{`{"items":null}`, `{"query":null,"items":[]}`, `{"query":{"effectiveStart":null,"pageSize":"500"},"items":[]}`} {
		page, err := tibber.DecodeHistoryPage(strings.NewReader(body), testBase)
		if err != nil || len(page.Items) != 0 || !page.EffectiveStart.IsZero() || page.PageSize != 0 {
			t.Errorf("DecodeHistoryPage(%q) = %+v, %v", body, page, err)
		}
	}
}

func TestDecodeHistoryProblemsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"items":[`)
	for i := range 500 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"time":"2026-09-13T%02d:00:00+02:00","data":{"s":"x%d"}}`, i%24, i)
	}
	b.WriteString(`]}`)
	page, err := tibber.DecodeHistoryPage(strings.NewReader(b.String()), testBase)
	if err != nil {
		t.Fatalf("DecodeHistoryPage: %v", err)
	}
	if len(page.Problems) != 21 || !strings.Contains(page.Problems[20], "480 more") {
		t.Fatalf("problems = %d, last %q", len(page.Problems), page.Problems[len(page.Problems)-1])
	}
}

func TestDecodeHistoryDeepNesting(t *testing.T) {
	data := strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40)
	body := `{"items":[{"time":"2026-09-13T00:00:00Z","data":{"ok":2,"deep":` + data + `}}]}`
	page, err := tibber.DecodeHistoryPage(strings.NewReader(body), testBase)
	if err != nil {
		t.Fatalf("DecodeHistoryPage: %v", err)
	}
	if m := page.Items[0].Metrics; len(m) != 1 || m["ok"] != 2 {
		t.Fatalf("metrics = %v", m)
	}
	if len(page.Problems) != 1 || !strings.Contains(page.Problems[0], "too deep") {
		t.Fatalf("problems = %q", page.Problems)
	}
}

func TestDecodeBodyLimit(t *testing.T) {
	big := `{"homes":[` + strings.Repeat(" ", int(tibber.DefaultMaxBodyBytes)) + `]}`
	if _, err := tibber.DecodeHomes(strings.NewReader(big)); !errors.Is(err, tibber.ErrResponseTooLarge) {
		t.Fatalf("err = %v, want ErrResponseTooLarge", err)
	}
}
