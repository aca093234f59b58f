//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"
)

// Names of the capabilities in [Features.Caps], stable for scripts and
// tests.
const (
	CapConnections      = "connections"        // connection lifecycle, close() owners
	CapAccept           = "accept"             // the process that accepts a connection, its fd and when
	CapSocketErrors     = "socket-errors"      // errors the kernel reports to the application (ECONNREFUSED, ...)
	CapResetReasons     = "reset-reasons"      // the kernel's sk_rst_reason on each RST sent
	CapClosedPortResets = "closed-port-resets" // RSTs sent for packets that found no socket
	CapDropReasons      = "drop-reasons"       // TCP drops with the kernel's skb_drop_reason
	CapDropSocket       = "drop-socket"        // the socket a dropped packet was for (kfree_skb rx_sk)
	CapListenOverflow   = "listen-overflow"    // handshake ACKs dropped by a full accept queue (a drop reason)
	CapSYNOverflow      = "syn-overflow"       // SYNs dropped by a full accept queue
	CapAtomicSlots      = "atomic-event-slots" // events of one connection never share a slot
	CapTraceparent      = "traceparent"        // W3C traceparent headers of HTTP/1.x requests, as span links
	CapReleases         = "releases"           // how a process released a socket: close(), exit, execve(), ...
)

// Capability says whether one thing tcpspan observes works on the running
// kernel, how, and if not, why.
type Capability struct {
	Name string
	On   bool
	// How names the hooks that provide it, when on.
	How string
	// Why names the kernel's limitation when it is off, or a caveat of how
	// it works when on. Never a guess: what the loader found.
	Why string
}

// Features says which capabilities loaded on the running kernel.
type Features struct {
	ResetReasons     bool // tcp_send_reset carries sk_rst_reason (6.10+)
	DropReasons      bool // kfree_skb carries skb_drop_reason (5.17+)
	ListenOverflow   bool // a drop reason names accept-queue overflow of a handshake ACK
	SYNOverflow      bool // cgroup_skb sees SYNs hitting a full accept queue (cgroup v2)
	ClosedPortResets bool // RSTs for closed ports are seen (tracepoint, or kprobe fallback)
	CgroupPath       string
	// Caps lists every capability, in a fixed order, with how it works or
	// why it does not.
	Caps []Capability
}

// Capability returns the named capability ([CapResetReasons], ...).
func (f Features) Capability(name string) (Capability, bool) {
	for _, c := range f.Caps {
		if c.Name == name {
			return c, true
		}
	}
	return Capability{}, false
}

// String formats the capabilities as a table: on/off, name, and how or why.
func (f Features) String() string {
	var b strings.Builder
	for _, c := range f.Caps {
		state := "off"
		if c.On {
			state = "on "
		}
		detail := c.How
		if c.Why != "" {
			if detail != "" {
				detail += "; "
			}
			detail += c.Why
		}
		fmt.Fprintf(&b, "%s  %-20s %s\n", state, c.Name, detail)
	}
	return b.String()
}

func (f *Features) set(c Capability) {
	for i := range f.Caps {
		if f.Caps[i].Name == c.Name {
			f.Caps[i] = c
			return
		}
	}
	f.Caps = append(f.Caps, c)
}

// prototypes is what the loader reads from the running kernel's BTF about
// the tracepoints whose arguments differ between kernels.
type prototypes struct {
	errorReport bool   // the inet_sk_error_report tracepoint exists
	rstReason   bool   // tcp_send_reset(sk, skb, enum sk_rst_reason)
	rstNoSocket bool   // tcp_send_reset has its own event class, which fires without a socket
	kfreeReason bool   // kfree_skb(skb, location, enum skb_drop_reason, ...)
	kfreeRxSk   bool   // kfree_skb(..., reason, struct sock *rx_sk)
	retransErr  bool   // tcp_retransmit_skb(sk, skb, int err): fires for attempts not sent too
	rstProto    string // for messages: the prototypes as found
	kfreeProto  string
}

