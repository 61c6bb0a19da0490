// Package cisummary lets the heavy test harnesses (crash, soak, e2e, leak
// canary, browser, bench) report one plain line each to the file named by
// $TIBBERSYNC_SUMMARY_FILE, which .ci/run prints at the end of a CI run.
package cisummary

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Env names the summary file's environment variable.
const Env = "TIBBERSYNC_SUMMARY_FILE"

// Append appends line, newline-terminated, to the file named by $Env. It
// does nothing when the variable is unset. Each harness contributes exactly
// one line: embedded line breaks become "; ".
func Append(line string) error {
	path := os.Getenv(Env)
	if path == "" {
		return nil
	}
	line = strings.TrimSpace(line)
	line = strings.NewReplacer("\r\n", "; ", "\n", "; ", "\r", "; ").Replace(line)
	if line == "" {
		return errors.New("append summary: empty line")
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("append summary: %w", err)
	}
	// One write of the whole line: O_APPEND keeps concurrent writers' lines whole.
	_, werr := f.Write([]byte(line + "\n"))
	cerr := f.Close()
	if werr != nil {
		return fmt.Errorf("append summary: %w", werr)
	}
	if cerr != nil {
		return fmt.Errorf("append summary: %w", cerr)
	}
	return nil
}
