// Package bpf holds tcpspan's kernel side and the Go code that loads it and
// reads what it reports.
//
// The C sources (tcpspan.bpf.c and its headers) build one object with
// bpf2go; the generated tcpspan_x86_bpfel.{go,o} are committed, so building
// needs no clang. [Load] checks privileges and kernel support, resolves
// kernel enum names from the running kernel's BTF, loads the object and
// attaches every hook. [Tracer.Read] then delivers decoded records: one
// [ConnRecord] per finished connection, one [OrphanRecord] per event that
// has no tracked socket, and one [TraceparentRecord] per W3C traceparent
// header found in a request of a tracked connection (traceparent.h); and,
// once each window ends, the counts of closed-port resets and refused
// connects the kernel folded instead of sending ([FoldedResets],
// [FoldedConns], [WithResetFolding]).
//
// One file per concern: options.go (the [Option]s of [Load]), loader.go
// ([Load] and [Tracer.Close]), attach.go (the optional hooks and their
// fallbacks), privileges.go, tracefs.go, cgroup.go and netns.go (what Load
// needs from the host), listeners.go ([Tracer.AddListener]), realtime.go
// (PREEMPT_RT detection), features.go (the capability report), names.go
// (reason names from BTF), ring.go (the ring buffer's reader), reader.go
// ([Tracer.Read] and the kernel's counters), resets.go (sweeping the
// folded counts), records.go (the record types
// and [Decode]), syscalls.go (syscall numbers) and synwatch.go (the
// on-demand SYN watch).
//
// It is the bottom layer: it must not import conn, exporter or anything
// above it, nor join records into connections (package conn) or name them
// as spans. Its records are plain Go values, so that the tracker can be
// tested without a kernel.
package bpf
