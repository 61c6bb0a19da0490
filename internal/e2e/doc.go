// Package e2e holds the end-to-end tests of tibbersync's sync and history
// jobs against the in-process Tibber simulator.
//
// The tests wire the real components exactly as cmd/tibbersync does
// (store.Open, tokenstore.Open, auth.NewFlow and auth.NewSource, tibber.New
// and jobs.Syncer), authorize through the simulator's OAuth flow, run the
// jobs on a fake clock shared with the simulator, and compare what data.db
// holds with the simulator's ground truth (Account, DeviceState,
// HistorySeries, Stats). They cover issue 5 (inventory and current values:
// stored rows equal what was served, unchanged cycles write nothing, faults
// and bad input leave a consistent database) and issue 6 (history: an exact
// 400-day backfill across DST changes, resume after a kill, corrections in
// the lookback window, bad pages, flat memory).
//
// The package has no non-test code. Heavy harness tests append one summary
// line to the file named by TIBBERSYNC_SUMMARY_FILE when it is set.
package e2e
