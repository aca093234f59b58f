package bpf_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tcpspan/tcpspan/bpf"
	"github.com/tcpspan/tcpspan/conn"
	"github.com/tcpspan/tcpspan/exporter"
	"github.com/tcpspan/tcpspan/internal/testutil"
	"golang.org/x/sys/unix"
)

// capture runs the real pipeline (BPF programs, ring-buffer reader,
// tracker) filtered to one network namespace, and collects what comes out.
type capture struct {
	t       *testing.T
	ns      *testutil.NetNS
	tracer  *bpf.Tracer
	tracker *conn.Tracker
	cancel  context.CancelFunc
	done    chan struct{}

	mu    sync.Mutex
	conns []*conn.Connection
	// final are the kernel's counters when the capture stopped.
	final bpf.Counters
}

func startCapture(t *testing.T, ns *testutil.NetNS, orphanIdle time.Duration, opts ...bpf.Option) *capture {
	t.Helper()
	return startCaptureTracking(t, ns, orphanIdle, nil, opts...)
}

// startCaptureTracking is startCapture with options for the tracker.
func startCaptureTracking(t *testing.T, ns *testutil.NetNS, orphanIdle time.Duration, track []conn.Option, opts ...bpf.Option) *capture {
	t.Helper()
	testutil.RequireBPF(t)
	tr, err := bpf.Load(append([]bpf.Option{bpf.WithNetns(ns.Inode), bpf.WithVerifierLogs(true),
		bpf.WithWarnings(func(s string) { t.Log("warning:", s) }),
		bpf.WithNotices(func(s string) { t.Log("notice:", s) })}, opts...)...)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	c := &capture{t: t, ns: ns, tracer: tr, done: make(chan struct{})}
	c.tracker = conn.New(tr.Names(), func(x *conn.Connection) {
		c.mu.Lock()
		c.conns = append(c.conns, x)
		c.mu.Unlock()
	}, append([]conn.Option{conn.WithOrphanIdle(orphanIdle),
		// These tests check what the kernel side reports for each 4-tuple;
		// folding alike orphans into storms is the tracker's own business,
		// tested in conn/.
		conn.WithStormWindow(0)}, track...)...)
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go func() {
		defer close(c.done)
		if err := tr.Read(ctx, c.tracker); err != nil {
			t.Errorf("read: %v", err)
		}
	}()
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				c.tracker.Flush(now)
			}
		}
	}()
	t.Cleanup(c.stop)
	return c
}

func (c *capture) stop() {
	if c.cancel == nil {
		return
	}
	c.cancel()
	<-c.done
	c.cancel = nil
	c.tracker.Close()
	counters, err := c.tracer.Counters()
	if err == nil {
		c.final = counters
		c.t.Logf("kernel counters: %+v; tracker: %+v", counters, c.tracker.Stats())
		if counters.RingbufLostConn+counters.RingbufLostOrphan+counters.ConnMapFull+counters.Malformed > 0 {
			c.t.Errorf("records lost: %+v", counters)
		}
	}
	if err := c.tracer.Close(); err != nil {
		c.t.Errorf("close tracer: %v", err)
	}
}

// wait returns the connections matching each predicate, one each, waiting
// up to timeout for all of them.
func (c *capture) wait(timeout time.Duration, preds ...func(*conn.Connection) bool) []*conn.Connection {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c.mu.Lock()
		found := make([]*conn.Connection, len(preds))
		ok := true
		for i, p := range preds {
			for _, x := range c.conns {
				if p(x) && !slices.Contains(found, x) {
					found[i] = x
					break
				}
			}
			ok = ok && found[i] != nil
		}
		c.mu.Unlock()
		if ok {
			return found
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out waiting for connections; have:\n%s", c.dump())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// all returns every connection collected so far.
func (c *capture) all() []*conn.Connection {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.conns)
}

func (c *capture) dump() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, x := range c.conns {
		b.WriteString(describe(x))
	}
	return b.String()
}

