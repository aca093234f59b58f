#!/usr/bin/env bash
# The kernel matrix: runs the bpf package's privileged tests on older kernels
# in a VM, and prints a pass/fail table per kernel.
#
#   scripts/test-kernels.sh [5.10] [6.1] [6.12]     (default: all three)
#
# Each kernel is a Debian cloud kernel (scripts/kernels-fetch.sh: the newest
# of its series, cached). It boots under qemu with TCG (there is no KVM here)
# from an initramfs holding busybox-static, the host's ip, nft and tc with
# their libraries, the nf_tables and sch_tbf modules of that kernel with
# their dependencies, and the test binary built static with `go test -c`.
# The init script mounts what the tests need, runs the binary with -test.v
# and prints a result marker, then powers off. Each kernel has a hard
# timeout.
#
# Inside the VM the test binary runs with TCPSPAN_BPF_TESTS_REQUIRED=1 and
# TCPSPAN_KERNEL_SERIES set, so TestKernelFeatures checks that every
# capability the series is expected to have loads, and a scenario that does
# not apply skips naming the kernel's limitation (bpf/features_test.go).
#
# Exits nonzero if any kernel fails, times out or cannot be fetched, or if
# TestKernelFeatures did not pass on it. qemu runs unprivileged; the tests
# are root inside the VM. Knobs: TCPSPAN_KERNEL_TIMEOUT (seconds per kernel),
# TCPSPAN_KERNEL_TESTS (-test.run pattern), TCPSPAN_KERNEL_LOGDIR (keeps the
# serial console logs), TCPSPAN_KERNEL_CACHE (see kernels-fetch.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin

series=("$@")
[ ${#series[@]} -gt 0 ] || series=(5.10 6.1 6.12)
# Per-kernel hard limit. Under TCG a BPF load takes 10-20x longer than on
# the host: boot and the whole package (56 tests) take 165-200 s per kernel
# here, so the limit leaves about twice that. The tests inside stop 30 s
# before qemu is killed, so that a hung test prints its goroutines.
timeout_s=${TCPSPAN_KERNEL_TIMEOUT:-360}
test_timeout_s=$((timeout_s > 60 ? timeout_s - 30 : timeout_s))
# Tests run in the VM: the bpf package's privileged capture tests and the
# capability table (TestKernelFeatures), which the tests consult to skip a
# scenario the kernel cannot show. Fuzz seeds and pure decoding tests also
# run (cheap).
run=${TCPSPAN_KERNEL_TESTS:-.}

for tool in qemu-system-x86_64 busybox; do
	command -v "$tool" >/dev/null || { echo "test-kernels: $tool missing (make deps)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/tcpspan-kernels.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "== kernel matrix: building the static test binary"
CGO_ENABLED=0 go test -c -o "$work/bpf.test" ./bpf/

# copy_with_libs copies a dynamically linked host binary and the shared
# libraries it needs into the initramfs root $1.
copy_with_libs() {
	local root=$1 bin=$2
	install -D -m 0755 "$bin" "$root/usr/sbin/$(basename "$bin")"
	ldd "$bin" | grep -oE '/[^ ]+' | while read -r lib; do
		# 0755: the dynamic loader is among them and must be executable.
		[ -e "$root$lib" ] || install -D -m 0755 "$lib" "$root$lib"
	done
}

# add_module copies a module of the unpacked kernel $2 and, first, the
# modules it depends on (the depends= entry of its .modinfo; the package has
# no modules.dep, which depmod writes at install), decompressed, into
# $root/modules, and appends them to the load order.
add_module() {
	local root=$1 kdir=$2 name=$3
	grep -qx "$name.ko" "$root/modules/order" 2>/dev/null && return 0
	local file
	# Module names use underscores; file names may use dashes.
	file=$(find "$kdir/lib/modules" -regextype posix-extended \
		-regex ".*/${name//_/[_-]}\.ko(\.xz|\.zst)?" | head -1)
	if [ -z "$file" ]; then
		# Built in (or absent): nothing to load.
		return 0
	fi
	local tmp=$root/modules/.$name.tmp
	case "$file" in
	*.xz) xz -dc "$file" >"$tmp" ;;
	*.zst) zstd -qdc "$file" >"$tmp" ;;
	*) cp "$file" "$tmp" ;;
	esac
	local dep
	for dep in $(tr '\0' '\n' <"$tmp" | sed -n 's/^depends=//p' | tr ',' ' '); do
		add_module "$root" "$kdir" "$dep"
	done
	mv "$tmp" "$root/modules/$name.ko"
	echo "$name.ko" >>"$root/modules/order"
}

