//go:build linux

package bpf

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

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
