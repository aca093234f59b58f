//go:build linux

package bpf

import (
	"bufio"
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
	"golang.org/x/sys/unix"
)

// Defaults of the load options.
const (
	// DefaultRingBufferBytes is the size of the ring buffer. A connection
	// record is 568 bytes, so 16 MiB holds about 29k of them.
	DefaultRingBufferBytes = 16 << 20
	// DefaultMaxConnections is how many open connections the kernel tracks
	// at once. Each costs about 600 bytes of kernel memory (about 40 MiB at
	// the default). Beyond it the oldest entries are evicted and those
	// connections are reported mid-life when they next show activity.
	DefaultMaxConnections = 65536
	// DefaultWakeupBytes is how much must be pending before the kernel
	// signals the ring buffer's poller. The reader drains on a timer (see
	// [Tracer.Read]) and wakes early for the signal, so a burst is read
	// without waiting for the timer; it is kept rare so that it costs the
	// kernel little.
	DefaultWakeupBytes = 64 << 10
)

// Option configures [Load].
type Option interface {
	apply(config) config
}

type optionFunc func(config) config

func (f optionFunc) apply(c config) config { return f(c) }

type config struct {
	netns         uint32
	ports         []uint16
	ringBytes     int
	maxConns      int
	wakeupBytes   uint32
	pollMin       time.Duration // the reader's sleeps: see PollInterval
	pollMax       time.Duration
	cgroupPath    string
	verifierLogs  bool
	warn          func(string)
	skipClean     bool
	synWatch      SynWatchMode
	noTraceparent bool
	notice        func(string)
	resetWindow   time.Duration // see WithResetFolding
	// acceptHook: hook accept() through this fallback even where fexit
	// works (tests): acceptPeerHook or acceptTracepoints; "" for the best.
	acceptHook string
	// softirqInTask: the kernel runs softirqs on the task's stack
	// (PREEMPT_RT); nil means read /sys/kernel/realtime.
	softirqInTask *bool
}

func newConfig(opts ...Option) config {
	c := config{
		ringBytes:   DefaultRingBufferBytes,
		maxConns:    DefaultMaxConnections,
		wakeupBytes: DefaultWakeupBytes,
		pollMin:     PollInterval,
		pollMax:     MaxPollInterval,
		warn:        func(string) {},
		notice:      func(string) {},
	}
	for _, o := range opts {
		c = o.apply(c)
	}
	return c
}

// WithNetns restricts capture to the network namespace with this inode
// (see [NetnsInode]). Zero, the default, captures every namespace.
func WithNetns(inode uint32) Option {
	return optionFunc(func(c config) config { c.netns = inode; return c })
}

// WithPorts restricts capture to connections whose local or remote port is
// one of ports (at most 8). None, the default, captures all ports.
func WithPorts(ports ...uint16) Option {
	return optionFunc(func(c config) config { c.ports = ports; return c })
}

// WithRingBufferBytes sets the ring buffer size, a power of two multiple of
// the page size. Default [DefaultRingBufferBytes].
func WithRingBufferBytes(n int) Option {
	return optionFunc(func(c config) config { c.ringBytes = n; return c })
}

// WithMaxConnections sets how many open connections the kernel tracks.
// Default [DefaultMaxConnections].
func WithMaxConnections(n int) Option {
	return optionFunc(func(c config) config { c.maxConns = n; return c })
}

// WithSkipClean makes the kernel side keep connections that had no problem
// (no retransmit, reset, error, drop or overflow) to itself: it counts them
// ([Counters.CleanSkipped]) instead of sending a record. For when nothing
// would export or print them: it spares a ring-buffer write per socket in
// the kernel and the record's whole path in the agent.
func WithSkipClean(on bool) Option {
	return optionFunc(func(c config) config { c.skipClean = on; return c })
}

// WithTraceparent turns on or off the capture of W3C traceparent headers
// in HTTP/1.x requests (see [CapTraceparent]). Default on.
func WithTraceparent(on bool) Option {
	return optionFunc(func(c config) config { c.noTraceparent = !on; return c })
}

// WithCgroupPath sets the cgroup v2 directory the SYN-overflow program
// attaches to. By default it is found in /proc/self/mountinfo.
func WithCgroupPath(path string) Option {
	return optionFunc(func(c config) config { c.cgroupPath = path; return c })
}

// WithWarnings receives warnings about degraded capabilities.
func WithWarnings(f func(string)) Option {
	return optionFunc(func(c config) config { c.warn = f; return c })
}

