# syntax=docker/dockerfile:1
# Build: make docker   (or: docker build --build-arg VERSION=$(git describe --always) -t tibbersync .)
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=
ARG TARGETOS=linux
ARG TARGETARCH=amd64
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath \
      -ldflags "-s -w -X github.com/tibbersync/tibbersync/internal/version.Version=${VERSION} -X github.com/tibbersync/tibbersync/internal/version.Commit=${COMMIT}" \
      -o /out/tibbersync ./cmd/tibbersync \
 && mkdir -p /out/state && chown 65532:65532 /out/state && chmod 0750 /out/state

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="tibbersync" \
      org.opencontainers.image.description="Keeps a local SQLite copy of your Tibber Data API data: homes, devices and their history" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/tibbersync/tibbersync" \
      org.opencontainers.image.licenses="MIT"
COPY --from=build /out/tibbersync /tibbersync
COPY --from=build --chown=65532:65532 /out/state /var/lib/tibbersync
# Inside the container the web UI must listen on all interfaces so that the
# published port reaches it; publish it on the host's loopback only
# (-p 127.0.0.1:8765:8765). allow_remote then requires the one-time pairing
# code from the log before /setup works.
ENV TIBBERSYNC_STORAGE_DIR=/var/lib/tibbersync \
    TIBBERSYNC_WEB_LISTEN=0.0.0.0:8765 \
    TIBBERSYNC_WEB_ALLOW_REMOTE=true \
    TIBBERSYNC_LOG_FORMAT=logfmt
VOLUME /var/lib/tibbersync
EXPOSE 8765
USER nonroot:nonroot
HEALTHCHECK --interval=60s --timeout=10s --start-period=30s CMD ["/tibbersync", "healthcheck"]
ENTRYPOINT ["/tibbersync"]
CMD ["run"]
