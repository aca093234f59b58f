package bpf_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpspan/tcpspan/bpf"
	"github.com/tcpspan/tcpspan/conn"
	"github.com/tcpspan/tcpspan/exporter"
	"github.com/tcpspan/tcpspan/internal/testutil"
)

// Scenarios a network engineer tries on a live system: a path that goes
// away (timeout, then the late reset of a packet that finds the socket
// gone), keepalive, a peer that stops reading, resets from time-wait, and
// SYN cookies. Each is compared with the namespace's own counters.

// cutPath drops every packet to and from port inside ns, until the
// returned function restores the path.
func cutPath(t *testing.T, ns *testutil.NetNS, port uint16) (restore func()) {
	t.Helper()
	ns.Exec(t, "nft", "add", "table", "inet", "cut")
	ns.Exec(t, "nft", "add chain inet cut in { type filter hook input priority 0; }")
	ns.Exec(t, "nft", "add", "rule", "inet", "cut", "in", "tcp", "dport", fmt.Sprint(port), "drop")
	ns.Exec(t, "nft", "add", "rule", "inet", "cut", "in", "tcp", "sport", fmt.Sprint(port), "drop")
	restored := false
	restore = func() {
		if !restored {
			restored = true
			ns.Exec(t, "nft", "delete", "table", "inet", "cut")
		}
	}
	t.Cleanup(restore)
	return restore
}

func setsockoptInt(t *testing.T, c *net.TCPConn, level, opt, v int) {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	raw.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), level, opt, v) })
	if err != nil {
		t.Fatalf("setsockopt %d: %v", opt, err)
	}
}

// readErr reads from c until an error, within timeout.
func readErr(t *testing.T, c *net.TCPConn, timeout time.Duration) error {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 4096)
	for {
		if _, err := c.Read(buf); err != nil {
			return err
		}
	}
}

// A client's connection times out (TCP_USER_TIMEOUT) while the path is
// cut. The path comes back, the server's FIN finds no socket, and the
// client's kernel answers with RST (NO_SOCKET). The application got
// ETIMEDOUT: that leads, and the late reset is context. Retransmits beyond
// the 3 kept as events are counted on the span.
func TestTimeoutThenLateReset(t *testing.T) {
	ns := testutil.NewNetNS(t)
	// Held long enough for the late reset to join it, however slow the
	// path's return (the agent holds a connection 100 ms).
	c := startCaptureTracking(t, ns, 200*time.Millisecond, []conn.Option{conn.WithLinger(3 * time.Second)})
	before := ns.Counters(t)

	cl, srv, ln := acceptedPair(t, ns)
	defer ln.Close()
	defer srv.Close()
	serverAddr, clientAddr := endpoint(ln.Addr()), endpoint(cl.LocalAddr())
	// RTOs at 0.2, 0.6, 1.4 and 3 s: 4 retransmits, then the timeout.
	setsockoptInt(t, cl, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, 3200)
	restore := cutPath(t, ns, serverAddr.Port())
	mustWrite(t, cl, 100)
	if err := readErr(t, cl, 10*time.Second); !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("client read: %v, want ETIMEDOUT", err)
	}
	cl.Close()
	restore()
	srv.Close() // its FIN finds no socket

	got := c.wait(5*time.Second, between(clientAddr, serverAddr, conn.SideClient),
		between(serverAddr, clientAddr, conn.SideServer))
	client, server := got[0], got[1]
	if rst := client.First(conn.EventRSTSent); rst == nil || rst.Reason != expectedReason(c, "NO_SOCKET") || !rst.Answer {
		t.Errorf("client RST %+v, want the late NO_SOCKET reset joined to it\n%s", rst, describe(client))
	}
	typ, desc, _ := exporter.Diagnose(client)
	if typ != "tcp.timeout" || !strings.Contains(desc, "in ESTABLISHED") || !strings.Contains(desc, "later, RST sent") {
		t.Errorf("client diagnosis %s %q, want the timeout in ESTABLISHED first and the late reset after", typ, desc)
	}
	t.Logf("client: %s", desc)
	if !server.Has(conn.EventRSTReceived) {
		t.Errorf("server has no RST received\n%s", describe(server))
	}
	// Every retransmit is accounted for: as an event, or counted as left
	// out, and the total is the namespace's.
	after := ns.Counters(t)
	retrans := after["TcpRetransSegs"] - before["TcpRetransSegs"]
	kept, dropped := uint64(client.Count(conn.EventRetransmit)), uint64(client.RetransmitEventsDropped)
	if kept+dropped != retrans || uint64(client.Retransmits) != retrans || dropped == 0 {
		t.Errorf("retransmits: %d events + %d left out, total %d; TcpRetransSegs +%d (want more than 3)",
			kept, dropped, client.Retransmits, retrans)
	}
	requireCounterMatch(t, ns, before, c.all())
}

