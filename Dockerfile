# syntax=docker/dockerfile:1
# Multi-stage build of linstor-affinity-sidecar: a static binary on a minimal,
# non-root runtime image. The build command is the one `make build` runs.
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

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/linstor-affinity-sidecar /linstor-affinity-sidecar
USER 65532:65532
ENTRYPOINT ["/linstor-affinity-sidecar"]