func describe(x *conn.Connection) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s -> %s orphan=%v midlife=%v owner=%s final=%s init=%s\n", x.Side, x.Local, x.Remote,
		x.Orphan, x.Midlife, x.Owner, x.FinalState, x.CloseInitiator)
	for _, e := range x.Events {
		fmt.Fprintf(&b, "    %s %s ctx=%s proc=%s fd=%d reason=%s errno=%d backlog=%d/%d\n", e.Kind, e.State,
			e.Context, e.Process, e.FD, e.Reason, e.Errno, e.Backlog, e.MaxBacklog)
	}
	return b.String()
}

func endpoint(a net.Addr) netip.AddrPort {
	ap := a.(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func between(local, remote netip.AddrPort, side conn.Side) func(*conn.Connection) bool {
	return func(x *conn.Connection) bool {
		return x.Local == local && x.Remote == remote && x.Side == side
	}
}

type step struct {
	kind  conn.EventKind
	state conn.State
}

// steps is the (kind, state) sequence of a connection's events.
func steps(x *conn.Connection) []step {
	var s []step
	for _, e := range x.Events {
		s = append(s, step{e.Kind, e.State})
	}
	return s
}

func requireSteps(t *testing.T, x *conn.Connection, want []step) {
	t.Helper()
	if got := steps(x); !slices.Equal(got, want) {
		t.Errorf("events of %s %s -> %s:\n got %v\nwant %v\n%s", x.Side, x.Local, x.Remote, got, want, describe(x))
	}
	for i := 1; i < len(x.Events); i++ {
		if x.Events[i].Time.Before(x.Events[i-1].Time) {
			t.Errorf("events out of time order at %d:\n%s", i, describe(x))
		}
	}
}

func self() conn.Process {
	comm, _ := os.ReadFile("/proc/self/comm")
	return conn.Process{PID: uint32(os.Getpid()), Comm: strings.TrimSpace(string(comm))}
}

func fdOf(t *testing.T, c syscall.Conn) int32 {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int32
	raw.Control(func(f uintptr) { fd = int32(f) })
	return fd
}

// resetsSent counts RSTs the tracker recorded, for comparison with the
// namespace's TcpOutRsts.
func resetsSent(conns []*conn.Connection) uint64 {
	var n uint64
	for _, x := range conns {
		n += uint64(x.Count(conn.EventRSTSent))
	}
	return n
}

// requireCounterMatch checks that the RSTs and overflows the tracker
// recorded equal the kernel's own counters in the namespace.
func requireCounterMatch(t *testing.T, ns *testutil.NetNS, before map[string]uint64, conns []*conn.Connection) {
	t.Helper()
	after := ns.Counters(t)
	rsts := after["TcpOutRsts"] - before["TcpOutRsts"]
	if got := resetsSent(conns); got != rsts {
		t.Errorf("RSTs recorded %d, TcpOutRsts delta %d", got, rsts)
	}
	overflows := after["TcpExtListenOverflows"] - before["TcpExtListenOverflows"]
	var got uint64
	for _, x := range conns {
		got += uint64(x.Count(conn.EventSYNOverflow) + x.Count(conn.EventACKOverflow))
	}
	if got != overflows {
		t.Errorf("overflows recorded %d, TcpExtListenOverflows delta %d", got, overflows)
	}
	t.Logf("TcpOutRsts +%d, TcpExtListenOverflows +%d", rsts, overflows)
}

// requireCapability skips a scenario that the running kernel cannot show,
// naming the kernel's limitation. Which capabilities each kernel must have
// is checked by TestKernelFeatures, so a skip here cannot hide a loader
// that fails where it should work.
func requireCapability(t *testing.T, c *capture, name string) {
	t.Helper()
	cp, ok := c.tracer.Features().Capability(name)
	if !ok {
		t.Fatalf("capability %s not reported", name)
	}
	if !cp.On {
		t.Skipf("%s is off on this kernel: %s", name, cp.Why)
	}
}

// expectedReason is the reason the test expects, or conn.ReasonUnknown on
// kernels whose tcp_send_reset has none (before 6.10).
func expectedReason(c *capture, reason string) string {
	if !c.tracer.Features().ResetReasons {
		return conn.ReasonUnknown
	}
	return reason
}

func TestCleanConnection(t *testing.T) {
	for _, tc := range []struct {
		name          string
		network, addr string
		clientFirst   bool
		skipEOF       bool // the second closes in CLOSE_WAIT without reading the end of file
	}{
		{"client closes first", "tcp4", "127.0.0.1:0", true, false},
		{"server closes first", "tcp4", "127.0.0.1:0", false, false},
		{"ipv6 client closes first", "tcp6", "[::1]:0", true, false},
		{"server closes without reading the end of file", "tcp4", "127.0.0.1:0", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := testutil.NewNetNS(t)
			c := startCapture(t, ns, 200*time.Millisecond)
			before := ns.Counters(t)

			ln, cl, srv := ns.ConnectedPair(t, tc.network, tc.addr)
			mustWrite(t, cl, 100)
			mustRead(t, srv, 100)
			mustWrite(t, srv, 50)
			mustRead(t, cl, 50)
			first, second := srv, cl
			if tc.clientFirst {
				first, second = cl, srv
			}
			first.Close()
			if tc.skipEOF {
				waitState(t, second.(*net.TCPConn), unix.BPF_TCP_CLOSE_WAIT)
			} else if n, err := second.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("read after peer close: %d, %v", n, err)
			}
			second.Close()
			ln.Close()

			clientAddr, serverAddr := endpoint(cl.LocalAddr()), endpoint(ln.Addr())
			got := c.wait(5*time.Second, between(clientAddr, serverAddr, conn.SideClient),
				between(serverAddr, clientAddr, conn.SideServer))
			client, server := got[0], got[1]
			me := self()

			closing := []step{{conn.EventClose, conn.StateEstablished}, {conn.EventState, conn.StateFinWait1},
				{conn.EventState, conn.StateFinWait2}, {conn.EventState, conn.StateClose}}
			passive := []step{{conn.EventState, conn.StateCloseWait}, {conn.EventClose, conn.StateCloseWait},
				{conn.EventState, conn.StateLastAck}, {conn.EventState, conn.StateClose}}
			clientOpen := []step{{conn.EventState, conn.StateSynSent}, {conn.EventState, conn.StateEstablished}}
			serverOpen := []step{{conn.EventSYN, conn.StateListen}, {conn.EventState, conn.StateSynRecv},
				{conn.EventState, conn.StateEstablished}, {conn.EventAccept, conn.StateEstablished}}
			if tc.clientFirst {
				requireSteps(t, client, append(clientOpen, closing...))
				requireSteps(t, server, append(serverOpen, passive...))
			} else {
				requireSteps(t, client, append(clientOpen, passive...))
				requireSteps(t, server, append(serverOpen, closing...))
			}
			// The closer's own state change is its act; the peer's move to
			// CLOSE_WAIT is the kernel processing the FIN in softirq, which
			// on loopback runs inside the closer's close(), on its time.
			active, passiveEnd := server, client
			if tc.clientFirst {
				active, passiveEnd = client, server
			}
			for _, want := range []struct {
				x     *conn.Connection
				state conn.State
				ctx   conn.Context
			}{
				{active, conn.StateFinWait1, conn.ContextProcess},
				{passiveEnd, conn.StateCloseWait, conn.ContextKernel},
				{passiveEnd, conn.StateLastAck, conn.ContextProcess},
			} {
				for _, e := range want.x.Events {
					if e.Kind == conn.EventState && e.State == want.state && e.Context != want.ctx {
						t.Errorf("%s: move to %s in context %s, want %s", want.x.Side, want.state, e.Context, want.ctx)
					}
				}
			}
			wantInit := map[bool][2]conn.Initiator{
				true:  {conn.InitiatorLocal, conn.InitiatorRemote},
				false: {conn.InitiatorRemote, conn.InitiatorLocal},
			}[tc.clientFirst]
			for i, x := range []*conn.Connection{client, server} {
				if x.CloseInitiator != wantInit[i] {
					t.Errorf("%s close initiator %s, want %s", x.Side, x.CloseInitiator, wantInit[i])
				}
				if x.Owner != me || x.OwnerFromListener {
					t.Errorf("%s owner %v (from listener %v), want %v", x.Side, x.Owner, x.OwnerFromListener, me)
				}
				if x.Closer == nil || x.Closer.Process != me || x.Closer.UnreadBytes != 0 {
					t.Errorf("%s closer %+v, want %v with nothing unread", x.Side, x.Closer, me)
				}
				if x.Problem() || x.Orphan || x.Midlife {
					t.Errorf("%s: clean connection flagged: problem=%v orphan=%v midlife=%v", x.Side, x.Problem(), x.Orphan, x.Midlife)
				}
				if x.Network != map[string]string{"tcp4": "ipv4", "tcp6": "ipv6"}[tc.network] {
					t.Errorf("network %s", x.Network)
				}
				if !x.Start.Before(x.End) || time.Since(x.Start) > time.Minute {
					t.Errorf("%s times: start %v end %v", x.Side, x.Start, x.End)
				}
			}
			if client.Closer.FD != fdOf(t, cl.(*net.TCPConn)) && client.Closer.FD < 0 {
				t.Errorf("client closer fd %d", client.Closer.FD)
			}
			// Every event by a process names it; kernel events name nobody.
			for _, x := range []*conn.Connection{client, server} {
				for _, e := range x.Events {
					if (e.Context == conn.ContextProcess) != (e.Process.PID != 0) {
						t.Errorf("event %s ctx %s with process %v", e.Kind, e.Context, e.Process)
					}
				}
			}
			if client.BytesSent != 100 || client.BytesReceived != 50 || server.BytesSent != 50 || server.BytesReceived != 100 {
				t.Errorf("bytes: client sent %d received %d; server sent %d received %d; want 100/50 and 50/100",
					client.BytesSent, client.BytesReceived, server.BytesSent, server.BytesReceived)
			}
			requireCounterMatch(t, ns, before, c.all())
		})
	}
}

