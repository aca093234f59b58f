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
// header found in a request of a tracked connection (traceparent.h).
package bpf
