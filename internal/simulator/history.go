package simulator

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"time"
)

// HistoryPoint is one history item as the simulator serves it: the ground
// truth a client must have stored after paging.
type HistoryPoint struct {
	// Period is the start of the period, in the device's zone.
	Period time.Time
	// Time is items[].time as served: Period, or shifted off the boundary
	// with Options.MisalignedTimes. It is in the device's zone.
	Time time.Time
	// OffsetSeconds is the UTC offset items[].time carries.
	OffsetSeconds int
	// Metrics are the data flattened to dotted names.
	Metrics map[string]float64
}

// timeLayout is how the simulator writes offsets: always numeric (+00:00,
// never Z), as .NET's DateTimeOffset does.
const timeLayout = "2006-01-02T15:04:05-07:00"

func localMidnight(t time.Time, loc *time.Location) time.Time {
	lt := t.In(loc)
	return time.Date(lt.Year(), lt.Month(), lt.Day(), 0, 0, 0, 0, loc)
}

// floorStep truncates t to a multiple of step in loc's local time, without
// going through ambiguous local wall-clock values.
func floorStep(t time.Time, step time.Duration, loc *time.Location) time.Time {
	_, off := t.In(loc).Zone()
	o := time.Duration(off) * time.Second
	return t.Add(o).Truncate(step).Add(-o).In(loc)
}

func floorPeriod(t time.Time, res string, loc *time.Location) time.Time {
	switch res {
	case resQuarterHour:
		return floorStep(t, 15*time.Minute, loc)
	case resHour:
		return floorStep(t, time.Hour, loc)
	case resDay:
		return localMidnight(t, loc)
	default:
		lt := t.In(loc)
		return time.Date(lt.Year(), lt.Month(), 1, 0, 0, 0, 0, loc)
	}
}

// nextPeriod returns the start of the period after the one starting at p.
func nextPeriod(p time.Time, res string, loc *time.Location) time.Time {
	switch res {
	case resQuarterHour:
		return p.Add(15 * time.Minute).In(loc)
	case resHour:
		return p.Add(time.Hour).In(loc)
	case resDay:
		lt := p.In(loc)
		return time.Date(lt.Year(), lt.Month(), lt.Day()+1, 0, 0, 0, 0, loc)
	default:
		lt := p.In(loc)
		return time.Date(lt.Year(), lt.Month()+1, 1, 0, 0, 0, 0, loc)
	}
}

// prevPeriod returns the start of the period before the one starting at p.
func prevPeriod(p time.Time, res string, loc *time.Location) time.Time {
	switch res {
	case resQuarterHour:
		return p.Add(-15 * time.Minute).In(loc)
	case resHour:
		return p.Add(-time.Hour).In(loc)
	case resDay:
		lt := p.In(loc)
		return time.Date(lt.Year(), lt.Month(), lt.Day()-1, 0, 0, 0, 0, loc)
	default:
		lt := p.In(loc)
		return time.Date(lt.Year(), lt.Month()-1, 1, 0, 0, 0, 0, loc)
	}
}

func ceilPeriod(t time.Time, res string, loc *time.Location) time.Time {
	f := floorPeriod(t, res, loc)
	if f.Equal(t) {
		return f
	}
	return nextPeriod(f, res, loc)
}

// lowerBound is the first instant with history for d: the later of the
// first record and the retention limit, both at local midnight.
func (s *Simulator) lowerBound(d *device, now time.Time) time.Time {
	lo := localMidnight(s.origin, d.loc)
	if d.retention > 0 {
		lt := now.In(d.loc)
		ret := time.Date(lt.Year(), lt.Month(), lt.Day()-d.retention, 0, 0, 0, 0, d.loc)
		if ret.After(lo) {
			lo = ret
		}
	}
	return lo
}

// firstPeriod is the first whole period at or after lo.
func firstPeriod(lo time.Time, res string, loc *time.Location) time.Time {
	return ceilPeriod(lo, res, loc)
}

