// Package caps reads the effective Linux capabilities of the running
// process. It is the one place in tcpspan that calls capget(2), and the one
// that tells from the kernel release whether BPF memory is bounded by the
// memlock limit (which decides whether CAP_SYS_RESOURCE is needed), and from
// kernel.perf_event_paranoid whether perf events need CAP_SYS_ADMIN.
//
// It decides nothing: which capabilities tcpspan needs, and what to say
// when one is missing, belong to its callers ([bpf.CheckPrivileges] and
// the tcpspan command's -capabilities report). It must not grow policy,
// raise or drop capabilities, or import other tcpspan packages.
//
// [bpf.CheckPrivileges]: https://pkg.go.dev/github.com/tcpspan/tcpspan/bpf#CheckPrivileges
package caps