// Keepalive probes go unanswered: the kernel resets the connection
// (TCP_KEEPALIVE_TIMEOUT) and reports ETIMEDOUT.
func TestKeepaliveTimeout(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCapture(t, ns, 200*time.Millisecond)
	before := ns.Counters(t)

	cl, srv, ln := acceptedPair(t, ns)
	defer ln.Close()
	defer srv.Close()
	serverAddr, clientAddr := endpoint(ln.Addr()), endpoint(cl.LocalAddr())
	setsockoptInt(t, cl, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	setsockoptInt(t, cl, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 1)
	setsockoptInt(t, cl, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 1)
	setsockoptInt(t, cl, unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 1)
	cutPath(t, ns, serverAddr.Port())
	if err := readErr(t, cl, 10*time.Second); !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("client read: %v, want ETIMEDOUT", err)
	}
	cl.Close()

	client := c.wait(5*time.Second, between(clientAddr, serverAddr, conn.SideClient))[0]
	rst := client.First(conn.EventRSTSent)
	if rst == nil || rst.Reason != expectedReason(c, "TCP_KEEPALIVE_TIMEOUT") || rst.Context != conn.ContextKernel || rst.Answer {
		t.Errorf("RST %+v, want the keepalive timer's\n%s", rst, describe(client))
	}
	typ, desc, _ := exporter.Diagnose(client)
	if typ != "tcp.timeout" || !strings.Contains(desc, "keepalive probes went unanswered") {
		t.Errorf("diagnosis %s %q, want a keepalive timeout", typ, desc)
	}
	t.Logf("client: %s", desc)
	after := ns.Counters(t)
	if n := after["TcpExtTCPAbortOnTimeout"] - before["TcpExtTCPAbortOnTimeout"]; n != 1 {
		t.Errorf("TcpExtTCPAbortOnTimeout +%d, want 1", n)
	}
	requireCounterMatch(t, ns, before, c.all())
}

// The server's application stops reading: its window closes, the client's
// window probes are answered with a zero window, and TCP_USER_TIMEOUT ends
// the connection with ETIMEDOUT and no retransmit.
func TestZeroWindowTimeout(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCapture(t, ns, 200*time.Millisecond)
	before := ns.Counters(t)

	var cl, srv *net.TCPConn
	var ln net.Listener
	ns.Do(t, func() {
		lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
			var err error
			rc.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096) })
			return err
		}}
		l, err := lc.Listen(t.Context(), "tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln = l
		d, err := net.Dial("tcp4", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		cl = d.(*net.TCPConn)
		s, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		srv = s.(*net.TCPConn)
	})
	defer ln.Close()
	defer srv.Close()
	serverAddr, clientAddr := endpoint(ln.Addr()), endpoint(cl.LocalAddr())
	setsockoptInt(t, cl, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, 1500)
	// Fill the server's window; the writer blocks once both buffers are
	// full, and fails when the connection times out.
	written := make(chan error, 1)
	go func() {
		cl.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, err := cl.Write(make([]byte, 4<<20))
		written <- err
	}()
	if err := <-written; !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("client write: %v, want ETIMEDOUT", err)
	}
	cl.Close()

	client := c.wait(5*time.Second, between(clientAddr, serverAddr, conn.SideClient))[0]
	e := client.First(conn.EventError)
	if e == nil || e.Errno != syscall.ETIMEDOUT || e.PeerWindow != 0 {
		t.Errorf("error %+v, want ETIMEDOUT with the peer's window at 0\n%s", e, describe(client))
	}
	typ, desc, _ := exporter.Diagnose(client)
	if typ != "tcp.timeout" || !strings.Contains(desc, "zero window") {
		t.Errorf("diagnosis %s %q, want a timeout on a zero window", typ, desc)
	}
	t.Logf("client: %s", desc)
	after := ns.Counters(t)
	if n := after["TcpExtTCPAbortOnTimeout"] - before["TcpExtTCPAbortOnTimeout"]; n != 1 {
		t.Errorf("TcpExtTCPAbortOnTimeout +%d, want 1", n)
	}
	if n := after["TcpRetransSegs"] - before["TcpRetransSegs"]; uint64(client.Retransmits) != n {
		t.Errorf("retransmits %d, TcpRetransSegs +%d", client.Retransmits, n)
	}
	requireCounterMatch(t, ns, before, c.all())
}

