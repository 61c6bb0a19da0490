// Package testutil holds small helpers shared by the project's tests. It is
// imported only from _test.go files.
package testutil

import (
	"bytes"
	"strings"
	"sync"
)

// SyncBuffer is a bytes.Buffer that is safe for concurrent writes, for
// capturing the logs of a component whose goroutines write while a test
// reads.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Count returns how often substr occurs in what was written.
func (s *SyncBuffer) Count(substr string) int {
	return strings.Count(s.String(), substr)
}

// Lines returns how many lines of what was written contain substr.
func (s *SyncBuffer) Lines(substr string) int {
	n := 0
	for _, line := range strings.Split(s.String(), "\n") {
		if strings.Contains(line, substr) {
			n++
		}
	}
	return n
}
