//go:build linux

package bpf

import (
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
	var links []link.Link
	for _, p := range []struct {
		name   string
		attach ebpf.AttachType
		prog   *ebpf.Program
	}{
		{"cgroup_skb/ingress (requests)", ebpf.AttachCGroupInetIngress, t.objs.RequestIngress},
		{"cgroup_skb/egress (requests)", ebpf.AttachCGroupInetEgress, t.objs.RequestEgress},
	} {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroup, Attach: p.attach, Program: p.prog})
		if err != nil {
			for _, l := range links {
				l.Close()
			}
			t.features.set(Capability{Name: CapTraceparent, Why: fmt.Sprintf("attach %s to %s: %v", p.name, cgroup, err)})
			return
		}
		links = append(links, l)
		t.progs[p.name] = p.prog
	}
	t.links = append(t.links, links...)
	window := "the first 2048 bytes"
	if atomic, _ := t.features.Capability(CapAtomicSlots); !atomic.On {
		window = "the first 192 bytes (no bpf_loop on this kernel)"
	}
	t.features.set(Capability{Name: CapTraceparent, On: true,
		How: "cgroup_skb/ingress and egress on " + cgroup + ": HTTP/1.x requests, header in " + window})
}

// attachClosedPortKprobes attaches the optional fallback for RSTs sent for
// closed ports, on kernels whose tcp_send_reset fires only with a socket.
func (t *Tracer) attachClosedPortKprobes() {
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
				Why: fmt.Sprintf("tcp_send_reset fires only with a socket on this kernel, and the kprobe fallback failed: kprobe %s: %v", k.fn, err)})
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
	l, err := link.Kprobe(fn, t.objs.SockDefErrorReportKprobe, nil)
	if err != nil {
		t.features.set(Capability{Name: CapSocketErrors,
			Why: fmt.Sprintf("the kernel has no inet_sk_error_report tracepoint (added in 5.14), and the kprobe fallback failed: kprobe %s: %v", fn, err)})
		return
	}
	t.links = append(t.links, l)
	t.progs["kprobe/"+fn] = t.objs.SockDefErrorReportKprobe
	t.features.set(Capability{Name: CapSocketErrors, On: true, How: "kprobe " + fn + " (fallback)",
		Why: "the kernel has no inet_sk_error_report tracepoint; sockets with their own error callback are not covered"})
}
