# tibbersync — see README.md. `make demo` and `make test` are all a fresh
# machine needs.
MODULE  := github.com/tibbersync/tibbersync
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null)
LDFLAGS := -s -w -X $(MODULE)/internal/version.Version=$(VERSION) -X $(MODULE)/internal/version.Commit=$(COMMIT)
GO      ?= go
GOBIN   := $(shell $(GO) env GOPATH)/bin
STATICCHECK_VERSION := v0.8.2
DIST    := dist

.PHONY: all build test stress-test unit lint staticcheck run demo bench cross package docker version clean ci

all: build

## build: the binary for this machine, version stamped through ldflags
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(DIST)/tibbersync ./cmd/tibbersync

## test: everything: lint (vet, gofmt, staticcheck) and all tests under -race
test: lint unit

## stress-test: the flake proof: the two formerly flaky tests -count=20, then `make test` 5 times,
## all while 3 CPU-bound processes run (RUNS, COUNT, LOAD override; see docs/ci.md)
stress-test:
	RUNS=$(or $(RUNS),5) COUNT=$(or $(COUNT),20) LOAD=$(or $(LOAD),3) MAKE="$(MAKE)" .ci/stress.sh

## unit: all Go tests with the race detector (systemd checks included where systemd-analyze exists)
unit:
	$(GO) test -race -count=1 -timeout 20m ./...

## lint: go vet, gofmt, staticcheck
lint: staticcheck
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GOBIN)/staticcheck ./...

staticcheck:
	@test -x $(GOBIN)/staticcheck || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

## demo: the simulator and the daemon wired together, a few sync cycles, then a summary
demo: build
	$(DIST)/tibbersync demo

## run: the daemon against the built-in simulator, web UI on http://127.0.0.1:8765 until Ctrl-C
run: build
	$(DIST)/tibbersync demo --serve

## bench: one table of performance and memory figures with their targets (see docs/benchmarks.md);
## the package micro-benchmarks still run with: go test -run '^$$' -bench . ./internal/store/
bench: build
	CGO_ENABLED=0 $(GO) build -trimpath -o $(DIST)/tibbersync-bench ./cmd/tibbersync-bench
	$(DIST)/tibbersync-bench -binary $(DIST)/tibbersync

## cross: static, stripped binaries for linux amd64, arm64 and armhf (32-bit
## Raspberry Pi OS: GOARM=6, which runs on every Pi from the Zero/1 up), with checksums
CROSS_ARCHS := amd64 arm64 armhf
cross:
	mkdir -p $(DIST)
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(DIST)/tibbersync-linux-amd64 ./cmd/tibbersync
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(DIST)/tibbersync-linux-arm64 ./cmd/tibbersync
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=6 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(DIST)/tibbersync-linux-armhf ./cmd/tibbersync
	cd $(DIST) && sha256sum $(addprefix tibbersync-linux-,$(CROSS_ARCHS)) > SHA256SUMS

## package: dist/tibbersync_<version>_{amd64,arm64,armhf}.deb from the cross
## binaries, with nfpm (a Go tool pinned in go.mod: no download at build time)
PKG_VERSION ?= $(shell sh packaging/debversion.sh "$(VERSION)" "$$(git log -1 --format=%cd --date=format:%Y%m%d 2>/dev/null)")
PKG_STAGE   := $(DIST)/pkg-stage
package: cross
	rm -rf $(PKG_STAGE) && mkdir -p $(PKG_STAGE)
	sed 's|^ExecStart=/usr/local/bin/tibbersync |ExecStart=/usr/bin/tibbersync |; s|^# Install: see README.md.*|# Installed by the tibbersync Debian package.|' systemd/tibbersync.service > $(PKG_STAGE)/tibbersync.service
	grep -q '^ExecStart=/usr/bin/tibbersync run -c /etc/tibbersync/config.toml$$' $(PKG_STAGE)/tibbersync.service
	sh packaging/changelog.sh "$(PKG_VERSION)" | gzip -9n > $(PKG_STAGE)/changelog.gz
	{ cat packaging/copyright; echo; echo "Statically linked Go modules (go version -m):"; \
	  $(GO) version -m $(DIST)/tibbersync-linux-amd64 | awk '$$1=="dep"{print " " $$2 " " $$3}'; } > $(PKG_STAGE)/copyright
	set -e; for arch in $(CROSS_ARCHS); do \
	  rm -f $(DIST)/tibbersync_$(PKG_VERSION)_$$arch.deb; \
	  PKG_ARCH=$$arch PKG_VERSION=$(PKG_VERSION) PKG_BINARY=$(DIST)/tibbersync-linux-$$arch PKG_STAGE=$(PKG_STAGE) \
	    $(GO) tool nfpm package --packager deb --config packaging/nfpm.yaml --target $(DIST)/tibbersync_$(PKG_VERSION)_$$arch.deb; \
	done

## docker: the distroless image (needs a Docker engine)
docker:
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t tibbersync:$(VERSION) .

## version: print the version that build would stamp
version:
	@echo $(VERSION)

clean:
	rm -rf $(DIST)
