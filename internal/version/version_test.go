package version_test

import (
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/tibbersync/tibbersync/internal/version"
)

var uaPattern = regexp.MustCompile(`^tibbersync/[A-Za-z0-9.-]+ \([A-Za-z0-9.-]+; [A-Za-z0-9.-]+\)$`)

// setVersion overrides the -ldflags variables for one test.
func setVersion(t *testing.T, v, commit string) {
	t.Helper()
	oldV, oldC := version.Version, version.Commit
	version.Version, version.Commit = v, commit
	t.Cleanup(func() { version.Version, version.Commit = oldV, oldC })
}

func TestUserAgent(t *testing.T) {
	cases := map[string]string{
		"1.2.3":                              "1.2.3",
		"v1.2.3":                             "v1.2.3",
		"v1.2.3+dirty":                       "v1.2.3-dirty",
		"dev":                                "dev",
		"(devel)":                            "dev",
		"":                                   "dev",
		"1.0 (beta)\r\nX-Evil:":              "1.0-beta-X-Evil",
		"v0.0.0-20250101120000-abcdef123456": "v0.0.0-20250101120000-abcdef123456",
		"+++":                                "dev",
		"ünïcode-1":                          "n-code-1",
	}
	for in, want := range cases {
		setVersion(t, in, "")
		ua := version.UserAgent()
		if !uaPattern.MatchString(ua) {
			t.Errorf("Version=%q: UserAgent %q does not match %s", in, ua, uaPattern)
		}
		wantUA := "tibbersync/" + want + " (" + runtime.GOOS + "; " + runtime.GOARCH + ")"
		if ua != wantUA {
			t.Errorf("Version=%q: UserAgent = %q, want %q", in, ua, wantUA)
		}
	}
}

func TestStringAndGet(t *testing.T) {
	setVersion(t, "1.4.0", "0123abcd")
	info := version.Get()
	if info.Version != "1.4.0" || info.Commit != "0123abcd" {
		t.Errorf("Get() = %+v", info)
	}
	s := version.String()
	for _, want := range []string{"tibbersync 1.4.0", "commit 0123abcd", runtime.Version(), runtime.GOOS + "/" + runtime.GOARCH} {
		if !strings.Contains(s, want) {
			t.Errorf("String() = %q lacks %q", s, want)
		}
	}
	if strings.Contains(s, "\n") {
		t.Errorf("String() = %q is not one line", s)
	}
}

func TestDevFallback(t *testing.T) {
	setVersion(t, "dev", "")
	info := version.Get()
	// Under `go test` the main module version is "(devel)" or empty, which
	// must resolve to "dev", never to an empty or parenthesised string.
	if info.Version == "" || strings.ContainsAny(info.Version, "() ") {
		t.Errorf("Version = %q", info.Version)
	}
	if !strings.HasPrefix(version.String(), "tibbersync "+info.Version) {
		t.Errorf("String() = %q", version.String())
	}
}
