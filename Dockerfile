# syntax=docker/dockerfile:1
# Multi-stage build of linstor-affinity-sidecar: one static binary in an
# otherwise empty image. The build command is the one `make build` runs;
# `make image` makes the same image without Docker (hack/ociimage: same file,
# user and entrypoint; test/deploy checks that they agree).
FROM golang:1.26 AS build
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd/ cmd/
COPY csiprobe/ csiprobe/
COPY sidecar/ sidecar/
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
    -o /out/linstor-affinity-sidecar ./cmd/linstor-affinity-sidecar

FROM scratch
COPY --from=build /out/linstor-affinity-sidecar /linstor-affinity-sidecar
# Root, like the kubernetes-csi sidecars in the same pod: LINSTOR CSI (root)
# creates its socket srwxr-xr-x root root, and connecting to a unix socket
# needs write permission on it. The deployments drop every capability and
# mount the root filesystem read-only (README "Security context").
USER 0:0
ENTRYPOINT ["/linstor-affinity-sidecar"]