// readPrototypes reads the argument lists of the raw tracepoints from the
// btf_trace_<name> typedefs of the kernel's BTF. A raw tracepoint program
// reads its arguments by position, so the object is told which exist.
func readPrototypes(spec *btf.Spec) (prototypes, error) {
	var p prototypes
	_, err := tracepointArgs(spec, "inet_sk_error_report")
	p.errorReport = err == nil
	rst, err := tracepointArgs(spec, "tcp_send_reset")
	if err != nil {
		return p, err
	}
	p.rstProto = formatArgs("tcp_send_reset", rst)
	p.rstReason = len(rst) >= 3 && isEnum(rst[2].Type, "sk_rst_reason")
	// Since tcp_send_reset got its own event class (instead of
	// tcp_event_sk_skb, which requires a socket), tcp_v4_send_reset()
	// and tcp_v6_send_reset() fire it without a socket too.
	var st *btf.Struct
	p.rstNoSocket = spec.TypeByName("trace_event_raw_tcp_send_reset", &st) == nil

	kfree, err := tracepointArgs(spec, "kfree_skb")
	if err != nil {
		return p, err
	}
	p.kfreeProto = formatArgs("kfree_skb", kfree)
	p.kfreeReason = len(kfree) >= 3 && isEnum(kfree[2].Type, "skb_drop_reason")
	p.kfreeRxSk = p.kfreeReason && len(kfree) >= 4 && isPointerTo(kfree[3].Type, "sock")

	// Attaching tcp_retransmit_skb says so if it is missing.
	retrans, _ := tracepointArgs(spec, "tcp_retransmit_skb")
	p.retransErr = len(retrans) >= 3 && isSignedInt(retrans[2].Type)
	return p, nil
}

// tracepointArgs returns the arguments of a tracepoint, from the typedef
// btf_trace_<name>: a pointer to a function whose first parameter is the
// tracepoint's private data, followed by its TP_PROTO arguments.
func tracepointArgs(spec *btf.Spec, name string) ([]btf.FuncParam, error) {
	var td *btf.Typedef
	if err := spec.TypeByName("btf_trace_"+name, &td); err != nil {
		return nil, fmt.Errorf("tracepoint %s: no btf_trace_%s in kernel BTF: %w", name, name, err)
	}
	ptr, ok := td.Type.(*btf.Pointer)
	if !ok {
		return nil, fmt.Errorf("tracepoint %s: btf_trace_%s is %T, not a function pointer", name, name, td.Type)
	}
	proto, ok := ptr.Target.(*btf.FuncProto)
	if !ok || len(proto.Params) == 0 {
		return nil, fmt.Errorf("tracepoint %s: btf_trace_%s does not point to a prototype", name, name)
	}
	return proto.Params[1:], nil
}

// formatArgs writes a prototype as C-like text, e.g.
// tcp_send_reset(struct sock *, struct sk_buff *), for messages.
func formatArgs(name string, args []btf.FuncParam) string {
	var parts []string
	for _, a := range args {
		parts = append(parts, typeName(a.Type))
	}
	return name + "(" + strings.Join(parts, ", ") + ")"
}

