// Package browser holds the real-browser test of the setup flow (issue 8
// item 5): headless Chromium drives /setup → Connect → the simulator's
// consent page → Approve → the success page, against the real web server,
// authorization flow and token store, and saves a screenshot of every page
// under test-output/browser/ at the repository root.
//
// The package has no non-test code beyond this comment.
package browser
