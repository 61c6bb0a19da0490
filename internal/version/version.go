// Package version reports the build's version and commit, for the
// `tibbersync version` command, logs and the HTTP User-Agent.
//
// Release builds set both with -ldflags:
//
//	-X github.com/tibbersync/tibbersync/internal/version.Version=1.2.3
//	-X github.com/tibbersync/tibbersync/internal/version.Commit=abc1234
//
// Otherwise the values come from the Go build info: the main module's
// version (set by `go install module@version`) and vcs.revision (set by
// `go build` in a git checkout).
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Version is the release version, set with -ldflags -X. "dev" means unset.
var Version = "dev"

// Commit is the VCS revision, set with -ldflags -X. "" means unset.
var Commit = ""

// Info is the resolved build information.
type Info struct {
	// Version is the release or module version, or "dev".
	Version string
	// Commit is the VCS revision ("" when unknown).
	Commit string
	// Modified reports uncommitted changes at build time (from build info).
	Modified bool
	// Time is the commit time from build info, RFC 3339 ("" when unknown).
	Time string
	// GoVersion is the Go toolchain that built the binary.
	GoVersion string
	// OS and Arch are the target platform.
	OS, Arch string
}

// Get resolves the build information: the -ldflags values first, then
// debug.ReadBuildInfo.
func Get() Info {
	info := Info{
		Version:   Version,
		Commit:    Commit,
		GoVersion: runtime.Version(),
		OS:        runtime.GOOS,
		Arch:      runtime.GOARCH,
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return normalize(info)
	}
	if unset(info.Version) && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		info.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if info.Commit == "" {
				info.Commit = s.Value
			}
		case "vcs.modified":
			info.Modified = s.Value == "true"
		case "vcs.time":
			info.Time = s.Value
		}
	}
	if bi.GoVersion != "" {
		info.GoVersion = bi.GoVersion
	}
	return normalize(info)
}

func unset(v string) bool {
	return v == "" || v == "dev" || v == "(devel)"
}

func normalize(info Info) Info {
	if unset(info.Version) {
		info.Version = "dev"
	}
	return info
}

// String is the one-line text of `tibbersync version`, e.g.
// "tibbersync 1.2.3 (commit abc1234, 2025-01-02T03:04:05Z) go1.26.0 linux/amd64".
func String() string {
	info := Get()
	var b strings.Builder
	fmt.Fprintf(&b, "tibbersync %s", info.Version)
	var details []string
	if info.Commit != "" {
		c := "commit " + info.Commit
		if info.Modified {
			c += " (modified)"
		}
		details = append(details, c)
	}
	if info.Time != "" {
		details = append(details, info.Time)
	}
	if len(details) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(details, ", "))
	}
	fmt.Fprintf(&b, " %s %s/%s", info.GoVersion, info.OS, info.Arch)
	return b.String()
}

// UserAgent returns "tibbersync/<version> (<GOOS>; <GOARCH>)" for every HTTP
// request. Each token holds only letters, digits, dots and dashes, so an
// odd -ldflags value can never break the header.
func UserAgent() string {
	info := Get()
	return fmt.Sprintf("tibbersync/%s (%s; %s)", token(info.Version), token(info.OS), token(info.Arch))
}

// token keeps letters, digits, dots and dashes; every other run of
// characters becomes one dash ("v1.2.3+dirty" → "v1.2.3-dirty").
func token(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range s {
		ok := r == '.' || r == '-' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		if !ok {
			if !dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = true
			continue
		}
		b.WriteRune(r)
		dash = false
	}
	t := strings.Trim(b.String(), "-.")
	if t == "" {
		return "dev"
	}
	return t
}