build_initramfs() {
	local s=$1 kdir=$2 out=$3
	local root=$work/root-$s
	rm -rf "$root"
	mkdir -p "$root"/{bin,dev,proc,sys,tmp,run,etc,modules,usr/sbin} "$root/var"
	ln -s ../run "$root/var/run"
	cp "$(command -v busybox)" "$root/bin/busybox"
	cp "$work/bpf.test" "$root/bpf.test"
	# The tests run in /work, with the package's testdata beside them.
	mkdir -p "$root/work"
	cp -r bpf/testdata "$root/work/"
	copy_with_libs "$root" "$(command -v ip)"
	copy_with_libs "$root" "$(command -v nft)"
	copy_with_libs "$root" "$(command -v tc)"
	: >"$root/modules/order"
	# nft for the scenarios that hold back or drop packets.
	add_module "$root" "$kdir" nf_tables
	# tc's tbf, for the scenario that holds packets on the host.
	add_module "$root" "$kdir" sch_tbf
	cat >"$root/init" <<-EOF
		#!/bin/busybox sh
		/bin/busybox --install -s /bin
		export PATH=/usr/sbin:/bin
		mount -t proc proc /proc
		mount -t sysfs sys /sys
		mount -t devtmpfs dev /dev
		mount -t tmpfs tmp /tmp
		mount -t tmpfs run /run
		mount -t tracefs tracefs /sys/kernel/tracing
		mount -t bpf bpf /sys/fs/bpf
		mkdir -p /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup
		for m in \$(cat /modules/order); do insmod /modules/\$m || echo "insmod \$m failed"; done
		ip link set lo up
		sysctl -q -w kernel.unprivileged_bpf_disabled=1 2>/dev/null
		echo "TCPSPAN-MATRIX-KERNEL: \$(uname -r)"
		cd /work
		TCPSPAN_BPF_TESTS_REQUIRED=1 TCPSPAN_KERNEL_SERIES=$s /bpf.test -test.v -test.count=1 -test.timeout=${test_timeout_s}s -test.run '$run'
		echo "TCPSPAN-MATRIX-RESULT: rc=\$?"
		poweroff -f
	EOF
	chmod +x "$root/init"
	(cd "$root" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) >"$out"
}

declare -A result detail took
failed=0
for s in "${series[@]}"; do
	echo "== kernel $s"
	if ! kdir=$(./scripts/kernels-fetch.sh "$s"); then
		result[$s]=FAIL detail[$s]="kernel not available" took[$s]=0
		failed=1
		continue
	fi
	vmlinuz=$(ls "$kdir"/boot/vmlinuz-*)
	build_initramfs "$s" "$kdir" "$work/initramfs-$s.gz"
	log=$work/console-$s.log
	start=$(date +%s)
	set +e
	# One vCPU: the machine is shared, and TCG gains little from a second.
	# The console's control sequences (the firmware resets and clears the
	# terminal, and turns line wrapping off) are removed before anything
	# is printed or logged.
	timeout --kill-after=10 "$timeout_s" qemu-system-x86_64 -accel tcg -m 1G -smp 1 \
		-nographic -no-reboot -kernel "$vmlinuz" -initrd "$work/initramfs-$s.gz" \
		-append "console=ttyS0 panic=-1 quiet loglevel=3" </dev/null 2>&1 | ./scripts/console-plain.sh | tee "$log" |
		grep --line-buffered -E '(^=== RUN|--- |\s+--- |    [a-z_]+\.go:[0-9]+:|TCPSPAN-MATRIX|^ok|^FAIL|^PASS|^panic|insmod)' |
		grep --line-buffered -vE '^=== RUN|\.go:[0-9]+: warning: '
	qemu_rc=${PIPESTATUS[0]}
	set -e
	took[$s]=$(($(date +%s) - start))
	cp "$log" "${TCPSPAN_KERNEL_LOGDIR:-$work}/console-$s.log" 2>/dev/null || true
	rc=$(sed -n 's/.*TCPSPAN-MATRIX-RESULT: rc=\([0-9]*\).*/\1/p' "$log" | tail -1)
	kver=$(sed -n 's/.*TCPSPAN-MATRIX-KERNEL: //p' "$log" | tail -1)
	passed=$(grep -cE '^--- PASS' "$log" || true)
	skipped=$(grep -cE '^--- SKIP' "$log" || true)
	nfail=$(grep -cE '^--- FAIL' "$log" || true)
	if [ -z "$rc" ]; then
		result[$s]=FAIL
		[ "$qemu_rc" -eq 124 ] && detail[$s]="timed out after ${timeout_s}s" || detail[$s]="no result (qemu exit $qemu_rc)"
		failed=1
		echo "-- last lines of the $s console:"
		tail -30 "$log"
	elif [ "$rc" -ne 0 ] || [ "$nfail" -ne 0 ]; then
		result[$s]=FAIL detail[$s]="$kver: $passed passed, $nfail failed, $skipped skipped"
		failed=1
	elif ! grep -q '^--- PASS: TestKernelFeatures' "$log"; then
		# The expected-capability table must have run and passed: skips
		# elsewhere are only honest if it did.
		result[$s]=FAIL detail[$s]="$kver: TestKernelFeatures did not pass"
		failed=1
	else
		result[$s]=PASS detail[$s]="$kver: $passed passed, $skipped skipped"
	fi
	# The capabilities, as TestKernelFeatures logged them, and the skips,
	# which name the kernel limitation that makes a scenario not apply.
	grep -E '^\s+(on |off)  [a-z-]+ ' "$log" | sed 's/^\s*/      /' >"$work/caps-$s" || true
	grep -E '^\s+\S+\.go:[0-9]+: .* is off on this kernel: ' "$log" | sed 's/^\s*/      skip: /' >>"$work/caps-$s" || true
	grep -E '^\s+\S+\.go:[0-9]+: .* is off on this kernel, so ' "$log" | sed 's/^\s*/      partial: /' >>"$work/caps-$s" || true
done

echo
echo "== kernel matrix"
printf '%-6s %-5s %6s  %s\n' kernel result time detail
for s in "${series[@]}"; do
	printf '%-6s %-5s %5ss  %s\n' "$s" "${result[$s]}" "${took[$s]}" "${detail[$s]}"
	if [ -s "$work/caps-$s" ]; then cat "$work/caps-$s"; fi
done
exit $failed