func mustWrite(t *testing.T, c net.Conn, n int) {
	t.Helper()
	if _, err := c.Write(make([]byte, n)); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, c net.Conn, n int) {
	t.Helper()
	if _, err := io.ReadFull(c, make([]byte, n)); err != nil {
		t.Fatal(err)
	}
}

func TestConnectRefused(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCapture(t, ns, 200*time.Millisecond)
	requireCapability(t, c, bpf.CapClosedPortResets)
	before := ns.Counters(t)

	var port int
	var cl net.Conn
	var dialErr error
	ns.Do(t, func() {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
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

// withoutEvents returns a copy of x without events of kind k.
func withoutEvents(x *conn.Connection, k conn.EventKind) *conn.Connection {
	y := *x
	y.Events = slices.DeleteFunc(slices.Clone(x.Events), func(e conn.Event) bool { return e.Kind == k })
	return &y
}

// acceptedPair opens an IPv4 connection inside ns and returns both ends.
func acceptedPair(t *testing.T, ns *testutil.NetNS) (client, server *net.TCPConn, ln net.Listener) {
	t.Helper()
	ln, cl, srv := ns.ConnectedPair(t, "tcp4", "127.0.0.1:0")
	return cl.(*net.TCPConn), srv.(*net.TCPConn), ln
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

// abortWithUnread makes a connection inside ns whose server closes with n
// bytes it never read, so that the kernel resets the client
// (TCP_ABORT_ON_CLOSE), and returns both ends and the server's closed fd.
func abortWithUnread(t *testing.T, ns *testutil.NetNS, n int) (clientAddr, serverAddr netip.AddrPort, fd int32) {
	t.Helper()
	cl, srv, ln := acceptedPair(t, ns)
	t.Cleanup(func() { ln.Close() })
	mustWrite(t, cl, n)
	// Wait until the bytes sit in the server's receive queue, unread.
	waitUnread(t, srv, n)
	fd = fdOf(t, srv)
	srv.Close()
	if _, err := cl.Read(make([]byte, 1)); err == nil || !strings.Contains(err.Error(), "reset") {
		t.Fatalf("client read: %v, want connection reset", err)
	}
	cl.Close()
	return endpoint(cl.LocalAddr()), endpoint(ln.Addr()), fd
}

// waitUnread waits until n bytes are queued on c's receive side.
func waitUnread(t *testing.T, c *net.TCPConn, n int) {
	t.Helper()
	raw, _ := c.SyscallConn()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		var queued int
		raw.Control(func(fd uintptr) { queued, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
		if queued == n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("receive queue never reached %d bytes", n)
}

// waitState waits until c's socket is in state (BPF_TCP_*, the kernel's
// TCP_* numbers).
func waitState(t *testing.T, c *net.TCPConn, state int) {
	t.Helper()
	raw, _ := c.SyscallConn()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		var info *unix.TCPInfo
		raw.Control(func(fd uintptr) { info, _ = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
		if info != nil && int(info.State) == state {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("socket never reached state %d", state)
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

// rawListener listens with an exact backlog inside ns, which net.Listen
// does not allow. It never accepts.
func rawListener(t *testing.T, ns *testutil.NetNS, backlog int) (fd int, addr netip.AddrPort) {
	t.Helper()
	ns.Do(t, func() {
		var err error
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
			t.Fatal(err)
		}
		if err = unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			t.Fatal(err)
		}
		if err = unix.Listen(fd, backlog); err != nil {
			t.Fatal(err)
		}
	})
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port))
}

// connectFrom starts a non-blocking connect inside ns from a fixed local
// port (0 for any) and returns the socket.
func connectFrom(t *testing.T, ns *testutil.NetNS, port uint16, to netip.AddrPort) int {
	t.Helper()
	var fd int
	ns.Do(t, func() {
		var err error
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0); err != nil {
			t.Fatal(err)
		}
		if err = unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: int(port)}); err != nil {
			t.Fatal(err)
		}
		err = unix.Connect(fd, &unix.SockaddrInet4{Addr: to.Addr().As4(), Port: int(to.Port())})
		if err != nil && err != unix.EINPROGRESS {
			t.Fatal(err)
		}
	})
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func localPort(t *testing.T, fd int) uint16 {
	t.Helper()
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return uint16(sa.(*unix.SockaddrInet4).Port)
}

func TestAcceptQueueOverflow(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCapture(t, ns, 300*time.Millisecond)
	requireCapability(t, c, bpf.CapSYNOverflow)
	before := ns.Counters(t)

	// Backlog 1: the queue is full with 2 unaccepted connections. The
	// other clients' SYNs find it full.
	_, server := rawListener(t, ns, 1)
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

// An idle reader sleeps longer and longer, up to bpf.MaxPollInterval,
// rather than draining an empty ring buffer every bpf.PollInterval: each
// wake-up of an idle agent costs CPU on every host it runs on.
func TestReaderBacksOffWhenIdle(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCapture(t, ns, 200*time.Millisecond)
	before := bpf.Drains(c.tracer)
	time.Sleep(2 * time.Second)
	// Every 10 ms would be 200; doubling up to 250 ms, about 12.
	if n := bpf.Drains(c.tracer) - before; n > 30 {
		t.Errorf("%d drains of an empty ring buffer in 2 s; want at most 30", n)
	}
}

// A burst is read as the kernel signals that the pending records crossed
// the wake-up threshold, without waiting for the reader's timer: here a
// minute, longer than the test waits.
func TestReaderWokenByKernel(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCapture(t, ns, 200*time.Millisecond, bpf.WithPollIntervals(time.Minute, time.Minute))
	time.Sleep(100 * time.Millisecond) // the reader's first drain, then its long sleep

	// 250 connections, 500 records of 300-400 bytes: past 64 KiB twice.
	const n = 250
	var ln net.Listener
	ns.Do(t, func() {
		var err error
		if ln, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	})
	defer ln.Close()
	accepted := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			s, err := ln.Accept()
			if err != nil {
				accepted <- err
				return
			}
			s.Close()
		}
		accepted <- nil
	}()
	ns.Do(t, func() {
		for i := 0; i < n; i++ {
			cl, err := net.Dial("tcp4", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			cl.Close()
		}
	})
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(c.all()) < 150 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := len(c.all()); got < 150 {
		t.Fatalf("%d of %d connection records delivered in 10 s with the reader's timer at a minute: the kernel's wake-up did not end its sleep (%d drains)",
			got, 2*n, bpf.Drains(c.tracer))
	}
	t.Logf("%d of %d records delivered in %d drains before the timer", len(c.all()), 2*n, bpf.Drains(c.tracer))
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
