#!/usr/bin/env bash
# Builds the deployment tools the tests of charts/ and patches/ run: helm,
# kustomize and promtool (for the alerting rules), from the Go module proxy
# into <repo>/bin.
#
# Each tool is pinned by a wrapper module, hack/tools/<tool>/go.mod and go.sum,
# that names it with a `tool` directive. bin/.stamp-<tool> records what the
# binary was built from (module version, a hash of the wrapper files and the
# link flags, the Go version); a tool whose stamp matches and whose binary is
# present is not rebuilt.
#
# Usage: hack/build-deploy-tools.sh [helm] [kustomize] [promtool]   (no argument: all)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${ROOT}/bin"
LOGS="${BIN}/.logs"

# Build inside the wrapper modules only, never through a go.work, and let the
# wrapper's go.sum decide (a missing sum fails the build instead of editing it).
export GOWORK=off
export GOFLAGS="-mod=readonly -buildvcs=false"

KNOWN="helm kustomize promtool"

fail() {
	echo "build-deploy-tools: $*" >&2
	exit 1
}

# module_of prints the module whose version a tool reports.
module_of() {
	case "$1" in
	helm) echo helm.sh/helm/v3 ;;
	kustomize) echo sigs.k8s.io/kustomize/kustomize/v5 ;;
	promtool) echo github.com/prometheus/prometheus ;;
	*) fail "unknown tool '$1' (known: ${KNOWN})" ;;
	esac
}

# main_package_of prints the package that builds the tool's binary.
main_package_of() {
	case "$1" in
	helm) echo helm.sh/helm/v3/cmd/helm ;;
	kustomize) echo sigs.k8s.io/kustomize/kustomize/v5 ;;
	promtool) echo github.com/prometheus/prometheus/cmd/promtool ;;
	esac
}

# tags_of prints the build tags of a tool. promtool leaves out every service
# discovery plugin (Prometheus' own remove_all_sd tag): checking and testing
# rules needs none, and they are most of its dependencies.
tags_of() {
	case "$1" in
	promtool) echo remove_all_sd ;;
	esac
}

# link_flags_of prints the -X flags with which the upstream releases stamp the
# binary: the version, so `helm version` and `kustomize version` tell the
# truth, and for helm the Kubernetes version of its client-go, which
# `helm template` and `helm lint` assume when no cluster is asked (a plain
# build would assume 1.20 and fail charts that need newer APIs).
link_flags_of() {
	local tool="$1" version="$2" kube_minor pkg
	case "${tool}" in
	helm)
		kube_minor="$(cd "${ROOT}/hack/tools/helm" && go list -m -f '{{.Version}}' k8s.io/client-go)"
		kube_minor="${kube_minor#v0.}"
		kube_minor="${kube_minor%%.*}"
		printf -- '-X helm.sh/helm/v3/internal/version.version=%s ' "${version}"
		printf -- '-X helm.sh/helm/v3/internal/version.gitTreeState=clean '
		for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
			printf -- '-X %s.k8sVersionMajor=1 -X %s.k8sVersionMinor=%s ' "${pkg}" "${pkg}" "${kube_minor}"
		done
		echo
		;;
	kustomize)
		echo "-X sigs.k8s.io/kustomize/api/provenance.version=kustomize/${version}"
		;;
	promtool)
		echo "-X github.com/prometheus/common/version.Version=${version}"
		;;
	esac
}

# wanted_stamp prints the stamp a current binary of the tool carries.
wanted_stamp() {
	local tool="$1" version="$2" dir="${ROOT}/hack/tools/$1" hash
	hash="$(cat "${dir}/go.mod" "${dir}/go.sum" <(link_flags_of "${tool}" "${version}") <(tags_of "${tool}") | sha256sum | cut -c1-16)"
	printf '%s %s %s\n' "${version}" "${hash}" "$(go env GOVERSION)"
}

# build builds one tool unless it is current, and prints one line saying which.
build() {
	local tool="$1" dir="${ROOT}/hack/tools/$1" version stamp began log
	[[ -f "${dir}/go.mod" ]] || fail "${tool}: no wrapper module at ${dir}"
	version="$(cd "${dir}" && go list -m -f '{{.Version}}' "$(module_of "${tool}")")" ||
		fail "${tool}: cannot resolve the version of $(module_of "${tool}") in ${dir}/go.mod"
	stamp="$(wanted_stamp "${tool}" "${version}")"
	if [[ -x "${BIN}/${tool}" && -f "${BIN}/.stamp-${tool}" && "$(<"${BIN}/.stamp-${tool}")" == "${stamp}" ]]; then
		echo "${tool} ${version}: up to date"
		return 0
	fi
	log="${LOGS}/${tool}.log"
	began=${SECONDS}
	rm -f "${BIN}/.stamp-${tool}"
	# Build into a temporary name first: a failed or interrupted build must
	# never leave a binary that looks current.
	if ! (cd "${dir}" && CGO_ENABLED=0 go build -trimpath -tags "$(tags_of "${tool}")" \
		-ldflags "-s -w $(link_flags_of "${tool}" "${version}")" \
		-o "${BIN}/.${tool}.new" "$(main_package_of "${tool}")") >"${log}" 2>&1; then
		rm -f "${BIN}/.${tool}.new"
		echo "${tool} ${version}: build FAILED after $((SECONDS - began))s; end of ${log}:" >&2
		tail -n 25 "${log}" >&2
		return 1
	fi
	mv -f "${BIN}/.${tool}.new" "${BIN}/${tool}"
	echo "${stamp}" >"${BIN}/.stamp-${tool}"
	echo "${tool} ${version}: built in $((SECONDS - began))s"
}

main() {
	local -a tools
	if (($# == 0)); then
		read -r -a tools <<<"${KNOWN}"
	else
		tools=("$@")
	fi
	command -v go >/dev/null || fail "go is not on PATH"
	mkdir -p "${BIN}" "${LOGS}"
	local tool status=0
	for tool in "${tools[@]}"; do
		module_of "${tool}" >/dev/null
		build "${tool}" || status=1
	done
	((status == 0)) || fail "not every tool could be built (logs in ${LOGS})"
}

main "$@"