// The client closes first; its socket becomes a time-wait socket (FIN_WAIT2
// substate) and is destroyed. Data the server sends after that is answered
// by the time-wait socket with a reset.
func TestResetFromTimeWait(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCapture(t, ns, 200*time.Millisecond)
	before := ns.Counters(t)

	cl, srv, ln := acceptedPair(t, ns)
	defer ln.Close()
	serverAddr, clientAddr := endpoint(ln.Addr()), endpoint(cl.LocalAddr())
	cl.Close()
	waitState(t, srv, unix.BPF_TCP_CLOSE_WAIT)
	// Past the tracker's linger: the reset is an orphan of its own.
	time.Sleep(300 * time.Millisecond)
	mustWrite(t, srv, 5)
	// The reset comes back; the next write fails on it.
	var err error
	for deadline := time.Now().Add(5 * time.Second); err == nil && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		_, err = srv.Write([]byte{1})
	}
	if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("server write: %v, want a reset", err)
	}
	srv.Close()

	got := c.wait(5*time.Second, between(clientAddr, serverAddr, conn.SideClient),
		func(x *conn.Connection) bool { return x.Orphan && x.Local == clientAddr && x.Remote == serverAddr },
		between(serverAddr, clientAddr, conn.SideServer))
	client, tw, server := got[0], got[1], got[2]
	if typ, _, _ := exporter.Diagnose(client); typ != "" {
		t.Errorf("the client's own span is an error (%s): it closed cleanly\n%s", typ, describe(client))
	}
	rst := tw.First(conn.EventRSTSent)
	if rst == nil || rst.State != conn.StateTimeWait || rst.Context != conn.ContextKernel || !rst.Answer ||
		rst.Reason != expectedReason(c, "TCP_TIMEWAIT_SOCKET") {
		t.Errorf("RST %+v, want the time-wait socket's answer\n%s", rst, describe(tw))
	}
	if _, desc, _ := exporter.Diagnose(tw); !strings.Contains(desc, "while processing a packet from "+serverAddr.String()+" in TIME_WAIT") {
		t.Errorf("time-wait diagnosis %q", desc)
	} else {
		t.Logf("time-wait: %s", desc)
	}
	if e := server.First(conn.EventRSTReceived); e == nil || e.State != conn.StateCloseWait {
		t.Errorf("server RST received %+v, want one in CLOSE_WAIT\n%s", e, describe(server))
	}
	requireCounterMatch(t, ns, before, c.all())
}

