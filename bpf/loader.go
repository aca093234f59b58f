//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
)

// Tracer is the loaded and attached kernel side.
type Tracer struct {
	objs      tcpspanObjects
	links     []link.Link
	reader    *ringReader
	names     *KernelNames
	features  Features
	progs     map[string]*ebpf.Program // attached, by hook name
	malformed atomic.Uint64            // records Read could not decode
	// pollMin and pollMax bound Read's sleeps; drains counts its passes.
	pollMin, pollMax time.Duration
	// resetWindow: resets for closed ports are folded per window of this
	// (WithResetFolding); the reader sweeps their counts (sweepResets).
	resetWindow       time.Duration
	noLookupAndDelete bool // the kernel cannot look up and delete in one step
	drains            atomic.Uint64
	// watch attaches the SYN watch on demand ([SynWatchAuto]); nil when
	// it is always on, or cannot be.
	watch *synWatch
}

// Load checks privileges and kernel support, loads the BPF object and
// attaches every hook. Close the Tracer to detach them.
func Load(opts ...Option) (_ *Tracer, err error) {
	cfg := newConfig(opts...)
	if len(cfg.ports) > 8 {
		return nil, fmt.Errorf("port filter: at most 8 ports, got %d", len(cfg.ports))
	}
	if err := CheckPrivileges(); err != nil {
		return nil, err
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return nil, errors.New("kernel BTF not found at /sys/kernel/btf/vmlinux: tcpspan needs a kernel built with CONFIG_DEBUG_INFO_BTF=y")
	}
	kernelBTF, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("load kernel BTF: %w", err)
	}
	protos, err := readPrototypes(kernelBTF)
	if err != nil {
		return nil, err
	}
	names, err := kernelNames(kernelBTF, protos)
	if err != nil {
		return nil, err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("%s: %w", memlockHint(), err)
	}

	modern, err := haveModernObjectNeeds()
	if err != nil {
		return nil, err
	}
	rt := realtimeKernel()
	if cfg.softirqInTask != nil {
		rt = *cfg.softirqInTask
	}
	t := &Tracer{names: names, progs: map[string]*ebpf.Program{}, pollMin: cfg.pollMin, pollMax: cfg.pollMax,
		resetWindow: cfg.resetWindow}
	t.features.init(protos, names, modern, rt)

	// Both objects have the same programs, maps and variables; the
	// compatible one avoids atomic fetch instructions and the BTF task
	// helpers (see release_by_task in sock.h).
	load := loadTcpspan
	if !modern {
		load = loadTcpspanCompat
	}
	spec, err := load()
	if err != nil {
		return nil, err
	}
	// fexit programs load only where the kernel has BPF trampolines and
	// lets tracing programs load; elsewhere they are left out (stubs), and
	// accept() is hooked through its syscall tracepoints (attachAccept).
	fexitErr := errAcceptFallbackAsked
	if cfg.acceptHook == "" {
		fexitErr = probeFexit(kernelBTF, acceptFexitFunc)
	}
	if fexitErr != nil {
		spec.Programs[tcpspanProgAcceptExit] = stubProgram(tcpspanProgAcceptExit)
	}
	if fexitErr == nil || cfg.acceptHook == acceptTracepoints {
		// Not needed: keep them from the verifier.
		spec.Programs[tcpspanProgAcceptPeer4] = stubProgram(tcpspanProgAcceptPeer4)
		spec.Programs[tcpspanProgAcceptPeer6] = stubProgram(tcpspanProgAcceptPeer6)
	}
	spec.Maps[tcpspanMapEvents].MaxEntries = uint32(cfg.ringBytes)
	spec.Maps[tcpspanMapConns].MaxEntries = uint32(cfg.maxConns)

	var ports [8]uint16
	copy(ports[:], cfg.ports)
	var dropBitmap [4]uint64
	for v, name := range names.dropReasons {
		if v < 256 && strings.HasPrefix(name, "TCP_") {
			dropBitmap[v/64] |= 1 << (v % 64)
		}
	}
	overflow, ok := names.dropReasonValue("TCP_LISTEN_OVERFLOW")
	noSocket, _ := names.dropReasonValue("NO_SOCKET")
	if !ok || !protos.kfreeRxSk {
		// The cookie case is only recognised beside the other, and needs
		// the listener (rx_sk).
		noSocket = 0
	}
	for name, value := range map[string]any{
		tcpspanVarFilterNetns:          cfg.netns,
		tcpspanVarFilterPorts:          ports,
		tcpspanVarWakeupBytes:          cfg.wakeupBytes,
		tcpspanVarSkipClean:            cfg.skipClean,
		tcpspanVarDropReasons:          dropBitmap,
		tcpspanVarListenOverflowReason: overflow,
		tcpspanVarNoSocketReason:       noSocket,
		tcpspanVarRstHasReason:         protos.rstReason,
		tcpspanVarKfreeHasReason:       protos.kfreeReason,
		tcpspanVarKfreeHasRxSk:         protos.kfreeRxSk,
		tcpspanVarRetransHasErr:        protos.retransErr,
		tcpspanVarSoftirqInTask:        rt,
		tcpspanVarSynWatchAuto:         cfg.synWatch == SynWatchAuto,
		tcpspanVarResetWindowNs:        uint64(max(cfg.resetWindow, 0)),
	} {
		if err := spec.Variables[name].Set(value); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}

	collOpts := &ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{KernelTypes: kernelBTF}}
	err = spec.LoadAndAssign(&t.objs, collOpts)
	var peerErr error // why the getpeername hooks did not load
	if err != nil && spec.Programs[tcpspanProgAcceptPeer4].Type != ebpf.SocketFilter {
		// A kernel without fexit that refuses the getpeername hooks too:
		// load without them, and let accept() fall back to the
		// tracepoints.
		peerErr = fmt.Errorf("load cgroup/getpeername hooks: %w", err)
		spec.Programs[tcpspanProgAcceptPeer4] = stubProgram(tcpspanProgAcceptPeer4)
		spec.Programs[tcpspanProgAcceptPeer6] = stubProgram(tcpspanProgAcceptPeer6)
		err = spec.LoadAndAssign(&t.objs, collOpts)
	}
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) && cfg.verifierLogs {
			// The wrapped error names the program; %+v is the full log.
			return nil, fmt.Errorf("load BPF object: %w:\n%+v", err, ve)
		}
		return nil, fmt.Errorf("load BPF object (set TCPSPAN_VERIFIER_LOG=1 for the verifier log): %w", err)
	}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()

	raw := []struct {
		name string
		prog *ebpf.Program
	}{
		// The order matters little, but destroy goes last so that no
		// connection is emitted while its other hooks are not yet on.
		{"inet_sock_set_state", t.objs.InetSockSetState},
		{"tcp_send_reset", t.objs.TcpSendReset},
		{"tcp_receive_reset", t.objs.TcpReceiveReset},
		{"inet_sk_error_report", t.objs.InetSkErrorReport},
		{"tcp_retransmit_skb", t.objs.TcpRetransmitSkb},
		{"tcp_retransmit_synack", t.objs.TcpRetransmitSynack},
		{"kfree_skb", t.objs.KfreeSkb},
		{"tcp_destroy_sock", t.objs.TcpDestroySock},
	}
	for _, r := range raw {
		if r.name == "kfree_skb" && !protos.kfreeReason {
			continue // nothing to learn from a drop without a reason
		}
		if r.name == "inet_sk_error_report" && !protos.errorReport {
			continue // see attachErrorKprobe
		}
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: r.name, Program: r.prog})
		if err != nil {
			return nil, fmt.Errorf("attach raw tracepoint %s: %w", r.name, err)
		}
		t.links = append(t.links, l)
		t.progs[r.name] = r.prog
	}
	if !protos.rstNoSocket {
		t.attachClosedPortKprobes()
	}
	if protos.errorReport {
		t.features.set(Capability{Name: CapSocketErrors, On: true, How: "raw tracepoint inet_sk_error_report"})
	} else {
		t.attachErrorKprobe()
	}

	cgroup := cfg.cgroupPath
	if cgroup == "" {
		cgroup, err = FindCgroup2()
		if err != nil {
			cfg.warn(fmt.Sprintf("SYN accept-queue overflow detection off: %v", err))
			t.features.set(Capability{Name: CapSYNOverflow, Why: err.Error() + " (needs cgroup v2)"})
		}
	}
	if cgroup != "" {
		attach := func() (link.Link, error) {
			return link.AttachCgroup(link.CgroupOptions{Path: cgroup, Attach: ebpf.AttachCGroupInetIngress, Program: t.objs.SynIngress})
		}
		// In auto mode too, attach once now: a failure shows at start.
		l, err := attach()
		if err != nil {
			cfg.warn(fmt.Sprintf("SYN accept-queue overflow detection off: attach cgroup_skb/ingress to %s: %v", cgroup, err))
			t.features.set(Capability{Name: CapSYNOverflow, Why: fmt.Sprintf("attach cgroup_skb/ingress to %s: %v", cgroup, err)})
		} else {
			how := "cgroup_skb/ingress on " + cgroup
			if cfg.synWatch == SynWatchAuto {
				l.Close()
				t.watch = newSynWatch(attach, t.objs.Listeners, cfg.notice)
				how += ", attached while an accept queue is half full or more, or a listener's limit is below 64 (SYN watch auto)"
			} else {
				t.links = append(t.links, l)
			}
			t.progs["cgroup_skb/ingress"] = t.objs.SynIngress
			t.features.SYNOverflow = true
			t.features.CgroupPath = cgroup
			t.features.set(Capability{Name: CapSYNOverflow, On: true, How: how})
		}
	}
	if err := t.attachAccept(cfg, fexitErr, peerErr, cgroup); err != nil {
		return nil, err
	}
	t.attachTraceparent(cfg, cgroup)
	for _, c := range t.features.Caps {
		if !c.On {
			cfg.warn(fmt.Sprintf("%s off: %s", c.Name, c.Why))
		}
	}

	t.reader, err = newRingReader(t.objs.Events)
	if err != nil {
		return nil, fmt.Errorf("open ring buffer reader: %w", err)
	}
	// The kernel's BTF (tens of MB parsed) was needed only to load and to
	// name reasons; names keeps what it needs. Let the agent run small.
	debug.FreeOSMemory()
	return t, nil
}

// Features reports what loaded on this kernel.
func (t *Tracer) Features() Features { return t.features }

// Names returns the kernel's reason names.
func (t *Tracer) Names() *KernelNames { return t.names }

// Close detaches every hook and frees the maps. It unblocks [Tracer.Read].
func (t *Tracer) Close() error {
	var errs []error
	if t.watch != nil {
		t.watch.close()
	}
	if t.reader != nil {
		errs = append(errs, t.reader.Close())
	}
	for _, l := range t.links {
		errs = append(errs, l.Close())
	}
	t.links = nil
	errs = append(errs, t.objs.Close())
	return errors.Join(errs...)
}
