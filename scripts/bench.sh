#!/usr/bin/env bash
# make bench: what tcpspan costs, measured (root).
#
# A loopback connection storm in a network namespace of its own: nginx (2
# workers, a tiny static answer) and `wrk -t1 -c32 -H 'Connection: close'`,
# one new connection per request. Modes, interleaved in rounds so that the
# machine's noise is shared by all of them:
#
#   none           no agent
#   export-sink    tcpspan -clean-ratio 1, every connection exported to
#                  bench/otlpsink, an OTLP receiver that only counts spans
#                  (Jaeger's own CPU per span would otherwise decide the
#                  result on a machine this small)
#   export-all     tcpspan -clean-ratio 1, every connection exported to Jaeger
#   errors-only    tcpspan -clean-ratio 0 (only connections with problems)
#   bpftrace       the naive peer: bpftrace printing one line per
#                  inet_sock_set_state event to /dev/null
#   storm-none     reset storm: connect() to a closed port in a loop
#                  (bench/rstorm), every attempt answered by an RST
#   storm-errors   the reset storm under tcpspan -clean-ratio 0
#
# Jaeger v2 (in-memory, on loopback ports of its own) receives the spans.
# For each run it records connections made (the namespace's TcpActiveOpens,
# TcpPassiveOpens and TcpOutRsts deltas), the agent's CPU (utime+stime over
# the load) and peak RSS (VmHWM), and the agent's final counts. The CPU
# time of the workload (nginx, wrk, rstorm), the agent and the trace
# backend is also read from cgroups of their own (cpuacct, or cgroup v2's
# cpu.stat): the scheduler's exact figures, where softirq work done in a
# task's context (most of loopback TCP) counts for that task, so the
# kernel side of tracing shows as extra workload CPU per connection. It also
# counts the spans and tcp.rst_sent events Jaeger holds for the tcpspan runs
# of the last round (VERIFY=all: of every round; VERIFY=0: none). bench/report turns the runs into a
# table on stdout, bench/results.json and bench/results.png.
#
# Knobs (environment):
#   ROUNDS=3 DURATION=5 (seconds of load per run) CONNECTIONS=32
#   STORM_WORKERS=nproc VERIFY=last MODES="none export-sink ..."
#   AGENT_FLAGS= (more tcpspan flags for every tcpspan mode, e.g.
#   "-ring-buffer-bytes 4194304")
#   BIN_B= (a second tcpspan binary, or a script that execs one, for modes
#   errors-only-b and export-sink-b: those modes with it, so that two builds
#   are compared in the same rounds)
#   PROFILE=0 (1: after the rounds, one more run of export-sink and
#   errors-only under `perf record -g`, and storm-errors, with the kernel's
#   BPF run-time stats: bench/profile.txt)
#   WRK_HEADER= (a header for every request, e.g. "traceparent: 00-<32
#   hex>-<16 hex>-01": what correlation costs when every request carries
#   one; BIN_B="scripts/tcpspan-no-traceparent" compares it with the
#   capture off)
#   KEEP=0 (1: keep the work directory) OUT=bench (where results go).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-32}
STORM_WORKERS=${STORM_WORKERS:-$(nproc)}
VERIFY=${VERIFY:-last}
PROFILE=${PROFILE:-0}
KEEP=${KEEP:-0}
OUT=${OUT:-bench}
read -r -a AGENT_FLAGS <<<"${AGENT_FLAGS:-}"
WRK_HEADERS=(-H 'Connection: close')
if [ -n "${WRK_HEADER:-}" ]; then
	WRK_HEADERS+=(-H "$WRK_HEADER")
fi
mkdir -p "$OUT"
NS=tcpspan-bench-$$
HTTP_PORT=8080
CLOSED_PORT=9
MODES=(${MODES:-none export-sink export-all errors-only bpftrace storm-none storm-errors})

case " ${MODES[*]} " in
*" errors-only-b "* | *" export-sink-b "*)
	[ -x "${BIN_B:-}" ] || { echo "bench: modes errors-only-b and export-sink-b need BIN_B, a tcpspan binary" >&2; exit 2; }
	BIN_B=$(realpath "$BIN_B")
	;;
esac
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
if [ "$PROFILE" = 1 ]; then
	./scripts/deps.sh linux-perf
fi

