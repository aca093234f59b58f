package sockdiag

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Process identifies a process that holds a file descriptor for a socket.
type Process struct {
	// PID is the process (thread group) ID as seen in the caller's /proc.
	PID uint32
	// Comm is the process name from /proc/<pid>/comm, without the trailing
	// newline. The kernel truncates it to 15 bytes.
	Comm string
}

// Socket is one TCP socket as reported by the kernel's sock_diag interface.
type Socket struct {
	// Family is the socket's address family: unix.AF_INET or unix.AF_INET6.
	// A dual-stack AF_INET6 socket keeps Family unix.AF_INET6 even when its
	// addresses are IPv4.
	Family uint16
	// State is the kernel TCP state number (include/net/tcp_states.h):
	// 1 ESTABLISHED, 2 SYN_SENT, 3 SYN_RECV, 4 FIN_WAIT1, 5 FIN_WAIT2,
	// 6 TIME_WAIT, 7 CLOSE, 8 CLOSE_WAIT, 9 LAST_ACK, 10 LISTEN, 11 CLOSING.
	// Since Linux 6.8 sockets that are bound but neither listening nor
	// connected are listed too, in state 7 CLOSE.
	State uint8
	// Local is the local address and port. IPv4 addresses, including
	// IPv4-mapped IPv6 addresses of dual-stack sockets, are plain 4-byte
	// addresses. IPv6 link-local addresses carry the interface index as zone.
	Local netip.AddrPort
	// Remote is the peer address and port; the unspecified address and port
	// 0 for listening and unconnected sockets.
	Remote netip.AddrPort
	// Inode is the socket's inode number, as in /proc/<pid>/fd/N ->
	// "socket:[Inode]". It is 0 for sockets that have no file: a child not
	// yet accepted, or one whose process closed it (FIN_WAIT2, LAST_ACK).
	Inode uint64
	// Cookie is the kernel's cookie for this TCP socket, the value
	// bpf_get_socket_cookie returns for it. For a plain TCP socket it equals
	// getsockopt(SO_COOKIE) on the socket's fd. For an MPTCP socket (which
	// Go 1.24 and later create for listeners by default) the kernel lists the
	// underlying TCP subflow: Inode and Owners are those of the MPTCP socket,
	// but Cookie is the subflow's, which differs from SO_COOKIE on the fd.
	Cookie uint64
	// RQueue and WQueue are, for a listener, its accept queue's length and
	// limit (sk_ack_backlog, sk_max_ack_backlog); for a connection, the
	// bytes not yet read and not yet acknowledged.
	RQueue, WQueue uint32
	// NetnsInode is the inode number of the network namespace the socket was
	// listed in.
	NetnsInode uint32
	// Owners are the processes holding a file descriptor for the socket. It
	// is empty for sockets without an inode, and for sockets whose owners
	// exited or closed them while the snapshot was taken.
	Owners []Process
}

// Snapshot lists the TCP sockets that can have an owner, IPv4 and IPv6, in
// the network namespace at netnsPath, and the processes that own them: those
// of every state but TIME_WAIT and SYN_RECV, whose sockets have no file.
//
// An empty netnsPath means the namespace of the calling thread. Otherwise
// netnsPath names a network namespace file such as /var/run/netns/NAME or
// /proc/PID/ns/net; entering it needs CAP_SYS_ADMIN unless it is the caller's
// own namespace. Finding the owners of sockets reads /proc/*/fd of every
// process, which needs CAP_SYS_PTRACE (or root) for other users' processes.
//
// If the fds of some processes cannot be read for lack of permission,
// Snapshot still returns every socket, with Owners filled in from the
// processes it could read, together with a non-nil error that satisfies
// errors.Is(err, fs.ErrPermission) and names the processes skipped. Callers
// that can live without complete ownership may use the sockets in that case.
// On any other error the returned slice is nil.
//
// The result is a point-in-time view: sockets opened or closed while
// Snapshot runs may or may not be included.
func Snapshot(netnsPath string) ([]Socket, error) {
	fd, nsInode, err := openDiagSocket(netnsPath)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)

	socks, err := dumpTCP(fd)
	if err != nil {
		if netnsPath != "" {
			return nil, fmt.Errorf("network namespace %s: %w", netnsPath, err)
		}
		return nil, err
	}
	for i := range socks {
		socks[i].NetnsInode = nsInode
	}

	if len(socks) == 0 {
		return socks, nil
	}
	if err := addOwners(socks); err != nil {
		var denied *deniedError
		if errors.As(err, &denied) {
			return socks, err
		}
		return nil, err
	}
	return socks, nil
}
