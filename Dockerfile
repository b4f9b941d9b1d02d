# syntax=docker/dockerfile:1

# The negotiate-sidecar image: a static binary on distroless, running as a non-root user.
#
#   docker build --build-arg VERSION=0.1.0 -t negotiate-sidecar:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 --build-arg VERSION=0.1.0 -t <registry>/negotiate-sidecar:0.1.0 --push .

ARG GO_VERSION=1.26.8

# The build runs on the builder's own platform and cross-compiles for the target one, which needs no emulation
# because the binary is pure Go.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src
# Modules first, so that this layer stays cached until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/negotiate-sidecar ./cmd/negotiate-sidecar

FROM gcr.io/distroless/static:nonroot
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="negotiate-sidecar" \
      org.opencontainers.image.description="Reverse proxy sidecar that verifies callers' JWTs and writes the verified user id into Azure SignalR negotiate tokens" \
      org.opencontainers.image.source="https://github.com/negotiate-sidecar/negotiate-sidecar" \
      org.opencontainers.image.url="https://github.com/negotiate-sidecar/negotiate-sidecar" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/negotiate-sidecar /negotiate-sidecar
USER 65532:65532
# The proxy (--listen) and /healthz, /readyz and /metrics (--admin-listen).
EXPOSE 8080 9090
ENTRYPOINT ["/negotiate-sidecar"]
