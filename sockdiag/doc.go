// Package sockdiag lists the TCP sockets that already exist in a network
// namespace, together with the processes that own them.
//
// The tcpspan agent learns about connections from eBPF events, so it only
// sees connections whose lifecycle events happen after it starts. Listeners
// and connections that predate the agent would otherwise be invisible until
// they close, and the agent would have no way to tell a connection first seen
// mid-life from one it watched being established. [Snapshot] closes that gap:
// it asks the kernel for the TCP sockets in a namespace that can have an
// owner (not TIME_WAIT and SYN_RECV, which have no file) over
// NETLINK_SOCK_DIAG (the interface ss(8) uses), then maps each socket inode to
// the processes that hold a file descriptor for it by reading the
// /proc/<pid>/fd symlinks.
//
// Listing a namespace other than the caller's own needs CAP_SYS_ADMIN (to
// enter it with setns(2)), and attributing sockets to other users' processes
// needs CAP_SYS_PTRACE, so in practice the agent runs as root.
//
// It takes one snapshot and does nothing else: it must not watch for
// changes (the BPF side does), nor import other tcpspan packages.
package sockdiag
