package jobs_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/tibbersync/tibbersync/internal/jobs"
	"github.com/tibbersync/tibbersync/internal/model"
)

func TestCountedStatus(t *testing.T) {
	for _, tc := range []struct {
		status string
		err    error
		want   string
	}{
		{jobs.StatusOK, nil, jobs.StatusOK},
		{jobs.StatusPartial, errors.New("one device failed"), jobs.StatusPartial},
		{jobs.StatusPartial, fmt.Errorf("run: %w", jobs.ErrStorm), jobs.StatusFailed},
		{jobs.StatusFailed, fmt.Errorf("run: %w", jobs.ErrStorm), jobs.StatusFailed},
		{jobs.StatusSkipped, nil, jobs.StatusSkipped},
		{jobs.StatusInterrupted, nil, jobs.StatusInterrupted},
	} {
		if got := jobs.CountedStatus(model.Run{Status: tc.status}, tc.err); got != tc.want {
			t.Errorf("CountedStatus(%s, %v) = %s, want %s", tc.status, tc.err, got, tc.want)
		}
	}
}
