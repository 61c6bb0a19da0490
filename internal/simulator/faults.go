package simulator

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Fault kinds (§11 "Faults the simulator must be able to inject").
const (
	// KindLatency delays the request by Delay, then serves it normally.
	// Latency faults add up and combine with one other fault.
	KindLatency = "latency"
	// KindStall never answers: it holds the request until the client gives
	// up or Simulator.Close; with Delay > 0 it drops the connection after Delay.
	KindStall = "stall"
	// KindTrickle serves the normal response one byte per Delay (default 1s).
	KindTrickle = "trickle"
	// KindOversize answers 200 with a JSON body of Bytes (default 16 MiB).
	KindOversize = "oversize"
	// KindStatus answers Status (default 500) without processing: problem+json
	// on the Data API, an RFC 6749 body on the token endpoint.
	KindStatus = "status"
	// KindStatusHTML answers Status (default 502) with an HTML proxy page.
	KindStatusHTML = "status-html"
	// Kind429 answers 429 with Retry-After: RetryAfter verbatim, "none" for
	// no header, or "" for Options.RetryAfterForm with a wait of Delay
	// (default 1s).
	Kind429 = "429"
	// KindDrop closes the connection without reading further or answering,
	// and without processing the request.
	KindDrop = "drop"
	// KindMalformedJSON sends a truncated JSON body. On the token endpoint
	// the request is not processed; elsewhere the real body is cut in half.
	KindMalformedJSON = "malformed-json"
	// KindUnauthorizedOnce answers 401 invalid_token to a valid access token
	// (Count defaults to 1). Bearer endpoints only.
	KindUnauthorizedOnce = "unauthorized-once"
	// KindRotateThenDrop processes the request (a refresh rotates the token)
	// and then drops the connection before answering.
	KindRotateThenDrop = "rotate-then-drop"
	// KindProcessThen500 processes the request and then answers 500.
	KindProcessThen500 = "process-then-500"
	// KindError200 answers 200 with {"error":"server_error"} without
	// processing the request.
	KindError200 = "error-200"
	// KindOmitRefreshToken leaves refresh_token out of a token response (and
	// does not rotate). Token endpoint only.
	KindOmitRefreshToken = "omit-refresh-token"
	// KindExpiresInString sends expires_in as a string. Token endpoint only.
	KindExpiresInString = "expires-in-string"
	// KindDrift is schema drift: the request is processed normally, but a
	// top-level member of the JSON object answered is renamed (Member, by
	// default the endpoint's list member: "homes", "devices" or "items") to
	// Member+"V2", as if Tibber renamed it. Count responses get it.
	KindDrift = "drift"
)

// driftMember is the member KindDrift renames when Fault.Member is empty.
func driftMember(ep string) string {
	switch ep {
	case "homes":
		return "homes"
	case "devices":
		return "devices"
	case "history":
		return "items"
	}
	return ""
}

// FaultKinds lists every fault kind.
var FaultKinds = []string{
	KindLatency, KindStall, KindTrickle, KindOversize, KindStatus, KindStatusHTML, Kind429,
	KindDrop, KindMalformedJSON, KindUnauthorizedOnce, KindRotateThenDrop, KindProcessThen500,
	KindError200, KindOmitRefreshToken, KindExpiresInString, KindDrift,
}

// FaultEndpoints lists the endpoint names a Fault can target. "api" matches
// every /v1 endpoint and "*" matches everything.
var FaultEndpoints = []string{"authorize", "consent", "token", "userinfo", "discovery", "homes", "devices", "device", "history", "other", "api", "*"}

// Fault is one scripted misbehaviour.
type Fault struct {
	// Endpoint is the endpoint it applies to (see FaultEndpoints).
	Endpoint string
	// Kind is one of the Kind constants.
	Kind string
	// Status is the status of KindStatus and KindStatusHTML.
	Status int
	// Delay parametrises latency, stall, trickle and 429 (see the kinds).
	Delay time.Duration
	// RetryAfter is the Retry-After value of a 429 (see Kind429).
	RetryAfter string
	// Bytes is the body size of KindOversize.
	Bytes int64
	// Member is the top-level member KindDrift renames (default: the
	// endpoint's list member).
	Member string
	// Count is how many matching requests it applies to (0 = unlimited).
	Count int
	// Probability, if in (0, 1), applies the fault to a matching request
	// with that probability, drawn from the seeded source; requests it
	// spares do not use up Count.
	Probability float64
}

