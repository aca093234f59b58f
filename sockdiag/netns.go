package sockdiag

import (
	"errors"
	"fmt"
	"io/fs"
	"runtime"

	"golang.org/x/sys/unix"
)

// threadNetns is the network namespace of the calling OS thread. Go threads
// do not all share one namespace once some goroutine has locked its thread
// and called setns, so /proc/self/ns/net would be the wrong file.
const threadNetns = "/proc/thread-self/ns/net"

// openDiagSocket returns a NETLINK_SOCK_DIAG socket created inside the
// network namespace at netnsPath ("" for the calling thread's namespace),
// and the inode number of that namespace. A netlink socket stays bound to
// the namespace it was created in, so the caller can use it from any thread.
func openDiagSocket(netnsPath string) (fd int, nsInode uint32, err error) {
	if netnsPath == "" {
		// Pin the goroutine so that the namespace we stat is the one the
		// socket is created in.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()

		var st unix.Stat_t
		if err := unix.Stat(threadNetns, &st); err != nil {
			return -1, 0, fmt.Errorf("stat %s: %w", threadNetns, err)
		}
		fd, err := newDiagSocket()
		if err != nil {
			return -1, 0, err
		}
		return fd, uint32(st.Ino), nil
	}

	target, err := unix.Open(netnsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		err = &fs.PathError{Op: "open", Path: netnsPath, Err: err}
		if errors.Is(err, fs.ErrPermission) {
			return -1, 0, fmt.Errorf("open network namespace: %w (opening another process's namespace needs CAP_SYS_PTRACE or root)", err)
		}
		return -1, 0, fmt.Errorf("open network namespace: %w", err)
	}
	defer unix.Close(target)

	nsType, err := unix.IoctlRetInt(target, unix.NS_GET_NSTYPE)
	if err != nil {
		if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL) {
			return -1, 0, fmt.Errorf("%s is not a namespace file", netnsPath)
		}
		return -1, 0, fmt.Errorf("get namespace type of %s: %w", netnsPath, err)
	}
	if nsType != unix.CLONE_NEWNET {
		return -1, 0, fmt.Errorf("%s is not a network namespace", netnsPath)
	}

	var targetSt unix.Stat_t
	if err := unix.Fstat(target, &targetSt); err != nil {
		return -1, 0, fmt.Errorf("stat %s: %w", netnsPath, err)
	}

	type result struct {
		fd  int
		err error
	}
	done := make(chan result, 1)
	go func() {
		// The thread's namespace is changed below. If it cannot be changed
		// back, the goroutine exits still locked, and the runtime then
		// terminates the thread instead of reusing it for other goroutines.
		runtime.LockOSThread()
		fd, restored, err := createInNetns(target, &targetSt, netnsPath)
		if restored {
			runtime.UnlockOSThread()
		}
		done <- result{fd, err}
	}()
	res := <-done
	if res.err != nil {
		return -1, 0, res.err
	}
	return res.fd, uint32(targetSt.Ino), nil
}

// createInNetns creates a diag socket in the namespace open as target. It
// must run on a locked OS thread. restored reports whether the thread is in
// its original namespace on return, and so may be unlocked.
func createInNetns(target int, targetSt *unix.Stat_t, netnsPath string) (fd int, restored bool, err error) {
	orig, err := unix.Open(threadNetns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, true, fmt.Errorf("open current network namespace: %w", &fs.PathError{Op: "open", Path: threadNetns, Err: err})
	}
	defer unix.Close(orig)

	var origSt unix.Stat_t
	if err := unix.Fstat(orig, &origSt); err != nil {
		return -1, true, fmt.Errorf("stat %s: %w", threadNetns, err)
	}
	if origSt.Dev == targetSt.Dev && origSt.Ino == targetSt.Ino {
		// Already there: no setns, so no CAP_SYS_ADMIN needed.
		fd, err := newDiagSocket()
		return fd, true, err
	}

	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return -1, true, fmt.Errorf("enter network namespace %s: %w (listing another network namespace needs CAP_SYS_ADMIN)", netnsPath, err)
		}
		return -1, true, fmt.Errorf("enter network namespace %s: %w", netnsPath, err)
	}

	fd, err = newDiagSocket()

	if rerr := unix.Setns(orig, unix.CLONE_NEWNET); rerr != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, false, fmt.Errorf("restore network namespace after entering %s: %w", netnsPath, rerr)
	}
	if err != nil {
		return -1, true, err
	}
	return fd, true, nil
}
