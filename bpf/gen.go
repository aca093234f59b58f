package bpf

// The object is built for amd64 only: vmlinux.h comes from an x86_64 kernel,
// and the syscall number is read from x86's pt_regs. CFLAGS and the clang
// binary come from the Makefile (make generate), which pins them.
//go:generate go tool bpf2go -cc $BPF_CLANG -cflags $BPF_CFLAGS -target amd64 -type orphan -type syn_watch_ask -type traceparent -type reset_storm_key -type reset_storm -type refused_storm_key -type refused_storm tcpspan tcpspan.bpf.c -- -I./include

// The same object for older kernels: without atomic fetch instructions,
// which kernels before 5.12 reject ("BPF_STX uses reserved fields"), and
// without the BTF task helpers (bpf_task_pt_regs: 5.15) that release_by_task in
// sock.h uses. Load picks it where either is missing.
//go:generate go tool bpf2go -cc $BPF_CLANG -cflags "$BPF_CFLAGS -DTCPSPAN_COMPAT" -target amd64 tcpspanCompat tcpspan.bpf.c -- -I./include
