package simulator_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/simulator"
)

// rawGet sends one GET on a fresh connection (so transport retries on a
// reused connection cannot hide a drop) and returns the response or error.
func (e *env) rawGet(path, tok string, timeout time.Duration) (*http.Response, []byte, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return e.rawGetCtx(ctx, path, tok)
}

// rawGetCtx is rawGet under ctx.
func (e *env) rawGetCtx(ctx context.Context, path, tok string) (*http.Response, []byte, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+path, nil)
	req.Header.Set("User-Agent", testUA)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// waitStats waits (bounded, for a hung server only) until cond holds for
// the simulator's stats.
func (e *env) waitStats(cond func(simulator.Stats) bool) (simulator.Stats, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return e.sim.WaitStats(ctx, cond)
}

func TestFaultKindsOnDataAPI(t *testing.T) {
	e := newEnv(t, simulator.Options{})
	tok, _ := e.login()
	f := e.sim.Faults()

	t.Run("Latency", func(t *testing.T) {
		f.Add(simulator.Fault{Endpoint: "homes", Kind: simulator.KindLatency, Delay: 60 * time.Millisecond, Count: 1})
		start := time.Now()
		resp, _, err := e.rawGet("/v1/homes", tok, 5*time.Second)
		if err != nil || resp.StatusCode != 200 || time.Since(start) < 60*time.Millisecond {
			t.Fatalf("latency: %v %v after %s", resp, err, time.Since(start))
		}
	})
	t.Run("Stall", func(t *testing.T) {
		before := e.sim.Stats().Faults[simulator.KindStall]
		f.Add(simulator.Fault{Endpoint: "homes", Kind: simulator.KindStall, Count: 1})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		errc := make(chan error, 1)
		go func() {
			_, _, err := e.rawGetCtx(ctx, "/v1/homes", tok)
			errc <- err
		}()
		// Give up only once the server holds the request: a client timeout
		// that a slow server outruns would leave the fault unconsumed.
		if _, err := e.waitStats(func(s simulator.Stats) bool { return s.Faults[simulator.KindStall] > before }); err != nil {
			t.Fatalf("stall: the server never took the fault: %v", err)
		}
		select {
		case err := <-errc:
			t.Fatalf("stall: the request ended (%v) while the server held it", err)
		case <-time.After(100 * time.Millisecond):
		}
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("stall: err %v, want the client's own cancellation", err)
		}
	})
	t.Run("StallThenDrop", func(t *testing.T) {
		f.Add(simulator.Fault{Endpoint: "homes", Kind: simulator.KindStall, Delay: 50 * time.Millisecond, Count: 1})
		_, _, err := e.rawGet("/v1/homes", tok, 5*time.Second)
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("stall with delay: err %v, want a dropped connection", err)
		}
	})
	t.Run("Trickle", func(t *testing.T) {
		_, want, _ := e.rawGet("/v1/homes", tok, 5*time.Second)
		f.Add(simulator.Fault{Endpoint: "homes", Kind: simulator.KindTrickle, Delay: time.Millisecond, Count: 1})
		start := time.Now()
		resp, body, err := e.rawGet("/v1/homes", tok, 10*time.Second)
		if err != nil || resp.StatusCode != 200 || string(body) != string(want) {
			t.Fatalf("trickle: %v %v %s", resp, err, body)
		}
		if time.Since(start) < time.Duration(len(body)-1)*time.Millisecond {
			t.Fatalf("trickle took %s for %d bytes", time.Since(start), len(body))
		}
	})
	t.Run("Oversize", func(t *testing.T) {
		f.Add(simulator.Fault{Endpoint: "homes", Kind: simulator.KindOversize, Bytes: 1 << 20, Count: 1})
		resp, body, err := e.rawGet("/v1/homes", tok, 10*time.Second)
		if err != nil || resp.StatusCode != 200 || len(body) < 1<<20 || !json.Valid(body) {
			t.Fatalf("oversize: %v %d bytes valid=%t", err, len(body), json.Valid(body))
		}
	})
	t.Run("Status", func(t *testing.T) {
		for _, code := range []int{500, 502, 503, 412} {
			f.Add(simulator.Fault{Endpoint: "devices", Kind: simulator.KindStatus, Status: code, Count: 1})
			st, h, b := e.get("/v1/homes/"+e.sim.Account().Homes[0].ID+"/devices", tok)
			checkProblem(t, st, h, b, code)
		}
	})
	t.Run("StatusHTML", func(t *testing.T) {
		f.Add(simulator.Fault{Endpoint: "api", Kind: simulator.KindStatusHTML, Status: 503, Count: 1})
		st, h, b := e.get("/v1/homes", tok)
		if st != 503 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") || !strings.Contains(string(b), "<h1>503 Service Unavailable</h1>") {
			t.Fatalf("%d %q %s", st, h.Get("Content-Type"), b)
		}
	})
	t.Run("TooManyRequests", func(t *testing.T) {
		f.Add(simulator.Fault{Endpoint: "homes", Kind: simulator.Kind429, RetryAfter: "3", Count: 1})
		st, h, b := e.get("/v1/homes", tok)
		checkProblem(t, st, h, b, 429)
		if h.Get("Retry-After") != "3" {
			t.Fatalf("Retry-After %q", h.Get("Retry-After"))
		}
		f.Add(simulator.Fault{Endpoint: "homes", Kind: simulator.Kind429, RetryAfter: "none", Count: 1})
		st, h, _ = e.get("/v1/homes", tok)
		if _, has := h["Retry-After"]; st != 429 || has {
			t.Fatalf("none: %d %v", st, h)
		}
		f.Add(simulator.Fault{Endpoint: "homes", Kind: simulator.Kind429, Delay: 2 * time.Second, Count: 1})
		st, h, _ = e.get("/v1/homes", tok)
		if st != 429 || h.Get("Retry-After") != "2" {
			t.Fatalf("default form: %d %q", st, h.Get("Retry-After"))
		}
		for k := range h {
			if strings.HasPrefix(strings.ToLower(k), "x-ratelimit") {
				t.Fatalf("header %s", k)
			}
		}
	})
	t.Run("Drop", func(t *testing.T) {
		f.Add(simulator.Fault{Endpoint: "homes", Kind: simulator.KindDrop, Count: 1})
		if _, _, err := e.rawGet("/v1/homes", tok, 5*time.Second); err == nil {
			t.Fatal("drop: got a response")
		}
	})
	t.Run("MalformedJSON", func(t *testing.T) {
		f.Add(simulator.Fault{Endpoint: "homes", Kind: simulator.KindMalformedJSON, Count: 1})
		st, _, b := e.get("/v1/homes", tok)
		var v any
		if st != 200 || json.Unmarshal(b, &v) == nil {
			t.Fatalf("malformed: %d %s", st, b)
		}
	})
	t.Run("UnauthorizedOnce", func(t *testing.T) {
		f.Add(simulator.Fault{Endpoint: "homes", Kind: simulator.KindUnauthorizedOnce})
		st, h, b := e.get("/v1/homes", tok)
		checkProblem(t, st, h, b, 401)
		if !strings.Contains(h.Get("WWW-Authenticate"), "invalid_token") {
			t.Fatalf("WWW-Authenticate %q", h.Get("WWW-Authenticate"))
		}
		if st, _, _ := e.get("/v1/homes", tok); st != 200 {
			t.Fatalf("second request: %d", st)
		}
	})
	t.Run("ProcessThen500AndError200", func(t *testing.T) {
		f.Add(simulator.Fault{Endpoint: "homes", Kind: simulator.KindProcessThen500, Count: 1})
		st, h, b := e.get("/v1/homes", tok)
		checkProblem(t, st, h, b, 500)
		f.Add(simulator.Fault{Endpoint: "homes", Kind: simulator.KindError200, Count: 1})
		st, _, b = e.get("/v1/homes", tok)
		if st != 200 || !strings.Contains(string(b), `"error"`) {
			t.Fatalf("error-200: %d %s", st, b)
		}
	})
	if p := f.Pending(); len(p) != 0 {
		t.Fatalf("faults left over: %v", p)
	}
	// A dropped or stalled request is counted when its handler returns,
	// which may be after the client saw the error: wait for that.
	s, err := e.waitStats(func(s simulator.Stats) bool { return s.InFlight == 0 })
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"latency", "stall", "trickle", "oversize", "status", "status-html", "429", "drop", "malformed-json", "unauthorized-once"} {
		if s.Faults[k] == 0 {
			t.Errorf("Stats.Faults[%s]=0", k)
		}
	}
	if s.Statuses[0] < 3 {
		t.Errorf("Statuses[0]=%d, want the drops and stalls counted", s.Statuses[0])
	}
}

