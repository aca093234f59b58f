package bpf_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/tcpspan/tcpspan/bpf"
	"github.com/tcpspan/tcpspan/conn"
	"github.com/tcpspan/tcpspan/internal/testutil"
	"golang.org/x/sys/unix"
)

func TestAcceptQueueOverflow(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCapture(t, ns, 300*time.Millisecond)
	requireCapability(t, c, bpf.CapSYNOverflow)
	before := ns.Counters(t)

	// Backlog 1: the queue is full with 2 unaccepted connections. The
	// other clients' SYNs find it full.
	_, server := rawListener(t, ns, 1)
	// So small a queue turns the SYN watch on at listen(), but it attaches
	// a moment later, from user space (TestSynWatchSmallQueue): on a busy
	// machine the first overflowing SYNs could come before it.
	waitSynWatch(t, c, true, 2*time.Second)
	const clients = 6
	var fds []int
	for i := 0; i < clients; i++ {
		fds = append(fds, connectFrom(t, ns, 0, server))
		time.Sleep(20 * time.Millisecond)
	}
	// Let the dropped SYNs be retried once (the first SYN retry is at 1s).
	time.Sleep(1500 * time.Millisecond)
	for _, fd := range fds {
		unix.Close(fd)
	}
	time.Sleep(300 * time.Millisecond)
	counters := ns.Counters(t)
	time.Sleep(500 * time.Millisecond) // orphan idle, then flush
	conns := c.all()

	overflowed := map[netip.AddrPort]bool{}
	for _, x := range conns {
		for _, e := range x.Events {
			if e.Kind != conn.EventSYNOverflow && e.Kind != conn.EventACKOverflow {
				continue
			}
			if x.Local != server || e.Backlog != 2 || e.MaxBacklog != 1 || x.Owner != self() || e.Process.PID != 0 {
				t.Errorf("overflow on %s: backlog %d/%d owner %v actor %v; want on %s, 2/1, owner %v, no actor",
					x.Local, e.Backlog, e.MaxBacklog, x.Owner, e.Process, server, self())
			}
		}
		if x.Has(conn.EventSYNOverflow) {
			overflowed[x.Remote] = true
		}
	}
	// Each overflowed handshake shares its client's numbers (the client's
	// only, its SYNs never answered), and so its trace.
	for _, x := range conns {
		if !x.Has(conn.EventSYNOverflow) {
			continue
		}
		if !x.ISN.HasClient || x.ISN.HasServer {
			t.Errorf("SYN overflow of %s: ISNs %+v, want the client's only", x.Remote, x.ISN)
		}
		for _, y := range conns {
			if y.Side == conn.SideClient && y.Local == x.Remote && y.ISN != x.ISN {
				t.Errorf("SYN overflow of %s: ISNs %+v, its client's %+v", x.Remote, x.ISN, y.ISN)
			}
		}
	}
	if len(overflowed) != clients-2 {
		t.Errorf("%d 4-tuples with SYN overflow, want %d\n%s", len(overflowed), clients-2, c.dump())
	}
	requireCounterMatch(t, ns, before, conns)
	if counters["TcpExtListenOverflows"]-before["TcpExtListenOverflows"] == 0 {
		t.Error("the kernel counted no overflow: the scenario did not happen")
	}
}

