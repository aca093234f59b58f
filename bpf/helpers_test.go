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

// rawListener listens with an exact backlog inside ns (see
// [testutil.NetNS.RawListener]), closed at cleanup. It never accepts.
func rawListener(t *testing.T, ns *testutil.NetNS, backlog int) (fd int, addr netip.AddrPort) {
	t.Helper()
	fd, addr = ns.RawListener(t, backlog)
	t.Cleanup(func() { unix.Close(fd) })
	return fd, addr
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
