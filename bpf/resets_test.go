package bpf_test

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf/btf"

	"github.com/tcpspan/tcpspan/bpf"
	"github.com/tcpspan/tcpspan/conn"
	"github.com/tcpspan/tcpspan/exporter"
	"github.com/tcpspan/tcpspan/internal/testutil"
	"golang.org/x/sys/unix"
)

func TestConnectRefused(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCapture(t, ns, 200*time.Millisecond)
	requireCapability(t, c, bpf.CapClosedPortResets)
	before := ns.Counters(t)

	port := ns.FreePort(t)
	var cl net.Conn
	var dialErr error
	ns.Do(t, func() {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 0}}
		cl, dialErr = d.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
	})
	if dialErr == nil || !strings.Contains(dialErr.Error(), "connection refused") {
		cl.Close()
		t.Fatalf("dial: %v, want connection refused", dialErr)
	}
	server := netip.MustParseAddrPort(fmt.Sprintf("127.0.0.1:%d", port))
	got := c.wait(5*time.Second,
		func(x *conn.Connection) bool { return x.Side == conn.SideClient && x.Remote == server },
		func(x *conn.Connection) bool { return x.Orphan && x.Local == server })
	client, orphan := got[0], got[1]

	want := []step{{conn.EventState, conn.StateSynSent}, {conn.EventRSTReceived, conn.StateSynSent},
		{conn.EventState, conn.StateClose}, {conn.EventError, conn.StateClose}, {conn.EventClose, conn.StateClose}}
	if errs, _ := c.tracer.Features().Capability(bpf.CapSocketErrors); strings.Contains(errs.How, "kprobe") {
		// Without the tracepoint, sk_error_report() is seen where the
		// kernel calls it, which may be before or after tcp_done(): the
		// other steps must match, and the error be there.
		client = withoutEvents(client, conn.EventError)
		want = slices.Delete(want, 3, 4)
	}
	requireSteps(t, client, want)
	if e := got[0].First(conn.EventError); e == nil || e.Errno != syscall.ECONNREFUSED {
		t.Errorf("error %+v, want ECONNREFUSED", e)
	}
	if orphan.Remote != client.Local {
		t.Errorf("orphan remote %s, want the client %s", orphan.Remote, client.Local)
	}
	requireSteps(t, orphan, []step{{conn.EventRSTSent, 0}})
	rst := orphan.First(conn.EventRSTSent)
	if rst.Reason != expectedReason(c, "NO_SOCKET") || rst.Context != conn.ContextKernel || rst.Process.PID != 0 {
		t.Errorf("RST %+v, want NO_SOCKET by the kernel", rst)
	}
	if orphan.Owner.PID != 0 {
		t.Errorf("orphan owner %v: nobody listens on the port", orphan.Owner)
	}
	requireCounterMatch(t, ns, before, c.all())
}

func TestCloseWithUnreadData(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCapture(t, ns, 200*time.Millisecond)
	before := ns.Counters(t)

	clientAddr, serverAddr, fd := abortWithUnread(t, ns, 18)
	got := c.wait(5*time.Second, between(clientAddr, serverAddr, conn.SideClient),
		between(serverAddr, clientAddr, conn.SideServer))
	client, server := got[0], got[1]
	me := self()

	rst := server.First(conn.EventRSTSent)
	if rst == nil {
		t.Fatalf("no RST sent:\n%s", describe(server))
	}
	if rst.Reason != expectedReason(c, "TCP_ABORT_ON_CLOSE") || rst.Context != conn.ContextProcess ||
		rst.Process != me || rst.Syscall != "close" {
		t.Errorf("RST %+v, want TCP_ABORT_ON_CLOSE by %v in close()", rst, me)
	}
	if server.Closer == nil || server.Closer.Process != me || server.Closer.FD != fd || server.Closer.UnreadBytes != 18 {
		t.Errorf("closer %+v, want %v fd %d with 18 bytes unread", server.Closer, me, fd)
	}
	if server.CloseInitiator != conn.InitiatorLocal || client.CloseInitiator != conn.InitiatorRemote {
		t.Errorf("initiators: server %s client %s", server.CloseInitiator, client.CloseInitiator)
	}
	if !client.Has(conn.EventRSTReceived) {
		t.Errorf("client has no RST received:\n%s", describe(client))
	}
	if e := client.First(conn.EventError); e == nil || e.Errno != syscall.ECONNRESET {
		t.Errorf("client error %+v, want ECONNRESET", e)
	}
	requireCounterMatch(t, ns, before, c.all())
}

