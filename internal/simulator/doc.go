// Package simulator is a local fake of Tibber: the OAuth2/OIDC authorization
// server at thewall.tibber.com and the Data API at data-api.tibber.com, served
// by one http.Handler on the same paths (/connect/*, /.well-known/*, /v1/*).
//
// It follows docs/tibber-data-api.md: where Tibber's behaviour is known it
// imitates it, and where it is not, it picks the reading that is hardest on a
// client (§11 of that document), with a switch in Options for the other
// reading. Every test of the project, `tibbersync simulate` and
// `tibbersync demo` run against it.
//
// The simulator imports nothing from the project and has its own wire types,
// so a decoding bug in the client cannot hide behind a shared struct.
//
// Determinism: device state and history are pure functions of
// (Options.Seed, device, time). Device state is quantised to 15-minute steps
// (values change at most once per quarter hour; periodic energyFlow totals
// additionally turn null or vanish during Options.BoundaryGap after each
// hour and day boundary), so two polls inside one quarter hour see the same
// state. History values are pure functions of (seed, device, resolution,
// period) unless SetHistoryCorrection changed them. Tokens, codes and trace
// ids come from a random source seeded with Options.Seed, so a run with the
// same request sequence issues the same values.
//
// Scripted faults (Faults) and the counters and event log (Stats, Events)
// make failure paths testable. Ground-truth accessors (Account, DeviceState,
// HistorySeries) tell tests what a correct client must have stored.
package simulator
