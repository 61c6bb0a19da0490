package e2e

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/tibbersync/tibbersync/internal/config"
	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/simulator"
)

// TestForbiddenCategoryReportedMissing: Tibber's token responses name no
// scope (as its documented example), so the granted scopes are unknown.
// The user authorizes again without the thermostat scope; the stored
// thermostat's history then gets 403. After that history run the status
// report lists the thermostat scope as missing (not unknown, not granted),
// the other devices' history synced, and no token call was made for it. A
// later authorization with the scope and a devices run mark it granted.
func TestForbiddenCategoryReportedMissing(t *testing.T) {
	e := newEnv(t, envConfig{
		sim:          simulator.Options{OmitScope: true, MissingScope403: true},
		backfillDays: 2, resolutions: []string{model.ResolutionHour},
	})
	thermoScope := model.CategoryScopes[model.CategoryThermostat]
	e.mustRun(jobs.JobDevices, jobs.StatusOK)
	sum := e.summary()
	if len(sum.Auth.GrantedScopes) != 0 || len(sum.Auth.MissingScopes) != 0 {
		t.Fatalf("after the first devices run: granted %q missing %q, want unknown and none", sum.Auth.GrantedScopes, sum.Auth.MissingScopes)
	}
	if sum.Categories[model.CategoryThermostat] != "granted" {
		t.Fatalf("thermostat %q after its detail was fetched, want granted", sum.Categories[model.CategoryThermostat])
	}

	// The user consents again, leaving out the thermostats.
	var fewer []string
	for _, s := range config.Default().Tibber.Scopes {
		if s != thermoScope {
			fewer = append(fewer, s)
		}
	}
	e.cfg.scopes = fewer
	e.reopen()
	e.authorize()

	res := e.run(jobs.JobHistory)
	forbidden, history := 0, 0
	for _, r := range res.reqs {
		if r.Endpoint == "history" {
			history++
			if r.Status == http.StatusForbidden {
				forbidden++
			}
		}
	}
	if forbidden == 0 {
		t.Fatalf("no history request got 403 (%d history requests); the test does not test anything", history)
	}
	if n := countEndpoint(res.reqs, "token"); n != 0 {
		t.Errorf("the history run made %d token calls after 403s, want 0", n)
	}
	if res.run.Status != jobs.StatusPartial {
		t.Errorf("history run status %q (%q), want partial: the other devices synced", res.run.Status, res.run.Error)
	}
	if history == forbidden {
		t.Errorf("only refused history requests (%d): the other devices did not sync", history)
	}

	sum = e.summary()
	if len(sum.Auth.GrantedScopes) != 0 {
		t.Errorf("granted scopes %q, want still unknown", sum.Auth.GrantedScopes)
	}
	if !slices.Equal(sum.Auth.MissingScopes, []string{thermoScope}) {
		t.Errorf("missing scopes %q after the thermostat's 403, want [%s]", sum.Auth.MissingScopes, thermoScope)
	}
	if got := sum.Categories[model.CategoryThermostat]; got != "not granted" {
		t.Errorf("thermostat category %q, want not granted", got)
	}
	page := e.statusPage()
	if !strings.Contains(page, "Missing scopes") || !strings.Contains(page, thermoScope) {
		t.Errorf("status page does not list %s as missing", thermoScope)
	}

	// Consent with the thermostats again: the device list shows it, its
	// detail succeeds, and the scope counts as granted.
	e.cfg.scopes = nil
	e.reopen()
	e.authorize()
	e.mustRun(jobs.JobDevices, jobs.StatusOK)
	sum = e.summary()
	if len(sum.Auth.MissingScopes) != 0 || sum.Categories[model.CategoryThermostat] != "granted" {
		t.Errorf("after consent again: missing %q, thermostat %q; want none and granted", sum.Auth.MissingScopes, sum.Categories[model.CategoryThermostat])
	}
	if strings.Contains(e.statusPage(), "Missing scopes") {
		t.Errorf("status page still lists missing scopes after consent again")
	}
}

// summary is what `tibbersync status` reports.
func (e *env) summary() model.Summary {
	e.t.Helper()
	s, err := e.app.Store().Summary(e.t.Context())
	if err != nil {
		e.t.Fatalf("summary: %v", err)
	}
	return s
}

// statusPage renders the status page through the daemon's web handler.
func (e *env) statusPage() string {
	e.t.Helper()
	rec := httptest.NewRecorder()
	e.app.Web().Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, e.app.URL()+"/", nil))
	if rec.Code != http.StatusOK {
		e.t.Fatalf("status page: %d", rec.Code)
	}
	return rec.Body.String()
}
