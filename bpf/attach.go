//go:build linux

package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// attachTraceparent attaches the programs that find traceparent headers in
// requests (bpf/traceparent.h), in both directions, to the cgroup v2 root.
func (t *Tracer) attachTraceparent(cfg config, cgroup string) {
	if cfg.noTraceparent {
		t.features.set(Capability{Name: CapTraceparent, Why: "turned off (-traceparent=false)"})
		return
	}
	if cgroup == "" {
		t.features.set(Capability{Name: CapTraceparent, Why: "no cgroup v2 mount to attach to"})
		return
	}
	err := t.attachCgroupAll(cgroup,
		cgroupProg{"cgroup_skb/ingress (requests)", ebpf.AttachCGroupInetIngress, t.objs.RequestIngress},
		cgroupProg{"cgroup_skb/egress (requests)", ebpf.AttachCGroupInetEgress, t.objs.RequestEgress})
	if err != nil {
		t.features.set(Capability{Name: CapTraceparent, Why: err.Error()})
		return
	}
	window := "the first 2048 bytes"
	if atomic, _ := t.features.Capability(CapAtomicSlots); !atomic.On {
		window = "the first 192 bytes (no bpf_loop on this kernel)"
	}
	t.features.set(Capability{Name: CapTraceparent, On: true,
		How: "cgroup_skb/ingress and egress on " + cgroup + ": HTTP/1.x requests, header in " + window})
}

// acceptFexitFunc is the kernel function the accept() hook attaches to
// with fexit: accept() and accept4() call it, and nothing else.
const acceptFexitFunc = "__sys_accept4"

// The fallbacks a test may ask for (WithAcceptHook in export_test.go).
const (
	acceptPeerHook    = "getpeername"
	acceptTracepoints = "tracepoints"
)

// errAcceptFallbackAsked is why fexit is not used when a test asks for a
// fallback.
var errAcceptFallbackAsked = errors.New("a fallback was asked for")

// attachAccept attaches the accept() hook, which names the process that
// accepts a connection. Best, fexit on the function both system calls
// call, which runs for them alone. Where fexit did not load (fexitErr) or
// does not attach, the cgroup getpeername hooks on cgroup, which accept()
// runs when it asks for the peer's address (accepted_peer in
// tcpspan.bpf.c): they too cost nothing else, but miss an accept() that
// asks for no address, and know neither its fd nor its syscall. Last, the
// syscall tracepoints, which see every accept() but cost every system call
// on the host, whatever it is, while attached: enabling any syscall
// tracepoint puts every task on the kernel's slow syscall path
// (TIF_SYSCALL_TRACEPOINT), 12 to 80 ns a call on the machines measured.
func (t *Tracer) attachAccept(cfg config, fexitErr, peerErr error, cgroup string) error {
	if fexitErr == nil {
		l, err := link.AttachTracing(link.TracingOptions{Program: t.objs.AcceptExit, AttachType: ebpf.AttachTraceFExit})
		if err == nil {
			t.links = append(t.links, l)
			t.progs["fexit/"+acceptFexitFunc] = t.objs.AcceptExit
			t.features.set(Capability{Name: CapAccept, On: true,
				How: "fexit " + acceptFexitFunc + " (runs only for accept, accept4)"})
			return nil
		}
		fexitErr = fmt.Errorf("attach fexit/%s: %w", acceptFexitFunc, err)
	}
	if cfg.acceptHook != acceptTracepoints {
		err := peerErr
		if err == nil {
			err = t.attachAcceptPeer(cgroup)
		}
		if err == nil {
			t.features.set(Capability{Name: CapAccept, On: true,
				How: "cgroup/getpeername4, getpeername6 on " + cgroup + " (fallback; they run only for accept() and getpeername())",
				Why: fmt.Sprintf("fexit is not available (%v): an accept() that asks for no peer address leaves its connection "+
					"to the listener's owner, and accept events name no fd or system call", fexitErr)})
			return nil
		}
		fexitErr = fmt.Errorf("%w; %w", fexitErr, err)
	}
	if _, err := EnsureTracefs(); err != nil {
		return fmt.Errorf("the accept() hook: neither fexit nor the cgroup getpeername hooks are available (%v), and its syscall tracepoints need tracefs: %w", fexitErr, err)
	}
	for _, tp := range []struct {
		name string
		prog *ebpf.Program
	}{
		{"sys_exit_accept4", t.objs.SysExitAccept4},
		{"sys_exit_accept", t.objs.SysExitAccept},
	} {
		l, err := link.Tracepoint("syscalls", tp.name, tp.prog, nil)
		if err != nil {
			return fmt.Errorf("attach tracepoint syscalls/%s: %w%s", tp.name, err, perfEventHint(err))
		}
		t.links = append(t.links, l)
		t.progs[tp.name] = tp.prog
	}
	t.features.set(Capability{Name: CapAccept, On: true,
		How: "tracepoints syscalls/sys_exit_accept4, sys_exit_accept (fallback)",
		Why: fmt.Sprintf("neither fexit nor the cgroup getpeername hooks are available (%v): while attached, every system call on the host takes the kernel's slow path", fexitErr)})
	return nil
}

