package auth

// The crash points: the places in a refresh where a crash test (R7) kills
// the process.
const (
	// CrashBeforeRequest: the in-flight marker is committed, nothing sent.
	CrashBeforeRequest = "before-token-request"
	// CrashAfterResponse: the response was received but not committed.
	CrashAfterResponse = "after-token-response"
	// CrashAfterCommit: the new token is committed, not yet used.
	CrashAfterCommit = "after-token-commit"
)

// testCrash is zero in the release binary: only this package's test files
// set it (crashpoint_test.go, from $TIBBERSYNC_CRASHPOINT), so that a test
// binary can SIGKILL itself at a crash point. NewSource reads at.
var testCrash struct {
	at   string // the configured crash point
	kill func() // kills the process; never returns
}

// crashpoint kills the process if at is the configured point, in a test
// binary that configured one; elsewhere it does nothing.
func crashpoint(configured, at string) {
	if configured != "" && configured == at && testCrash.kill != nil {
		testCrash.kill()
	}
}