// forwardWindow clamps a since request (§6.2, §11 #23).
func (s *Simulator) forwardWindow(d *device, res string, since, now time.Time) (start, end time.Time) {
	lo := s.lowerBound(d, now)
	s0 := floorStep(since, time.Hour, d.loc)
	if s0.Before(lo) {
		s0 = lo
	}
	start = floorPeriod(s0, res, d.loc)
	if start.Before(lo) {
		start = nextPeriod(start, res, d.loc)
	}
	end = floorPeriod(now, res, d.loc)
	if start.After(end) {
		start = end
	}
	return start, end
}

// backwardWindow clamps an until request.
func (s *Simulator) backwardWindow(d *device, res string, until, now time.Time) (start, end time.Time) {
	e0 := floorStep(until, time.Hour, d.loc)
	cur := floorPeriod(now, res, d.loc)
	if e0.After(cur) {
		e0 = cur
	}
	end = ceilPeriod(e0, res, d.loc)
	start = firstPeriod(s.lowerBound(d, now), res, d.loc)
	if end.Before(start) {
		end = start
	}
	return start, end
}

// correctionKey addresses the corrected values of one period.
type correctionKey struct {
	device, res string
	period      int64
}

// point computes the item of period p, or false when there is none (a gap,
// or no series at this resolution).
func (s *Simulator) point(d *device, res string, p time.Time) (HistoryPoint, bool) {
	s.corrMu.RLock()
	corr := s.corrections[correctionKey{d.id, res, p.Unix()}]
	s.corrMu.RUnlock()
	bit := resBit(res)
	if s.opts.Gaps && corr == nil && mix(d.key, saltGap, uint64(bit), uint64(p.Unix()))%23 == 0 {
		return HistoryPoint{}, false
	}
	spec := d.spec
	var vals []float64
	if res == resQuarterHour && spec.base == 15*time.Minute || res == resHour && spec.base == time.Hour {
		vals = baseValues(d, p)
	} else {
		end := nextPeriod(p, res, d.loc)
		vals = make([]float64, len(spec.metrics))
		n := 0
		for t := p; t.Before(end); t = t.Add(spec.base) {
			for i, v := range baseValues(d, t) {
				vals[i] += v
			}
			n++
		}
		for i, m := range spec.metrics {
			if !m.sum && n > 0 {
				vals[i] /= float64(n)
			}
			vals[i] = round(vals[i], m.decimals)
		}
	}
	hole := false
	if bit&(maskQH|maskHour) != 0 {
		hole = mix(d.key, saltHole, uint64(floorStep(p, time.Hour, d.loc).Unix()))%100 < 4
	}
	metrics := make(map[string]float64, len(spec.metrics))
	for i, m := range spec.metrics {
		if m.res&bit == 0 || (m.holes && hole) {
			continue
		}
		metrics[m.name] = vals[i]
	}
	for k, v := range corr {
		metrics[k] = v
	}
	if len(metrics) == 0 {
		return HistoryPoint{}, false
	}
	t := p
	if s.opts.MisalignedTimes {
		if h := mix(d.key, saltShift, uint64(bit), uint64(p.Unix())); h%13 == 0 {
			t = p.Add(time.Duration(1+(h>>8)%420) * time.Second)
		}
	}
	_, off := t.In(d.loc).Zone()
	return HistoryPoint{Period: p.In(d.loc), Time: t.In(d.loc), OffsetSeconds: off, Metrics: metrics}, true
}

// HistorySeries returns every item the history endpoint serves for periods
// starting in [from, to), clamped exactly as a request at Now would be
// (first record, retention, only completed periods). Gaps, misaligned times
// and corrections are applied as on the wire. It returns nil for an unknown
// device or an unsupported resolution.
func (s *Simulator) HistorySeries(deviceID, resolution string, from, to time.Time) []HistoryPoint {
	d := s.acct.device(deviceID)
	if d == nil || !d.supports(resolution) {
		return nil
	}
	now := s.now()
	p := ceilPeriod(from, resolution, d.loc)
	if first := firstPeriod(s.lowerBound(d, now), resolution, d.loc); p.Before(first) {
		p = first
	}
	end := floorPeriod(now, resolution, d.loc)
	if to.Before(end) {
		end = to
	}
	var out []HistoryPoint
	for ; p.Before(end); p = nextPeriod(p, resolution, d.loc) {
		if pt, ok := s.point(d, resolution, p); ok {
			out = append(out, pt)
		}
	}
	return out
}

