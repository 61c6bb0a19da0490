package tibber

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/model"
)

// The decoders follow tibber-data-api.md §4–§6 and §8.5: unknown members and
// "$type" are ignored, null is accepted everywhere, and a member of the wrong
// type costs only that member (or that list item), never the whole response.
// Only a body that is not JSON, or JSON of the wrong overall shape, is an error.

const (
	// maxProblems bounds HistoryPage.Problems; the last entry counts the rest.
	maxProblems = 20
	// maxMetricDepth bounds how deep history data is flattened.
	maxMetricDepth = 16
	// maxIDLen bounds ids taken from responses (they become URL path segments).
	maxIDLen = 1024
	// maxNameLen bounds metric names and texts quoted in problems.
	maxNameLen = 100
)

func decodeHomes(b []byte) (homes []model.Home, skipped int, err error) {
	items, err := listItems(b, "homes")
	if err != nil {
		return nil, 0, err
	}
	homes = make([]model.Home, 0, len(items))
	seen := make(map[string]bool, len(items))
	for _, it := range items {
		obj, ok := object(it)
		if !ok {
			skipped++
			continue
		}
		id := str(obj["id"])
		if !validID(id) || seen[id] {
			skipped++
			continue
		}
		seen[id] = true
		homes = append(homes, model.Home{ID: id, Name: str(obj["name"])})
	}
	return homes, skipped, nil
}

func decodeDevices(b []byte) (devices []model.Device, skipped int, err error) {
	items, err := listItems(b, "devices")
	if err != nil {
		return nil, 0, err
	}
	devices = make([]model.Device, 0, len(items))
	seen := make(map[string]bool, len(items))
	for _, it := range items {
		obj, ok := object(it)
		if !ok {
			skipped++
			continue
		}
		d, ok := deviceFromObject(obj)
		if !ok || seen[d.ID] {
			skipped++
			continue
		}
		seen[d.ID] = true
		if d.Capabilities != nil {
			d.Category = model.CategoryOf(capabilityIDs(d.Capabilities))
		}
		devices = append(devices, d)
	}
	return devices, skipped, nil
}

func decodeDevice(b []byte) (model.Device, error) {
	obj, err := topObject(b)
	if err != nil {
		return model.Device{}, err
	}
	d, ok := deviceFromObject(obj)
	if !ok {
		return model.Device{}, errors.New("device has no usable id")
	}
	if d.Capabilities == nil {
		d.Capabilities = []model.Capability{}
	}
	d.Category = model.CategoryOf(capabilityIDs(d.Capabilities))
	d.Raw = json.RawMessage(bytes.Clone(bytes.TrimSpace(b)))
	return d, nil
}

// deviceFromObject reads the members shared by list items and details.
func deviceFromObject(obj map[string]json.RawMessage) (model.Device, bool) {
	id := str(obj["id"])
	if !validID(id) {
		return model.Device{}, false
	}
	d := model.Device{ID: id, ExternalID: str(obj["externalId"])}
	if info, ok := object(obj["info"]); ok {
		d.Name = str(info["name"])
		d.Brand = str(info["brand"])
		d.Model = str(info["model"])
	}
	if sh, ok := object(obj["supportedHistory"]); ok {
		d.SupportedResolutions = stringList(sh["resolutions"])
		if f, ok := number(sh["maxRetentionDays"]); ok && f > 0 {
			d.MaxRetentionDays = int(min(f, 1e6))
		}
	}
	if st, ok := object(obj["status"]); ok {
		if t, ok := timestamp(st["lastSeen"]); ok {
			d.LastSeen = t.UTC()
		}
	}
	if raw, ok := obj["attributes"]; ok {
		d.Attributes = attributes(raw)
	}
	if raw, ok := obj["capabilities"]; ok && kind(raw) == '[' {
		d.Capabilities = capabilities(raw)
	}
	return d, true
}