func TestTokenFaults(t *testing.T) {
	e := newEnv(t, simulator.Options{})
	_, rt := e.login()
	f := e.sim.Faults()

	// rotate-then-drop: the rotation happens, the client never sees it, and
	// the old token it still holds is now a reused token.
	f.Add(simulator.Fault{Endpoint: "token", Kind: simulator.KindRotateThenDrop, Count: 1})
	if _, err := e.hc.PostForm(e.srv.URL+"/connect/token", refreshForm(rt)); err == nil {
		t.Fatal("rotate-then-drop: got a response")
	}
	cur := e.sim.CurrentRefreshToken()
	if cur == "" || cur == rt {
		t.Fatalf("after rotate-then-drop the current token is %q", cur)
	}
	if st, body := e.postToken(refreshForm(rt)); st != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("old token after lost response: %d %v", st, body)
	}
	if e.sim.Stats().RefreshReuse != 1 {
		t.Fatal("reuse not counted")
	}

	_, rt = e.login()
	f.Add(simulator.Fault{Endpoint: "token", Kind: simulator.KindProcessThen500, Count: 1})
	if st, body := e.postToken(refreshForm(rt)); st != 500 || body["error"] != "server_error" {
		t.Fatalf("process-then-500: %d %v", st, body)
	}
	if e.sim.CurrentRefreshToken() == rt {
		t.Fatal("process-then-500 did not process")
	}

	_, rt = e.login()
	f.Add(simulator.Fault{Endpoint: "token", Kind: simulator.KindError200, Count: 1})
	if st, body := e.postToken(refreshForm(rt)); st != 200 || body["error"] == nil || body["access_token"] != nil {
		t.Fatalf("error-200: %d %v", st, body)
	}
	if e.sim.CurrentRefreshToken() != rt {
		t.Fatal("error-200 processed the refresh")
	}

	f.Add(simulator.Fault{Endpoint: "token", Kind: simulator.KindMalformedJSON, Count: 1})
	resp, err := e.hc.PostForm(e.srv.URL+"/connect/token", refreshForm(rt))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if json.Valid(b) || e.sim.CurrentRefreshToken() != rt {
		t.Fatalf("malformed-json on token: %s (processed=%t)", b, e.sim.CurrentRefreshToken() != rt)
	}

	f.Add(simulator.Fault{Endpoint: "token", Kind: simulator.KindOmitRefreshToken, Count: 1})
	f.Add(simulator.Fault{Endpoint: "token", Kind: simulator.KindExpiresInString, Count: 1})
	st, body := e.postToken(refreshForm(rt))
	if _, has := body["refresh_token"]; st != 200 || has {
		t.Fatalf("omit-refresh-token: %d %v", st, body)
	}
	st, body = e.postToken(refreshForm(rt))
	if st != 200 || body["expires_in"] != "3600" || body["refresh_token"] == nil {
		t.Fatalf("expires-in-string: %d %v", st, body)
	}
	// Token-only kinds never apply elsewhere.
	f.Add(simulator.Fault{Endpoint: "*", Kind: simulator.KindOmitRefreshToken, Count: 1})
	access, _ := e.login()
	e.getJSON("/v1/homes", access, 200, nil)
	if len(f.Pending()) != 0 {
		t.Fatal("omit-refresh-token was not consumed by the next token request")
	}
}

