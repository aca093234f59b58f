package sockdiag

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// addOwners fills in Socket.Owners by scanning /proc/<pid>/fd of every
// process for links to the sockets' inodes.
//
// Processes whose fds cannot be read for lack of permission are skipped and
// reported in the returned *deniedError after the scan completes, so that
// the owners of every other socket are still filled in.
func addOwners(socks []Socket) error {
	owners := make(map[uint64][]Process)
	for _, s := range socks {
		if s.Inode != 0 {
			owners[s.Inode] = nil
		}
	}
	if len(owners) == 0 {
		return nil
	}

	names, err := readDirNames("/proc")
	if err != nil {
		return fmt.Errorf("read /proc: %w", err)
	}
	var denied deniedError
	for _, name := range names {
		pid, err := strconv.ParseUint(name, 10, 32)
		if err != nil {
			continue // not a process directory
		}
		err = scanProcess(uint32(pid), name, owners)
		switch {
		case err == nil:
		case errors.Is(err, fs.ErrPermission):
			denied.add(uint32(pid), err)
		default:
			return fmt.Errorf("find socket owners: %w", err)
		}
	}

	for i := range socks {
		if socks[i].Inode != 0 {
			socks[i].Owners = owners[socks[i].Inode]
		}
	}
	if denied.count > 0 {
		return &denied
	}
	return nil
}

// scanProcess records pid as an owner of every socket in owners that it has
// a file descriptor for. A process that exits during the scan is skipped.
// Errors name the /proc path that failed.
func scanProcess(pid uint32, name string, owners map[uint64][]Process) error {
	fdDir := "/proc/" + name + "/fd"
	fds, err := readDirNames(fdDir)
	if err != nil {
		if vanished(err) {
			return nil
		}
		return err
	}

	var found []uint64
	for _, fd := range fds {
		link, err := os.Readlink(fdDir + "/" + fd)
		if err != nil {
			if vanished(err) {
				continue // fd closed, or process exited
			}
			return err
		}
		inode, ok := socketInode(link)
		if !ok {
			continue
		}
		if _, want := owners[inode]; !want || slices.Contains(found, inode) {
			continue
		}
		found = append(found, inode)
	}
	if len(found) == 0 {
		return nil
	}

	comm, err := os.ReadFile("/proc/" + name + "/comm")
	if err != nil {
		if vanished(err) {
			return nil
		}
		return err
	}
	p := Process{PID: pid, Comm: strings.TrimSuffix(string(comm), "\n")}
	for _, inode := range found {
		owners[inode] = append(owners[inode], p)
	}
	return nil
}

// maxDeniedPIDs bounds how many PIDs a deniedError lists.
const maxDeniedPIDs = 5

// deniedError reports processes whose fds could not be read for lack of
// permission. It unwraps to the first such error, so errors.Is(err,
// fs.ErrPermission) holds.
type deniedError struct {
	count int
	pids  []uint32
	first error
}

func (e *deniedError) add(pid uint32, err error) {
	if e.count == 0 {
		e.first = err
	}
	e.count++
	if len(e.pids) < maxDeniedPIDs {
		e.pids = append(e.pids, pid)
	}
}

func (e *deniedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "find socket owners: cannot read fds of %d process", e.count)
	if e.count != 1 {
		b.WriteString("es")
	}
	b.WriteString(" (pid")
	for i, pid := range e.pids {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %d", pid)
	}
	if e.count > len(e.pids) {
		b.WriteString(", ...")
	}
	fmt.Fprintf(&b, "): %v; reading other processes' fds needs CAP_SYS_PTRACE or root, and a Linux security module may also deny it", e.first)
	return b.String()
}

func (e *deniedError) Unwrap() error { return e.first }

// socketInode parses a /proc/<pid>/fd link target of the form
// "socket:[INODE]".
func socketInode(link string) (uint64, bool) {
	s, ok := strings.CutPrefix(link, "socket:[")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, "]")
	if !ok {
		return 0, false
	}
	inode, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, false
	}
	return inode, true
}

func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// vanished reports whether err means the process or file descriptor went
// away while it was being read.
func vanished(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH)
}