work=$(mktemp -d /tmp/tcpspan-bench.XXXXXX)
pids=()
agent=""
bpf_stats_old=""
cg_base=""
# Removes everything the script started, also on Ctrl-C or an error: the
# agent (SIGINT, then SIGKILL after 5 s), nginx, Jaeger, the namespace.
cleanup() {
	set +e
	if [ -n "$agent" ]; then
		kill -INT "$agent" 2>/dev/null
		for _ in $(seq 50); do kill -0 "$agent" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$agent" 2>/dev/null
	fi
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null
	done
	wait 2>/dev/null
	ip netns del "$NS" 2>/dev/null
	if [ -n "$cg_base" ]; then
		for g in load agent backend; do rmdir "$cg_base/$g" 2>/dev/null; done
		rmdir "$cg_base" 2>/dev/null
	fi
	if [ -n "$bpf_stats_old" ]; then sysctl -q -w kernel.bpf_stats_enabled="$bpf_stats_old"; fi
	if [ "$KEEP" = 1 ]; then
		echo "bench: kept $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# CPU accounting cgroups: the load, the agent and the backend each in one of
# their own, so that their CPU time is the scheduler's, not 1/CLK_TCK
# samples. cgroup v1's cpuacct where it is mounted (it leaves the cgroup v2
# tree, where the agent attaches, alone), else a cgroup v2 directory; none
# (and no such columns) when neither can be made.
cg_base=""
cg_kind=""
if [ -w /sys/fs/cgroup/cpuacct ] && [ -f /sys/fs/cgroup/cpuacct/cpuacct.usage ]; then
	cg_base=/sys/fs/cgroup/cpuacct/tcpspan-bench-$$
	cg_kind=v1
elif cg2=$(findmnt -n -t cgroup2 -o TARGET 2>/dev/null | head -1) && [ -n "$cg2" ] && [ -w "$cg2" ]; then
	cg_base=$cg2/tcpspan-bench-$$
	cg_kind=v2
fi
for g in load agent backend; do
	[ -n "$cg_base" ] || break
	mkdir -p "$cg_base/$g" 2>/dev/null || { echo "bench: no CPU accounting cgroup ($cg_base): CPU from clock ticks only" >&2; cg_base=""; }
done
cg_usage_ns() { # group: CPU time used so far by its tasks, ns (0 without cgroups)
	if [ -z "$cg_base" ]; then
		echo 0
	elif [ "$cg_kind" = v1 ]; then
		cat "$cg_base/$1/cpuacct.usage"
	else
		awk '$1 == "usage_usec" {print $2 * 1000}' "$cg_base/$1/cpu.stat"
	fi
}
# cg_exec replaces the calling shell with a command in a group: the shell
# moves itself in, then execs. So call it as `cg_exec ... &`, where $! is
# then the command's pid, or in a subshell: `(cg_exec ...)`.
cg_exec() { # group command...
	local procs=""
	[ -z "$cg_base" ] || procs=$cg_base/$1/cgroup.procs
	shift
	exec bash -c '[ -z "$0" ] || echo $$ >"$0"; exec "$@"' "$procs" "$@"
}

# What is measured: the commit, "+dirty" when tracked files differ from it.
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- 2>/dev/null || commit="$commit+dirty"
echo "bench: building tcpspan, bench/rstorm, bench/report (work directory $work)"
go build -o bin/tcpspan ./cmd/tcpspan
go build -o "$work/rstorm" ./bench/rstorm
go build -o "$work/report" ./bench/report
go build -o "$work/otlpsink" ./bench/otlpsink
jaeger=$(./scripts/tools.sh jaeger)

# Four free loopback ports for Jaeger, so that it runs beside `make jaeger`
# or a test's Jaeger.
taken=" "
free_port() {
	local p
	for _ in $(seq 200); do
		p=$((20000 + RANDOM % 30000))
		case $taken in *" $p "*) continue ;; esac
		if [ -z "$(ss -Htan "sport = :$p")" ]; then
			taken="$taken$p "
			echo "$p"
			return
		fi
	done
	echo "bench: no free port" >&2
	exit 1
}
otlp_grpc=$(free_port)
taken="$taken$otlp_grpc "
otlp_http=$(free_port)
taken="$taken$otlp_http "
query_http=$(free_port)
taken="$taken$query_http "
query_grpc=$(free_port)
taken="$taken$query_grpc "
sink_port=$(free_port)
sed -e 's/max_traces: 100000$/max_traces: 5000000/' \
	-e "s/127.0.0.1:14317/127.0.0.1:$otlp_grpc/; s/127.0.0.1:14318/127.0.0.1:$otlp_http/" \
	-e "s/127.0.0.1:16686/127.0.0.1:$query_http/; s/127.0.0.1:16685/127.0.0.1:$query_grpc/" \
	tools/jaeger/jaeger.yaml >"$work/jaeger.yaml"