// String formats f in the syntax ParseFault accepts.
func (f Fault) String() string {
	parts := []string{f.Endpoint, f.Kind}
	if f.Status != 0 {
		parts = append(parts, "status="+strconv.Itoa(f.Status))
	}
	if f.Delay != 0 {
		parts = append(parts, "delay="+f.Delay.String())
	}
	if f.RetryAfter != "" {
		parts = append(parts, "retry-after="+f.RetryAfter)
	}
	if f.Bytes != 0 {
		parts = append(parts, "bytes="+strconv.FormatInt(f.Bytes, 10))
	}
	if f.Member != "" {
		parts = append(parts, "member="+f.Member)
	}
	if f.Count != 0 {
		parts = append(parts, "count="+strconv.Itoa(f.Count))
	}
	if f.Probability != 0 {
		parts = append(parts, "p="+strconv.FormatFloat(f.Probability, 'g', -1, 64))
	}
	return strings.Join(parts, ":")
}

// Faults is the queue of scripted faults. Matching requests consume them in
// the order they were added.
type Faults struct {
	mu   sync.Mutex
	list []*faultEntry
	draw func() float64
}

type faultEntry struct {
	f         Fault
	remaining int // -1 = unlimited
}

// Add queues a fault.
func (f *Faults) Add(fault Fault) {
	if fault.Kind == KindUnauthorizedOnce && fault.Count == 0 {
		fault.Count = 1
	}
	if fault.Endpoint == "" {
		fault.Endpoint = "*"
	}
	rem := fault.Count
	if rem <= 0 {
		rem = -1
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.list = append(f.list, &faultEntry{f: fault, remaining: rem})
}

// Clear removes every queued fault.
func (f *Faults) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.list = nil
}

// Pending returns the faults still queued, with Count set to what remains
// (0 for unlimited).
func (f *Faults) Pending() []Fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Fault
	for _, e := range f.list {
		ff := e.f
		ff.Count = max(0, e.remaining)
		out = append(out, ff)
	}
	return out
}

func endpointMatches(pattern, ep string) bool {
	switch pattern {
	case "*":
		return true
	case "api":
		return isAPI(ep)
	}
	return pattern == ep
}

// applicable reports whether kind makes sense on endpoint ep.
func applicable(kind, ep string) bool {
	switch kind {
	case KindOmitRefreshToken, KindExpiresInString:
		return ep == "token"
	case KindUnauthorizedOnce:
		return ep == "userinfo" || isAPI(ep)
	case KindDrift:
		return isAPI(ep) || ep == "userinfo"
	}
	return true
}

// take consumes the faults that apply to a request on ep: the total of the
// latency faults and at most one other fault.
func (f *Faults) take(ep string) (time.Duration, *Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var latency time.Duration
	var terminal *Fault
	keep := f.list[:0]
	for _, e := range f.list {
		use := endpointMatches(e.f.Endpoint, ep) && applicable(e.f.Kind, ep) &&
			(e.f.Kind == KindLatency || terminal == nil)
		if use && e.f.Probability > 0 && e.f.Probability < 1 && f.draw != nil {
			use = f.draw() < e.f.Probability
		}
		if use {
			if e.f.Kind == KindLatency {
				latency += e.f.Delay
			} else {
				ff := e.f
				terminal = &ff
			}
			if e.remaining > 0 {
				e.remaining--
			}
		}
		if e.remaining != 0 {
			keep = append(keep, e)
		}
	}
	clear(f.list[len(keep):])
	f.list = keep
	return latency, terminal
}

