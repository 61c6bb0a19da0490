package e2e

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/model"
	"github.com/tibbersync/tibbersync/internal/simulator"
)

// TestPersistent401SyncAll: Tibber answers 401 to every API call, however
// fresh the token (consent revoked on its side, a clock problem). One
// `sync all` (homes, devices, history) makes at most two token calls, each
// run fails saying Tibber refuses a freshly refreshed token, and the next
// cycle makes none; once Tibber accepts the token again, everything syncs.
func TestPersistent401SyncAll(t *testing.T) {
	e := newEnv(t, envConfig{backfillDays: 2, resolutions: []string{"hour"}})
	e.mustRun(jobs.JobDevices, jobs.StatusOK) // devices known, so history has streams
	e.sim.Faults().Add(simulator.Fault{Endpoint: "api", Kind: simulator.KindUnauthorizedOnce, Count: 1 << 30})

	syncAll := func() (tokenCalls int) {
		for _, job := range []string{jobs.JobHomes, jobs.JobDevices, jobs.JobHistory} {
			res := e.run(job)
			tokenCalls += countEndpoint(res.reqs, "token")
			if res.run.Status != jobs.StatusFailed || !errors.Is(res.err, model.ErrTokenRefused) {
				t.Errorf("%s run: status %q err %v; want failed with ErrTokenRefused", job, res.run.Status, res.err)
			}
			if !strings.Contains(res.run.Error, "Tibber refuses a freshly refreshed token") {
				t.Errorf("%s run error %q does not say Tibber refuses the fresh token", job, res.run.Error)
			}
		}
		return tokenCalls
	}
	n := syncAll()
	t.Logf("sync all with a persistent 401: %d token calls", n)
	if n > 2 || n < 1 {
		t.Errorf("sync all with a persistent 401 made %d token calls, want 1 or 2", n)
	}
	e.clk.Advance(10 * time.Minute)
	if n := syncAll(); n != 0 {
		t.Errorf("the next sync all made %d token calls, want 0 until a call succeeds", n)
	}
	// An hour later the access token expires: its normal refresh is the
	// only token call (at most one per run, never one per 401).
	e.clk.Advance(2 * time.Hour)
	if n := syncAll(); n > 1 {
		t.Errorf("sync all after expiry made %d token calls, want at most 1", n)
	}

	e.sim.Faults().Clear()
	e.clk.Advance(time.Minute)
	e.mustRun(jobs.JobHomes, jobs.StatusOK)
	e.mustRun(jobs.JobDevices, jobs.StatusOK)
	e.mustRun(jobs.JobHistory, jobs.StatusOK)
	st, err := e.app.Auth().Status(t.Context())
	if err != nil || st.State != model.AuthOK {
		t.Errorf("auth state after recovery: %+v, %v", st, err)
	}
}
