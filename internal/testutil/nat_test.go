package testutil

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestNATPath connects from A through R's NAT to B, and checks what each
// side sees: B a different source address and port than A used, and the
// same initial sequence numbers, both ways, read from the packets on A's and
// B's interfaces.
func TestNATPath(t *testing.T) {
	RequireBPF(t)
	p := NewNATPath(t)

	var ln net.Listener
	p.B.Do(t, func() {
		var err error
		if ln, err = net.Listen("tcp4", netip.AddrPortFrom(p.ServerAddr, 0).String()); err != nil {
			t.Fatal(err)
		}
	})
	defer ln.Close()
	bport := ln.Addr().(*net.TCPAddr).Port
	const vport = 8080
	target := p.Forward(t, vport, bport)

	capA := openCapture(t, p.A, p.ClientIf)
	capB := openCapture(t, p.B, p.ServerIf)

	var client net.Conn
	p.A.Do(t, func() {
		var err error
		if client, err = net.DialTimeout("tcp4", target, 2*time.Second); err != nil {
			t.Fatalf("dial %s from A: %v", target, err)
		}
	})
	defer client.Close()
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(2 * time.Second))
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()

	fromA := netip.MustParseAddrPort(client.LocalAddr().String())
	seenByB := netip.MustParseAddrPort(server.RemoteAddr().String())
	t.Logf("A %v -> %s; B sees %v -> %v", fromA, target, seenByB, server.LocalAddr())
	if fromA.Addr() != p.ClientAddr || seenByB.Addr() != p.RouterAddr {
		t.Errorf("source address: A used %v, B sees %v; want %v and %v", fromA.Addr(), seenByB.Addr(), p.ClientAddr, p.RouterAddr)
	}
	// fully-random picks any port: it keeps A's by chance once in ~64k.
	if fromA.Port() == seenByB.Port() {
		t.Errorf("source port %d not rewritten", fromA.Port())
	}

	// Through the NAT: A's SYN is B's SYN, B's SYN-ACK is A's SYN-ACK, with
	// the same sequence numbers.
	deadline := time.Now().Add(2 * time.Second)
	synA := capA.find(t, deadline, func(s segment) bool { return s.syn() && !s.ackFlag() && s.src == fromA })
	synB := capB.find(t, deadline, func(s segment) bool { return s.syn() && !s.ackFlag() && s.src == seenByB })
	synackA := capA.find(t, deadline, func(s segment) bool { return s.syn() && s.ackFlag() && s.dst == fromA })
	synackB := capB.find(t, deadline, func(s segment) bool { return s.syn() && s.ackFlag() && s.dst == seenByB })
	t.Logf("SYN on A %v, on B %v", synA, synB)
	t.Logf("SYN-ACK on B %v, on A %v", synackB, synackA)
	if synA.dst != netip.MustParseAddrPort(target) || synB.dst != netip.AddrPortFrom(p.ServerAddr, uint16(bport)) {
		t.Errorf("SYN destination: on A %v, on B %v; want %s and %v:%d", synA.dst, synB.dst, target, p.ServerAddr, bport)
	}
	if synA.seq != synB.seq {
		t.Errorf("client ISN: %d on A, %d on B", synA.seq, synB.seq)
	}
	if synackA.seq != synackB.seq || synackA.ack != synackB.ack || synackA.ack != synA.seq+1 {
		t.Errorf("server ISN: seq %d ack %d on B, seq %d ack %d on A (client ISN %d)",
			synackB.seq, synackB.ack, synackA.seq, synackA.ack, synA.seq)
	}
}

// TestNATPathRefused checks that a forward to a port where B has no listener
// is refused by B, through R, as A dials it.
func TestNATPathRefused(t *testing.T) {
	RequireBPF(t)
	p := NewNATPath(t)
	target := p.Forward(t, 8081, 9)
	p.A.Do(t, func() {
		c, err := net.DialTimeout("tcp4", target, 2*time.Second)
		if err == nil {
			c.Close()
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("dial %s: %v, want connection refused", target, err)
		}
	})
}

// capture is an AF_PACKET socket bound to one interface. It takes every
// protocol (ETH_P_ALL): the kernel shows packets a host sends only to those.
type capture struct {
	fd   int
	seen []segment
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func openCapture(tb testing.TB, ns *NetNS, ifname string) *capture {
	tb.Helper()
	c := &capture{fd: -1}
	ns.Do(tb, func() {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			tb.Errorf("capture: %v", err)
			return
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			tb.Errorf("capture: socket: %v", err)
			return
		}
		c.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			tb.Errorf("capture: bind %s: %v", ifname, err)
		}
		tv := unix.NsecToTimeval((50 * time.Millisecond).Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			tb.Errorf("capture: SO_RCVTIMEO: %v", err)
		}
	})
	if c.fd >= 0 {
		tb.Cleanup(func() { unix.Close(c.fd) })
	}
	if tb.Failed() {
		tb.FailNow()
	}
	return c
}

// find returns the first TCP segment, seen before or read now, that match
// accepts. It fails the test at deadline.
func (c *capture) find(tb testing.TB, deadline time.Time, match func(segment) bool) segment {
	tb.Helper()
	for _, s := range c.seen {
		if match(s) {
			return s
		}
	}
	buf := make([]byte, 65536)
	for time.Now().Before(deadline) {
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			tb.Fatalf("capture: %v", err)
		}
		s, ok := parseSegment(buf[:n])
		if !ok {
			continue
		}
		c.seen = append(c.seen, s)
		if match(s) {
			return s
		}
	}
	tb.Fatalf("capture: no such segment among %d seen: %v", len(c.seen), c.seen)
	return segment{}
}

// segment is a TCP header's addresses, sequence numbers and flags.
type segment struct {
	src, dst netip.AddrPort
	seq, ack uint32
	flags    uint8
}

func (s segment) syn() bool     { return s.flags&0x02 != 0 }
func (s segment) ackFlag() bool { return s.flags&0x10 != 0 }

func (s segment) String() string {
	return fmt.Sprintf("%v > %v seq %d ack %d", s.src, s.dst, s.seq, s.ack)
}

// parseSegment reads an Ethernet frame holding IPv4 and TCP.
func parseSegment(frame []byte) (segment, bool) {
	const ethLen = 14
	if len(frame) < ethLen+20 || binary.BigEndian.Uint16(frame[12:14]) != unix.ETH_P_IP {
		return segment{}, false
	}
	ip := frame[ethLen:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ip[9] != unix.IPPROTO_TCP || len(ip) < ihl+20 {
		return segment{}, false
	}
	tcp := ip[ihl:]
	src, _ := netip.AddrFromSlice(ip[12:16])
	dst, _ := netip.AddrFromSlice(ip[16:20])
	return segment{
		src:   netip.AddrPortFrom(src, binary.BigEndian.Uint16(tcp[0:2])),
		dst:   netip.AddrPortFrom(dst, binary.BigEndian.Uint16(tcp[2:4])),
		seq:   binary.BigEndian.Uint32(tcp[4:8]),
		ack:   binary.BigEndian.Uint32(tcp[8:12]),
		flags: tcp[13],
	}, true
}
