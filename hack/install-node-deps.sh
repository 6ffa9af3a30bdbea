#!/usr/bin/env bash
# Installs what the test node (test/node) needs besides bin/kubelet: Debian's
# containerd (with ctr and containerd-shim-runc-v2) and runc. Nothing is done
# when they are on PATH already. Needs root and apt-get; elsewhere it only
# says what is missing (the real-pod tests then fail with that message).
set -euo pipefail

need=()
for b in containerd containerd-shim-runc-v2 ctr; do
	command -v "$b" >/dev/null || { need+=(containerd); break; }
done
command -v runc >/dev/null || need+=(runc)
if ((${#need[@]} == 0)); then
	echo "node deps: containerd $(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1{print $3}'): installed"
	exit 0
fi
if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
	echo "node deps: missing ${need[*]}; install them (Debian: apt-get install ${need[*]})" >&2
	exit 1
fi
echo "node deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