// attributes keeps every array element that is an object with a string id,
// compacted; the per-type members are not modelled (tibber-data-api.md §5.4).
func attributes(raw json.RawMessage) []json.RawMessage {
	var items []json.RawMessage
	if kind(raw) != '[' || json.Unmarshal(raw, &items) != nil {
		return nil
	}
	out := make([]json.RawMessage, 0, len(items))
	for _, it := range items {
		obj, ok := object(it)
		if !ok || str(obj["id"]) == "" {
			continue
		}
		var buf bytes.Buffer
		if json.Compact(&buf, it) != nil {
			continue
		}
		out = append(out, json.RawMessage(buf.Bytes()))
	}
	return out
}

// capabilities decodes each element on its own, so one odd element never
// loses the others.
func capabilities(raw json.RawMessage) []model.Capability {
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		return []model.Capability{}
	}
	out := make([]model.Capability, 0, len(items))
	for _, it := range items {
		obj, ok := object(it)
		if !ok {
			continue
		}
		c := model.Capability{
			ID:              str(obj["id"]),
			Description:     str(obj["description"]),
			Unit:            str(obj["unit"]),
			AvailableValues: stringList(obj["availableValues"]),
		}
		if c.ID == "" {
			continue
		}
		setValue(&c, obj["value"])
		out = append(out, c)
	}
	return out
}

// setValue maps a capability value: null or absent → missing; number → Num;
// string → Text; boolean → Num 0/1 and Text "true"/"false"; an object or
// array (never seen) → its compact JSON as Text.
func setValue(c *model.Capability, raw json.RawMessage) {
	switch kind(raw) {
	case 'n', 0:
		return
	case 't', 'f':
		var v bool
		if json.Unmarshal(raw, &v) != nil {
			return
		}
		n := 0.0
		if v {
			n = 1
		}
		t := strconv.FormatBool(v)
		c.Num, c.Text = &n, &t
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return
		}
		c.Text = &s
	case '{', '[':
		var buf bytes.Buffer
		if json.Compact(&buf, raw) != nil {
			return
		}
		s := buf.String()
		c.Text = &s
	default:
		if f, ok := number(raw); ok {
			c.Num = &f
		}
	}
}

func capabilityIDs(cs []model.Capability) []string {
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	return ids
}

func decodeHistoryPage(b []byte, base *url.URL) (model.HistoryPage, error) {
	if base == nil || !base.IsAbs() || base.Host == "" {
		return model.HistoryPage{}, errors.New("decode history: absolute base URL required")
	}
	obj, err := topObject(b)
	if err != nil {
		return model.HistoryPage{}, err
	}
	var page model.HistoryPage
	if q, ok := object(obj["query"]); ok {
		page.EffectiveStart, _ = timestamp(q["effectiveStart"])
		page.EffectiveEnd, _ = timestamp(q["effectiveEnd"])
		if f, ok := number(q["pageSize"]); ok && f > 0 {
			page.PageSize = int(min(f, 1e9))
		}
	}
	// A page without its items member is not an empty page: with a next
	// link the stream would move on and lose what the renamed member held.
	var items []json.RawMessage
	switch k := kind(obj["items"]); k {
	case 0:
		return model.HistoryPage{}, driftf(obj, "history page has no %q member", "items")
	case 'n':
	case '[':
		if err := json.Unmarshal(obj["items"], &items); err != nil {
			return model.HistoryPage{}, fmt.Errorf("decode history items: %w", err)
		}
	default:
		return model.HistoryPage{}, driftf(obj, "history %q is %s, not an array", "items", kindName(k))
	}
	pr := &problems{}
	var shape itemShape
	page.Items = make([]model.HistoryItem, 0, len(items))
	for i, it := range items {
		o, ok := object(it)
		if !ok {
			pr.add("item %d: %s, not an object", i, kindName(kind(it)))
			continue
		}
		shape.see(o)
		t, ok := timestamp(o["time"])
		if !ok {
			pr.add("item %d: bad or missing time %s", i, quoteShort(o["time"]))
			continue
		}
		_, off := t.Zone()
		item := model.HistoryItem{Time: t, UTCOffsetSeconds: off, Metrics: map[string]float64{}}
		where := fmt.Sprintf("item %d (%s)", i, t.Format(time.RFC3339))
		switch k := kind(o["data"]); k {
		case 0, 'n':
		case '{':
			flatten(o["data"], "", 0, item.Metrics, pr, where)
		default:
			pr.add("%s: data is %s, not an object", where, kindName(k))
		}
		page.Items = append(page.Items, item)
	}
	if err := shape.drift(); err != nil {
		return model.HistoryPage{}, err
	}
	page.Problems = pr.list()
	if page.Next, err = linkMember(obj, "next", base); err != nil {
		return model.HistoryPage{}, err
	}
	if page.Prev, err = linkMember(obj, "prev", base); err != nil {
		return model.HistoryPage{}, err
	}
	return page, nil
}