grep -q 'max_traces: 5000000' "$work/jaeger.yaml" || { echo "bench: could not raise Jaeger's max_traces" >&2; exit 1; }
JAEGER_LISTEN_HOST=127.0.0.1 cg_exec backend "$jaeger" --config="$work/jaeger.yaml" >"$work/jaeger.log" 2>&1 &
jaeger_pid=$!
pids+=("$jaeger_pid")
jaeger_up() { (exec 3<>"/dev/tcp/127.0.0.1/$otlp_grpc") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$query_http") 2>/dev/null; }
for _ in $(seq 300); do
	jaeger_up && break
	kill -0 "$jaeger_pid" 2>/dev/null || { cat "$work/jaeger.log" >&2; exit 1; }
	sleep 0.1
done
jaeger_up || { echo "bench: Jaeger did not open its ports in 30s" >&2; cat "$work/jaeger.log" >&2; exit 1; }
export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$otlp_grpc
export OTEL_SERVICE_NAME=tcpspan-bench

# The namespace and nginx in it.
ip netns add "$NS"
ip -n "$NS" link set lo up
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<CONF
worker_processes 2;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events {
	worker_connections 4096;
}
http {
	access_log off;
	client_body_temp_path $work/nginx/body;
	proxy_temp_path $work/nginx/proxy;
	fastcgi_temp_path $work/nginx/fastcgi;
	uwsgi_temp_path $work/nginx/uwsgi;
	scgi_temp_path $work/nginx/scgi;
	server {
		listen 127.0.0.1:$HTTP_PORT backlog=4096;
		location / {
			return 200 "ok\n";
		}
	}
}
CONF
cg_exec load ip netns exec "$NS" nginx -e "$work/nginx/error.log" -p "$work/nginx" -c "$work/nginx/nginx.conf" &
pids+=($!)
for _ in $(seq 100); do
	ip netns exec "$NS" bash -c "(exec 3<>/dev/tcp/127.0.0.1/$HTTP_PORT)" 2>/dev/null && break
	sleep 0.1
done
ip netns exec "$NS" bash -c "(exec 3<>/dev/tcp/127.0.0.1/$HTTP_PORT)" 2>/dev/null ||
	{ echo "bench: nginx did not start" >&2; cat "$work/nginx/error.log" >&2; exit 1; }

counters() { # the namespace's absolute TCP counters, without touching nstat's shared history
	NSTAT_HISTORY="$work/nstat.history" ip netns exec "$NS" nstat -asz \
		TcpActiveOpens TcpPassiveOpens TcpOutRsts TcpAttemptFails TcpEstabResets TcpExtListenOverflows |
		awk 'NR > 1 {print $1, $2}'
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
now() { date +%s.%N; }

# export-sink: the counting receiver, one per run; sets $sink.
sink=""
start_sink() { # dir
	cg_exec backend "$work/otlpsink" -addr "127.0.0.1:$sink_port" >"$1/sink.out" 2>"$1/sink.log" &
	sink=$!
	pids+=("$sink")
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$sink_port") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "bench: otlpsink did not start" >&2
	cat "$1/sink.log" >&2
	return 1
}
stop_sink() { # dir: appends the receiver's counts to the run's vals
	[ -n "$sink" ] || return 0
	kill -INT "$sink"
	wait "$sink" 2>/dev/null || true
	cat "$1/sink.out" >>"$1/vals"
	sink=""
}

# Starts the agent of a mode in the background; sets $agent. Returns
# non-zero if it did not attach.
start_agent() { # mode dir
	local mode=$1 dir=$2
	case $mode in
	export-sink)
		OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$sink_port \
			cg_exec agent ./bin/tcpspan -netns "$NS" -clean-ratio 1 -health-interval 0 "${AGENT_FLAGS[@]}" >/dev/null 2>"$dir/agent.log" &
		;;
	export-sink-b)
		OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$sink_port \
			cg_exec agent "$BIN_B" -netns "$NS" -clean-ratio 1 -health-interval 0 "${AGENT_FLAGS[@]}" >/dev/null 2>"$dir/agent.log" &
		;;
	export-all) cg_exec agent ./bin/tcpspan -netns "$NS" -clean-ratio 1 -health-interval 0 "${AGENT_FLAGS[@]}" >/dev/null 2>"$dir/agent.log" & ;;
	errors-only | storm-errors) cg_exec agent ./bin/tcpspan -netns "$NS" -clean-ratio 0 -health-interval 0 "${AGENT_FLAGS[@]}" >/dev/null 2>"$dir/agent.log" & ;;
	errors-only-b) cg_exec agent "$BIN_B" -netns "$NS" -clean-ratio 0 -health-interval 0 "${AGENT_FLAGS[@]}" >/dev/null 2>"$dir/agent.log" & ;;
	bpftrace)
		cg_exec agent bpftrace -e 'tracepoint:sock:inet_sock_set_state { printf("%d %d %d\n", args->oldstate, args->newstate, args->sport); }' \
			>/dev/null 2>"$dir/agent.log" &
		;;
	*) return 0 ;;
	esac
	agent=$!
	for _ in $(seq 300); do
		if ! kill -0 "$agent" 2>/dev/null; then
			echo "bench: $mode agent exited:" >&2
			cat "$dir/agent.log" >&2
			agent=""
			return 1
		fi
		case $mode in
		bpftrace)
			# Its "Attaching" line goes to stdout with the events; the
			# kernel's list of attached programs says when it is attached.
			bpftool perf show 2>/dev/null | grep -q "^pid $agent .*inet_sock_set_state" && return 0
			;;
		*) grep -q 'msg=tracing' "$dir/agent.log" && return 0 ;;
		esac
		sleep 0.1
	done
	echo "bench: $mode agent did not attach in 30s" >&2
	return 1
}

