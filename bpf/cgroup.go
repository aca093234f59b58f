//go:build linux

package bpf

import (
	"errors"
	"fmt"

	"github.com/moby/sys/mountinfo"
)

// FindCgroup2 returns the cgroup v2 mount point from /proc/self/mountinfo.
// On hybrid layouts it is not /sys/fs/cgroup but e.g. /sys/fs/cgroup/unified.
func FindCgroup2() (string, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup2"))
	if err != nil {
		return "", fmt.Errorf("read mountinfo: %w", err)
	}
	if len(mounts) == 0 {
		return "", errors.New("no cgroup v2 mount found in /proc/self/mountinfo")
	}
	return mounts[0].Mountpoint, nil
}
