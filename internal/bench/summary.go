package bench

import (
	"fmt"
	"os"
	"strings"
)

// SummaryEnv names the file that heavy harnesses append their one-line
// summary to (CI prints one line per harness).
const SummaryEnv = "TIBBERSYNC_SUMMARY_FILE"

// AppendSummary appends line (one line; inner newlines become "; ") to the
// file named by $TIBBERSYNC_SUMMARY_FILE. It does nothing when the variable
// is unset.
func AppendSummary(line string) error {
	path := os.Getenv(SummaryEnv)
	if path == "" {
		return nil
	}
	line = strings.ReplaceAll(strings.TrimSpace(line), "\n", "; ")
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("append summary: %w", err)
	}
	if _, err := f.WriteString(line + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("append summary: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("append summary: %w", err)
	}
	return nil
}
