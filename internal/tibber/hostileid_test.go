package tibber_test

import (
	"strings"
	"testing"

	"github.com/tibbersync/tibbersync/internal/tibber"
)

// TestHostileIDsSkipped: ids with C1 controls, bidi overrides, invisible
// characters or bytes that are not UTF-8 are skipped like those with C0
// controls (ids become URL segments and keys, shown in logs and pages);
// names with them are kept as Tibber sent them.
func TestHostileIDsSkipped(t *testing.T) {
	body := `{"homes":[
	  {"id":"ok-1","name":"Heat\u001b]0;x\u0007 \u202epump"},
	  {"id":"c1\u009b31m"},
	  {"id":"rlo\u202egpj.exe"},
	  {"id":"iso\u2066x\u2069"},
	  {"id":"zw\u200bsp"},
	  {"id":"lrm\u200e"},
	  {"id":"bad` + "\xff" + `utf8"}
	]}`
	homes, err := tibber.DecodeHomes(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(homes) != 1 || homes[0].ID != "ok-1" {
		t.Fatalf("homes = %+v, want only ok-1", homes)
	}
	if homes[0].Name != "Heat\x1b]0;x\x07 \u202epump" {
		t.Errorf("name not kept as sent: %q", homes[0].Name)
	}
}