// itemShape tells schema drift from odd items: drift when the items are
// objects but none has a time member, or none has a data member (the item
// shape changed, and skipping every item as invalid would lose the page).
// A single odd item is only skipped (and listed in Problems).
type itemShape struct {
	objects, withTime, withData int
	sample                      map[string]json.RawMessage
}

func (sh *itemShape) see(o map[string]json.RawMessage) {
	sh.objects++
	if sh.sample == nil {
		sh.sample = o
	}
	if _, ok := o["time"]; ok {
		sh.withTime++
	}
	if _, ok := o["data"]; ok {
		sh.withData++
	}
}

func (sh *itemShape) drift() error {
	switch {
	case sh.objects == 0:
		return nil
	case sh.withTime == 0:
		return driftf(sh.sample, "no history item has a %q member (members of the first item listed)", "time")
	case sh.withData == 0:
		return driftf(sh.sample, "no history item has a %q member (members of the first item listed)", "data")
	}
	return nil
}

// flatten walks nested data objects and stores numeric leaves under dotted
// names. Keys are visited in sorted order so that a collision (a key "a.b"
// next to {"a":{"b":…}}) resolves the same way every time.
func flatten(raw json.RawMessage, prefix string, depth int, out map[string]float64, pr *problems, where string) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		pr.add("%s: metric %s: %v", where, quoteName(prefix), err)
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if k == "$type" {
			continue
		}
		name := k
		if prefix != "" {
			name = prefix + "." + k
		}
		if strings.TrimSpace(k) == "" {
			pr.add("%s: empty key under %s skipped", where, quoteName(prefix))
			continue
		}
		v := m[k]
		switch kd := kind(v); kd {
		case 'n':
			// A hole: no value for this period.
		case '{':
			if depth+1 >= maxMetricDepth {
				pr.add("%s: metric %s nested too deep, skipped", where, quoteName(name))
				continue
			}
			flatten(v, name, depth+1, out, pr, where)
		case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			f, ok := number(v)
			if !ok {
				pr.add("%s: metric %s is out of range, skipped", where, quoteName(name))
				continue
			}
			if _, dup := out[name]; dup {
				pr.add("%s: metric %s appears twice, later value skipped", where, quoteName(name))
				continue
			}
			out[name] = f
		default:
			pr.add("%s: metric %s is %s, not a number, skipped", where, quoteName(name), kindName(kd))
		}
	}
}

// linkMember reads a next/prev member: absent, null or "" give "".
func linkMember(obj map[string]json.RawMessage, key string, base *url.URL) (string, error) {
	raw, ok := obj[key]
	if !ok || kind(raw) == 'n' {
		return "", nil
	}
	if kind(raw) != '"' {
		return "", fmt.Errorf("history %s link is %s, not a string", key, kindName(kind(raw)))
	}
	s := strings.TrimSpace(str(raw))
	if s == "" {
		return "", nil
	}
	link, err := resolveLink(s, base)
	if err != nil {
		return "", fmt.Errorf("history %s link: %w", key, err)
	}
	return link, nil
}

