package simulator

import (
	"regexp"
	"strings"
)

// userAgentRE is §8.1's format: "<App>/<Version> [<Library>/<Version>]...
// [(platform hints)]". Names use letters, digits and dashes; versions also
// allow dots, plus signs and underscores (semver build metadata).
var userAgentRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9][A-Za-z0-9.+_-]*( [A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9][A-Za-z0-9.+_-]*)*( \([^()]*\))?$`)

// ValidUserAgent reports whether ua follows Tibber's required format (§8.1).
// Go's default "Go-http-client/…" is refused: it names a library, not the
// app, which is exactly what the rule is about.
func ValidUserAgent(ua string) bool {
	if strings.HasPrefix(ua, "Go-http-client/") {
		return false
	}
	return userAgentRE.MatchString(ua)
}