// SetHistoryCorrection changes a past value (a back-fill): from now on the
// period starting at period serves value for metric (added if the period
// lacked it). period must be a period start of the resolution.
func (s *Simulator) SetHistoryCorrection(deviceID, resolution string, period time.Time, metric string, value float64) {
	s.corrMu.Lock()
	defer s.corrMu.Unlock()
	k := correctionKey{deviceID, resolution, period.Unix()}
	if s.corrections[k] == nil {
		s.corrections[k] = map[string]float64{}
	}
	s.corrections[k][metric] = value
	s.event("history-correction", "history", fmt.Sprintf("device=%s resolution=%s period=%s metric=%s", shortID(deviceID), resolution, period.UTC().Format(time.RFC3339), metric))
}

// cursor is the state carried by next/prev links.
type cursor struct {
	Home   string `json:"h"`
	Device string `json:"d"`
	Res    string `json:"r"`
	Start  int64  `json:"s"`
	End    int64  `json:"e"`
	Pos    int64  `json:"p"`
	Back   bool   `json:"b,omitempty"`
}

type cursorEnvelope struct {
	Body json.RawMessage `json:"c"`
	MAC  string          `json:"m"`
}

func (s *Simulator) encodeCursor(c cursor) string {
	body, _ := json.Marshal(c)
	m := hmac.New(sha256.New, s.cursorKey)
	m.Write(body)
	env, _ := json.Marshal(cursorEnvelope{Body: body, MAC: base64.RawURLEncoding.EncodeToString(m.Sum(nil))})
	return base64.RawURLEncoding.EncodeToString(env)
}

var errBadCursor = errors.New("invalid cursor")

func (s *Simulator) decodeCursor(v string) (cursor, error) {
	var c cursor
	raw, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return c, errBadCursor
	}
	var env cursorEnvelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return c, errBadCursor
	}
	mac, err := base64.RawURLEncoding.DecodeString(env.MAC)
	if err != nil {
		return c, errBadCursor
	}
	m := hmac.New(sha256.New, s.cursorKey)
	m.Write(env.Body)
	if !hmac.Equal(mac, m.Sum(nil)) {
		return c, errBadCursor
	}
	if err := json.Unmarshal(env.Body, &c); err != nil {
		return c, errBadCursor
	}
	return c, nil
}

// parseInstant accepts the ISO 8601 date-times clients send: RFC 3339 with
// an offset or Z, with optional fractional seconds.
func parseInstant(v string) (time.Time, error) {
	return time.Parse(time.RFC3339Nano, v)
}

