#!/usr/bin/env bash
# Builds the peer binaries of the end-to-end test bed (etcd, the Kubernetes
# control plane and kubelet, LINSTOR CSI, the CSI external-provisioner) and staticcheck
# from the Go module proxy into <repo>/bin.
#
# Each tool comes from a wrapper module under hack/tools/<name> whose
# go.mod/go.sum are committed, so a build is reproducible. A tool is rebuilt
# only when its stamp (bin/.stamp-<name>: the version plus a hash of the wrapper
# module files) changes or one of its binaries is missing.
#
# Usage: hack/build-tools.sh [tool...]
#   tools: linstor-csi kube etcd staticcheck external-provisioner
#   (kube-apiserver, kube-controller-manager, kube-scheduler and kubelet mean
#   "kube": one build of the k8s.io/kubernetes module)
# With no arguments every tool is built. The long kube build runs in the
# background while the others build.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${ROOT}/bin"
TOOLS_DIR="${ROOT}/hack/tools"
LOG_DIR="${BIN}/.logs"

# The wrapper modules resolve their own dependencies; never let a go.work or
# the caller's module mode interfere.
export GOWORK=off
export GOFLAGS="${GOFLAGS:+${GOFLAGS} }-mod=mod"

ALL_TOOLS=(linstor-csi kube etcd staticcheck external-provisioner)

# tool_module prints the module whose version names the tool.
tool_module() {
	case "$1" in
	linstor-csi) echo github.com/piraeusdatastore/linstor-csi ;;
	kube) echo k8s.io/kubernetes ;;
	etcd) echo go.etcd.io/etcd/server/v3 ;;
	staticcheck) echo honnef.co/go/tools ;;
	external-provisioner) echo github.com/kubernetes-csi/external-provisioner/v5 ;;
	esac
}

# tool_packages prints the main packages to build, one per line.
tool_packages() {
	case "$1" in
	linstor-csi) echo github.com/piraeusdatastore/linstor-csi/cmd/linstor-csi ;;
	kube)
		echo k8s.io/kubernetes/cmd/kube-apiserver
		echo k8s.io/kubernetes/cmd/kube-controller-manager
		echo k8s.io/kubernetes/cmd/kube-scheduler
		echo k8s.io/kubernetes/cmd/kubelet
		;;
	etcd) echo go.etcd.io/etcd/server/v3 ;;
	staticcheck) echo honnef.co/go/tools/cmd/staticcheck ;;
	external-provisioner) echo github.com/kubernetes-csi/external-provisioner/v5/cmd/csi-provisioner ;;
	esac
}

# tool_binaries prints the file names the build leaves in bin/.
tool_binaries() {
	case "$1" in
	linstor-csi) echo linstor-csi ;;
	kube) printf '%s\n' kube-apiserver kube-controller-manager kube-scheduler kubelet ;;
	etcd) echo etcd ;;
	staticcheck) echo staticcheck ;;
	external-provisioner) echo csi-provisioner ;;
	esac
}

# tool_ldflags prints the -X flags that stamp the release version into the
# binary, as the upstream release builds do (a plain `go build` reports
# v0.0.0-master / unknown, which would mislead version checks of clients).
tool_ldflags() {
	local tool="$1" version="$2" minor pkg
	case "${tool}" in
	linstor-csi) echo "-X github.com/piraeusdatastore/linstor-csi/pkg/driver.Version=${version}" ;;
	kube)
		minor="${version#v1.}"
		minor="${minor%%.*}"
		for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
			printf -- '-X %s ' "${pkg}.gitVersion=${version}" "${pkg}.gitMajor=1" \
				"${pkg}.gitMinor=${minor}" "${pkg}.gitTreeState=clean"
		done
		echo
		;;
	external-provisioner) echo "-X main.version=${version}" ;;
	*) echo ;;
	esac
}

die() {
	echo "build-tools: $*" >&2
	exit 1
}

# canonical maps a requested name onto a tool of ALL_TOOLS.
canonical() {
	case "$1" in
	kube | kube-apiserver | kube-controller-manager | kube-scheduler | kubelet) echo kube ;;
	linstor-csi | etcd | staticcheck | external-provisioner) echo "$1" ;;
	csi-provisioner) echo external-provisioner ;;
	*) die "unknown tool '$1' (known: ${ALL_TOOLS[*]})" ;;
	esac
}