// preFault applies faults that answer before the request is processed. It
// reports whether the response is complete.
func (s *Simulator) preFault(w http.ResponseWriter, rc *reqCtx) (int, bool) {
	f := rc.fault
	switch f.Kind {
	case KindStall:
		if f.Delay > 0 {
			if s.sleep(rc.req.Context(), f.Delay) {
				s.drop(w)
			}
			return 0, true
		}
		select {
		case <-rc.req.Context().Done():
		case <-s.done:
		}
		return 0, true
	case KindDrop:
		s.drop(w)
		return 0, true
	case KindStatus:
		status := f.Status
		if status == 0 {
			status = 500
		}
		if rc.endpoint == "token" {
			code := "server_error"
			if status < 500 {
				code = "invalid_request"
			}
			s.writeJSON(w, status, OAuthError{Error: code})
		} else {
			s.problem(w, status, "Injected fault.")
		}
		return status, true
	case KindStatusHTML:
		status := f.Status
		if status == 0 {
			status = 502
		}
		text := fmt.Sprintf("%d %s", status, http.StatusText(status))
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(status)
		fmt.Fprintf(w, "<html>\r\n<head><title>%s</title></head>\r\n<body>\r\n<center><h1>%s</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n", text, text)
		return status, true
	case Kind429:
		ra := f.RetryAfter
		switch ra {
		case "none":
			ra = ""
		case "":
			d := f.Delay
			if d <= 0 {
				d = time.Second
			}
			ra = s.retryAfterValue(s.opts.RetryAfterForm, d)
		}
		s.tooMany(w, rc, ra)
		return 429, true
	case KindOversize:
		n := f.Bytes
		if n <= 0 {
			n = DefaultOversizeBytes
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(200)
		const head, tail = `{"homes":[`, `{"id":"00000000-0000-4000-8000-000000000000","name":"end"}]}`
		w.Write([]byte(head))
		chunk := []byte(strings.Repeat(`{"id":"00000000-0000-4000-8000-000000000000","name":"padding"},`, 512))
		for written := int64(len(head)); written < n-int64(len(tail)); written += int64(len(chunk)) {
			if rc.req.Context().Err() != nil {
				return 200, true
			}
			if _, err := w.Write(chunk); err != nil {
				return 200, true
			}
		}
		w.Write([]byte(tail))
		return 200, true
	case KindError200:
		s.writeJSON(w, 200, OAuthError{Error: "server_error", ErrorDescription: "An error occurred while processing the request."})
		return 200, true
	case KindMalformedJSON:
		if rc.endpoint == "token" {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(200)
			w.Write([]byte(`{"access_token":"eyJhbGciOiJIUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJ`))
			return 200, true
		}
	}
	return 0, false
}

// ParseFault parses the compact CLI syntax
// "endpoint:kind[:key=value...]", e.g. "history:429:count=2:retry-after=3",
// "token:rotate-then-drop:count=1", "devices:503" (a status fault) or
// "*:latency:delay=50ms". Keys: count, status, delay, retry-after, bytes,
// p (probability).
func ParseFault(spec string) (Fault, error) {
	parts := strings.Split(spec, ":")
	if len(parts) < 2 {
		return Fault{}, fmt.Errorf("fault %q: want endpoint:kind[:key=value...]", spec)
	}
	f := Fault{Endpoint: parts[0], Kind: parts[1]}
	if !slices.Contains(FaultEndpoints, f.Endpoint) {
		return Fault{}, fmt.Errorf("fault %q: unknown endpoint %q (one of %s)", spec, f.Endpoint, strings.Join(FaultEndpoints, ", "))
	}
	if n, err := strconv.Atoi(f.Kind); err == nil && f.Kind != Kind429 {
		if n < 100 || n > 599 {
			return Fault{}, fmt.Errorf("fault %q: status %d out of range", spec, n)
		}
		f.Kind, f.Status = KindStatus, n
	}
	if !slices.Contains(FaultKinds, f.Kind) {
		return Fault{}, fmt.Errorf("fault %q: unknown kind %q (one of %s)", spec, f.Kind, strings.Join(FaultKinds, ", "))
	}
	// An HTTP-date Retry-After contains colons: rejoin "retry-after=" values.
	var kvs []string
	for _, p := range parts[2:] {
		if len(kvs) > 0 && strings.HasPrefix(kvs[len(kvs)-1], "retry-after=") && !strings.Contains(p, "=") {
			kvs[len(kvs)-1] += ":" + p
			continue
		}
		kvs = append(kvs, p)
	}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return Fault{}, fmt.Errorf("fault %q: %q is not key=value", spec, kv)
		}
		var err error
		switch k {
		case "count":
			f.Count, err = strconv.Atoi(v)
			if err == nil && f.Count < 0 {
				err = fmt.Errorf("negative")
			}
		case "status":
			f.Status, err = strconv.Atoi(v)
			if err == nil && (f.Status < 100 || f.Status > 599) {
				err = fmt.Errorf("out of range")
			}
		case "delay":
			f.Delay, err = time.ParseDuration(v)
		case "retry-after":
			f.RetryAfter = v
		case "bytes":
			f.Bytes, err = strconv.ParseInt(v, 10, 64)
		case "member":
			f.Member = v
		case "p", "probability":
			f.Probability, err = strconv.ParseFloat(v, 64)
			if err == nil && (f.Probability < 0 || f.Probability > 1) {
				err = fmt.Errorf("not in [0, 1]")
			}
		default:
			return Fault{}, fmt.Errorf("fault %q: unknown key %q", spec, k)
		}
		if err != nil {
			return Fault{}, fmt.Errorf("fault %q: %s: %w", spec, k, err)
		}
	}
	return f, nil
}
