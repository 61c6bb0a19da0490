package harness

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// SummaryEnv names the file that heavy harness tests append their one-line
// summary to (CI prints one line per harness from it).
const SummaryEnv = "TIBBERSYNC_SUMMARY_FILE"

// AppendSummary appends line, newline-terminated, to the file named by
// $TIBBERSYNC_SUMMARY_FILE. It does nothing when the variable is unset. The
// line must be a single line: embedded newlines are replaced by spaces so
// that each harness contributes exactly one line.
func AppendSummary(line string) error {
	path := os.Getenv(SummaryEnv)
	if path == "" {
		return nil
	}
	line = strings.TrimSpace(strings.NewReplacer("\r", " ", "\n", " ").Replace(line))
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