func TestZeroLingerClose(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCapture(t, ns, 200*time.Millisecond)
	before := ns.Counters(t)

	cl, srv, ln := acceptedPair(t, ns)
	defer ln.Close()
	mustWrite(t, cl, 10)
	mustRead(t, srv, 10)
	mustWrite(t, srv, 4)
	mustRead(t, cl, 4)
	if err := cl.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	if _, err := srv.Read(make([]byte, 1)); err == nil {
		t.Fatal("server read succeeded after the peer's reset")
	}
	srv.Close()

	clientAddr, serverAddr := endpoint(cl.LocalAddr()), endpoint(ln.Addr())
	got := c.wait(5*time.Second, between(clientAddr, serverAddr, conn.SideClient),
		between(serverAddr, clientAddr, conn.SideServer))
	client, server := got[0], got[1]
	// A zero-linger close goes through tcp_disconnect(), which resets with
	// TCP_STATE (it is not an abort on close with unread data).
	rst := client.First(conn.EventRSTSent)
	if rst == nil || rst.Reason != expectedReason(c, "TCP_STATE") || rst.Context != conn.ContextProcess ||
		rst.Process != self() || rst.Syscall != "close" {
		t.Errorf("client RST %+v, want TCP_STATE by the test process in close()\n%s", rst, describe(client))
	}
	// The server saw a reset on an established connection.
	if e := server.First(conn.EventRSTReceived); e == nil || e.State != conn.StateEstablished {
		t.Errorf("server RST received %+v, want one while ESTABLISHED\n%s", e, describe(server))
	}
	if e := server.First(conn.EventError); e == nil || e.Errno != syscall.ECONNRESET {
		t.Errorf("server error %+v, want ECONNRESET", e)
	}
	// tcp_disconnect() zeroes the counters after the reset: they are read
	// before.
	if client.BytesSent != 10 || client.BytesReceived != 4 || server.BytesSent != 4 || server.BytesReceived != 10 {
		t.Errorf("bytes: client sent %d received %d, server sent %d received %d; want 10/4 and 4/10",
			client.BytesSent, client.BytesReceived, server.BytesSent, server.BytesReceived)
	}
	// The ECONNRESET the disconnect reports goes to no one: the reset leads.
	if typ, desc, _ := exporter.Diagnose(client); typ != "tcp.rst_sent" || !strings.Contains(desc, "closed fd") {
		t.Errorf("client diagnosis %s %q, want the reset its close() sent", typ, desc)
	}
	requireCounterMatch(t, ns, before, c.all())
}

func TestRetransmitsAndResetOnEstablished(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCapture(t, ns, 200*time.Millisecond)
	before := ns.Counters(t)

	cl, srv, ln := acceptedPair(t, ns)
	defer ln.Close()
	serverPort := endpoint(ln.Addr()).Port()
	// Drop everything the client sends: its data is retransmitted.
	ns.Exec(t, "nft", "add", "table", "inet", "loss")
	ns.Exec(t, "nft", "add chain inet loss in { type filter hook input priority 0; }")
	ns.Exec(t, "nft", "add", "rule", "inet", "loss", "in", "tcp", "dport", fmt.Sprint(serverPort), "drop")
	mustWrite(t, cl, 100)
	time.Sleep(1200 * time.Millisecond) // RTO 200ms, doubling: a few retransmits
	ns.Exec(t, "nft", "delete", "table", "inet", "loss")
	mustRead(t, srv, 100)
	// The server resets the established connection.
	srv.SetLinger(0)
	srv.Close()
	if _, err := cl.Read(make([]byte, 1)); err == nil {
		t.Fatal("client read succeeded after reset")
	}
	cl.Close()

	clientAddr, serverAddr := endpoint(cl.LocalAddr()), endpoint(ln.Addr())
	got := c.wait(5*time.Second, between(clientAddr, serverAddr, conn.SideClient))
	client := got[0]
	if client.Retransmits < 2 || client.Count(conn.EventRetransmit) < 2 {
		t.Errorf("retransmits %d (events %d), want at least 2\n%s", client.Retransmits, client.Count(conn.EventRetransmit), describe(client))
	}
	for _, e := range client.Events {
		if e.Kind == conn.EventRetransmit && (e.State != conn.StateEstablished || e.Process.PID != 0) {
			t.Errorf("retransmit %+v", e)
		}
	}
	if e := client.First(conn.EventRSTReceived); e == nil || e.State != conn.StateEstablished {
		t.Errorf("RST received %+v, want one while ESTABLISHED", e)
	}
	if !client.Problem() {
		t.Error("connection with retransmits and a reset is not flagged as a problem")
	}
	requireCounterMatch(t, ns, before, c.all())
}