func typeName(t btf.Type) string {
	switch v := skipQualifiers(t).(type) {
	case *btf.Pointer:
		return typeName(v.Target) + " *"
	case *btf.Struct:
		return "struct " + v.Name
	case *btf.Enum:
		return "enum " + v.Name
	case *btf.Int:
		return v.Name
	case *btf.Void:
		return "void"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// skipQualifiers strips typedefs, const and volatile.
func skipQualifiers(t btf.Type) btf.Type {
	for {
		switch v := t.(type) {
		case *btf.Typedef:
			t = v.Type
		case *btf.Const:
			t = v.Type
		case *btf.Volatile:
			t = v.Type
		default:
			return t
		}
	}
}

func isEnum(t btf.Type, name string) bool {
	e, ok := skipQualifiers(t).(*btf.Enum)
	return ok && e.Name == name
}

// isSignedInt says whether t is a signed integer, such as an int errno.
func isSignedInt(t btf.Type) bool {
	i, ok := skipQualifiers(t).(*btf.Int)
	return ok && i.Encoding == btf.Signed
}

func isPointerTo(t btf.Type, structName string) bool {
	p, ok := skipQualifiers(t).(*btf.Pointer)
	if !ok {
		return false
	}
	s, ok := skipQualifiers(p.Target).(*btf.Struct)
	return ok && s.Name == structName
}

// probeFexit says why an fexit program cannot be loaded on the kernel
// function fn, or nil if it can: that needs BPF trampolines (5.5+ on
// x86_64) and a kernel that lets tracing programs load, which some refuse
// (EPERM). It loads a two-instruction program.
func probeFexit(spec *btf.Spec, fn string) error {
	prog, err := ebpf.NewProgramWithOptions(&ebpf.ProgramSpec{
		Type:       ebpf.Tracing,
		AttachType: ebpf.AttachTraceFExit,
		AttachTo:   fn,
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
		License: "Dual BSD/GPL",
	}, ebpf.ProgramOptions{KernelTypes: spec})
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("the kernel refuses tracing programs: load fexit/%s: %w", fn, unix.EPERM)
	}
	if err != nil {
		return fmt.Errorf("load fexit/%s: %w", fn, err)
	}
	prog.Close()
	return nil
}

// stubProgram stands in for a program of the object that cannot load on
// this kernel and whose hook is not used: it does nothing and is never
// attached.
func stubProgram(name string) *ebpf.ProgramSpec {
	return &ebpf.ProgramSpec{
		Name: name,
		Type: ebpf.SocketFilter,
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
		License: "Dual BSD/GPL",
	}
}

// haveModernObjectNeeds says whether the kernel can load the object built
// for current kernels: atomic fetch instructions (5.12) and, to read the
// syscall a task is in, bpf_get_current_task_btf and bpf_task_pt_regs
// (5.15), and bpf_loop (5.17) for the traceparent scan. Otherwise the
// compatible object is loaded.
func haveModernObjectNeeds() (bool, error) {
	fetch, err := haveAtomicFetch()
	if err != nil || !fetch {
		return false, err
	}
	for _, h := range []struct {
		prog   ebpf.ProgramType
		helper asm.BuiltinFunc
		name   string
	}{
		{ebpf.RawTracepoint, asm.FnTaskPtRegs, "bpf_task_pt_regs"},
		{ebpf.CGroupSKB, asm.FnLoop, "bpf_loop"},
	} {
		switch err := features.HaveProgramHelper(h.prog, h.helper); {
		case err == nil:
		case errors.Is(err, ebpf.ErrNotSupported):
			return false, nil
		default:
			return false, fmt.Errorf("probe %s: %w", h.name, err)
		}
	}
	return true, nil
}

// haveAtomicFetch says whether the kernel accepts atomic fetch instructions
// (BPF_ATOMIC with BPF_FETCH, 5.12+). Older kernels reject them with
// "BPF_STX uses reserved fields". It loads a three-instruction program.
func haveAtomicFetch() (bool, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.SocketFilter,
		Instructions: asm.Instructions{
			asm.StoreImm(asm.R10, -8, 0, asm.Word),
			asm.Mov.Imm(asm.R1, 1),
			// lock *(u32 *)(r10 - 8) += r1, fetching the old value into r1.
			// The operation is in imm: BPF_ADD (0) | BPF_FETCH (1), as
			// clang emits it, spelled out because asm.FetchAdd.Mem
			// marshals imm 0 here (a plain add, which 5.10 accepts).
			{OpCode: asm.OpCode(asm.StXClass).SetMode(asm.AtomicMode).SetSize(asm.Word),
				Dst: asm.R10, Src: asm.R1, Offset: -8, Constant: 1},
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
		License: "Dual BSD/GPL",
	})
	if err == nil {
		prog.Close()
		return true, nil
	}
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return false, nil
	}
	return false, fmt.Errorf("probe atomic fetch: %w", err)
}