// WithVerifierLogs prints the full verifier log when a program fails to load.
func WithVerifierLogs(on bool) Option {
	return optionFunc(func(c config) config { c.verifierLogs = on; return c })
}

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
	noLookupAndDelete bool                 // the kernel cannot look up and delete in one step
	refused           *tcpspanRefusedStorm // sweepFolded's buffer
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
	tracefs, err := EnsureTracefs()
	if err != nil {
		return nil, err
	}
	names, err := NewKernelNames(kernelBTF, tracefs)
	if err != nil {
		return nil, err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("%s: %w", memlockHint(), err)
	}

	protos, err := readPrototypes(kernelBTF)
	if err != nil {
		return nil, err
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
	for _, tp := range []struct {
		name string
		prog *ebpf.Program
	}{
		{"sys_exit_accept4", t.objs.SysExitAccept4},
		{"sys_exit_accept", t.objs.SysExitAccept},
	} {
		l, err := link.Tracepoint("syscalls", tp.name, tp.prog, nil)
		if err != nil {
			return fmt.Errorf("attach tracepoint syscalls/%s: %w", tp.name, err)
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
	var links []link.Link
	for _, p := range []struct {
		name   string
		attach ebpf.AttachType
		prog   *ebpf.Program
	}{
		{"cgroup/getpeername4", ebpf.AttachCgroupInet4GetPeername, t.objs.AcceptPeer4},
		{"cgroup/getpeername6", ebpf.AttachCgroupInet6GetPeername, t.objs.AcceptPeer6},
	} {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroup, Attach: p.attach, Program: p.prog})
		if err != nil {
			for _, l := range links {
				l.Close()
			}
			return fmt.Errorf("attach %s to %s: %w", p.name, cgroup, err)
		}
		links = append(links, l)
		t.progs[p.name] = p.prog
	}
	t.links = append(t.links, links...)
	return nil
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

// CheckPrivileges returns an error naming what is missing when the process
// cannot load and attach tcpspan's programs.
func CheckPrivileges() error {
	var hdr = unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	has := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
	if has(unix.CAP_SYS_ADMIN) {
		return nil
	}
	var missing []string
	for _, c := range []struct {
		cap  uint
		name string
	}{
		{unix.CAP_BPF, "CAP_BPF"},
		{unix.CAP_PERFMON, "CAP_PERFMON"},
		{unix.CAP_NET_ADMIN, "CAP_NET_ADMIN"},
	} {
		if !has(c.cap) {
			missing = append(missing, c.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing capabilities %s: run tcpspan as root (sudo), or grant them (CAP_SYS_ADMIN too where kernel.perf_event_paranoid > 2)", strings.Join(missing, ", "))
	}
	return nil
}

// EnsureTracefs returns the tracefs mount point, mounting tracefs at
// /sys/kernel/tracing when it is not mounted. Syscall tracepoints need it.
func EnsureTracefs() (string, error) {
	for _, dir := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
		if _, err := os.Stat(dir + "/events"); err == nil {
			return dir, nil
		}
	}
	if err := unix.Mount("nodev", "/sys/kernel/tracing", "tracefs", 0, ""); err != nil {
		return "", fmt.Errorf("tracefs is not mounted and mounting it failed (try: mount -t tracefs nodev /sys/kernel/tracing): %w", err)
	}
	return "/sys/kernel/tracing", nil
}

// FindCgroup2 returns the cgroup v2 mount point from /proc/self/mountinfo.
// On hybrid layouts it is not /sys/fs/cgroup but e.g. /sys/fs/cgroup/unified.
func FindCgroup2() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("read mountinfo: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 36 35 0:30 / /sys/fs/cgroup/unified rw,... - cgroup2 cgroup2 rw
		fields := strings.Fields(sc.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && len(fields) > 4 {
				return fields[4], nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read mountinfo: %w", err)
	}
	return "", errors.New("no cgroup v2 mount found in /proc/self/mountinfo")
}

// NetnsInode returns the inode of a network namespace file, such as
// /var/run/netns/NAME or /proc/PID/ns/net, for [WithNetns].
func NetnsInode(path string) (uint32, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("network namespace %s: %w", path, err)
	}
	defer unix.Close(fd)
	// Any file has an inode: only a namespace file names a namespace.
	if t, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE); err != nil || t != unix.CLONE_NEWNET {
		return 0, fmt.Errorf("%s is not a network namespace file", path)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("network namespace %s: %w", path, err)
	}
	return uint32(st.Ino), nil
}

// AddListener records the owner of a listening socket that predates the
// agent, so that children and orphans on its port name their process, and
// its accept queue's length and limit: a queue half full or more, or a limit
// below 64, turns the SYN watch on (see [SynWatchAuto]).
func (t *Tracer) AddListener(netns uint32, port uint16, pid uint32, comm string, backlog, max uint32) error {
	key := tcpspanListenerKey{Netns: netns, Port: port}
	var val tcpspanListenerState
	val.Owner.Pid = pid
	for i := 0; i < len(comm) && i < len(val.Owner.Comm)-1; i++ {
		val.Owner.Comm[i] = int8(comm[i])
	}
	high := queueHigh(backlog, max)
	if high {
		val.QueueHigh = 1
	}
	small := max < smallQueue
	if small {
		val.QueueSmall = 1
	}
	// NoExist: an entry from a listen() seen live is fresher.
	if err := t.objs.Listeners.Update(&key, &val, ebpf.UpdateNoExist); err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
		return fmt.Errorf("add listener :%d: %w", port, err)
	}
	switch {
	case t.watch == nil:
	case high:
		t.watch.ask(&SynWatchAsk{Netns: netns, Port: port, Why: WatchQueueHigh, Backlog: backlog, Max: max})
	case small:
		t.watch.ask(&SynWatchAsk{Netns: netns, Port: port, Why: WatchSmallQueue, Max: max})
	}
	return nil
}

// memlockHint explains a failure to lift the memlock limit. Before 5.11 the
// limit bounds BPF memory and lifting it needs CAP_SYS_RESOURCE. From 5.11
// it does not matter, and the failure means that the probe's bpf() call was
// refused: a container runtime's default seccomp profile does that.
func memlockHint() string {
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		var major, minor int
		if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor); err == nil &&
			(major > 5 || major == 5 && minor >= 11) {
			return "the bpf() system call was refused: a seccomp profile may block it (container runtimes' default ones do; run the agent unconfined, see docs/kubernetes.md)"
		}
	}
	return "remove memlock limit (needs CAP_SYS_RESOURCE on kernels before 5.11)"
}

// realtimeKernel says whether the running kernel is a PREEMPT_RT one, which
// runs softirqs in task context: such kernels have /sys/kernel/realtime,
// holding 1.
func realtimeKernel() bool {
	b, err := os.ReadFile("/sys/kernel/realtime")
	return err == nil && strings.TrimSpace(string(b)) == "1"
}
