package tibber_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/tibbersync/tibbersync/internal/tibber"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 9, 14, 8, 0, 0, 0, time.UTC)
	cases := map[string]struct {
		in   string
		want time.Duration
		ok   bool
	}{
		"Seconds":         {"3", 3 * time.Second, true},
		"Padded":          {"  120 ", 2 * time.Minute, true},
		"LeadingZeros":    {"007", 7 * time.Second, true},
		"Zero":            {"0", 0, true},
		"CappedSeconds":   {"7200", time.Hour, true},
		"HugeSeconds":     {"99999999999999999999999", time.Hour, true},
		"OverflowSeconds": {"9227000000", time.Hour, true},
		"IMFFixdate":      {now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		"RFC850":          {"Monday, 14-Sep-26 08:00:30 GMT", 30 * time.Second, true},
		"ANSIC":           {"Mon Sep 14 08:01:00 2026", time.Minute, true},
		"CappedDate":      {now.Add(48 * time.Hour).Format(http.TimeFormat), time.Hour, true},
		"PastDate":        {now.Add(-time.Minute).Format(http.TimeFormat), 0, false},
		"NowDate":         {now.Format(http.TimeFormat), 0, false},
		"Negative":        {"-5", 0, false},
		"Plus":            {"+5", 0, false},
		"Fraction":        {"1.5", 0, false},
		"Empty":           {"", 0, false},
		"Spaces":          {"   ", 0, false},
		"Garbage":         {"soon", 0, false},
		"Units":           {"5s", 0, false},
		"NonASCIIDigits":  {"٣", 0, false},
		"DateWithoutZone": {"2026-09-14T08:01:00Z", 0, false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, ok := tibber.ParseRetryAfter(tc.in, now)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("ParseRetryAfter(%q) = %s, %v, want %s, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}
