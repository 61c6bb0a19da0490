package model

import "time"

// StorageHealth is what the status surfaces (/readyz, the status page,
// `tibbersync status`) show about the state directory and its databases.
type StorageHealth struct {
	// Checked is when the checks ran (zero: not yet).
	Checked time.Time `json:"checked"`
	// Dir is the state directory.
	Dir string `json:"dir"`
	// FreeBytes is the free space available to tibbersync there.
	FreeBytes uint64 `json:"free_bytes"`
	// Problems says what is wrong and what to do; empty when healthy.
	Problems []string `json:"problems,omitempty"`
	// Notes say what could not be checked (not a problem), e.g. a write
	// probe skipped for a user who may not write there.
	Notes []string `json:"notes,omitempty"`
}

// OK reports whether no problem was found.
func (h StorageHealth) OK() bool { return len(h.Problems) == 0 }
