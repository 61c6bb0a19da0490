// Package leakcheck holds the secret-leak canary tests (reliability.md R12).
//
// The tests wire the real components (token store, data store, auth flow and
// source, Data API client, syncer, scheduler, web server, metrics, notifier)
// against the simulator, push canary values (the tokens and codes the
// simulator issues, PKCE verifiers, states, a canary client secret) through
// setup, refreshes, error bodies that echo them, pasted redirect URLs and
// recovered panics, and then prove that none of them appears in any log line,
// stderr, data.db, /metrics, a page, a webhook or a returned error; and that
// tokens.db is the only file holding a refresh token. A second test does the
// same with the built tibbersync binary.
//
// The package has no non-test code beyond this comment.
package leakcheck
