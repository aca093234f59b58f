package sockdiag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	"golang.org/x/sys/unix"
)

// Wire layout of the inet_diag structures (include/uapi/linux/inet_diag.h).
// golang.org/x/sys/unix does not define them.
const (
	// sizeofInetDiagSockID is sizeof(struct inet_diag_sockid): sport and
	// dport (__be16), src and dst (__be32[4]), if (__u32), cookie (__u32[2]).
	sizeofInetDiagSockID = 48
	// sizeofInetDiagReqV2 is sizeof(struct inet_diag_req_v2): family,
	// protocol, ext, pad (__u8 each), states (__u32), id.
	sizeofInetDiagReqV2 = 8 + sizeofInetDiagSockID
	// sizeofInetDiagMsg is sizeof(struct inet_diag_msg): family, state,
	// timer, retrans (__u8 each), id, expires, rqueue, wqueue, uid, inode
	// (__u32 each).
	sizeofInetDiagMsg = 4 + sizeofInetDiagSockID + 20

	// ownableStates selects the sockets that can have a file, and so an
	// owner (idiag_states is a bitmask indexed by state number): every
	// state but TIME_WAIT (6), and SYN_RECV (3) with the request sockets
	// it stands for (TCP_NEW_SYN_RECV, 12). A busy host holds up to
	// net.ipv4.tcp_max_tw_buckets (262,144 by default) time-wait sockets
	// per namespace, and listing them cost the agent about 0.5 KB each at
	// start, for no owner to find.
	ownableStates = 0xffffffff &^ (1<<3 | 1<<6 | 1<<12)

	// recvBufSize is large enough for any netlink dump skb: the kernel
	// caps them at 32 KiB.
	recvBufSize = 64 << 10

	// maxDumpAttempts bounds how often a dump interrupted by concurrent
	// changes (NLM_F_DUMP_INTR) is restarted.
	maxDumpAttempts = 5
)

var errDumpInterrupted = errors.New("netlink dump interrupted by concurrent changes")

// newDiagSocket opens a NETLINK_SOCK_DIAG socket in the calling thread's
// network namespace.
func newDiagSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return -1, fmt.Errorf("create NETLINK_SOCK_DIAG socket: %w", err)
	}
	return fd, nil
}

// dumpTCP lists all IPv4 and IPv6 TCP sockets visible to the diag socket fd.
func dumpTCP(fd int) ([]Socket, error) {
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("bind netlink socket: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil, fmt.Errorf("get netlink port id: %w", err)
	}
	nlsa, ok := sa.(*unix.SockaddrNetlink)
	if !ok {
		return nil, fmt.Errorf("get netlink port id: unexpected address type %T", sa)
	}

	d := dumper{fd: fd, portID: nlsa.Pid, buf: make([]byte, recvBufSize)}
	var socks []Socket
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		var err error
		for attempt := 0; attempt < maxDumpAttempts; attempt++ {
			var got []Socket
			got, err = d.dump(family)
			if err == nil {
				socks = append(socks, got...)
				break
			}
			if !errors.Is(err, errDumpInterrupted) {
				break
			}
		}
		if err != nil {
			return nil, fmt.Errorf("dump %s sockets: %w", familyName(family), err)
		}
	}
	return socks, nil
}

func familyName(family uint8) string {
	switch family {
	case unix.AF_INET:
		return "tcp4"
	case unix.AF_INET6:
		return "tcp6"
	}
	return "family " + strconv.Itoa(int(family))
}

// dumper runs SOCK_DIAG_BY_FAMILY dump requests on one netlink socket.
type dumper struct {
	fd     int
	portID uint32
	seq    uint32
	buf    []byte
}

// dump sends one dump request for TCP sockets of family and collects the
// multipart reply up to NLMSG_DONE.
func (d *dumper) dump(family uint8) ([]Socket, error) {
	d.seq++
	seq := d.seq

	req := make([]byte, unix.SizeofNlMsghdr+sizeofInetDiagReqV2)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:4], uint32(len(req)))
	ne.PutUint16(req[4:6], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:8], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:12], seq)
	ne.PutUint32(req[12:16], 0) // pid: filled in by the kernel
	r := req[unix.SizeofNlMsghdr:]
	r[0] = family
	r[1] = unix.IPPROTO_TCP
	r[2] = 0 // idiag_ext: no extensions
	r[3] = 0 // pad
	ne.PutUint32(r[4:8], ownableStates)
	// The zeroed inet_diag_sockid matches every socket.

	for {
		err := unix.Sendto(d.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EINTR) {
			return nil, fmt.Errorf("send request: %w", err)
		}
	}

	var (
		socks       []Socket
		interrupted bool
	)
	for {
		n, _, rflags, _, err := unix.Recvmsg(d.fd, d.buf, nil, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return nil, fmt.Errorf("receive reply: %w", err)
		}
		if rflags&unix.MSG_TRUNC != 0 {
			return nil, fmt.Errorf("receive reply: message truncated to %d bytes", n)
		}

		done, err := parseMessages(d.buf[:n], seq, d.portID, family, &socks, &interrupted)
		if err != nil {
			return nil, err
		}
		if done {
			break
		}
	}
	if interrupted {
		return nil, errDumpInterrupted
	}
	return socks, nil
}