// init sets what is known before anything is attached. SYN overflow and,
// on kernels that need the kprobe fallback, closed-port resets are decided
// when attaching.
func (f *Features) init(p prototypes, names *KernelNames, modern, realtime bool) {
	conns := Capability{Name: CapConnections, On: true,
		How: "raw tracepoints inet_sock_set_state, tcp_*"}
	if realtime {
		conns.Why = "PREEMPT_RT runs softirqs on the task's stack: an event inside close() is credited to the process only while close() holds the socket's lock, so children reset by a listener's close() are marked kernel"
	}
	f.set(conns)
	f.set(Capability{Name: CapAccept, Why: "not attached"})
	f.set(Capability{Name: CapSocketErrors, Why: "not attached"})
	f.set(Capability{Name: CapReleases, On: true,
		How: "the releasing task's syscall and PF_EXITING: close(), close_range(), dup2()/dup3(), execve() close-on-exec, exit and death by a signal",
		Why: "io_uring's close is not told: its resets say the socket was released by other means"})

	switch {
	case !p.rstReason:
		f.set(Capability{Name: CapResetReasons,
			Why: "the kernel's tcp_send_reset has no reason argument (added in 6.10): resets are reported with reason unknown; found " + p.rstProto})
	case names.ResetSource == "":
		f.set(Capability{Name: CapResetReasons,
			Why: "tcp_send_reset has a reason, but neither BTF nor tracefs names its values: reported as numbers"})
	default:
		f.ResetReasons = true
		f.set(Capability{Name: CapResetReasons, On: true, How: "tcp_send_reset reason, names from " + names.ResetSource})
	}

	if p.rstNoSocket {
		f.ClosedPortResets = true
		f.set(Capability{Name: CapClosedPortResets, On: true, How: "tcp_send_reset (fires without a socket)"})
	} else {
		f.set(Capability{Name: CapClosedPortResets,
			Why: "tcp_send_reset fires only with a socket on this kernel (its own event class came in 6.10), and no kprobe fallback is attached yet"})
	}

	switch {
	case !p.kfreeReason:
		f.set(Capability{Name: CapDropReasons,
			Why: "the kernel's kfree_skb has no reason argument (added in 5.17): drops are not reported; found " + p.kfreeProto})
	case names.DropSource == "":
		f.set(Capability{Name: CapDropReasons,
			Why: "kfree_skb has a reason, but neither BTF nor tracefs names its values"})
	default:
		f.DropReasons = true
		f.set(Capability{Name: CapDropReasons, On: true, How: "kfree_skb reason (TCP_* reasons), names from " + names.DropSource})
	}

	if p.kfreeRxSk {
		f.set(Capability{Name: CapDropSocket, On: true, How: "kfree_skb rx_sk"})
	} else {
		f.set(Capability{Name: CapDropSocket,
			Why: "the kernel's kfree_skb has no rx_sk argument (added in 6.12): drops are joined by 4-tuple only, in the packet's device's namespace"})
	}

	_, overflowName := names.dropReasonValue("TCP_LISTEN_OVERFLOW")
	switch {
	case !f.DropReasons:
		f.set(Capability{Name: CapListenOverflow, Why: "needs drop reasons, which are off"})
	case !overflowName:
		f.set(Capability{Name: CapListenOverflow,
			Why: "the kernel's skb_drop_reason has no TCP_LISTEN_OVERFLOW: a handshake ACK dropped by a full accept queue is not seen"})
	default:
		f.ListenOverflow = true
		c := Capability{Name: CapListenOverflow, On: true, How: "kfree_skb reason TCP_LISTEN_OVERFLOW"}
		if !p.kfreeRxSk {
			c.Why = "without rx_sk the listener's backlog is not read, and SYN-cookie ACKs are not recognised"
		}
		f.set(c)
	}

	f.set(Capability{Name: CapSYNOverflow, Why: "not attached"})

	if modern {
		f.set(Capability{Name: CapAtomicSlots, On: true, How: "atomic fetch-and-add"})
	} else {
		f.set(Capability{Name: CapAtomicSlots,
			Why: "the kernel rejects atomic fetch instructions (added in 5.12) or lacks bpf_task_pt_regs (5.15): the object without them is loaded, and two CPUs updating one connection at the same instant may share an event slot"})
	}
}

// Summary is a one-line form for logs: the capabilities that are on, then
// those that are off.
func (f Features) Summary() string {
	var on, off []string
	for _, c := range f.Caps {
		if c.On {
			on = append(on, c.Name)
		} else {
			off = append(off, c.Name)
		}
	}
	return "on: " + strings.Join(on, ",") + "; off: " + strings.Join(off, ",")
}