# Stops the agent with SIGINT (so that it logs its final line), then, if it
# is still there after 10 s, SIGTERM and SIGKILL; says which in the run's vals.
# A bpftrace that SIGINT did not stop is woken by a refused connect.
stop_agent() { # dir
	local t0 sig=INT pokes=0
	[ -n "$agent" ] || return 0
	t0=$(now)
	kill -INT "$agent"
	for i in $(seq 200); do
		kill -0 "$agent" 2>/dev/null || break
		# bpftrace 0.17 can miss a SIGINT that lands just before it blocks
		# in epoll_wait, and then waits for its next event: give it one, a
		# refused connect in the namespace, every second.
		if [ $((i % 20)) = 0 ] && [ "$(cat "/proc/$agent/comm" 2>/dev/null)" = bpftrace ]; then
			ip netns exec "$NS" bash -c "(exec 3<>/dev/tcp/127.0.0.1/$CLOSED_PORT)" 2>/dev/null || true
			pokes=$((pokes + 1))
		fi
		sleep 0.05
	done
	if kill -0 "$agent" 2>/dev/null; then
		echo "bench: agent $agent ($(cat "/proc/$agent/comm" 2>/dev/null)) still running 10s after SIGINT; SIGTERM" >&2
		{
			grep -E '^(State|Threads|SigPnd|ShdPnd|SigBlk|SigCgt):' "/proc/$agent/status"
			for t in /proc/"$agent"/task/*; do echo "task ${t##*/}: $(cat "$t/wchan" 2>/dev/null) $(cat "$t/stat" 2>/dev/null | cut -d' ' -f3)"; done
			cat "/proc/$agent/stack" 2>/dev/null
		} >"$1/hung.txt" 2>&1
		sig=TERM
		kill -TERM "$agent" 2>/dev/null
		for _ in $(seq 100); do kill -0 "$agent" 2>/dev/null || break; sleep 0.05; done
		if kill -0 "$agent" 2>/dev/null; then
			sig=KILL
			kill -KILL "$agent" 2>/dev/null
		fi
	fi
	wait "$agent" 2>/dev/null || true
	echo "stop_seconds=$(awk -v a="$(now)" -v b="$t0" 'BEGIN {printf "%.3f", a - b}')" >>"$1/vals"
	echo "stop_signal=$sig" >>"$1/vals"
	echo "stop_pokes=$pokes" >>"$1/vals"
	agent=""
}

