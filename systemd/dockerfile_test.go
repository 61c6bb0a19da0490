package systemd_test

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDockerfile checks the image recipe statically: this machine kind has
// no Docker engine, so `make docker` cannot run in CI.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	if n := len(regexp.MustCompile(`(?m)^FROM `).FindAllString(df, -1)); n < 2 {
		t.Errorf("want a multi-stage build, found %d FROM lines", n)
	}
	for _, want := range []string{
		"CGO_ENABLED=0",
		"FROM gcr.io/distroless/static-debian12:nonroot",
		"VOLUME /var/lib/tibbersync",
		`HEALTHCHECK`,
		`CMD ["/tibbersync", "healthcheck"]`,
		"EXPOSE 8765",
		"USER nonroot",
		"org.opencontainers.image.source",
		"org.opencontainers.image.version",
		"COPY go.mod go.sum ./",
		"go mod download",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if regexp.MustCompile(`(?mi)^\s*(ENV|ARG)\s.*(SECRET|TOKEN)`).MatchString(df) {
		t.Error("Dockerfile passes a secret through ENV/ARG")
	}
}
