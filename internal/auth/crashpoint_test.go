package auth

import (
	"os"
	"syscall"
)

// CrashpointEnv names the environment variable that makes a test binary of
// this package SIGKILL itself at a point of the refresh, for crash tests
// (R7). It is read once, by NewSource. The release binary has no crash
// points: this file is compiled into test binaries only.
const CrashpointEnv = "TIBBERSYNC_CRASHPOINT"

func init() {
	testCrash.at = os.Getenv(CrashpointEnv)
	testCrash.kill = func() {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL cannot be caught; wait for it to land
	}
}
