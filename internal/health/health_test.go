package health_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/health"
	"github.com/tibbersync/tibbersync/internal/model"
)

var now = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func TestEvaluate(t *testing.T) {
	iv := map[string]time.Duration{"devices": 5 * time.Minute, "history": time.Hour}
	ok := model.AuthSummary{State: model.AuthOK}
	fresh := []model.JobSummary{{Job: "devices", LastSuccessAt: now.Add(-4 * time.Minute)}, {Job: "history", LastSuccessAt: now.Add(-time.Hour)}}
	for name, tc := range map[string]struct {
		s     model.Summary
		extra []health.Check
		code  int
		want  string
	}{
		"Healthy":         {model.Summary{Auth: ok, Jobs: fresh}, nil, health.CodeHealthy, ""},
		"NeverAuthorized": {model.Summary{}, nil, health.CodeSetupRequired, "auth: state unknown"},
		"Reauth": {model.Summary{Auth: model.AuthSummary{State: model.AuthReauthRequired, Reason: "invalid_grant"}, Jobs: fresh}, nil,
			health.CodeReauthRequired, "auth: state reauth_required (invalid_grant)"},
		"ConfigError": {model.Summary{Auth: model.AuthSummary{State: model.AuthConfigError}, Jobs: fresh}, nil, health.CodeConfigError, "auth"},
		// No grace period: right after setup, "no success yet" is unhealthy everywhere.
		"NoSuccessYetWhileRunning": {model.Summary{Auth: ok, Jobs: []model.JobSummary{fresh[0],
			{Job: "history", Running: true, RunningSince: now.Add(-3 * time.Minute), Progress: &model.RunProgress{StreamsDone: 2, StreamsTotal: 6}}}}, nil,
			health.CodeStale, "job history: no success yet; running since 3 min ago (2 of 6 streams)"},
		"Stale": {model.Summary{Auth: ok, Jobs: []model.JobSummary{{Job: "devices", LastSuccessAt: now.Add(-16 * time.Minute), LastError: "HTTP 503"}, fresh[1]}}, nil,
			health.CodeStale, "job devices: last success 16 min ago, limit 15 min (3× 5 min); last error: HTTP 503"},
		"SuccessInTheFuture": {model.Summary{Auth: ok, Jobs: []model.JobSummary{{Job: "devices", LastSuccessAt: now.Add(48 * time.Hour)}, fresh[1]}}, nil,
			health.CodeStale, "in the future"},
		"StorageBeforeJobs": {model.Summary{Auth: ok, Jobs: []model.JobSummary{{Job: "devices"}, fresh[1]}},
			[]health.Check{{Name: "storage", Detail: "disk full"}}, health.CodeError, "storage: disk full"},
		"AuthBeforeStorage": {model.Summary{Auth: model.AuthSummary{State: model.AuthReauthRequired}, Jobs: fresh},
			[]health.Check{{Name: "storage", Detail: "read-only", Code: 1}}, health.CodeReauthRequired, "storage: read-only"},
	} {
		t.Run(name, func(t *testing.T) {
			v := health.Evaluate(tc.s, iv, now, tc.extra...)
			if v.ExitCode != tc.code || v.Healthy != (tc.code == 0) {
				t.Fatalf("exit %d healthy %v, want %d; problems %q", v.ExitCode, v.Healthy, tc.code, v.Problems())
			}
			if tc.want != "" && !strings.Contains(strings.Join(v.Problems(), "\n"), tc.want) {
				t.Fatalf("problems %q lack %q", v.Problems(), tc.want)
			}
			if !v.Healthy {
				if c, bad := v.Failing(); !bad || c.Code != v.ExitCode {
					t.Fatalf("failing check %+v does not carry the exit code %d", c, v.ExitCode)
				}
			}
		})
	}
}