// TestHandshakeDroppedThenListenerReset is the seed's first cause: the
// handshake ACK reaches a listener whose accept queue is full and is
// dropped; the kernel gives up on the handshake; the client, which believes
// it is connected, sends data and gets an RST from the listener.
func TestHandshakeDroppedThenListenerReset(t *testing.T) {
	ns := testutil.NewNetNS(t)
	ns.Sysctl(t, "net.ipv4.tcp_synack_retries", "1")
	ns.Sysctl(t, "net.ipv4.tcp_syncookies", "0")
	c := startCapture(t, ns, 2*time.Second)
	requireCapability(t, c, bpf.CapSYNOverflow)
	// Without the drop reason the overflow of the handshake ACK cannot be
	// seen; the reset from the listener still can, and nothing may be
	// made up in place of the overflow.
	overflowCap, _ := c.tracer.Features().Capability(bpf.CapListenOverflow)
	if !overflowCap.On {
		t.Logf("%s is off on this kernel, so only the reset is expected: %s", bpf.CapListenOverflow, overflowCap.Why)
	}
	before := ns.Counters(t)

	// Backlog 2: up to 2 pending handshakes, full with 3 queued.
	_, server := rawListener(t, ns, 2)
	waitSynWatch(t, c, true, 2*time.Second) // as in TestAcceptQueueOverflow
	// The victim's handshake ACK is held back until the queue is full.
	const victimPort = 41234
	ns.Exec(t, "nft", "add", "table", "inet", "hold")
	ns.Exec(t, "nft", "add chain inet hold in { type filter hook input priority 0; }")
	ns.Exec(t, "nft", "add", "rule", "inet", "hold", "in", "tcp", "sport", fmt.Sprint(victimPort), "tcp", "flags", "!=", "syn", "drop")
	victim := connectFrom(t, ns, victimPort, server)
	time.Sleep(50 * time.Millisecond)
	for i := 0; i < 3; i++ {
		connectFrom(t, ns, 0, server)
		time.Sleep(20 * time.Millisecond)
	}
	ns.Exec(t, "nft", "delete", "table", "inet", "hold")
	// The victim believes it is connected, and sends.
	if _, err := unix.Write(victim, []byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
		t.Fatalf("victim write: %v", err)
	}

	victimAddr := netip.AddrPortFrom(server.Addr(), victimPort)
	got := c.wait(25*time.Second, func(x *conn.Connection) bool {
		return x.Orphan && x.Remote == victimAddr && x.Has(conn.EventRSTSent)
	})
	orphan := got[0]
	t.Logf("victim's server side:\n%s", describe(orphan))
	for _, x := range c.all() {
		if x != orphan && x.Orphan && x.Remote == victimAddr {
			t.Errorf("the victim's 4-tuple came out as more than one record:\n%s", describe(x))
		}
	}
	ack := orphan.First(conn.EventACKOverflow)
	rst := orphan.First(conn.EventRSTSent)
	drops, _ := c.tracer.Features().Capability(bpf.CapDropSocket)
	switch {
	case !overflowCap.On:
		if ack != nil {
			t.Errorf("handshake ACK overflow %+v reported on a kernel that cannot see it", ack)
		}
	case !drops.On:
		// Without rx_sk the listener, and so its backlog, is unknown.
		if ack == nil || ack.Backlog != 0 || ack.MaxBacklog != 0 {
			t.Errorf("handshake ACK overflow %+v, want one with the backlog unknown (0/0)", ack)
		}
	case ack == nil || ack.Backlog != 3 || ack.MaxBacklog != 2:
		t.Errorf("handshake ACK overflow %+v, want one at backlog 3/2", ack)
	}
	if ack != nil && !ack.Time.Before(rst.Time) {
		t.Error("the RST came before the overflow drop")
	}
	if rst.State != conn.StateListen || rst.Context != conn.ContextKernel || rst.Process.PID != 0 {
		t.Errorf("RST %+v: want from the listener, by the kernel, crediting no process", rst)
	}
	if rst.Reason == "" {
		t.Error("RST without reason")
	}
	if orphan.Owner != self() || !orphan.OwnerFromListener {
		t.Errorf("owner %v, want the listener's owner %v", orphan.Owner, self())
	}
	unix.Close(victim)
	// The listener's side knows both numbers (from the dropped ACK, or the
	// segment it answered), and they are the victim's.
	client := c.wait(5*time.Second, func(x *conn.Connection) bool { return x.Side == conn.SideClient && x.Local == victimAddr })[0]
	if !orphan.ISN.HasServer || orphan.ISN != client.ISN {
		t.Errorf("listener side's ISNs %+v, the victim's %+v: want both known and equal", orphan.ISN, client.ISN)
	}
	time.Sleep(2500 * time.Millisecond) // let the other orphans flush
	if overflowCap.On {
		requireCounterMatch(t, ns, before, c.all())
		return
	}
	after := ns.Counters(t)
	if got, want := resetsSent(c.all()), after["TcpOutRsts"]-before["TcpOutRsts"]; got != want {
		t.Errorf("RSTs recorded %d, TcpOutRsts delta %d", got, want)
	}
	if after["TcpExtListenOverflows"] == before["TcpExtListenOverflows"] {
		t.Error("the kernel counted no overflow: the scenario did not happen")
	}
	for _, x := range c.all() {
		if n := x.Count(conn.EventACKOverflow); n > 0 {
			t.Errorf("%d ACK overflows reported on a kernel that cannot see them:\n%s", n, describe(x))
		}
	}
}
