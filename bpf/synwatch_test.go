package bpf_test

import (
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpspan/tcpspan/bpf"
	"github.com/tcpspan/tcpspan/conn"
	"github.com/tcpspan/tcpspan/internal/testutil"
)

// synWatch reads the SYN watch's state from the tracer's counters.
func synWatch(t *testing.T, c *capture) (on bool, attaches uint64) {
	t.Helper()
	k, err := c.tracer.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return k.SynWatchOn, k.SynWatchAttaches
}

// waitSynWatch waits until the SYN watch is on (or off), or fails.
func waitSynWatch(t *testing.T, c *capture, on bool, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if got, _ := synWatch(t, c); got == on {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("SYN watch not %v within %v", map[bool]string{true: "on", false: "off"}[on], within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func acceptOne(t *testing.T, ns *testutil.NetNS, fd int) {
	t.Helper()
	ns.Do(t, func() {
		nfd, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
		if err != nil {
			t.Fatalf("accept: %v", err)
		}
		t.Cleanup(func() { unix.Close(nfd) })
	})
}

// TestSynWatchOnDemand: in auto mode the SYN watch stays off while a queue
// is low, goes on when a child makes it half full, and goes off once
// accept() has emptied it and the linger has passed.
func TestSynWatchOnDemand(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCapture(t, ns, 200*time.Millisecond)
	requireCapability(t, c, bpf.CapSYNOverflow)

	// A limit of 64 is not small (SMALL_QUEUE): half full at 32 queued.
	fd, server := rawListener(t, ns, 64)
	for i := 0; i < 31; i++ {
		connectFrom(t, ns, 0, server)
	}
	time.Sleep(300 * time.Millisecond)
	if on, n := synWatch(t, c); on || n != 0 {
		t.Fatalf("SYN watch on=%v after %d attaches with 31 of 64 queued, want off, never attached", on, n)
	}
	connectFrom(t, ns, 0, server)
	waitSynWatch(t, c, true, 2*time.Second)

	for i := 0; i < 32; i++ {
		acceptOne(t, ns, fd)
	}
	waitSynWatch(t, c, false, bpf.SynWatchLinger+2*time.Second)
	if _, n := synWatch(t, c); n != 1 {
		t.Errorf("SYN watch attached %d times, want 1", n)
	}
}

// TestSynWatchLearnsListener: a listener that predates the agent has no
// known address. Its first accept() teaches it, so the watch need not go
// on for it; then its queue is watched like any other. One that accepts
// nothing turns the watch on to learn it from its SYNs.
func TestSynWatchLearnsListener(t *testing.T) {
	ns := testutil.NewNetNS(t)
	fd, server := rawListener(t, ns, 64)
	_, idle := rawListener(t, ns, 64)
	c := startCapture(t, ns, 200*time.Millisecond)
	requireCapability(t, c, bpf.CapSYNOverflow)
	for _, addr := range []netip.AddrPort{server, idle} {
		if err := c.tracer.AddListener(ns.Inode, addr.Port(), uint32(os.Getpid()), "bpf.test", 0, 64); err != nil {
			t.Fatal(err)
		}
	}

	connectFrom(t, ns, 0, server)
	time.Sleep(20 * time.Millisecond)
	acceptOne(t, ns, fd)
	time.Sleep(500 * time.Millisecond)
	if on, n := synWatch(t, c); on || n != 0 {
		t.Fatalf("SYN watch on=%v after %d attaches for a listener learned at accept(), want off, never attached", on, n)
	}
	// Learned: its queue is read. 32 of 64 is half full.
	for i := 0; i < 32; i++ {
		connectFrom(t, ns, 0, server)
	}
	waitSynWatch(t, c, true, 2*time.Second)
	for i := 0; i < 32; i++ {
		acceptOne(t, ns, fd)
	}
	waitSynWatch(t, c, false, bpf.SynWatchLinger+2*time.Second)

	// The idle listener's process accepts nothing: after a short wait the
	// watch goes on to learn it.
	connectFrom(t, ns, 0, idle)
	waitSynWatch(t, c, true, 2*time.Second)
	if _, n := synWatch(t, c); n != 2 {
		t.Errorf("SYN watch attached %d times, want 2", n)
	}
}

// TestSynEstimated: with the SYN watch off, a server span's SYN is placed
// by the handshake's RTT. Beside a second tracer whose watch is always on,
// the estimate comes no earlier than the SYN itself and no later than the
// child socket, and after the client's connect().
func TestSynEstimated(t *testing.T) {
	ns := testutil.NewNetNS(t)
	exact := startCapture(t, ns, 200*time.Millisecond, bpf.WithSynWatch(bpf.SynWatchAlways))
	requireCapability(t, exact, bpf.CapSYNOverflow)
	auto := startCapture(t, ns, 200*time.Millisecond)

	ln, cl, srv := ns.ConnectedPair(t, "tcp4", "127.0.0.1:0")
	cl.Close()
	srv.Close()
	ln.Close()
	clientAddr, serverAddr := endpoint(cl.LocalAddr()), endpoint(ln.Addr())
	if on, _ := synWatch(t, auto); on {
		t.Fatal("the auto tracer's SYN watch is on for an idle listener")
	}
	byExact := exact.wait(5*time.Second, between(clientAddr, serverAddr, conn.SideClient), between(serverAddr, clientAddr, conn.SideServer))
	server := auto.wait(5*time.Second, between(serverAddr, clientAddr, conn.SideServer))[0]

	seen, est := byExact[1].First(conn.EventSYN), server.First(conn.EventSYN)
	connect := byExact[0].First(conn.EventState)
	child := server.First(conn.EventState)
	if seen == nil || est == nil || connect == nil || child == nil {
		t.Fatalf("missing events: SYN seen %v, estimated %v, connect %v, child %v\n%s\n%s", seen, est, connect, child,
			describe(byExact[1]), describe(server))
	}
	t.Logf("connect %v, SYN seen %+v, estimated %+v, child %v", connect.Time.Format(time.StampNano),
		seen.Time.Sub(connect.Time), est.Time.Sub(connect.Time), child.Time.Sub(connect.Time))
	// The RTT is in whole microseconds.
	if est.Time.Before(seen.Time.Add(-2*time.Microsecond)) || est.Time.Before(connect.Time) {
		t.Errorf("estimated SYN %v before the SYN seen (%v) or the connect (%v)", est.Time, seen.Time, connect.Time)
	}
	if !est.Time.Before(child.Time) || child.State != conn.StateSynRecv {
		t.Errorf("estimated SYN %v not before the child's %v at %v", est.Time, child.State, child.Time)
	}
	if !est.Estimated || seen.Estimated {
		t.Errorf("SYN estimated=%v with the watch off, %v with it on; want true, false", est.Estimated, seen.Estimated)
	}
	if !server.Start.Equal(est.Time) {
		t.Errorf("server span starts at %v, want its estimated SYN %v", server.Start, est.Time)
	}
}

// TestSynWatchSeededHighQueue: a listener that predates the agent with its
// queue already half full (as sock_diag lists it) turns the watch on at
// start, and its SYNs teach the kernel side its address: the overflow of
// the next SYN is seen.
func TestSynWatchSeededHighQueue(t *testing.T) {
	ns := testutil.NewNetNS(t)
	_, server := rawListener(t, ns, 1)
	connectFrom(t, ns, 0, server)
	connectFrom(t, ns, 0, server) // 2 queued: full
	time.Sleep(50 * time.Millisecond)
	c := startCapture(t, ns, 200*time.Millisecond)
	requireCapability(t, c, bpf.CapSYNOverflow)
	if on, _ := synWatch(t, c); on {
		t.Fatal("SYN watch on before any listener was added")
	}
	if err := c.tracer.AddListener(ns.Inode, server.Port(), uint32(os.Getpid()), "bpf.test", 2, 1); err != nil {
		t.Fatal(err)
	}
	waitSynWatch(t, c, true, 2*time.Second)

	late := connectFrom(t, ns, 0, server)
	got := c.wait(5*time.Second, func(x *conn.Connection) bool {
		return x.Local == server && x.Remote.Port() == localPort(t, late) && x.Has(conn.EventSYNOverflow)
	})
	if e := got[0].First(conn.EventSYNOverflow); e.Backlog != 2 || e.MaxBacklog != 1 {
		t.Errorf("SYN overflow at backlog %d/%d, want 2/1", e.Backlog, e.MaxBacklog)
	}
}

// TestSynWatchSmallQueue: a listener whose limit is small (below 64) turns
// the watch on at listen(), before any connection, since one burst fills it
// faster than the watch attaches; it goes off once that listener closes.
func TestSynWatchSmallQueue(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCapture(t, ns, 200*time.Millisecond)
	requireCapability(t, c, bpf.CapSYNOverflow)
	fd, _ := rawListener(t, ns, 5)
	waitSynWatch(t, c, true, 2*time.Second)
	time.Sleep(bpf.SynWatchLinger + 500*time.Millisecond)
	if on, _ := synWatch(t, c); !on {
		t.Fatal("SYN watch went off while a listener with a limit of 5 exists")
	}
	unix.Close(fd)
	waitSynWatch(t, c, false, bpf.SynWatchLinger+2*time.Second)
}
