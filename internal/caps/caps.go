//go:build linux

package caps

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Set is a capability set: bit c of the 64 stands for capability c
// (unix.CAP_*).
type Set [2]uint32

// Effective returns the effective capabilities of the calling thread,
// which in tcpspan are the process's: it changes none.
func Effective() (Set, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return Set{}, fmt.Errorf("read capabilities: %w", err)
	}
	return Set{data[0].Effective, data[1].Effective}, nil
}

// Has reports whether capability c (unix.CAP_*) is in the set.
func (s Set) Has(c uint) bool {
	if c >= 64 {
		return false
	}
	return s[c/32]&(1<<(c%32)) != 0
}

// MemlockBoundsBPF reports whether the running kernel charges BPF memory to
// the memlock limit, as kernels before 5.11 do: lifting that limit then
// needs CAP_SYS_RESOURCE. A release that does not parse counts as such a
// kernel, the side that asks for more.
func MemlockBoundsBPF() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return true
	}
	return releaseBefore511(unix.ByteSliceToString(u.Release[:]))
}

// releaseBefore511 says whether a kernel release ("6.1.0-18-amd64") is
// older than 5.11, or does not parse.
func releaseBefore511(release string) bool {
	var major, minor int
	if _, err := fmt.Sscanf(release, "%d.%d", &major, &minor); err != nil {
		return true
	}
	return major < 5 || major == 5 && minor < 11
}

// PerfEventParanoid returns kernel.perf_event_paranoid, or 2, the mainline
// default, when it cannot be read. Above 2 (Debian's kernels default to 3,
// Ubuntu's to 4) perf_event_open(2) needs CAP_SYS_ADMIN: the kprobes and
// tracepoints that attach through perf events need it then, and the raw
// tracepoints, fexit and cgroup hooks, which attach through bpf(2), do not.
func PerfEventParanoid() int {
	b, err := os.ReadFile("/proc/sys/kernel/perf_event_paranoid")
	if err != nil {
		return 2
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 2
	}
	return v
}
