#!/usr/bin/env bash
# make demo: the seed incident, reproduced in a network namespace and
# explained by tcpspan.
#
# rinetd forwards port 92 to a backend that is down, behind a listen
# backlog of 5, and wrk hits it with 1000 connections, as in the seed. Two
# root causes of "connection reset by peer" appear side by side:
#   1. the accept queue of rinetd's listener overflows: handshakes are
#      dropped, and later the listener answers with RST;
#   2. rinetd's upstream connect is refused, and rinetd close()s the client
#      socket with the request unread: RST with TCP_ABORT_ON_CLOSE.
# tcpspan exports its spans to Jaeger (on loopback); the report is built
# from what Jaeger returns, beside rinetd's log and the kernel's counters.
#
# Jaeger's first build takes minutes. It builds in the background (niced)
# from the start; if it is not ready once tcpspan is, the incident plays
# first with tcpspan's terminal view alone, then again, exported to
# Jaeger, for the report. Every 15 s of waiting says what is being built.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin

DURATION=${DURATION:-2s}
CONNECTIONS=${CONNECTIONS:-1000}
# How long Jaeger stays up after the demo, so that the queries it prints
# work (a sleep(1) duration); 0 stops it with the demo.
KEEP_JAEGER=${KEEP_JAEGER:-30m}
NS=tcpspan-demo
# The Jaeger a demo left running, which the next demo replaces.
JAEGER_PIDFILE=/run/tcpspan-demo-jaeger.pid

if [ "$(id -u)" -ne 0 ]; then
	echo "demo: run it as root (it loads BPF programs and creates a network namespace; from another account: sudo make demo)" >&2
	exit 1
fi

t0=$(date +%s)
clock() {
	local s=$(($(date +%s) - t0))
	printf '%d:%02d' $((s / 60)) $((s % 60))
}
say() { echo "demo [$(clock)]: $*"; }

work=$(mktemp -d /tmp/tcpspan-demo.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	# Only these: a Jaeger left running, and its timer, are children too.
	wait "${pids[@]}" 2>/dev/null || true
	ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for PID WHAT LOG waits for a background build, saying every 15 s
# what is still being built; if the build fails, its log is printed.
wait_for() {
	local pid=$1 what=$2 log=$3 n=0
	while kill -0 "$pid" 2>/dev/null; do
		sleep 1
		n=$((n + 1))
		if [ $((n % 15)) -eq 0 ]; then
			# go build -v names each package as it is built.
			now=$(tail -n 1 "$log" 2>/dev/null || true)
			case $now in
			'' | *' '*) say "still building $what" ;;
			*) say "still building $what (now $now)" ;;
			esac
		fi
	done
	if ! wait "$pid"; then
		cat "$log" >&2
		say "building $what failed" >&2
		exit 1
	fi
}

# Jaeger and the shop (tools/otelapp) build in the background, niced, so
# that tcpspan's own build and the first pass go first. -v: their logs
# name the package being built.
say "building Jaeger in the background if needed (the first build takes minutes)"
GOFLAGS=-v nice -n 19 ./scripts/tools.sh jaeger >"$work/jaeger.path" 2>"$work/jaeger.build" &
jaeger_build=$!
pids+=($jaeger_build)
GOFLAGS=-v nice -n 19 ./scripts/tools.sh otelapp >"$work/otelapp.path" 2>"$work/otelapp.build" &
otelapp_build=$!
pids+=($otelapp_build)

say "installing what the demo needs (scripts/deps.sh --demo)"
./scripts/deps.sh --demo
say "building tcpspan"
go build -v -o bin/tcpspan ./cmd/tcpspan >"$work/tcpspan.build" 2>&1 &
wait_for $! "tcpspan" "$work/tcpspan.build"
# The report is needed last.
nice -n 19 go build -o bin/tcpspan-report ./cmd/tcpspan-report >"$work/report.build" 2>&1 &
report_build=$!
pids+=($report_build)

# setup_ns makes the namespace afresh, so that its counters start at zero.
setup_ns() {
	ip netns del "$NS" 2>/dev/null || true
	ip netns add "$NS"
	ip -n "$NS" link set lo up
	# rinetd 0.73 listens with the kernel's maximum backlog; the seed's
	# rinetd used 5. Capping somaxconn in the namespace reproduces it.
	ip netns exec "$NS" sysctl -q -w net.core.somaxconn=5
}

# start_rinetd starts rinetd in the namespace, logging to $1.
start_rinetd() {
	cat >"$work/rinetd.conf" <<-CONF
		logfile $1
		# bind-address bind-port connect-address connect-port: the backend on 9000 is down.
		127.0.0.1 92 127.0.0.1 9000
	CONF
	ip netns exec "$NS" rinetd -f -c "$work/rinetd.conf" >/dev/null 2>&1 &
	rinetd_pid=$! # ip netns exec execs rinetd in place
	pids+=($rinetd_pid)
}

