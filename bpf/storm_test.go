package bpf_test

import (
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpspan/tcpspan/bpf"
	"github.com/tcpspan/tcpspan/conn"
	"github.com/tcpspan/tcpspan/internal/testutil"
)

// refuseLoop connects n times from the address from to a closed port,
// each with a new socket and so a new port, like a client retrying.
func refuseLoop(t *testing.T, ns *testutil.NetNS, from, to netip.AddrPort, n int) {
	t.Helper()
	ns.Do(t, func() {
		for i := 0; i < n; i++ {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: from.Addr().As4()}); err != nil {
				unix.Close(fd)
				t.Fatal(err)
			}
			err = unix.Connect(fd, &unix.SockaddrInet4{Port: int(to.Port()), Addr: to.Addr().As4()})
			unix.Close(fd)
			if err != unix.ECONNREFUSED {
				t.Fatalf("connect %d to a closed port: %v, want ECONNREFUSED", i, err)
			}
		}
	})
}

// refusedConnects counts the client connections the captured ones stand
// for: a storm's from its tally.
func refusedConnects(conns []*conn.Connection) (n uint64, records int) {
	for _, x := range conns {
		if x.Orphan || x.Side != conn.SideClient {
			continue
		}
		records++
		if x.Storm != nil {
			n += uint64(x.Storm.Count)
		} else {
			n++
		}
	}
	return n, records
}

// stormResets counts the resets the orphans stand for: a storm's from its
// tally, another orphan's from its events.
func stormResets(conns []*conn.Connection) (n uint64, orphans int) {
	for _, x := range conns {
		if !x.Orphan {
			continue
		}
		orphans++
		if x.Storm != nil {
			n += uint64(x.Storm.EventCount(conn.EventRSTSent))
		} else {
			n += uint64(x.Count(conn.EventRSTSent))
		}
	}
	return n, orphans
}

