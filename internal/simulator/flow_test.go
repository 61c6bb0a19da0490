package simulator_test

import (
	"encoding/json"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/simulator"
)

// TestFullFlowOverHTTP walks what the daemon does: authorize in a browser,
// exchange the code, list homes and devices, fetch details and page through
// every history series, and compares everything with the ground truth.
func TestFullFlowOverHTTP(t *testing.T) {
	e := newEnv(t, simulator.Options{PageSize: 24, Seed: 11})
	loc := consent(t, browser(t), authorizeURL(e.srv.URL, defaultScopes, nil), "approve")
	st, tokBody := e.postToken(e.codeForm(loc.Query().Get("code"), rfcVerifier))
	if st != 200 {
		t.Fatalf("token: %d %v", st, tokBody)
	}
	tok := tokBody["access_token"].(string)
	acct := e.sim.Account()

	var homes simulator.HomesResponse
	e.getJSON("/v1/homes", tok, 200, &homes)
	if len(homes.Homes) != len(acct.Homes) {
		t.Fatalf("%d homes", len(homes.Homes))
	}
	since := testStart.Add(-36 * time.Hour)
	pagesFetched := 0
	for hi, h := range homes.Homes {
		truth := acct.Homes[hi]
		var list simulator.DevicesResponse
		e.getJSON("/v1/homes/"+url.PathEscape(h.ID)+"/devices", tok, 200, &list)
		for di, d := range list.Devices {
			if d.ID != truth.Devices[di].ID {
				t.Fatalf("device %d of %s: %s, want %s", di, h.Name, d.ID, truth.Devices[di].ID)
			}
			st, _, body := e.get(devicePath(h.ID, d.ID), tok)
			want, _ := json.Marshal(e.sim.DeviceState(h.ID, d.ID, e.clock.Now()))
			if st != 200 || string(body) != string(want) {
				t.Fatalf("detail of %s: %d\n%s\nwant\n%s", d.Info.Name, st, body, want)
			}
			for _, res := range d.SupportedHistory.Resolutions {
				pages := e.walk(historyURL(simulator.Home{ID: h.ID}, simulator.Device{ID: d.ID}, res, "since", since), tok, false)
				pagesFetched += len(pages)
				start, _ := time.Parse(time.RFC3339, pages[0].Query.EffectiveStart)
				end, _ := time.Parse(time.RFC3339, pages[0].Query.EffectiveEnd)
				sameSeries(t, pointsOf(t, pages), e.sim.HistorySeries(d.ID, res, start, end))
			}
		}
	}
	if pagesFetched < 10 {
		t.Fatalf("only %d history pages: paging not exercised", pagesFetched)
	}
	s := e.sim.Stats()
	if s.Requests["history"] != pagesFetched || s.Requests["device"] == 0 || s.Requests["devices"] != 2 || s.Requests["homes"] != 1 || s.Requests["authorize"] != 1 || s.Requests["consent"] != 1 {
		t.Fatalf("request counts %v", s.Requests)
	}
	if s.EndpointStatuses["history"][200] != pagesFetched || s.UserAgentViolations != 0 {
		t.Fatalf("stats %+v", s)
	}
	// Nothing secret in the event log.
	for _, ev := range e.sim.Events() {
		for _, secret := range []string{tok, tokBody["refresh_token"].(string), loc.Query().Get("code"), simulator.DefaultClientSecret, rfcVerifier} {
			if strings.Contains(ev.Detail, secret) {
				t.Fatalf("event %+v leaks a secret", ev)
			}
		}
	}
	resp, err := e.hc.Get(e.srv.URL + "/nowhere")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("unknown path: %d", resp.StatusCode)
	}
}
