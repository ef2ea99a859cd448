# syntax=docker/dockerfile:1
#
# dlite's container image: the static dlite binary on a distroless base, run as a non-root user.
#
#   docker build -t dlite \
#     --build-arg VERSION="$(git describe --tags --always --dirty)" \
#     --build-arg COMMIT="$(git rev-parse HEAD)" .
#
# (`make image` does the same.) The default base has no shell, so SHELL_SCRIPT_TASK cannot run in
# it: for scripts, build on an image that has the shell and tools they need, for example
# --build-arg RUNTIME_IMAGE=debian:bookworm-slim. The user is numeric so that Kubernetes can check
# runAsNonRoot on any base.
#
# There is no HEALTHCHECK: it would need a shell or an HTTP client inside the image. Probe the
# runner over HTTP instead: /healthz (alive) and /readyz (registered, heartbeats answered, not
# draining) on DLITE_HTTP_ADDR. DLITE_HTTP_ADDR defaults to 127.0.0.1:3000, which is not reachable
# from outside the container: set it to 0.0.0.0:3000 together with DLITE_HTTP_USERNAME and
# DLITE_HTTP_PASSWORD (see deploy/kubernetes/dlite.yaml).

ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/dlite ./cmd/dlite \
 && mkdir -p /out/state/spool

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/dlite /usr/local/bin/dlite
# The spool: results wait here until the manager accepts them. Mount a volume on /var/lib/dlite
# to keep them across container restarts.
COPY --from=build --chown=65532:65532 /out/state /var/lib/dlite
ENV DLITE_SPOOL_DIR=/var/lib/dlite/spool
USER 65532:65532
EXPOSE 3000
ENTRYPOINT ["/usr/local/bin/dlite", "run"]