// resolveLink resolves s (absolute or relative) against base and checks
// that it stays on base's scheme, host and port, with no user info, and
// under base's API path (<base path>/v1/), with no dot segment, so that
// a link cannot send the bearer token to another application on the same
// origin (a reverse proxy's other routes). It returns the absolute link
// without a fragment.
func resolveLink(s string, base *url.URL) (string, error) {
	u, err := base.Parse(s)
	if err != nil {
		return "", fmt.Errorf("invalid link %s", quoteName(s))
	}
	if u.User != nil || !sameOrigin(u, base) {
		return "", fmt.Errorf("%w: %s", ErrForeignLink, quoteName(origin(u)))
	}
	if !underAPIPath(u, base) {
		return "", fmt.Errorf("%w: path %s is outside %s", ErrForeignLink, quoteName(u.EscapedPath()), quoteName(apiPrefix(base)))
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String(), nil
}

// apiPrefix is the path every API URL starts with: base's path + "/v1/".
func apiPrefix(base *url.URL) string {
	return strings.TrimSuffix(base.Path, "/") + "/v1/"
}

// underAPIPath reports whether u's path (decoded and as sent) starts with
// apiPrefix(base) and has no "." or ".." segment, also not percent-encoded.
func underAPIPath(u, base *url.URL) bool {
	prefix := apiPrefix(base)
	if !strings.HasPrefix(u.Path, prefix) {
		return false
	}
	if rp := u.EscapedPath(); !strings.HasPrefix(rp, strings.TrimSuffix(base.EscapedPath(), "/")+"/v1/") {
		return false
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// sameOrigin compares scheme, host name (case-insensitively) and effective port.
func sameOrigin(u, base *url.URL) bool {
	return strings.EqualFold(u.Scheme, base.Scheme) &&
		u.Host != "" &&
		strings.EqualFold(u.Hostname(), base.Hostname()) &&
		effectivePort(u) == effectivePort(base)
}

func effectivePort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	switch strings.ToLower(u.Scheme) {
	case "http":
		return "80"
	case "https":
		return "443"
	}
	return ""
}

func origin(u *url.URL) string {
	if u.Scheme == "" && u.Host == "" {
		return "(no host)"
	}
	return u.Scheme + "://" + u.Host
}

// listItems returns the elements of a bare array or of the array under key
// in an envelope object. A null member means an empty list; a missing one
// is an error, since an empty list would make callers mark everything removed.
func listItems(b []byte, key string) ([]json.RawMessage, error) {
	b = bytes.TrimSpace(b)
	if err := validJSON(b); err != nil {
		return nil, err
	}
	var items []json.RawMessage
	switch k := kind(b); k {
	case '[':
		if err := json.Unmarshal(b, &items); err != nil {
			return nil, fmt.Errorf("malformed json: %w", err)
		}
		return items, nil
	case '{':
		var env map[string]json.RawMessage
		if err := json.Unmarshal(b, &env); err != nil {
			return nil, fmt.Errorf("malformed json: %w", err)
		}
		raw, ok := env[key]
		if !ok {
			return nil, driftf(env, "response has no %q member", key)
		}
		switch kind(raw) {
		case 'n':
			return nil, nil
		case '[':
			if err := json.Unmarshal(raw, &items); err != nil {
				return nil, fmt.Errorf("malformed json: %w", err)
			}
			return items, nil
		default:
			return nil, driftf(env, "%q is %s, not an array", key, kindName(kind(raw)))
		}
	default:
		return nil, driftf[json.RawMessage](nil, "response is %s, not an object or array", kindName(k))
	}
}

// topObject decodes a body that must be a JSON object.
func topObject(b []byte) (map[string]json.RawMessage, error) {
	b = bytes.TrimSpace(b)
	if err := validJSON(b); err != nil {
		return nil, err
	}
	if k := kind(b); k != '{' {
		return nil, driftf[json.RawMessage](nil, "response is %s, not an object", kindName(k))
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, fmt.Errorf("malformed json: %w", err)
	}
	return obj, nil
}

func validJSON(b []byte) error {
	if len(b) == 0 {
		return errors.New("empty body")
	}
	if json.Valid(b) {
		return nil
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("malformed json: %w", err)
	}
	return errors.New("malformed json")
}

// kind is the first non-space byte of a JSON value (0 when empty).
func kind(raw json.RawMessage) byte {
	for _, c := range raw {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return c
	}
	return 0
}

func kindName(k byte) string {
	switch k {
	case 0:
		return "missing"
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	}
	return "a number"
}

// object decodes raw if it is a JSON object.
func object(raw json.RawMessage) (map[string]json.RawMessage, bool) {
	if kind(raw) != '{' {
		return nil, false
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return nil, false
	}
	return m, true
}

// str returns raw's value if it is a JSON string, else "".
func str(raw json.RawMessage) string {
	if kind(raw) != '"' {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// number returns raw's value if it is a finite JSON number.
func number(raw json.RawMessage) (float64, bool) {
	k := kind(raw)
	if k != '-' && (k < '0' || k > '9') {
		return 0, false
	}
	var n json.Number
	if json.Unmarshal(raw, &n) != nil {
		return 0, false
	}
	f, err := strconv.ParseFloat(n.String(), 64)
	if err != nil {
		return 0, false
	}
	return f, true
}

// stringList returns the non-empty string elements of a JSON array.
func stringList(raw json.RawMessage) []string {
	var items []json.RawMessage
	if kind(raw) != '[' || json.Unmarshal(raw, &items) != nil {
		return nil
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		if s := str(it); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// timestamp parses an RFC 3339 string (with or without fractional seconds),
// keeping its offset in a fixed zone (UTC for Z and +00:00).
func timestamp(raw json.RawMessage) (time.Time, bool) {
	s := str(raw)
	if s == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(s))
	if err != nil {
		return time.Time{}, false
	}
	_, off := t.Zone()
	if off == 0 {
		return t.UTC(), true
	}
	return t.In(time.FixedZone("", off)), true
}

// validID accepts an id for use as a URL path segment and a database key:
// valid UTF-8 without control characters (C0, DEL, C1), bidi controls or
// other characters that display as something else (logging.Neutralise),
// nor invisible ones or U+FFFD (a byte that was not UTF-8), so an id can
// never disguise itself as another.
func validID(id string) bool {
	if id == "" || id == "." || id == ".." || len(id) > maxIDLen || !utf8.ValidString(id) {
		return false
	}
	for _, r := range id {
		if logging.Neutralise(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError {
			return false
		}
	}
	return true
}

// problems collects at most maxProblems messages and counts the rest.
type problems struct {
	msgs  []string
	extra int
}

func (p *problems) add(format string, args ...any) {
	if len(p.msgs) >= maxProblems {
		p.extra++
		return
	}
	p.msgs = append(p.msgs, fmt.Sprintf(format, args...))
}

func (p *problems) list() []string {
	if p.extra > 0 {
		return append(p.msgs, fmt.Sprintf("%d more problems not listed", p.extra))
	}
	return p.msgs
}

// quoteName quotes s for a message, cut to maxNameLen runes.
func quoteName(s string) string {
	cut := false
	if len(s) > 4*maxNameLen {
		s, cut = s[:4*maxNameLen], true
	}
	if r := []rune(s); len(r) > maxNameLen {
		s, cut = string(r[:maxNameLen]), true
	}
	if cut {
		s += "…"
	}
	return strconv.Quote(s)
}

// quoteShort quotes a raw JSON value for a message, cut short.
func quoteShort(raw json.RawMessage) string {
	if kind(raw) == 0 {
		return "(missing)"
	}
	return quoteName(string(bytes.TrimSpace(raw)))
}
