//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/tcpspan/tcpspan/internal/caps"
)

// CheckPrivileges returns an error naming what is missing when the process
// cannot load and attach tcpspan's programs.
func CheckPrivileges() error {
	eff, err := caps.Effective()
	if err != nil {
		return err
	}
	has := eff.Has
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
		return fmt.Errorf("missing capabilities %s: run tcpspan as root (sudo), or grant them (tcpspan -capabilities lists what each is for)", strings.Join(missing, ", "))
	}
	return nil
}

// memlockHint explains a failure to lift the memlock limit. Before 5.11 the
// limit bounds BPF memory and lifting it needs CAP_SYS_RESOURCE. From 5.11
// it does not matter, and the failure means that the probe's bpf() call was
// refused: a container runtime's default seccomp profile does that.
func memlockHint() string {
	if !caps.MemlockBoundsBPF() {
		return "the bpf() system call was refused: a seccomp profile may block it (container runtimes' default ones do; run the agent unconfined, see docs/kubernetes.md)"
	}
	return "remove memlock limit (needs CAP_SYS_RESOURCE on kernels before 5.11)"
}

// perfEventHint explains a kprobe's or a tracepoint's refusal to attach by
// kernel.perf_event_paranoid, or returns "". Those attach through
// perf_event_open(2), which Debian's and Ubuntu's kernels, at paranoid 3 or
// more, allow only to CAP_SYS_ADMIN, whatever CAP_PERFMON says. Only the
// fallbacks attach so: raw tracepoints, fexit and cgroup hooks attach
// through bpf(2), which the setting does not govern.
func perfEventHint(err error) string {
	if !errors.Is(err, os.ErrPermission) {
		return ""
	}
	p := caps.PerfEventParanoid()
	if p <= 2 {
		return ""
	}
	return fmt.Sprintf(" (kernel.perf_event_paranoid is %d: only CAP_SYS_ADMIN may open the perf event it attaches through)", p)
}