func TestFaultCountsAndProbability(t *testing.T) {
	e := newEnv(t, simulator.Options{Seed: 42})
	tok, _ := e.login()
	f := e.sim.Faults()
	f.Add(simulator.Fault{Endpoint: "homes", Kind: simulator.KindStatus, Status: 503, Count: 2})
	var got []int
	for range 3 {
		st, _, _ := e.get("/v1/homes", tok)
		got = append(got, st)
	}
	if got[0] != 503 || got[1] != 503 || got[2] != 200 {
		t.Fatalf("statuses %v, want 503 503 200", got)
	}
	// Probability: deterministic by seed, roughly the given share.
	run := func() []int {
		s := newEnv(t, simulator.Options{Seed: 42})
		tk, _ := s.login()
		s.sim.Faults().Add(simulator.Fault{Endpoint: "api", Kind: simulator.KindStatus, Status: 502, Probability: 0.3})
		var out []int
		for range 100 {
			st, _, _ := s.get("/v1/homes", tk)
			out = append(out, st)
		}
		return out
	}
	a, b := run(), run()
	n502 := 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatal("probability faults differ between runs with the same seed")
		}
		if a[i] == 502 {
			n502++
		}
	}
	if n502 < 15 || n502 > 45 {
		t.Fatalf("%d of 100 requests faulted at p=0.3", n502)
	}
	f.Add(simulator.Fault{Endpoint: "history", Kind: simulator.KindStatus, Count: 1})
	e.getJSON("/v1/homes", tok, 200, nil) // another endpoint leaves it queued
	if len(f.Pending()) != 1 {
		t.Fatalf("pending %v", f.Pending())
	}
	f.Clear()
	if len(f.Pending()) != 0 {
		t.Fatal("Clear left faults")
	}
}