// parseMessages parses one datagram of netlink messages, appending the
// sockets found to socks. It reports whether the end of the dump was seen.
func parseMessages(b []byte, seq, portID uint32, family uint8, socks *[]Socket, interrupted *bool) (done bool, err error) {
	ne := binary.NativeEndian
	for len(b) > 0 {
		if len(b) < unix.SizeofNlMsghdr {
			return false, fmt.Errorf("malformed netlink reply: %d trailing bytes", len(b))
		}
		msgLen := ne.Uint32(b[0:4])
		msgType := ne.Uint16(b[4:6])
		msgFlags := ne.Uint16(b[6:8])
		msgSeq := ne.Uint32(b[8:12])
		msgPid := ne.Uint32(b[12:16])
		if msgLen < unix.SizeofNlMsghdr || uint64(msgLen) > uint64(len(b)) {
			return false, fmt.Errorf("malformed netlink reply: message length %d, %d bytes left", msgLen, len(b))
		}
		payload := b[unix.SizeofNlMsghdr:msgLen]
		next := nlmAlign(int(msgLen))
		if next > len(b) {
			next = len(b)
		}
		b = b[next:]

		if msgSeq != seq || msgPid != portID {
			// Not a reply to our request.
			continue
		}
		if msgFlags&unix.NLM_F_DUMP_INTR != 0 {
			*interrupted = true
		}

		switch msgType {
		case unix.NLMSG_DONE:
			// The kernel appends the dump's final status (0 or -errno).
			if len(payload) >= 4 {
				if e := int32(ne.Uint32(payload[0:4])); e < 0 {
					return true, unix.Errno(-e)
				}
			}
			return true, nil

		case unix.NLMSG_ERROR:
			if len(payload) < 4 {
				return false, errors.New("malformed netlink error message")
			}
			e := int32(ne.Uint32(payload[0:4]))
			if e == 0 {
				// An acknowledgement; a dump reply does not continue after it.
				return true, nil
			}
			if e < 0 {
				e = -e
			}
			return false, unix.Errno(e)

		case unix.SOCK_DIAG_BY_FAMILY:
			s, err := parseInetDiagMsg(payload)
			if err != nil {
				return false, err
			}
			if s.Family != uint16(family) {
				return false, fmt.Errorf("requested %s sockets, kernel returned address family %d", familyName(family), s.Family)
			}
			*socks = append(*socks, s)

		default:
			// NLMSG_NOOP and anything else carry no sockets.
		}
	}
	return false, nil
}

// parseInetDiagMsg decodes a struct inet_diag_msg. Trailing netlink
// attributes are ignored: none were requested.
func parseInetDiagMsg(b []byte) (Socket, error) {
	if len(b) < sizeofInetDiagMsg {
		return Socket{}, fmt.Errorf("malformed inet_diag_msg: %d bytes, want at least %d", len(b), sizeofInetDiagMsg)
	}
	ne := binary.NativeEndian
	family := b[0]
	state := b[1]
	id := b[4 : 4+sizeofInetDiagSockID]
	sport := binary.BigEndian.Uint16(id[0:2])
	dport := binary.BigEndian.Uint16(id[2:4])
	src := id[4:20]
	dst := id[20:36]
	ifindex := ne.Uint32(id[36:40])
	cookie := uint64(ne.Uint32(id[40:44])) | uint64(ne.Uint32(id[44:48]))<<32
	rqueue := ne.Uint32(b[4+sizeofInetDiagSockID+4:])
	wqueue := ne.Uint32(b[4+sizeofInetDiagSockID+8:])
	inode := ne.Uint32(b[4+sizeofInetDiagSockID+16:])

	var local, remote netip.Addr
	switch family {
	case unix.AF_INET:
		local = netip.AddrFrom4([4]byte(src[:4]))
		remote = netip.AddrFrom4([4]byte(dst[:4]))
	case unix.AF_INET6:
		local = inet6Addr(src, ifindex)
		remote = inet6Addr(dst, ifindex)
	default:
		return Socket{}, fmt.Errorf("inet_diag_msg has unexpected address family %d", family)
	}

	return Socket{
		Family: uint16(family),
		State:  state,
		Local:  netip.AddrPortFrom(local, sport),
		Remote: netip.AddrPortFrom(remote, dport),
		Inode:  uint64(inode),
		Cookie: cookie,
		RQueue: rqueue,
		WQueue: wqueue,
	}, nil
}

// inet6Addr converts an IPv6 address from the kernel, unmapping IPv4-mapped
// addresses and zoning link-local ones with the socket's bound interface.
func inet6Addr(b []byte, ifindex uint32) netip.Addr {
	a := netip.AddrFrom16([16]byte(b)).Unmap()
	if a.Is6() && ifindex != 0 && (a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast()) {
		a = a.WithZone(strconv.FormatUint(uint64(ifindex), 10))
	}
	return a
}

func nlmAlign(n int) int {
	return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1)
}