// A closed-port storm is counted in the kernel: the first reset of each
// kind (local port, peer address, reason) in each window goes out as a
// record, the others only as a count; so do the refused connects of a
// process that serves nothing. Every reset is still accounted for, equal
// to the kernel's TcpOutRsts, in storm connections whose peers are the two
// clients, and every connect, equal to TcpActiveOpens.
func TestClosedPortStormFoldedInKernel(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCaptureTracking(t, ns, 200*time.Millisecond,
		[]conn.Option{conn.WithStormWindow(300 * time.Millisecond)},
		bpf.WithResetFolding(300*time.Millisecond))
	requireCapability(t, c, bpf.CapClosedPortResets)
	before := ns.Counters(t)

	closed := netip.MustParseAddrPort("127.0.0.1:9")
	a, b := netip.MustParseAddrPort("127.0.0.1:0"), netip.MustParseAddrPort("127.0.0.2:0")
	const perClient = 3000
	start := time.Now()
	refuseLoop(t, ns, a, closed, perClient)
	refuseLoop(t, ns, b, closed, perClient)
	t.Logf("%d refused connects in %v", 2*perClient, time.Since(start))

	after := ns.Counters(t)
	rsts := after["TcpOutRsts"] - before["TcpOutRsts"]
	opens := after["TcpActiveOpens"] - before["TcpActiveOpens"]
	if rsts != 2*perClient || opens != 2*perClient {
		t.Fatalf("TcpOutRsts +%d, TcpActiveOpens +%d, want %d", rsts, opens, 2*perClient)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, _ := stormResets(c.all())
		m, _ := refusedConnects(c.all())
		if n == rsts && m == opens || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.stop()

	got, orphans := stormResets(c.all())
	if got != rsts {
		t.Errorf("resets accounted for %d, TcpOutRsts +%d\n%s", got, rsts, c.dump())
	}
	refused, clients := refusedConnects(c.all())
	if refused != opens {
		t.Errorf("connects accounted for %d, TcpActiveOpens +%d", refused, opens)
	}
	k := c.final
	st := c.tracker.Stats()
	t.Logf("orphan records %d, folded in the kernel %d (map full %d), spans %d, storms %d",
		k.OrphansEmitted, k.ResetsFolded, k.ResetStormsFull, orphans, st.Storms)
	t.Logf("connection records %d, folded in the kernel %d (map full %d), spans %d, storms %d",
		k.ConnsEmitted, k.RefusedFolded, k.RefusedStormsFull, clients, st.ConnStorms)
	if k.RefusedFolded+k.ConnsEmitted != opens || st.ConnsFolded > k.RefusedFolded {
		t.Errorf("kernel: %d folded + %d sent, want %d; tracker folded %d in %d storms",
			k.RefusedFolded, k.ConnsEmitted, opens, st.ConnsFolded, st.ConnStorms)
	}
	if k.ResetsFolded+k.OrphansEmitted != rsts {
		t.Errorf("kernel: %d folded + %d sent, want %d", k.ResetsFolded, k.OrphansEmitted, rsts)
	}
	if st.ResetsFoldedInKernel != k.ResetsFolded {
		t.Errorf("tracker took %d folded resets, kernel folded %d", st.ResetsFoldedInKernel, k.ResetsFolded)
	}
	// One example per client per window: the loops take well under a
	// second each on any machine this runs on, but allow for slow ones.
	windows := uint64(time.Since(start)/(300*time.Millisecond)) + 2
	if k.OrphansEmitted > 2*windows || k.ConnsEmitted > 2*windows {
		t.Errorf("%d orphan and %d connection records for %d windows of 2 clients: not folded",
			k.OrphansEmitted, k.ConnsEmitted, windows)
	}
	for _, x := range c.all() {
		if x.Storm == nil || x.Orphan {
			continue
		}
		if e := x.First(conn.EventError); e == nil || e.Errno != unix.ECONNREFUSED || x.Remote != closed ||
			x.Storm.EventCount(conn.EventRSTReceived) != x.Storm.Count || x.Owner.PID != uint32(os.Getpid()) {
			t.Errorf("refused storm %s: %+v", describe(x), x.Storm)
		}
	}
	// A storm names its first peer and counts the others.
	peers, stormPeers := map[netip.Addr]bool{}, uint32(0)
	for _, x := range c.all() {
		if !x.Orphan {
			continue
		}
		if x.Local != closed {
			t.Errorf("orphan at %s, want %s", x.Local, closed)
		}
		peers[x.Remote.Addr()] = true
		if x.Storm != nil {
			stormPeers = max(stormPeers, x.Storm.Peers)
		}
		if e := x.First(conn.EventRSTSent); e == nil || e.Reason != expectedReason(c, "NO_SOCKET") || !e.NoSocket() {
			t.Errorf("orphan %s: first reset %+v, want NO_SOCKET for no socket", describe(x), e)
		}
	}
	if len(peers) > 2 || stormPeers > 2 || !peers[a.Addr()] || (!peers[b.Addr()] && stormPeers != 2) {
		t.Errorf("peers %v (a storm counting %d), want %s and %s", peers, stormPeers, a.Addr(), b.Addr())
	}
}

// A process that listens may close a connection it serves because its own
// connect was refused (a forwarder): its refused connects are each sent,
// for that link, while the resets that refused them are still folded.
func TestRefusedConnectsOfServersNotFolded(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCaptureTracking(t, ns, 200*time.Millisecond,
		[]conn.Option{conn.WithStormWindow(300 * time.Millisecond)},
		bpf.WithResetFolding(300*time.Millisecond))
	requireCapability(t, c, bpf.CapClosedPortResets)
	ns.Do(t, func() {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
	})
	before := ns.Counters(t)
	const n = 300
	refuseLoop(t, ns, netip.MustParseAddrPort("127.0.0.1:0"), netip.MustParseAddrPort("127.0.0.1:9"), n)
	after := ns.Counters(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, _ := refusedConnects(c.all())
		r, _ := stormResets(c.all())
		if m == n && r == n || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.stop()
	k := c.final
	if rsts := after["TcpOutRsts"] - before["TcpOutRsts"]; rsts != n {
		t.Fatalf("TcpOutRsts +%d, want %d", rsts, n)
	}
	if m, records := refusedConnects(c.all()); m != n || records != n || k.RefusedFolded != 0 {
		t.Errorf("%d connects in %d records, %d folded in the kernel; want %d, each its own", m, records, k.RefusedFolded, n)
	}
	if r, _ := stormResets(c.all()); r != n || k.ResetsFolded == 0 {
		t.Errorf("%d resets accounted for, %d folded in the kernel; want %d, folded", r, k.ResetsFolded, n)
	}
}