// With SYN cookies always on (as under a SYN flood), handshakes hold no
// request socket: the child is made from the cookie in the ACK. Those the
// queue takes are complete connections whose two ends share their
// handshake's numbers (the server's ISN is the cookie); the SYNs a full
// queue drops are overflows, as the kernel counts them.
func TestSYNCookies(t *testing.T) {
	ns := testutil.NewNetNS(t)
	ns.Sysctl(t, "net.ipv4.tcp_syncookies", "2")
	c := startCapture(t, ns, 200*time.Millisecond)
	before := ns.Counters(t)

	requireCapability(t, c, bpf.CapSYNOverflow)
	const backlog, clients = 2, 5
	lfd, addr := rawListener(t, ns, backlog)
	// The SYN watch attaches for a listener this small; the SYNs must not
	// come before it.
	waitSynWatch(t, c, true, 2*time.Second)
	var fds []int
	for range clients {
		fds = append(fds, connectFrom(t, ns, 0, addr))
	}
	time.Sleep(300 * time.Millisecond) // before the dropped SYNs are sent again, at 1 s
	after := ns.Counters(t)
	sent := after["TcpExtSyncookiesSent"] - before["TcpExtSyncookiesSent"]
	recv := after["TcpExtSyncookiesRecv"] - before["TcpExtSyncookiesRecv"]
	overflows := after["TcpExtListenOverflows"] - before["TcpExtListenOverflows"]
	if sent != backlog+1 || recv != backlog+1 || overflows != clients-(backlog+1) {
		t.Fatalf("SyncookiesSent +%d, SyncookiesRecv +%d, ListenOverflows +%d: want %d, %d and %d",
			sent, recv, overflows, backlog+1, backlog+1, clients-(backlog+1))
	}
	t.Logf("SyncookiesSent +%d, SyncookiesRecv +%d, ListenOverflows +%d", sent, recv, overflows)
	// The clients reset their ends, then the listener closes, and the
	// children in its queue are destroyed.
	var queued []func(*conn.Connection) bool
	for range backlog + 1 {
		queued = append(queued, func(x *conn.Connection) bool {
			return x.Side == conn.SideServer && !x.Orphan && x.Local == addr
		})
	}
	for _, fd := range fds {
		unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	}
	closeAll(fds)
	closeAll([]int{lfd})
	for _, server := range c.wait(5*time.Second, queued...) {
		var client *conn.Connection
		for _, x := range c.all() {
			if x.Side == conn.SideClient && x.Local == server.Remote {
				client = x
			}
		}
		if client == nil {
			t.Errorf("no client span for %s", server.Remote)
			continue
		}
		if !server.ISN.HasServer || server.ISN != client.ISN {
			t.Errorf("ISNs: server %+v, client %+v: want the cookie's numbers on both ends", server.ISN, client.ISN)
		}
	}
	requireCounterMatch(t, ns, before, c.all())
}

// closeAll closes fds and keeps their numbers taken (by /dev/null) until
// the test's cleanup closes them again.
func closeAll(fds []int) {
	null, err := os.Open(os.DevNull)
	if err != nil {
		return
	}
	defer null.Close()
	for _, fd := range fds {
		unix.Close(fd)
		unix.Dup3(int(null.Fd()), fd, unix.O_CLOEXEC)
	}
}

// A connect() whose SYNs go unanswered times out in SYN_SENT; the kernel
// reports the error after moving the socket to CLOSE (since 6.10), and the
// diagnosis names the state that timed out.
func TestConnectTimeout(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCapture(t, ns, 200*time.Millisecond)
	before := ns.Counters(t)

	ln, cl0, srv0 := ns.ConnectedPair(t, "tcp4", "127.0.0.1:0")
	cl0.Close()
	srv0.Close()
	defer ln.Close()
	serverAddr := endpoint(ln.Addr())
	cutPath(t, ns, serverAddr.Port())
	var local netip.AddrPort
	var connectErr error
	ns.Do(t, func() {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		// Few retransmits of the SYN: a timeout within seconds.
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_SYNCNT, 1); err != nil {
			t.Fatal(err)
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			t.Fatal(err)
		}
		sa, _ := unix.Getsockname(fd)
		local = netip.AddrPortFrom(serverAddr.Addr(), uint16(sa.(*unix.SockaddrInet4).Port))
		connectErr = unix.Connect(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: int(serverAddr.Port())})
	})
	if connectErr != unix.ETIMEDOUT {
		t.Fatalf("connect: %v, want ETIMEDOUT", connectErr)
	}
	client := c.wait(5*time.Second, between(local, serverAddr, conn.SideClient))[0]
	after := ns.Counters(t)
	retrans := after["TcpRetransSegs"] - before["TcpRetransSegs"]
	if uint64(client.Retransmits) != retrans || uint64(client.SegsOut) != retrans+1 {
		t.Errorf("retransmits %d, segments sent %d; TcpRetransSegs +%d: want equal, and one SYN more",
			client.Retransmits, client.SegsOut, retrans)
	}
	typ, desc, _ := exporter.Diagnose(client)
	want := fmt.Sprintf("in SYN_SENT after %d retransmit", retrans)
	if typ != "tcp.timeout" || !strings.Contains(desc, want) {
		t.Errorf("diagnosis %s %q, want a timeout %s\n%s", typ, desc, want, describe(client))
	}
	t.Logf("client: %s", desc)
	requireCounterMatch(t, ns, before, c.all())
}