// attachAcceptPeer attaches the getpeername hooks (accepted_peer) to the
// cgroup v2 directory cgroup, both or neither.
func (t *Tracer) attachAcceptPeer(cgroup string) error {
	if cgroup == "" {
		return errors.New("no cgroup v2 mount for the getpeername hooks")
	}
	return t.attachCgroupAll(cgroup,
		cgroupProg{"cgroup/getpeername4", ebpf.AttachCgroupInet4GetPeername, t.objs.AcceptPeer4},
		cgroupProg{"cgroup/getpeername6", ebpf.AttachCgroupInet6GetPeername, t.objs.AcceptPeer6})
}

// cgroupProg is a program to attach to a cgroup, and its name in progs.
type cgroupProg struct {
	name   string
	attach ebpf.AttachType
	prog   *ebpf.Program
}

// attachCgroupAll attaches every program to the cgroup v2 directory
// cgroup, or none: on an error it detaches those already attached.
func (t *Tracer) attachCgroupAll(cgroup string, progs ...cgroupProg) error {
	var links []link.Link
	for _, p := range progs {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroup, Attach: p.attach, Program: p.prog})
		if err != nil {
			for _, l := range links {
				l.Close()
			}
			return fmt.Errorf("attach %s to %s: %w", p.name, cgroup, err)
		}
		links = append(links, l)
	}
	for _, p := range progs {
		t.progs[p.name] = p.prog
	}
	t.links = append(t.links, links...)
	return nil
}

// attachClosedPortKprobes attaches the optional fallback for RSTs sent for
// closed ports, on kernels whose tcp_send_reset fires only with a socket.
func (t *Tracer) attachClosedPortKprobes() {
	// A kernel without the kprobe PMU attaches kprobes through tracefs;
	// if it cannot be mounted, the kprobe's own error says so.
	_, _ = EnsureTracefs()
	var links []link.Link
	for _, k := range []struct {
		fn   string
		prog *ebpf.Program
	}{
		{"tcp_v4_send_reset", t.objs.TcpV4SendResetKprobe},
		{"tcp_v6_send_reset", t.objs.TcpV6SendResetKprobe},
	} {
		l, err := link.Kprobe(k.fn, k.prog, nil)
		if err != nil {
			for _, l := range links {
				l.Close()
			}
			t.features.set(Capability{Name: CapClosedPortResets,
				Why: fmt.Sprintf("tcp_send_reset fires only with a socket on this kernel, and the kprobe fallback failed: kprobe %s: %v%s", k.fn, err, perfEventHint(err))})
			return
		}
		links = append(links, l)
		t.progs["kprobe/"+k.fn] = k.prog
	}
	t.links = append(t.links, links...)
	t.features.ClosedPortResets = true
	t.features.set(Capability{Name: CapClosedPortResets, On: true,
		How: "kprobes tcp_v4_send_reset, tcp_v6_send_reset (fallback, also for resets from time-wait and request sockets)",
		Why: "tcp_send_reset fires only with a socket on this kernel; no reason is given"})
}

// attachErrorKprobe attaches the optional fallback for errors reported to
// the application, on kernels without the inet_sk_error_report tracepoint.
func (t *Tracer) attachErrorKprobe() {
	const fn = "sock_def_error_report"
	_, _ = EnsureTracefs() // as in attachClosedPortKprobes
	l, err := link.Kprobe(fn, t.objs.SockDefErrorReportKprobe, nil)
	if err != nil {
		t.features.set(Capability{Name: CapSocketErrors,
			Why: fmt.Sprintf("the kernel has no inet_sk_error_report tracepoint (added in 5.14), and the kprobe fallback failed: kprobe %s: %v%s", fn, err, perfEventHint(err))})
		return
	}
	t.links = append(t.links, l)
	t.progs["kprobe/"+fn] = t.objs.SockDefErrorReportKprobe
	t.features.set(Capability{Name: CapSocketErrors, On: true, How: "kprobe " + fn + " (fallback)",
		Why: "the kernel has no inet_sk_error_report tracepoint; sockets with their own error callback are not covered"})
}
