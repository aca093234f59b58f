#!/usr/bin/env bash
# make bench: what tcpspan costs, measured (root).
#
# This script only installs what is missing and builds; the bench itself is
# `report bench` (bench/report, the bench module's Go tool): see
# docs/performance.md (Method) for what it runs and measures, and
# bench/report/modes.go for the modes:
#
#   none, export-sink, export-all, errors-only, bpftrace
#                  loopback connection storm: nginx and
#                  `wrk -t1 -c32 -H 'Connection: close'` in a network
#                  namespace, with no agent, tcpspan exporting every
#                  connection (to a counting receiver, or to Jaeger),
#                  tcpspan -clean-ratio 0, bpftrace printing every state change
#   keepalive-none, keepalive-agent
#                  the same wrk without 'Connection: close' (requests/s),
#                  no agent and tcpspan with its defaults
#   syscall-none, syscall-agent
#                  a getpid loop on one CPU (ns per call, bench/getpid),
#                  no agent and tcpspan with its defaults attached
#   storm-none, storm-errors
#                  reset storm (bench/rstorm), no agent and tcpspan -clean-ratio 0
#   loop-none, loop-export, loop-errors
#                  loopback connections one at a time on one pinned CPU
#                  (bench/connloop; µs per connection of the fastest batch),
#                  no agent, tcpspan exporting every connection (to the
#                  counting receiver) and tcpspan -clean-ratio 0: steadier
#                  than wrk's rates where the machine's speed holds
#   export-sink-b, errors-only-b, keepalive-agent-b, syscall-agent-b,
#   loop-errors-b
#                  those modes with BIN_B
#
# Knobs (environment):
#   ROUNDS=3 DURATION=5 (seconds of load per run) CONNECTIONS=32
#   STORM_WORKERS=nproc SYSCALL_CALLS=5000000 (getpid calls per syscall run)
#   LOOP_CONNS=2000 (connections per batch of a loop run; 15 batches)
#   VERIFY=last (Jaeger read back for the last round; all, or 0: none)
#   MODES="none export-sink export-all errors-only bpftrace keepalive-none
#   keepalive-agent syscall-none syscall-agent storm-none storm-errors
#   loop-none loop-export loop-errors"
#   AGENT_FLAGS= (more tcpspan flags for every tcpspan mode, e.g.
#   "-ring-buffer-bytes 4194304")
#   BIN_B= (a second tcpspan binary, or a script that execs one, for the
#   *-b modes, so that two builds are compared in the same rounds)
#   PROFILE=0 (1: after the rounds, one more run of export-sink and
#   errors-only under `perf record -g`, and keepalive-agent, storm-errors
#   and loop-errors, with the kernel's BPF run-time stats: bench/profile.txt)
#   WRK_HEADER= (a header for every request, e.g. "traceparent: 00-<32
#   hex>-<16 hex>-01": what correlation costs when every request carries
#   one; BIN_B="scripts/tcpspan-no-traceparent" compares it with the
#   capture off)
#   KEEP=0 (1: keep the work directory) OUT=bench (where results go).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin

if [ "$(id -u)" -ne 0 ]; then
	echo "bench: run it as root (it loads BPF programs and creates a network namespace; from another account: sudo make bench)" >&2
	exit 1
fi

# Packages, idempotently: deps.sh skips what is installed.
if ! command -v nginx >/dev/null; then
	if apt-cache show nginx-light >/dev/null 2>&1; then
		./scripts/deps.sh nginx-light
	else
		./scripts/deps.sh nginx
	fi
fi
./scripts/deps.sh wrk bpftrace iproute2 bpftool procps
if [ "${PROFILE:-0}" = 1 ]; then
	./scripts/deps.sh linux-perf
fi

bin=$(mktemp -d /tmp/tcpspan-bench-bin.XXXXXX)
trap 'rm -rf "$bin"' EXIT
echo "bench: building tcpspan, and the bench's report, rstorm, otlpsink, getpid and connloop"
go build -o bin/tcpspan ./cmd/tcpspan
(cd bench && GOWORK=off go build -o "$bin/" ./report ./rstorm ./otlpsink ./getpid ./connloop)
"$bin/report" bench -bin "$bin"