seq_no=0
run_one() { # mode round
	local mode=$1 round=$2 dir a0 a1 j0 j1 backend=$jaeger_pid
	seq_no=$((seq_no + 1))
	dir=$work/runs/$(printf '%02d' $seq_no)-$mode-r$round
	mkdir -p "$dir"
	{
		echo "mode=$mode"
		echo "round=$round"
		echo "clk_tck=$(getconf CLK_TCK)"
		echo "nproc=$(nproc)"
		echo "loadavg=$(cut -d' ' -f1 /proc/loadavg)"
		echo "t_start=$(now)"
	} >"$dir/vals"
	if [ "$mode" = export-sink ] || [ "$mode" = export-sink-b ]; then
		start_sink "$dir" || exit 1
		backend=$sink
	fi
	start_agent "$mode" "$dir" || exit 1
	[ -z "$agent" ] || echo "agent_pid=$agent" >>"$dir/vals"
	echo "t_ready=$(now)" >>"$dir/vals"
	counters >"$dir/counters.before"
	a0=$(if [ -n "$agent" ]; then ticks "$agent"; else echo 0; fi)
	j0=$(ticks "$backend")
	head -1 /proc/stat >"$dir/cpu.before"
	for g in load agent backend; do echo "${g}_ns_before=$(cg_usage_ns $g)"; done >>"$dir/vals"
	echo "t_load_start=$(now)" >>"$dir/vals"
	case $mode in
	storm-*)
		(cg_exec load ip netns exec "$NS" "$work/rstorm" -addr "127.0.0.1:$CLOSED_PORT" -workers "$STORM_WORKERS" -d "${DURATION}s") \
			>"$dir/load.out" 2>"$dir/load.err" || true
		;;
	*)
		(cg_exec load ip netns exec "$NS" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "${WRK_HEADERS[@]}" \
			"http://127.0.0.1:$HTTP_PORT/") >"$dir/load.out" 2>"$dir/load.err" || true
		;;
	esac
	echo "t_load_end=$(now)" >>"$dir/vals"
	for g in load agent backend; do echo "${g}_ns_after=$(cg_usage_ns $g)"; done >>"$dir/vals"
	head -1 /proc/stat >"$dir/cpu.after"
	a1=$(if [ -n "$agent" ]; then ticks "$agent"; else echo 0; fi)
	j1=$(ticks "$backend")
	{
		echo "agent_ticks=$((a1 - a0))"
		echo "jaeger_ticks=$((j1 - j0))" # the trace backend's: Jaeger, or the counting receiver
		if [ -n "$agent" ]; then
			echo "agent_hwm_kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$agent/status")"
			echo "agent_threads=$(awk '/^Threads:/ {print $2}' "/proc/$agent/status")"
		fi
	} >>"$dir/vals"
	# Let the last connections finish closing before the agent stops.
	sleep 1
	counters >"$dir/counters.after"
	stop_agent "$dir"
	stop_sink "$dir"
	echo "t_stop=$(now)" >>"$dir/vals"
	"$work/report" line "$dir"
}

echo "bench: $ROUNDS rounds of ${MODES[*]}; ${DURATION}s of load each; namespace $NS, Jaeger OTLP on 127.0.0.1:$otlp_grpc"
for round in $(seq "$ROUNDS"); do
	for mode in "${MODES[@]}"; do
		run_one "$mode" "$round"
	done
done

