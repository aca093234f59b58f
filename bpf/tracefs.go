//go:build linux

package bpf

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Only the fallbacks need tracefs: the syscall tracepoints of accept()
// (where neither fexit nor the cgroup getpeername hooks load), kprobes on a
// kernel without the kprobe PMU, and reason names on a kernel whose BTF
// lacks their enum. Raw tracepoints, fexit and cgroup programs attach
// without it. So tcpspan mounts it only when a fallback is about to be
// used, and leaves the host's mounts alone otherwise.

// mountedTracefs returns where tracefs is mounted, or "" if it is not.
func mountedTracefs() string {
	for _, dir := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
		if _, err := os.Stat(dir + "/events"); err == nil {
			return dir
		}
	}
	return ""
}

// EnsureTracefs returns the tracefs mount point, mounting tracefs at
// /sys/kernel/tracing when it is not mounted (which needs CAP_SYS_ADMIN).
func EnsureTracefs() (string, error) {
	if dir := mountedTracefs(); dir != "" {
		return dir, nil
	}
	if err := unix.Mount("nodev", "/sys/kernel/tracing", "tracefs", 0, ""); err != nil {
		return "", fmt.Errorf("tracefs is not mounted and mounting it failed (try: mount -t tracefs nodev /sys/kernel/tracing): %w", err)
	}
	return "/sys/kernel/tracing", nil
}
