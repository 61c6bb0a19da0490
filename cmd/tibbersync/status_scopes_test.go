package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/model"
)

// TestStatusPrintsMissingScopes: with unknown granted scopes (the token
// response named none) and a category Tibber refused with 403, `status`
// names the missing scope, and prints no "granted:" line claiming anything.
func TestStatusPrintsMissingScopes(t *testing.T) {
	now := time.Date(2026, 9, 14, 8, 0, 0, 0, time.UTC)
	scope := model.CategoryScopes[model.CategoryThermostat]
	s := model.Summary{
		Auth:       model.AuthSummary{State: model.AuthOK, Since: now, MissingScopes: []string{scope}},
		Categories: map[model.Category]string{model.CategoryThermostat: "not granted", model.CategoryEnergySystem: "granted"},
	}
	var b bytes.Buffer
	printStatus(&b, judge(s, nil, now), now)
	out := b.String()
	if !strings.Contains(out, "missing scopes: "+scope) {
		t.Errorf("status does not name the missing scope %s:\n%s", scope, out)
	}
	if strings.Contains(out, "\n  granted: ") {
		t.Errorf("status claims granted scopes although they are unknown:\n%s", out)
	}
}