if [ "$VERIFY" != 0 ]; then
	# Reading spans back costs about 3 s per 10k spans, so by default only the
	# last round's tcpspan runs are checked (VERIFY=all: every round).
	pattern="-r$ROUNDS"
	[ "$VERIFY" = all ] && pattern="-r*"
	echo "bench: counting what Jaeger holds for the tcpspan runs of $([ "$VERIFY" = all ] && echo "every round" || echo "round $ROUNDS")"
	for dir in "$work"/runs/*-export-all$pattern "$work"/runs/*-errors-only$pattern "$work"/runs/*-storm-errors$pattern; do
		[ -d "$dir" ] || continue
		"$work/report" jaeger -url "http://127.0.0.1:$query_http" "$dir" >>"$dir/vals"
	done
fi

# PROFILE=1: after the rounds, one more run of export-sink, errors-only and
# storm-errors each with the kernel's BPF run-time statistics on
# (kernel.bpf_stats_enabled, restored afterwards), export-sink and
# errors-only also under `perf record -g -p (agent)`.
profile_run() { # mode
	local mode=$1 dir conns
	dir=$work/profile/$mode
	mkdir -p "$dir"
	bpftool prog show -j >"$dir/progs.pre.json"
	if [ "$mode" = export-sink ]; then start_sink "$dir" || exit 1; fi
	start_agent "$mode" "$dir" || exit 1
	bpftool prog show -j >"$dir/progs.before.json"
	counters >"$dir/counters.before"
	if [ "$mode" != storm-errors ]; then
		perf record -F 999 -g -p "$agent" -o "$dir/perf.data" -- sleep "$DURATION" >/dev/null 2>"$dir/perf.log" &
		perf_pid=$!
	fi
	case $mode in
	storm-*)
		ip netns exec "$NS" "$work/rstorm" -addr "127.0.0.1:$CLOSED_PORT" -workers "$STORM_WORKERS" -d "${DURATION}s" >"$dir/load.out" 2>&1 || true
		;;
	*)
		ip netns exec "$NS" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "${WRK_HEADERS[@]}" \
			"http://127.0.0.1:$HTTP_PORT/" >"$dir/load.out" 2>&1 || true
		;;
	esac
	if [ "$mode" != storm-errors ]; then wait "$perf_pid" || true; fi
	bpftool prog show -j >"$dir/progs.after.json"
	counters >"$dir/counters.after"
	conns=$(($(awk '$1 == "TcpActiveOpens" {print $2}' "$dir/counters.after") - $(awk '$1 == "TcpActiveOpens" {print $2}' "$dir/counters.before")))
	sleep 1
	stop_agent "$dir"
	stop_sink "$dir"
	{
		echo "## $mode: $(grep -E 'requests in|attempts=' "$dir/load.out" | sed 's/^ *//')"
		grep -o 'msg=stopped.*' "$dir/agent.log" || true
		echo
		echo "# kernel side: the agent's BPF programs during the load (kernel.bpf_stats_enabled)"
		"$work/report" bpfstats "$dir/progs.pre.json" "$dir/progs.before.json" "$dir/progs.after.json" "$conns"
		echo
	} >>"$OUT/profile.txt"
}

if [ "$PROFILE" = 1 ]; then
	echo "bench: profile: one more run of export-sink and errors-only (under perf record -g) and storm-errors, with BPF run-time stats"
	bpf_stats_old=$(sysctl -n kernel.bpf_stats_enabled)
	sysctl -q -w kernel.bpf_stats_enabled=1
	{
		echo "# make bench PROFILE=1, $(date -u +%Y-%m-%dT%H:%M:%SZ): wrk -t1 -c$CONNECTIONS -d${DURATION}s -H 'Connection: close'; rstorm -workers $STORM_WORKERS"
		echo "# (runs/conn: runs per TCP connection made, TcpActiveOpens; ns/run from the kernel's own bpf_stats)"
		echo
	} >"$OUT/profile.txt"
	for mode in export-sink errors-only storm-errors; do
		profile_run "$mode"
	done
	sysctl -q -w kernel.bpf_stats_enabled="$bpf_stats_old"
	bpf_stats_old=""
	for mode in export-sink errors-only; do
		dir=$work/profile/$mode
		{
			echo "# $mode, user side: perf record -F 999 -g -p (agent), by shared object"
			perf report -i "$dir/perf.data" --stdio --no-children --sort dso -g none --percent-limit 0.5 2>/dev/null | grep '%' || true
			echo
			echo "# $mode, user side: by symbol (self), 0.7% and above"
			perf report -i "$dir/perf.data" --stdio --no-children --sort sym -g none --percent-limit 0.7 2>/dev/null | grep '%' || true
			echo
			echo "# $mode, user side: by symbol including callees (children), 4% and above"
			perf report -i "$dir/perf.data" --stdio --children --sort sym -g none --percent-limit 4 2>/dev/null | grep '%' || true
			echo
		} >>"$OUT/profile.txt"
	done
	echo "bench: wrote $OUT/profile.txt"
fi

"$work/report" summarize -json "$OUT/results.json" -png "$OUT/results.png" -commit "$commit" \
	-conf "wrk -t1 -c$CONNECTIONS -d${DURATION}s -H 'Connection: close' against nginx (2 workers); rstorm -workers $STORM_WORKERS -d${DURATION}s" \
	"$work/runs"
