# linstor-affinity-sidecar
#
#   make demo    run the sidecar against a local control plane and watch it heal
#   make test    lint, unit tests (-race) and end-to-end tests on the local test bed
#   make lint    gofmt, go vet, staticcheck
#   make bench   benchmarks (not part of make test)
#   make test-faults  the fault suite with its full counts (docs/reliability.md)
#   make release-check  everything a release needs: lint, chart lint, version
#                consistency, alert rules, and the image (target image)
#
# Peer binaries (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubelet, linstor-csi, csi-provisioner, staticcheck: hack/build-tools.sh; the
# test node's containerd and runc: hack/install-node-deps.sh; helm and
# kustomize: hack/build-deploy-tools.sh) are built from the Go module proxy into
# bin/ and cached there.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

# The version is named in one place, the file VERSION: the binary's
# --version, the image tag, the chart's appVersion and the image tags in
# patches/ (make release-check, and test/deploy in make test, check the rest
# agree with it). The commit is stamped beside it.
VERSION ?= $(shell cat VERSION)
COMMIT ?= $(shell git describe --always --dirty 2>/dev/null)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
GO ?= go
BIN := $(CURDIR)/bin
IMAGE ?= linstor-affinity-sidecar:$(VERSION)
# End-to-end tests run one package at a time: each starts its own control plane.
E2E_FLAGS ?= -count=1 -timeout=40m -p=1
UNIT_FLAGS ?= -race -count=1 -short -timeout=15m

.PHONY: all build tools tools-e2e tools-deploy tools-bench lint test unit e2e demo bench bench-go test-faults image image-docker demo-pod clean release-check

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/linstor-affinity-sidecar ./cmd/linstor-affinity-sidecar

tools:
	hack/build-tools.sh
	hack/build-deploy-tools.sh

tools-deploy:
	hack/build-deploy-tools.sh

tools-e2e:
	hack/build-tools.sh linstor-csi etcd kube external-provisioner
	hack/install-node-deps.sh

lint:
	hack/build-tools.sh staticcheck
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(BIN)/staticcheck ./...

unit:
	$(GO) test $(UNIT_FLAGS) ./...

e2e: tools-e2e tools-deploy build
	$(GO) test $(E2E_FLAGS) ./test/...

test: lint unit e2e

demo: tools-e2e build
	$(GO) run ./test/demo

# The heal in the real pod: the CSI controller Deployment with the sidecar
# patched in, on a kubelet node (test/pod); prints the sidecar's own log lines
# read through the API server (kubectl logs -c linstor-affinity-sidecar).
demo-pod: tools-e2e
	$(GO) test -count=1 -v -timeout=20m -run 'TestCSIControllerPod/(SecurityContext|Logs|Repairs)' ./test/pod/

# The test-bed benchmark (N = 1,000, 10,000 and 50,000 PVs; under an hour on 2
# cores, see bench-results/README.md), which first runs the Go benchmarks of the
# packages under sidecar/ and rewrites bench-results/REPORT.md,
# bench-results/results.json and bench-results/pod-scheduled.png (the bench's
# code is test/bench). BENCH_FLAGS are passed to it (go run ./test/bench -h),
# e.g. BENCH_FLAGS=-before=false leaves out the "before: 3 s polling" row.
BENCH_FLAGS ?=
bench: tools-bench
	$(GO) run ./test/bench $(BENCH_FLAGS)

bench-go:
	$(GO) test -run=^$$ -bench=. -benchmem ./sidecar/...

tools-bench:
	hack/build-tools.sh etcd kube

# The fault suite with its full counts (about 20 minutes on 2 cores; its fast
# subset runs in make e2e). FAULTS_RACE=1 builds the sidecar under test with
# the race detector. One case: make test-faults FAULTS_RUN=TestLinstorFaults/timeout
FAULTS_RUN ?= .
FAULTS_RACE ?=
test-faults: tools-e2e
	FAULTS_FULL=1 FAULTS_RACE=$(FAULTS_RACE) $(GO) test -count=1 -timeout=120m -p=1 -v -run '$(FAULTS_RUN)' ./test/faults/

# What a release needs besides make test: lint, helm lint of the chart (also
# with the upstream chart's values), one version everywhere (VERSION, chart
# appVersion, image tags in patches/, CHANGELOG section, --version), the
# alerting rules through promtool, and the image for every architecture, which
# is target image's job.
release-check: lint tools-deploy build image
	$(GO) test -count=1 -run 'TestVersion|TestChartPassesHelmLint|TestChartTakesUpstreamValues|TestAlertRules' ./test/deploy/
	@test "$$($(BIN)/linstor-affinity-sidecar --version | cut -d' ' -f2)" = "$(VERSION)" || { echo "--version does not say $(VERSION)"; exit 1; }
	@echo "release-check: $(VERSION) OK"

# The image without a container engine: the sidecar built for linux/amd64 and
# linux/arm64 as `make build` builds it, packed by hack/ociimage into one OCI
# archive (load it with ctr images import, podman load or skopeo). Same files,
# user and entrypoint as the Dockerfile, which `make image-docker` builds.
IMAGE_ARCHIVE ?= $(BIN)/linstor-affinity-sidecar.oci.tar
image:
	for arch in amd64 arm64; do \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' \
	    -o $(BIN)/linux-$$arch/linstor-affinity-sidecar ./cmd/linstor-affinity-sidecar; \
	done
	$(GO) run ./hack/ociimage/cmd/build-image --ref $(IMAGE) --version $(VERSION) --out $(IMAGE_ARCHIVE) \
	  --binary linux/amd64=$(BIN)/linux-amd64/linstor-affinity-sidecar \
	  --binary linux/arm64=$(BIN)/linux-arm64/linstor-affinity-sidecar

image-docker:
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

clean:
	rm -rf $(BIN)/linstor-affinity-sidecar _tmp
