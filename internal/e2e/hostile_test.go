package e2e

import (
	"strings"
	"testing"

	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/logging"
	"github.com/tibbersync/tibbersync/internal/simulator"
)

// TestHostileNamesStoredRawLoggedNeutral: an account whose device, home,
// brand and user names carry terminal escapes and a bidi override syncs
// normally; data.db keeps every name byte for byte, and the daemon's log
// (the coloured terminal format, the riskiest) never writes ESC ], ESC [2J
// or U+202E, even when a failing detail names the device.
func TestHostileNamesStoredRawLoggedNeutral(t *testing.T) {
	for _, format := range []string{logging.FormatTint, logging.FormatLogfmt, logging.FormatJSON} {
		t.Run(format, func(t *testing.T) {
			e := newEnv(t, envConfig{sim: simulator.Options{HostileNames: true}, logFormat: format, backfillDays: 2, resolutions: []string{"hour"}})
			// One device's detail fails: the warning names the device.
			e.sim.Faults().Add(simulator.Fault{Endpoint: "device", Kind: simulator.KindStatus, Status: 404, Count: 1})
			e.mustRun(jobs.JobDevices, jobs.StatusPartial)
			e.mustRun(jobs.JobDevices, jobs.StatusOK)
			e.mustRun(jobs.JobHistory, jobs.StatusOK)
			stored := 0
			for _, d := range uniqueDevices(e.sim.Account()) {
				var name, brand, model string
				if err := e.ro.QueryRow(`SELECT name, brand, model FROM devices WHERE id = ?`, d.Dev.ID).Scan(&name, &brand, &model); err != nil {
					t.Fatal(err)
				}
				if name != d.Dev.Name || brand != d.Dev.Brand || model != d.Dev.Model || !strings.Contains(name, simulator.HostileText) {
					t.Errorf("device %s stored as %q/%q/%q, want exactly %q/%q/%q", d.Dev.ID, name, brand, model, d.Dev.Name, d.Dev.Brand, d.Dev.Model)
				}
				stored++
			}
			if stored == 0 {
				t.Fatal("no device")
			}
			log := e.logs.tail(8 << 20)
			if !strings.Contains(log, "gpj.exe") {
				t.Fatalf("no log line names a device; the test checks nothing:\n%s", log)
			}
			for _, bad := range []string{"\x1b]", "\x1b[2J", "\u202e", "\u009b", "\x07"} {
				if strings.Contains(log, bad) {
					t.Errorf("%s log contains raw %q", format, bad)
				}
			}
		})
	}
}
