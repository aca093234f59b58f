#!/usr/bin/env bash
# Installs the Debian packages that tcpspan's build, tests and tools need.
# Idempotent: packages already present are skipped. Needs root.
set -euo pipefail

# --demo: only what make demo needs (no compiler, VM or browser).
demo=(
	iproute2 procps                       # network namespace, nstat, sysctl
	rinetd wrk socat                      # the seed's forwarder and load; socat relays the shop's spans
)
# With arguments, installs those packages instead.
packages=(
	clang-16 llvm-16 libbpf-dev bpftool   # make generate (pinned clang), make vmlinux
	clang-format-16                       # make format, and its check in the test command
	iproute2 nftables procps              # test network namespaces, packet loss, sysctl
	rinetd wrk socat                      # the seed's forwarder and load, in make demo and e2e; socat relays the demo shop's spans
	prometheus                            # promtool: the tests lint a live scrape of /metrics
	libcap2-bin                           # capsh: the least-privilege test runs the agent with only its capabilities
	qemu-system-x86 busybox-static        # make test-kernels: older kernels in a VM
	podman runc                           # make image, and the container tests (runc: crun refuses hybrid cgroups)
	chromium                              # e2e: the HTML report loaded in a headless browser
)
if [ "${1:-}" = --demo ]; then
	packages=("${demo[@]}")
elif [ $# -gt 0 ]; then
	packages=("$@")
fi

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	echo "deps: all packages present"
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing ${missing[*]}; run as root (make deps; from another account: sudo make deps)" >&2
	exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