// handleHistory serves GET /v1/homes/{homeId}/devices/{deviceId}/history.
func (s *Simulator) handleHistory(w *bufWriter, r *reqCtx, h *home, d *device) {
	q := r.req.URL.Query()
	res := q.Get("resolution")
	switch {
	case res == "":
		s.problem(w, 400, "The resolution parameter is required.")
		return
	case resBit(res) == 0:
		s.problem(w, 400, fmt.Sprintf("Invalid resolution %q: use quarterHour, hour, day or month.", res))
		return
	}
	now := s.now()
	size := s.pageSize(d)
	var c cursor
	if cv := q.Get("cursor"); cv != "" {
		if q.Has("since") || q.Has("until") {
			s.problem(w, 400, "The cursor cannot be combined with since or until.")
			return
		}
		dc, err := s.decodeCursor(cv)
		if err != nil || dc.Home != h.id || dc.Device != d.id || dc.Res != res {
			s.problem(w, 400, "The cursor is invalid.")
			return
		}
		c = dc
	} else {
		since, until := q.Get("since"), q.Get("until")
		if (since == "") == (until == "") {
			s.problem(w, 400, "Exactly one of since and until is required.")
			return
		}
		name, val := "since", since
		if until != "" {
			name, val = "until", until
		}
		t, err := parseInstant(val)
		if err != nil {
			s.problem(w, 400, fmt.Sprintf("The %s parameter is not a valid ISO 8601 date-time.", name))
			return
		}
		if !d.supports(res) {
			if s.opts.NoHistoryEmpty {
				tt := floorStep(t, time.Hour, d.loc)
				s.writeJSON(w, 200, HistoryResponse{
					Query: HistoryQuery{EffectiveStart: tt.Format(timeLayout), EffectiveEnd: tt.Format(timeLayout), PageSize: size},
					Items: []HistoryItem{},
				})
				return
			}
			s.problem(w, 400, "resolution not supported")
			return
		}
		var start, end time.Time
		if since != "" {
			start, end = s.forwardWindow(d, res, t, now)
			c = cursor{Pos: start.Unix()}
		} else {
			start, end = s.backwardWindow(d, res, t, now)
			c = cursor{Pos: end.Unix(), Back: true}
		}
		c.Home, c.Device, c.Res, c.Start, c.End = h.id, d.id, res, start.Unix(), end.Unix()
	}
	if !d.supports(res) {
		s.problem(w, 400, "resolution not supported")
		return
	}
	start := time.Unix(c.Start, 0).In(d.loc)
	end := time.Unix(c.End, 0).In(d.loc)
	pos := time.Unix(c.Pos, 0).In(d.loc)
	var pts []HistoryPoint
	var more bool
	if !c.Back {
		p := pos
		for p.Before(end) && len(pts) < size {
			if pt, ok := s.point(d, res, p); ok {
				pts = append(pts, pt)
			}
			p = nextPeriod(p, res, d.loc)
		}
		more = p.Before(end)
		c.Pos = p.Unix()
	} else {
		p := pos
		for p.After(start) && len(pts) < size {
			p = prevPeriod(p, res, d.loc)
			if pt, ok := s.point(d, res, p); ok {
				pts = append(pts, pt)
			}
		}
		slices.Reverse(pts)
		more = p.After(start)
		c.Pos = p.Unix()
	}
	items := make([]HistoryItem, len(pts))
	for i, pt := range pts {
		items[i] = HistoryItem{Time: pt.Time.Format(timeLayout), Data: nest(pt.Metrics)}
	}
	if s.opts.ShuffleItems {
		rng := rand.New(rand.NewPCG(d.key, mix(d.key, saltShuffle, uint64(pos.Unix()))))
		rng.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
	}
	resp := HistoryResponse{
		Query: HistoryQuery{EffectiveStart: start.Format(timeLayout), EffectiveEnd: end.Format(timeLayout), PageSize: size},
		Items: items,
	}
	var link json.RawMessage
	if more {
		u := s.historyLink(r, h, d, res, s.encodeCursor(c))
		link, _ = json.Marshal(u)
	} else if s.opts.NullLink {
		link = json.RawMessage("null")
	}
	if c.Back {
		resp.Prev = link
	} else {
		resp.Next = link
	}
	s.writeJSON(w, 200, resp)
}

func (s *Simulator) historyLink(r *reqCtx, h *home, d *device, res, cur string) string {
	path := "/v1/homes/" + url.PathEscape(h.id) + "/devices/" + url.PathEscape(d.id) + "/history"
	query := url.Values{"resolution": {res}, "cursor": {cur}}.Encode()
	if s.opts.RelativeLinks {
		return path + "?" + query
	}
	return s.baseURL(r.req) + path + "?" + query
}

func (s *Simulator) pageSize(d *device) int {
	switch {
	case s.opts.PageSize > 0:
		return s.opts.PageSize
	case d.pageSize > 0:
		return d.pageSize
	}
	return DefaultPageSize
}

// nest turns dotted metric names into nested objects.
func nest(metrics map[string]float64) map[string]any {
	out := map[string]any{}
	for k, v := range metrics {
		parts := strings.Split(k, ".")
		m := out
		for _, p := range parts[:len(parts)-1] {
			sub, ok := m[p].(map[string]any)
			if !ok {
				sub = map[string]any{}
				m[p] = sub
			}
			m = sub
		}
		m[parts[len(parts)-1]] = v
	}
	return out
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12] + "…"
	}
	return id
}