func TestParseFault(t *testing.T) {
	good := map[string]simulator.Fault{
		"history:429:count=2:retry-after=3":                           {Endpoint: "history", Kind: "429", Count: 2, RetryAfter: "3"},
		"token:rotate-then-drop:count=1":                              {Endpoint: "token", Kind: "rotate-then-drop", Count: 1},
		"devices:503":                                                 {Endpoint: "devices", Kind: "status", Status: 503},
		"*:latency:delay=50ms":                                        {Endpoint: "*", Kind: "latency", Delay: 50 * time.Millisecond},
		"api:status-html:status=502:p=0.25":                           {Endpoint: "api", Kind: "status-html", Status: 502, Probability: 0.25},
		"homes:oversize:bytes=1024":                                   {Endpoint: "homes", Kind: "oversize", Bytes: 1024},
		"history:drift:count=3:member=items":                          {Endpoint: "history", Kind: "drift", Count: 3, Member: "items"},
		"homes:429:retry-after=Wed, 21 Oct 2026 07:28:00 GMT:count=1": {Endpoint: "homes", Kind: "429", RetryAfter: "Wed, 21 Oct 2026 07:28:00 GMT", Count: 1},
	}
	for spec, want := range good {
		got, err := simulator.ParseFault(spec)
		if err != nil || got != want {
			t.Errorf("ParseFault(%q) = %+v, %v; want %+v", spec, got, err, want)
		}
		if again, err := simulator.ParseFault(got.String()); err != nil || again != got {
			t.Errorf("round trip of %q: %+v %v", got.String(), again, err)
		}
	}
	for _, spec := range []string{"", "history", "nowhere:429", "history:explode", "history:429:count=x", "history:429:count", "history:999", "history:status:status=42", "history:429:p=2", "history:429:colour=red"} {
		if _, err := simulator.ParseFault(spec); err == nil {
			t.Errorf("ParseFault(%q) accepted", spec)
		}
	}
}

func TestRateLimit(t *testing.T) {
	for name, form := range map[string]string{"Seconds": "seconds", "HTTPDate": "http-date", "None": "none"} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, simulator.Options{RateLimit: 1, RateBurst: 2, RetryAfterForm: form})
			tok, _ := e.login()
			// The bucket is per client and the token request used a token
			// from it: wait until it is full again.
			e.clock.Advance(2 * time.Second)
			e.getJSON("/v1/homes", tok, 200, nil)
			e.getJSON("/v1/homes", tok, 200, nil)
			st, h, b := e.get("/v1/homes", tok)
			checkProblem(t, st, h, b, 429)
			ra := h.Get("Retry-After")
			switch form {
			case "seconds":
				if ra != "1" {
					t.Fatalf("Retry-After %q", ra)
				}
			case "http-date":
				when, err := http.ParseTime(ra)
				if err != nil || !when.Equal(e.clock.Now().Add(time.Second).Truncate(time.Second)) {
					t.Fatalf("Retry-After %q (%v)", ra, err)
				}
			case "none":
				if _, has := h["Retry-After"]; has {
					t.Fatalf("Retry-After %q", ra)
				}
			}
			e.clock.Advance(time.Second)
			e.getJSON("/v1/homes", tok, 200, nil)
			if e.sim.Stats().RateLimited != 1 {
				t.Fatalf("RateLimited=%d", e.sim.Stats().RateLimited)
			}
		})
	}
}

// TestWaitStats: WaitStats sees a request while the server holds it and
// after its handler returned, and gives up with ctx's error.
func TestWaitStats(t *testing.T) {
	e := newEnv(t, simulator.Options{})
	tok, _ := e.login()
	// The login's last handler may still be counting its answer.
	if _, err := e.waitStats(func(s simulator.Stats) bool { return s.InFlight == 0 }); err != nil {
		t.Fatal(err)
	}
	e.sim.Faults().Add(simulator.Fault{Endpoint: "homes", Kind: simulator.KindStall, Count: 1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, _, err := e.rawGetCtx(ctx, "/v1/homes", tok)
		errc <- err
	}()
	held, err := e.waitStats(func(s simulator.Stats) bool { return s.Faults[simulator.KindStall] == 1 })
	if err != nil {
		t.Fatal(err)
	}
	if held.InFlight != 1 || held.Statuses[0] != 0 {
		t.Fatalf("while stalled: InFlight=%d Statuses[0]=%d, want 1 and 0", held.InFlight, held.Statuses[0])
	}
	cancel()
	<-errc
	done, err := e.waitStats(func(s simulator.Stats) bool { return s.InFlight == 0 })
	if err != nil {
		t.Fatal(err)
	}
	if done.Statuses[0] != 1 || done.EndpointStatuses["homes"][0] != 1 {
		t.Fatalf("after the stall: Statuses[0]=%d homes[0]=%d, want 1", done.Statuses[0], done.EndpointStatuses["homes"][0])
	}

	gone, stop := context.WithCancel(context.Background())
	stop()
	if _, err := e.sim.WaitStats(gone, func(s simulator.Stats) bool { return s.InFlight > 0 }); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitStats with an ended context: %v, want context.Canceled", err)
	}
}
