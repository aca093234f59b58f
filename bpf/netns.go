//go:build linux

package bpf

import (
	"fmt"

	"golang.org/x/sys/unix"
)

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
