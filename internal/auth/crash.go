package auth

import (
	"os"
	"syscall"
)

// CrashpointEnv names the environment variable that makes the process
// SIGKILL itself at a point of the refresh, for crash tests (R7). It is
// read once, by NewSource.
const CrashpointEnv = "TIBBERSYNC_CRASHPOINT"

// The crash points.
const (
	// CrashBeforeRequest: the in-flight marker is committed, nothing sent.
	CrashBeforeRequest = "before-token-request"
	// CrashAfterResponse: the response was received but not committed.
	CrashAfterResponse = "after-token-response"
	// CrashAfterCommit: the new token is committed, not yet used.
	CrashAfterCommit = "after-token-commit"
)

// crashpoint kills the process with SIGKILL if at is the configured point.
func crashpoint(configured, at string) {
	if configured == "" || configured != at {
		return
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // SIGKILL cannot be caught; wait for it to land
}
