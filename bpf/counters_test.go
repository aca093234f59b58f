package bpf_test

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/tcpspan/tcpspan/bpf"
	"github.com/tcpspan/tcpspan/conn"
	"github.com/tcpspan/tcpspan/internal/testutil"
)

// With more open connections than the kernel map holds, the oldest entries
// are evicted. Every socket is still accounted for: emitted as a record
// (re-tracked as mid-life when it shows activity again, as here at close)
// or counted as destroyed untracked.
func TestEvictionIsCounted(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCapture(t, ns, 200*time.Millisecond, bpf.WithMaxConnections(32))
	const pairs = 100
	var ln net.Listener
	var clients []net.Conn
	ns.Do(t, func() {
		var err error
		if ln, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < pairs; i++ {
			cl, err := net.Dial("tcp4", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			clients = append(clients, cl)
		}
	})
	var servers []net.Conn
	for i := 0; i < pairs; i++ {
		srv, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		servers = append(servers, srv)
	}
	ln.Close()
	for i := range clients {
		clients[i].Close()
		servers[i].Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	var counters bpf.Counters
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		var err error
		if counters, err = c.tracer.Counters(); err != nil {
			t.Fatal(err)
		}
		if counters.ConnsEmitted+counters.DestroyedUntracked >= 2*pairs {
			break
		}
	}
	if counters.ConnsEmitted+counters.DestroyedUntracked != 2*pairs {
		t.Errorf("emitted %d + untracked %d, want %d sockets accounted for", counters.ConnsEmitted, counters.DestroyedUntracked, 2*pairs)
	}
	if counters.ConnMidlife+counters.DestroyedUntracked < 2*pairs-64 {
		t.Errorf("mid-life %d + untracked %d: evictions from a map of 32 unaccounted for", counters.ConnMidlife, counters.DestroyedUntracked)
	}
	t.Logf("emitted %d (mid-life %d), untracked %d", counters.ConnsEmitted, counters.ConnMidlife, counters.DestroyedUntracked)
}

// With nothing to export or print clean connections to, the kernel side
// counts them and sends only the ones with a problem.
func TestSkipClean(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCapture(t, ns, 200*time.Millisecond, bpf.WithSkipClean(true))

	const clean = 3
	for i := 0; i < clean; i++ {
		cl, srv, ln := acceptedPair(t, ns)
		mustWrite(t, cl, 100)
		if _, err := io.ReadFull(srv, make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
		cl.Close()
		srv.Close()
		ln.Close()
	}
	// One with a problem: the server closes with 18 bytes unread.
	cl, srv, ln := acceptedPair(t, ns)
	defer ln.Close()
	mustWrite(t, cl, 18)
	waitUnread(t, srv, 18)
	srv.Close()
	cl.Read(make([]byte, 1))
	cl.Close()

	clientAddr, serverAddr := endpoint(cl.LocalAddr()), endpoint(ln.Addr())
	got := c.wait(5*time.Second, between(clientAddr, serverAddr, conn.SideClient),
		between(serverAddr, clientAddr, conn.SideServer))
	if !got[0].Has(conn.EventRSTReceived) || !got[1].Has(conn.EventRSTSent) {
		t.Errorf("the reset pair lacks its resets:\n%s\n%s", describe(got[0]), describe(got[1]))
	}
	// The clean ones end within moments: the side that closed first is
	// destroyed as it enters TIME_WAIT, the other at the last ACK.
	deadline := time.Now().Add(5 * time.Second)
	var k bpf.Counters
	for {
		var err error
		if k, err = c.tracer.Counters(); err != nil {
			t.Fatal(err)
		}
		if k.CleanSkipped >= 2*clean || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if k.CleanSkipped != 2*clean || k.ConnsEmitted != 2 {
		t.Errorf("kernel: %d clean counted, %d sent; want %d and the 2 of the reset pair", k.CleanSkipped, k.ConnsEmitted, 2*clean)
	}
	for _, x := range c.all() {
		if !x.Orphan && !x.Problem() {
			t.Errorf("a clean connection was sent:\n%s", describe(x))
		}
	}
}

// Occupancy counts the connections the kernel side holds now: both ends of
// each open connection of the namespace, none once they are closed.
func TestOccupancy(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCapture(t, ns, 200*time.Millisecond, bpf.WithMaxConnections(1024))
	const pairs = 20
	var open []net.Conn
	ln, cl, srv := ns.ConnectedPair(t, "tcp4", "127.0.0.1:0")
	defer ln.Close()
	open = append(open, cl, srv)
	for i := 1; i < pairs; i++ {
		ns.Do(t, func() {
			x, err := net.Dial("tcp4", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			open = append(open, x)
		})
		y, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, y)
	}
	tracked, capacity, err := c.tracer.Occupancy()
	if err != nil || tracked != 2*pairs || capacity != 1024 {
		t.Errorf("with %d connections open: tracked %d of %d (%v), want %d of 1024", pairs, tracked, capacity, err, 2*pairs)
	}
	for _, x := range open {
		x.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for tracked != 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		tracked, _, _ = c.tracer.Occupancy()
	}
	if tracked != 0 {
		t.Errorf("after closing them all: %d still tracked", tracked)
	}
}
