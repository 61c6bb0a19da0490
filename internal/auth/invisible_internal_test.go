package auth

import (
	"strings"
	"testing"
)

// TestScrubZeroWidthSplitSecret: an error_description or error code that
// echoes a token split by zero-width characters is still redacted.
func TestScrubZeroWidthSplitSecret(t *testing.T) {
	secret := "rt-0123456789abcdef"
	got := scrub("refresh token r\u200bt-0123\u2060456789ab\u00adcdef is invalid", secret)
	if strings.Contains(got, "456789") || !strings.Contains(got, "REDACTED") {
		t.Errorf("scrub = %q", got)
	}
	if c := cleanCode("rt-0123\u200b456789abcdef", secret); c != "invalid_error_code" {
		t.Errorf("cleanCode = %q", c)
	}
}
