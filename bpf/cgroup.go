//go:build linux

package bpf

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
)

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
