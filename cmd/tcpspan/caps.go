package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/tcpspan/tcpspan/internal/caps"
)

// capability is one Linux capability tcpspan needs on this host, and why.
// docs/operations.md explains each.
type capability struct {
	bit  uint
	name string
	why  string
}

// hostFacts are what decides the capabilities needed.
type hostFacts struct {
	euid            int
	perfParanoid    int  // kernel.perf_event_paranoid
	kernelBefore511 bool // memlock limits BPF memory before 5.11
}

func readHostFacts() hostFacts {
	return hostFacts{euid: os.Geteuid(), perfParanoid: caps.PerfEventParanoid(), kernelBefore511: caps.MemlockBoundsBPF()}
}

// requiredCapabilities lists what tcpspan needs to trace on a host with
// these facts: no more. Root has them all.
func requiredCapabilities(f hostFacts) []capability {
	caps := []capability{
		{unix.CAP_BPF, "CAP_BPF", "load the BPF programs and create their maps"},
		{unix.CAP_PERFMON, "CAP_PERFMON", "attach to tracepoints and read kernel socket state from the programs"},
		{unix.CAP_NET_ADMIN, "CAP_NET_ADMIN", "attach the cgroup_skb program to the cgroup root: without it SYNs dropped by a full accept queue go unseen"},
	}
	if f.kernelBefore511 {
		caps = append(caps, capability{unix.CAP_SYS_RESOURCE, "CAP_SYS_RESOURCE", "lift the memlock limit that bounds BPF maps before kernel 5.11"})
	}
	return caps
}

// optionalCapabilities improve what tcpspan reports on a host with these
// facts, and it runs without them.
func optionalCapabilities(f hostFacts) []capability {
	caps := []capability{
		{unix.CAP_SYS_ADMIN, "CAP_SYS_ADMIN", "with -netns: list the sockets open in that namespace at start (setns), to name their owners"},
		// Only the fallbacks attach through tracefs (bpf/tracefs.go).
		{unix.CAP_SYS_ADMIN, "CAP_SYS_ADMIN", "mount tracefs, if it is not mounted, where a fallback needs it: accept()'s syscall tracepoints on a kernel that loads neither fexit nor cgroup getpeername programs, kprobes on one without the kprobe PMU"},
		{unix.CAP_DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH", "not as root: read the tracepoint ids in tracefs, which only root may read, for those same fallbacks"},
		{unix.CAP_DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH", "read /proc/PID/environ of other users' processes (mode 0400): their OTEL_SERVICE_NAME names their spans"},
		{unix.CAP_SYS_PTRACE, "CAP_SYS_PTRACE", "with CAP_DAC_READ_SEARCH, read the /proc/PID/fd links of other users' processes: the owners of sockets open at start"},
	}
	if f.perfParanoid > 2 {
		// Only the fallbacks attach through perf events; without it the
		// kprobes are off, each saying why (tcpspan -features).
		caps = append(caps, capability{unix.CAP_SYS_ADMIN, "CAP_SYS_ADMIN",
			fmt.Sprintf("kernel.perf_event_paranoid is %d, so only CAP_SYS_ADMIN may open perf events, which the fallbacks attach through: the kprobes for resets to closed ports before kernel 6.10 and for socket errors before 5.14, and accept()'s syscall tracepoints where neither fexit nor the getpeername hooks load (raw tracepoints, fexit and cgroup hooks need none)", f.perfParanoid)})
	}
	return caps
}

// checkCapabilities returns an error naming every required capability the
// process lacks, and why each is needed.
func checkCapabilities(f hostFacts) error {
	eff, err := caps.Effective()
	if err != nil {
		return err
	}
	has := eff.Has
	var missing []string
	for _, c := range requiredCapabilities(f) {
		// CAP_SYS_ADMIN still grants what CAP_BPF, CAP_PERFMON and, for
		// BPF, CAP_NET_ADMIN grant.
		ok := has(c.bit) || (has(unix.CAP_SYS_ADMIN) && (c.bit == unix.CAP_BPF || c.bit == unix.CAP_PERFMON || c.bit == unix.CAP_NET_ADMIN))
		if !ok {
			missing = append(missing, c.name+" (to "+c.why+")")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s; run as root, or see tcpspan -capabilities", strings.Join(missing, ", "))
	}
	return nil
}

// printCapabilities writes the required capabilities, one per line: the
// name, then why. Then the optional ones, marked so.
func printCapabilities(w io.Writer, f hostFacts) {
	required := map[uint]bool{}
	for _, c := range requiredCapabilities(f) {
		required[c.bit] = true
		fmt.Fprintf(w, "%-20s required: %s\n", c.name, c.why)
	}
	for _, c := range optionalCapabilities(f) {
		if !required[c.bit] {
			fmt.Fprintf(w, "%-20s optional: %s\n", c.name, c.why)
		}
	}
}