# stop_rinetd stops rinetd: it writes its log buffered, complete once it
# has exited.
stop_rinetd() {
	kill -TERM "$rinetd_pid" 2>/dev/null || true
	wait "$rinetd_pid" 2>/dev/null || true
}

# start_agent starts tcpspan on the namespace, its terminal view to $1 and
# its log to $2, with the further arguments, and waits until it traces.
start_agent() {
	local out=$1 log=$2
	shift 2
	./bin/tcpspan -netns "$NS" -health-interval 0 "$@" >"$out" 2>"$log" &
	agent=$!
	pids+=($agent)
	for _ in $(seq 50); do
		grep -q 'msg=tracing' "$log" 2>/dev/null && return 0
		if ! kill -0 "$agent" 2>/dev/null; then
			cat "$log" >&2
			exit 1
		fi
		sleep 0.1
	done
}

# stop_agent stops tcpspan as a user would (SIGINT) and prints its counts.
stop_agent() {
	kill -INT "$agent"
	wait "$agent" || true
	grep 'msg=stopped' "$1" | sed 's/^.*msg=stopped /tcpspan stopped: /'
}

# examples prints one example of each diagnosis from a terminal view $1:
# the first line with it, and the lines that continue it (indented).
examples() {
	local pattern
	for pattern in 'RST sent (TCP_ABORT_ON_CLOSE)' 'handshake dropped' 'connection refused' 'RST sent (NO_SOCKET)' 'RST sent (TCP_ABORT_ON_DATA)'; do
		awk -v p="$pattern" 'found && /^  / { print; next } found { exit } index($0, p) { print; found = 1 }' "$1"
	done
}

# counters prints the kernel's counters of the namespace that the spans
# must add up to.
counters() {
	ip netns exec "$NS" nstat -a TcpOutRsts TcpExtListenOverflows TcpExtTCPAbortOnClose TcpExtTCPAbortOnData 2>/dev/null | awk 'NR>1 {print}'
}

load() {
	say "wrk -c$CONNECTIONS -d$DURATION against rinetd on 127.0.0.1:92 (backend down, backlog 5)"
	ip netns exec "$NS" wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --timeout 2s http://127.0.0.1:92/ >"$work/wrk.out" 2>&1 &
	wrk=$!
}

settle() {
	# Handshakes dropped by the full queue end with the listener's RST
	# seconds later; wait for them, and for tcpspan to join their events.
	say "waiting for late resets and retransmits to settle"
	sleep 8
}

if kill -0 "$jaeger_build" 2>/dev/null; then
	# The first pass: tcpspan alone, while Jaeger builds.
	say "Jaeger is still building; meanwhile the incident, with tcpspan's terminal view alone"
	setup_ns
	start_rinetd "$work/rinetd-first.log"
	start_agent "$work/tcpspan-first.out" "$work/tcpspan-first.log"
	ip netns exec "$NS" nstat -n
	load
	wait "$wrk" || true
	settle
	kernel=$(counters)
	stop_agent "$work/tcpspan-first.log"
	stop_rinetd
	echo
	echo "== tcpspan's terminal view: one example line per diagnosis"
	examples "$work/tcpspan-first.out"
	echo
	echo "== its summary"
	sed -n '/^[0-9]* connections/,$p' "$work/tcpspan-first.out"
	echo
	echo "== the kernel's counters in the namespace (nstat)"
	echo "$kernel"
	echo
	say "that was tcpspan alone; the full report needs Jaeger (the same incident again, exported)"
fi

wait_for "$jaeger_build" "Jaeger (tools/jaeger, from the Go module proxy)" "$work/jaeger.build"
jaeger=$(tail -1 "$work/jaeger.path")
wait_for "$otelapp_build" "the shop (tools/otelapp)" "$work/otelapp.build"
otelapp=$(tail -1 "$work/otelapp.path")
wait_for "$report_build" "tcpspan-report" "$work/report.build"
say "Jaeger, the shop and the report are built"

# A Jaeger the last demo left running holds the ports: it goes.
if [ -s "$JAEGER_PIDFILE" ]; then
	old=$(cat "$JAEGER_PIDFILE")
	if [ "$(readlink "/proc/$old/exe" 2>/dev/null)" = "$(readlink -f "$jaeger")" ]; then
		say "stopping the Jaeger the last demo left running (pid $old)"
		kill "$old" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
	fi
	rm -f "$JAEGER_PIDFILE"
fi
for port in 14317 14318 16685 16686; do
	if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
		echo "demo: 127.0.0.1:$port is taken (is 'make jaeger' running? stop it first)" >&2
		exit 1
	fi
done
# Jaeger as 'make jaeger' runs it, keeping up to a million traces: the load
# makes about four spans per request.
sed 's/max_traces: 100000/max_traces: 1000000/' tools/jaeger/jaeger.yaml >"$work/jaeger.yaml"
# In a session of its own, so that it may outlive the demo (KEEP_JAEGER)
# without the terminal's hangup or interrupt reaching it.
JAEGER_LISTEN_HOST=127.0.0.1 setsid "$jaeger" --config="$work/jaeger.yaml" </dev/null >"$work/jaeger.log" 2>&1 &
jaeger_pid=$!
pids+=($jaeger_pid)
for _ in $(seq 100); do
	(exec 3<>/dev/tcp/127.0.0.1/14317) 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/16686) 2>/dev/null && break
	sleep 0.1