// TestSoftirqInTaskMode runs the kernel side as on a PREEMPT_RT kernel,
// where softirqs run on the task's stack and only the socket lock tells a
// close()'s own events from softirq work done inside it. A socket closed
// with unread data is still reset by the closing process in close(); a
// child its server never accepted, reset by its listener's close(), is the
// kernel's in this mode (it is not under that lock), and the closer's
// otherwise.
func TestSoftirqInTaskMode(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCapture(t, ns, 200*time.Millisecond, bpf.WithSoftirqInTask(true))
	me := self()

	clientAddr, serverAddr, fd := abortWithUnread(t, ns, 18)
	server := c.wait(5*time.Second, between(serverAddr, clientAddr, conn.SideServer))[0]
	if rst := server.First(conn.EventRSTSent); rst == nil || rst.Context != conn.ContextProcess || rst.Process != me || rst.Syscall != "close" {
		t.Errorf("abort on close: RST %+v, want one by %v in close()\n%s", rst, me, describe(server))
	}
	if server.Closer == nil || server.Closer.Process != me || server.Closer.FD != fd || server.Closer.UnreadBytes != 18 {
		t.Errorf("closer %+v, want %v fd %d with 18 bytes unread", server.Closer, me, fd)
	}

	lfd, addr := rawListener(t, ns, 8)
	cfd := connectFrom(t, ns, 0, addr)
	deadline := time.Now().Add(2 * time.Second)
	for {
		info, err := unix.GetsockoptTCPInfo(cfd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err == nil && info.State == unix.BPF_TCP_ESTABLISHED {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queued connection never established: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	unix.Close(lfd) // resets the child it never accepted
	queued := netip.AddrPortFrom(addr.Addr(), localPort(t, cfd))
	child := c.wait(5*time.Second, between(addr, queued, conn.SideServer))[0]
	rst := child.First(conn.EventRSTSent)
	if rst == nil || rst.Context != conn.ContextKernel || rst.Process.PID != 0 {
		t.Errorf("child reset by its listener's close(): RST %+v, want the kernel's in this mode\n%s", rst, describe(child))
	}
	if child.Closer != nil || child.Has(conn.EventClose) {
		t.Errorf("child: closer %+v; want none", child.Closer)
	}
}

// A retransmit the kernel gives up on before sending it is not one:
// __tcp_retransmit_skb() returns -EBUSY while the segment is still queued
// on this host, and counts nothing (TcpRetransSegs, total_retrans). On
// kernels after 6.12 (6.18 here) its tracepoint fires for such attempts
// too, with the error. A slow qdisc (tbf, 1 KB/s) holds the client's
// packets past their RTO. A
// retransmit event stands for a packet sent again, of one segment or more
// (the kernel counts segments), so the client's events and those left out
// can be no more than the namespace's TcpRetransSegs; and on kernels that
// tell the attempts, some must have been counted as unsent.
func TestRetransmitsHeldInHostQueue(t *testing.T) {
	ns := testutil.NewNetNS(t)
	// Segments of 1448 bytes, not 64 KB, so that the qdisc holds several.
	ns.Exec(t, "ip", "link", "set", "lo", "mtu", "1500")
	c := startCapture(t, ns, 200*time.Millisecond)
	before := ns.Counters(t)

	cl, srv, ln := acceptedPair(t, ns)
	defer ln.Close()
	defer srv.Close()
	ns.Exec(t, "tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "8kbit", "burst", "3000", "latency", "20s")
	// Ten writes of 1000 bytes (Go sets TCP_NODELAY): packets of their own
	// until the qdisc's queue holds the rest back.
	for range 10 {
		mustWrite(t, cl, 1000)
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // RTOs at 0.2, 0.6 and 1.4 s, the packets still queued
	ns.Exec(t, "tc", "qdisc", "del", "dev", "lo", "root")
	mustRead(t, srv, 10000)
	cl.Close()
	srv.Close()

	clientAddr, serverAddr := endpoint(cl.LocalAddr()), endpoint(ln.Addr())
	client := c.wait(5*time.Second, between(clientAddr, serverAddr, conn.SideClient))[0]
	after := ns.Counters(t)
	c.stop()
	retrans := after["TcpRetransSegs"] - before["TcpRetransSegs"]
	kept, dropped := uint64(client.Count(conn.EventRetransmit)), uint64(client.RetransmitEventsDropped)
	unsent := c.final.RetransUnsent
	t.Logf("TcpRetransSegs +%d, TcpExtTCPRetransFail +%d; %d events + %d left out; %d attempts not sent",
		retrans, after["TcpExtTCPRetransFail"]-before["TcpExtTCPRetransFail"], kept, dropped, unsent)
	if retrans == 0 || kept == 0 || kept+dropped > retrans || uint64(client.Retransmits) != retrans {
		t.Errorf("retransmits: %d events + %d left out, total %d; TcpRetransSegs +%d\n%s",
			kept, dropped, client.Retransmits, retrans, describe(client))
	}
	tells := retransmitTellsErrors(t)
	t.Logf("tcp_retransmit_skb has an error argument: %v", tells)
	if tells && unsent == 0 {
		t.Error("no retransmit attempt counted as unsent: the qdisc held no packet past its RTO, and the test shows nothing")
	}
}

// retransmitTellsErrors says whether the running kernel's tcp_retransmit_skb
// tracepoint has an error argument, and so fires for attempts not sent.
func retransmitTellsErrors(t *testing.T) bool {
	t.Helper()
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatal(err)
	}
	var td *btf.Typedef
	if err := spec.TypeByName("btf_trace_tcp_retransmit_skb", &td); err != nil {
		t.Fatal(err)
	}
	proto := td.Type.(*btf.Pointer).Target.(*btf.FuncProto)
	return len(proto.Params) == 4 // the private data, sk, skb, err
}