# tool_version prints the version of the tool's module the wrapper resolves.
tool_version() {
	local dir="${TOOLS_DIR}/$1" mod
	mod="$(tool_module "$1")"
	(cd "${dir}" && go list -m -f '{{.Version}}' "${mod}") ||
		die "$1: cannot read the version of ${mod} from ${dir}/go.mod"
}

# tool_stamp prints what bin/.stamp-<tool> must hold for the binaries to count
# as current: the version, a hash of the wrapper module and link flags, and Go.
tool_stamp() {
	local dir="${TOOLS_DIR}/$1" sum
	sum="$({ cat "${dir}/go.mod" "${dir}/go.sum"; tool_ldflags "$1" "$2"; } | sha256sum | cut -c1-16)"
	echo "$2 ${sum} $(go env GOVERSION)"
}

# is_current succeeds when every binary exists and the stamp matches.
is_current() {
	local tool="$1" want="$2" b
	[[ -f "${BIN}/.stamp-${tool}" ]] || return 1
	[[ "$(cat "${BIN}/.stamp-${tool}")" == "${want}" ]] || return 1
	for b in $(tool_binaries "${tool}"); do
		[[ -x "${BIN}/${b}" ]] || return 1
	done
}

# build_tool builds one tool and writes its stamp; it prints one status line
# and returns non-zero on failure with the end of the build log.
build_tool() {
	local tool="$1" version stamp log start secs out
	local -a pkgs bins
	[[ -f "${TOOLS_DIR}/${tool}/go.mod" ]] || die "${tool}: wrapper module ${TOOLS_DIR}/${tool}/go.mod is missing"
	# Assignments from failing substitutions must stop here: callers run
	# build_tool in an || list, where set -e does not apply.
	version="$(tool_version "${tool}")" || return 1
	stamp="$(tool_stamp "${tool}" "${version}")" || return 1
	if is_current "${tool}" "${stamp}"; then
		echo "${tool} ${version}: cached"
		return 0
	fi
	mapfile -t pkgs < <(tool_packages "${tool}")
	mapfile -t bins < <(tool_binaries "${tool}")
	# One package is written under its binary name (the etcd package path
	# would name it "server"); several go into bin/ by their own names.
	out="${BIN}/"
	if ((${#pkgs[@]} == 1)); then
		out="${BIN}/${bins[0]}"
	fi
	log="${LOG_DIR}/${tool}.log"
	start="$(date +%s)"
	rm -f "${BIN}/.stamp-${tool}"
	if ! (cd "${TOOLS_DIR}/${tool}" &&
		go build -trimpath -ldflags="-s -w $(tool_ldflags "${tool}" "${version}")" -o "${out}" "${pkgs[@]}") >"${log}" 2>&1; then
		echo "${tool} ${version}: FAILED after $(($(date +%s) - start))s, log ${log}:" >&2
		tail -n 30 "${log}" >&2
		return 1
	fi
	for b in "${bins[@]}"; do
		if [[ ! -x "${BIN}/${b}" ]]; then
			echo "${tool} ${version}: build left no ${BIN}/${b}" >&2
			return 1
		fi
	done
	echo "${stamp}" >"${BIN}/.stamp-${tool}"
	secs=$(($(date +%s) - start))
	echo "${tool} ${version}: built in ${secs}s"
}

main() {
	local -a want=()
	local t c seen=" "
	if (($# == 0)); then
		want=("${ALL_TOOLS[@]}")
	else
		for t in "$@"; do
			c="$(canonical "${t}")"
			[[ "${seen}" == *" ${c} "* ]] && continue
			seen+="${c} "
			want+=("${c}")
		done
	fi
	command -v go >/dev/null || die "go is not on PATH"
	mkdir -p "${BIN}" "${LOG_DIR}"

	local kube_pid="" kube_out="${LOG_DIR}/kube.status" failed=0
	local -a rest=()
	for t in "${want[@]}"; do
		if [[ "${t}" == kube ]] && ((${#want[@]} > 1)); then
			# The long pole: start it first and let the others build meanwhile.
			build_tool kube >"${kube_out}" 2>&1 &
			kube_pid=$!
		else
			rest+=("${t}")
		fi
	done
	for t in "${rest[@]}"; do
		build_tool "${t}" || failed=1
	done
	if [[ -n "${kube_pid}" ]]; then
		if wait "${kube_pid}"; then
			cat "${kube_out}"
		else
			failed=1
			cat "${kube_out}" >&2
		fi
	fi
	((failed == 0)) || die "some tools failed to build (logs in ${LOG_DIR})"
}

main "$@"
