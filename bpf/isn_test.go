package bpf_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcpspan/tcpspan/conn"
	"github.com/tcpspan/tcpspan/internal/testutil"
	"golang.org/x/sys/unix"
)

// synSniffer records, from a packet socket on the namespace's loopback, the
// sequence numbers of the SYNs and SYN-ACKs that cross it: what the wire
// says the initial sequence numbers were, to check the kernel side's.
type synSniffer struct {
	fd   int
	mu   sync.Mutex
	syns map[[2]netip.AddrPort]uint32 // (from, to) -> seq of a SYN or SYN-ACK
	done chan struct{}
}

// sniffSYNs starts a sniffer in ns, or returns nil where packet sockets
// are not available (the kernel matrix's VMs load no modules): then the
// two ends are only checked against each other.
func sniffSYNs(t *testing.T, ns *testutil.NetNS) *synSniffer {
	t.Helper()
	s := &synSniffer{syns: map[[2]netip.AddrPort]uint32{}, done: make(chan struct{})}
	var err error
	ns.Do(t, func() {
		s.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IP)))
	})
	if errors.Is(err, unix.EAFNOSUPPORT) {
		t.Logf("no packet sockets on this kernel: ISNs are checked end against end only")
		return nil
	}
	if err != nil {
		t.Fatalf("packet socket: %v", err)
	}
	tv := unix.Timeval{Usec: 100000}
	unix.SetsockoptTimeval(s.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	go s.run()
	t.Cleanup(func() { unix.Close(s.fd); <-s.done })
	return s
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (s *synSniffer) run() {
	defer close(s.done)
	buf := make([]byte, 256)
	for {
		n, _, err := unix.Recvfrom(s.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return // closed
		}
		p := buf[:n]
		if len(p) < 20 || p[0]>>4 != 4 || p[9] != unix.IPPROTO_TCP {
			continue
		}
		ihl := int(p[0]&15) * 4
		if len(p) < ihl+20 {
			continue
		}
		th := p[ihl:]
		if th[13]&0x02 == 0 { // not a SYN
			continue
		}
		from := netip.AddrPortFrom(netip.AddrFrom4([4]byte(p[12:16])), binary.BigEndian.Uint16(th[0:]))
		to := netip.AddrPortFrom(netip.AddrFrom4([4]byte(p[16:20])), binary.BigEndian.Uint16(th[2:]))
		s.mu.Lock()
		s.syns[[2]netip.AddrPort{from, to}] = binary.BigEndian.Uint32(th[4:])
		s.mu.Unlock()
	}
}

// isn returns the sequence number of the SYN (or SYN-ACK) sent from from to
// to, if one was seen.
func (s *synSniffer) isn(from, to netip.AddrPort) (uint32, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.syns[[2]netip.AddrPort{from, to}]
	return v, ok
}

// requireWireISN checks x's handshake numbers against the wire's.
func requireWireISN(t *testing.T, s *synSniffer, x *conn.Connection, client, server netip.AddrPort) {
	t.Helper()
	if s == nil {
		return
	}
	if seq, ok := s.isn(client, server); !ok || !x.ISN.HasClient || seq != x.ISN.Client {
		t.Errorf("%s %s: client ISN %+v, the SYN on the wire had %d (seen %v)", x.Side, x.Local, x.ISN, seq, ok)
	}
	if seq, ok := s.isn(server, client); ok != x.ISN.HasServer || seq != x.ISN.Server {
		t.Errorf("%s %s: server ISN %+v, the SYN-ACK on the wire had %d (seen %v)", x.Side, x.Local, x.ISN, seq, ok)
	}
}

// TestHandshakeISNs checks the numbers each end's record carries, from
// which both derive one trace id: equal at both ends, and equal to the
// SYN's and SYN-ACK's on the wire. For a refused connect, the client and
// the server host's reset for no socket share the client's number only.
func TestHandshakeISNs(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCapture(t, ns, 200*time.Millisecond)
	sniff := sniffSYNs(t, ns)

	ln, cl, srv := ns.ConnectedPair(t, "tcp4", "127.0.0.1:0")
	mustWrite(t, cl, 10)
	mustRead(t, srv, 10)
	cl.Close()
	srv.Close()
	clientAddr, serverAddr := endpoint(cl.LocalAddr()), endpoint(ln.Addr())
	port := serverAddr.Port()
	ln.Close()
	var dialErr error
	var refusedFrom netip.AddrPort
	ns.Do(t, func() {
		var rc net.Conn
		rc, dialErr = net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		if rc != nil {
			rc.Close()
		}
	})
	if dialErr == nil || !strings.Contains(dialErr.Error(), "refused") {
		t.Fatalf("dial a closed port: %v, want refused", dialErr)
	}

	got := c.wait(5*time.Second, between(clientAddr, serverAddr, conn.SideClient),
		between(serverAddr, clientAddr, conn.SideServer),
		func(x *conn.Connection) bool {
			return x.Side == conn.SideClient && x.Remote == serverAddr && x.Local != clientAddr
		},
		func(x *conn.Connection) bool { return x.Orphan && x.Local == serverAddr })
	client, server, refused, reset := got[0], got[1], got[2], got[3]
	refusedFrom = refused.Local

	if !client.ISN.HasClient || !client.ISN.HasServer || client.ISN != server.ISN {
		t.Errorf("established: client's ISNs %+v, server's %+v: want both known and equal", client.ISN, server.ISN)
	}
	requireWireISN(t, sniff, client, clientAddr, serverAddr)
	requireWireISN(t, sniff, server, clientAddr, serverAddr)
	if !refused.ISN.HasClient || refused.ISN.HasServer || reset.ISN != refused.ISN {
		t.Errorf("refused: client's ISNs %+v, the reset's %+v: want the client's only, equal", refused.ISN, reset.ISN)
	}
	requireWireISN(t, sniff, refused, refusedFrom, serverAddr)
	requireWireISN(t, sniff, reset, refusedFrom, serverAddr)
}