done

setup_ns
start_rinetd "$work/rinetd.log"
started=$(date +%s)
# Jaeger takes traces only: the agent's own metrics are off. The storm's
# spans outrun a Jaeger on the same cores for a few seconds; a long export
# queue lets them all arrive, so that the report counts every connection.
OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:14317 OTEL_SERVICE_NAME=tcpspan-demo OTEL_METRICS_EXPORTER=none \
	start_agent "$work/tcpspan.out" "$work/tcpspan.log" -terminal -export-queue 65536

# The shop: an application instrumented with OpenTelemetry (otelhttp), whose
# requests through rinetd carry W3C traceparent headers. It runs in the
# namespace beside wrk; its own spans reach Jaeger through a relay to the
# host's loopback.
cat >"$work/relay.sh" <<RELAY
#!/bin/sh
exec nsenter --net=/proc/$$/ns/net socat STDIO TCP4:127.0.0.1:14318
RELAY
chmod +x "$work/relay.sh"
ip netns exec "$NS" socat TCP-LISTEN:14318,bind=127.0.0.1,reuseaddr,fork EXEC:"$work/relay.sh" &
pids+=($!)
shop() {
	ip netns exec "$NS" env OTEL_SERVICE_NAME=shop OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf \
		OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:14318 "$otelapp" client -url http://127.0.0.1:92/checkout "$@"
}

ip netns exec "$NS" nstat -n
load
# The shop's requests, each in its own trace: three during the load, two
# after it.
sleep 1
shop -n 3 >"$work/shop.out" 2>"$work/shop.err" || true
wait "$wrk" || true
shop -n 2 >>"$work/shop.out" 2>>"$work/shop.err" || true
settle
kernel=$(counters)
stop_agent "$work/tcpspan.log"

echo
echo "== tcpspan's terminal view: one example line per diagnosis"
examples "$work/tcpspan.out"
echo
echo "== the shop's requests through rinetd (otelhttp; trace and request span ids)"
sed 's/^/  /' "$work/shop.out"
traces=$(grep -o '"trace_id":"[0-9a-f]*"' "$work/shop.out" | cut -d'"' -f4 | paste -sd, -)
echo
./bin/tcpspan-report -jaeger http://127.0.0.1:16686 -since "$(($(date +%s) - started + 5))s" -traces "$traces" \
	-html "$work/report.html"
stop_rinetd
echo
echo "== rinetd's log"
awk '{print $NF}' "$work/rinetd.log" | sort | uniq -c
echo
echo "== the kernel's counters in the namespace (nstat)"
echo "$kernel"
echo
echo "Compare: the tcp.rst_sent events add up to TcpOutRsts, and tcp.rst_sent"
echo "TCP_ABORT_ON_CLOSE to TcpExtTCPAbortOnClose; tcp.syn_overflow and tcp.ack_overflow"
echo "to TcpExtListenOverflows within about 1% (SYN overflows are judged a moment before"
echo "the kernel counts them). rinetd's 'opened' lines, each an upstream connect, match"
echo "rinetd's connection-refused spans but for a few per thousand whose events the"
echo "kernel skipped in this storm (missed= on the stopped line)."
echo "Full terminal output: $work/tcpspan.out"
echo
echo "The report as a page, with a timeline of one connection of each kind of error"
echo "(self-contained, opens offline): file://$work/report.html"
echo
if [ "$KEEP_JAEGER" != 0 ] && kill -0 "$jaeger_pid" 2>/dev/null; then
	# Jaeger stays, and a timer in its own session stops it later.
	rest=()
	for p in "${pids[@]}"; do [ "$p" = "$jaeger_pid" ] || rest+=("$p"); done
	pids=("${rest[@]}")
	echo "$jaeger_pid" >"$JAEGER_PIDFILE"
	setsid sh -c 'sleep "$1"; [ "$(cat "$3" 2>/dev/null)" = "$2" ] && kill "$2" && rm -f "$3"' \
		sh "$KEEP_JAEGER" "$jaeger_pid" "$JAEGER_PIDFILE" </dev/null >/dev/null 2>&1 &
	echo "Jaeger keeps running for $KEEP_JAEGER (pid $jaeger_pid), so that the queries above work:"
	echo "  curl -s http://127.0.0.1:16686/api/v3/services"
	echo "  go run ./cmd/tcpspan-report -since 30m -html report.html"
	echo "Stop it now: kill $jaeger_pid   (the next make demo stops it too; KEEP_JAEGER=0 make demo"
	echo "stops it with the demo; its log: $work/jaeger.log)"
else
	echo "Jaeger stops with the demo (KEEP_JAEGER=$KEEP_JAEGER)."
fi
say "done"
