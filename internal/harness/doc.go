// Package harness holds tibbersync's heavy reliability harnesses, which run
// the real write path (store, tokenstore, auth, tibber, jobs and the
// tibbersync binary) against the in-process simulator:
//
//   - the crash harness (reliability.md R15): a child process is SIGKILLed at
//     random points and data.db and tokens.db are checked after every kill;
//   - the token power-loss emulation (R16): a committed refresh is undone by
//     restoring a snapshot of the closed tokens.db;
//   - the fault soak (R27): 24 simulated hours of schedule under seeded
//     random faults, with a fake clock shared by every component;
//   - the invalid_grant restart loop (R9, issue 4): the daemon restarted ten
//     times against a revoked grant.
//
// The harnesses themselves are tests (see docs/ci.md); this file and
// summary.go are the package's only non-test code.
package harness
