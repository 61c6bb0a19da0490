package simulator_test

import (
	"sync"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/simulator"
)

// TestConcurrentUse hammers every endpoint and accessor at once; run with
// -race it proves the simulator's locking.
func TestConcurrentUse(t *testing.T) {
	e := newEnv(t, simulator.Options{PageSize: 24, ReuseGrace: time.Second})
	h, bat := findDevice(t, e.sim, "battery")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, rt := e.login()
			for j := range 10 {
				switch (i + j) % 5 {
				case 0:
					e.get("/v1/homes", tok)
				case 1:
					e.get(devicePath(h.ID, bat.ID), tok)
				case 2:
					e.get(historyURL(h, bat, "quarterHour", "since", testStart.Add(-3*time.Hour)), tok)
				case 3:
					_, body := e.postToken(refreshForm(rt))
					if s, ok := body["refresh_token"].(string); ok {
						rt = s
					}
				case 4:
					e.sim.Faults().Add(simulator.Fault{Endpoint: "homes", Kind: simulator.KindLatency, Delay: time.Millisecond, Count: 1})
					_ = e.sim.Stats()
					_ = e.sim.Events()
					_ = e.sim.CurrentRefreshToken()
					e.sim.SetHistoryCorrection(bat.ID, "hour", testStart.Truncate(time.Hour).Add(-time.Hour), "energyFlow.gridImport", float64(j))
				}
			}
		}()
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(30 * time.Second):
		t.Fatal("concurrent use deadlocked")
	}
	s := e.sim.Stats()
	if s.TokensIssued < 8 || s.Requests["history"] == 0 {
		t.Fatalf("stats %+v", s)
	}
}
