package sockdiag_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpspan/tcpspan/internal/testutil"
	"github.com/tcpspan/tcpspan/sockdiag"
)

const (
	stateEstablished = 1
	stateListen      = 10
)

// requireRoot gates the tests that create a network namespace, through the
// project's one gate for privileged tests.
func requireRoot(t *testing.T) {
	t.Helper()
	testutil.RequireBPF(t)
}

// newNetns creates a named network namespace with lo up, removed when the
// test ends, and returns its path.
func newNetns(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("ip(8) from iproute2 is needed to create a test network namespace: %v", err)
	}
	name := fmt.Sprintf("tcpspan-sockdiag-test-%d", os.Getpid())
	// Left over from an earlier run that was killed.
	_ = exec.Command("ip", "netns", "delete", name).Run()

	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete %s: %v\n%s", name, err, out)
		}
	})
	run("-n", name, "link", "set", "lo", "up")
	return "/var/run/netns/" + name
}

// inNetns runs fn on a locked OS thread that has entered the network
// namespace at path. Sockets fn creates stay in that namespace.
func inNetns(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", path, err)
			return
		}

		fnErr := fn()

		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Stay locked: the thread dies with the goroutine.
			errc <- fmt.Errorf("restore network namespace: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- fnErr
	}()
	return <-errc
}

// snapshot calls sockdiag.Snapshot, tolerating the one error after which the
// sockets are still returned: some other process's fds were unreadable. The
// test's own sockets are owned by the test process, which is always readable.
func snapshot(t *testing.T, netnsPath string) []sockdiag.Socket {
	t.Helper()
	socks, err := sockdiag.Snapshot(netnsPath)
	if err != nil {
		if socks == nil || !errors.Is(err, fs.ErrPermission) {
			t.Fatalf("Snapshot(%q): %v", netnsPath, err)
		}
		t.Logf("Snapshot(%q) returned sockets with: %v", netnsPath, err)
	}
	return socks
}

// identity returns the inode and SO_COOKIE of a socket.
func identity(t *testing.T, c syscall.Conn) (inode, cookie uint64) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var opErr error
	err = rc.Control(func(fd uintptr) {
		var st unix.Stat_t
		if opErr = unix.Fstat(int(fd), &st); opErr != nil {
			return
		}
		inode = st.Ino
		cookie, opErr = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_COOKIE)
	})
	if err == nil {
		err = opErr
	}
	if err != nil {
		t.Fatal(err)
	}
	return inode, cookie
}

func addrPort(t *testing.T, a net.Addr) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

func self(t *testing.T) sockdiag.Process {
	t.Helper()
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	return sockdiag.Process{PID: uint32(os.Getpid()), Comm: strings.TrimSuffix(string(comm), "\n")}
}

func netnsInode(t *testing.T, path string) uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return uint32(st.Ino)
}

func TestSnapshotNetns(t *testing.T) {
	requireRoot(t)
	path := newNetns(t)

	var (
		ln4, ln6 net.Listener
		client   net.Conn
	)
	// Go listeners use MPTCP by default when the kernel supports it, and
	// the TCP socket the kernel then lists is a subflow whose cookie is not
	// the fd's SO_COOKIE. Plain TCP lets the cookies be compared exactly;
	// TestSnapshotOwnNetns covers the default.
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ctx := context.Background()
	err := inNetns(path, func() error {
		var err error
		if ln4, err = lc.Listen(ctx, "tcp4", "127.0.0.1:0"); err != nil {
			return err
		}
		if ln6, err = lc.Listen(ctx, "tcp6", "[::1]:0"); err != nil {
			return err
		}
		client, err = net.Dial("tcp4", ln4.Addr().String())
		return err
	})
	for _, c := range []interface{ Close() error }{ln4, ln6, client} {
		if c != nil && !reflect.ValueOf(c).IsNil() {
			t.Cleanup(func() { c.Close() })
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	// Accepting needs no namespace switch: the listener lives in it.
	server, err := ln4.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	// A connection closed by its client first leaves a time-wait socket,
	// which has no owner to find and is not listed.
	timeWait(t, path, ln4)

	owner := []sockdiag.Process{self(t)}
	nsIno := netnsInode(t, path)
	expect := func(c syscall.Conn, family uint16, state uint8, local, remote netip.AddrPort) sockdiag.Socket {
		inode, cookie := identity(t, c)
		return sockdiag.Socket{
			Family:     family,
			State:      state,
			Local:      local,
			Remote:     remote,
			Inode:      inode,
			Cookie:     cookie,
			NetnsInode: nsIno,
			Owners:     owner,
		}
	}
	want := []sockdiag.Socket{
		expect(ln4.(*net.TCPListener), unix.AF_INET, stateListen,
			addrPort(t, ln4.Addr()), netip.AddrPortFrom(netip.IPv4Unspecified(), 0)),
		expect(ln6.(*net.TCPListener), unix.AF_INET6, stateListen,
			addrPort(t, ln6.Addr()), netip.AddrPortFrom(netip.IPv6Unspecified(), 0)),
		expect(client.(*net.TCPConn), unix.AF_INET, stateEstablished,
			addrPort(t, client.LocalAddr()), addrPort(t, client.RemoteAddr())),
		expect(server.(*net.TCPConn), unix.AF_INET, stateEstablished,
			addrPort(t, server.LocalAddr()), addrPort(t, server.RemoteAddr())),
	}

	got := snapshot(t, path)
	if n := countState(t, path, stateTimeWait); n != 1 {
		t.Fatalf("%d time-wait sockets in the namespace after the snapshot, want 1", n)
	}

	byInode := make(map[uint64]sockdiag.Socket)
	for _, s := range got {
		if _, dup := byInode[s.Inode]; dup {
			t.Errorf("inode %d listed twice", s.Inode)
		}
		byInode[s.Inode] = s
	}
	for _, w := range want {
		g, ok := byInode[w.Inode]
		if !ok {
			t.Errorf("missing socket %+v", w)
			continue
		}
		w.RQueue, w.WQueue = listenQueue(t, g)
		if !reflect.DeepEqual(g, w) {
			t.Errorf("socket inode %d:\n got %+v\nwant %+v", w.Inode, g, w)
		}
		delete(byInode, w.Inode)
	}
	for _, s := range byInode {
		t.Errorf("unexpected socket in the test namespace: %+v", s)
	}
	if len(got) != len(want) {
		t.Errorf("Snapshot returned %d sockets, want %d", len(got), len(want))
	}
}

func TestSnapshotOwnNetns(t *testing.T) {
	requireRoot(t)

	// A default Go listener: MPTCP if the kernel has it enabled.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	inode, cookie := identity(t, ln.(*net.TCPListener))
	mptcp := protocol(t, ln.(*net.TCPListener)) == unix.IPPROTO_MPTCP
	t.Logf("listener %v: MPTCP %v", ln.Addr(), mptcp)

	got := snapshot(t, "")
	want := sockdiag.Socket{
		Family:     unix.AF_INET,
		State:      stateListen,
		Local:      addrPort(t, ln.Addr()),
		Remote:     netip.AddrPortFrom(netip.IPv4Unspecified(), 0),
		Inode:      inode,
		Cookie:     cookie,
		NetnsInode: netnsInode(t, "/proc/thread-self/ns/net"),
		Owners:     []sockdiag.Process{self(t)},
	}
	var found []sockdiag.Socket
	for _, s := range got {
		if s.Inode == inode {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("listener %v (inode %d) found %d times in snapshot of own namespace: %+v", ln.Addr(), inode, len(found), found)
	}
	g := found[0]
	if mptcp {
		// The kernel lists the MPTCP listener's TCP subflow, which has its
		// own cookie.
		if g.Cookie == 0 || g.Cookie == cookie {
			t.Errorf("MPTCP listener: got cookie %d, want a nonzero subflow cookie other than SO_COOKIE %d", g.Cookie, cookie)
		}
		g.Cookie = cookie
	}
	want.RQueue, want.WQueue = listenQueue(t, g)
	if !reflect.DeepEqual(g, want) {
		t.Errorf("got %+v\nwant %+v", g, want)
	}
}

// protocol returns a socket's SO_PROTOCOL.
func protocol(t *testing.T, c syscall.Conn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var proto int
	var opErr error
	if err := rc.Control(func(fd uintptr) {
		proto, opErr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL)
	}); err != nil {
		t.Fatal(err)
	}
	if opErr != nil {
		t.Fatal(opErr)
	}
	return proto
}

func TestSnapshotErrors(t *testing.T) {
	regular := t.TempDir() + "/not-a-namespace"
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, path, msg string
		is              error
	}{
		{"nonexistent", "/nonexistent/tcpspan-sockdiag-netns", "no such file or directory", fs.ErrNotExist},
		{"regular file", regular, "is not a namespace file", nil},
		{"other namespace type", "/proc/self/ns/uts", "is not a network namespace", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			socks, err := sockdiag.Snapshot(tc.path)
			if err == nil {
				t.Fatalf("Snapshot(%q) succeeded with %d sockets, want error", tc.path, len(socks))
			}
			if socks != nil {
				t.Errorf("Snapshot(%q) returned sockets with error %v", tc.path, err)
			}
			if !strings.Contains(err.Error(), tc.path) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Snapshot(%q) error %q: want it to name the path and say %q", tc.path, err, tc.msg)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("Snapshot(%q) error %q: want errors.Is(err, %v)", tc.path, err, tc.is)
			}
			t.Log(err)
		})
	}
}

// listenQueue checks the queue of a listed socket: a listener that nothing
// connected to has an empty accept queue and a limit (Go's, from
// net.core.somaxconn); the test's connections have no data in flight.
func listenQueue(t *testing.T, s sockdiag.Socket) (rqueue, wqueue uint32) {
	t.Helper()
	if s.State != stateListen {
		return 0, 0
	}
	if s.RQueue != 0 || s.WQueue == 0 {
		t.Errorf("listener %v: accept queue %d of %d, want 0 of some limit", s.Local, s.RQueue, s.WQueue)
	}
	return 0, s.WQueue
}

const stateTimeWait = 6

// timeWait makes a connection to ln, from the namespace at path, that its
// client closes first, and waits until the client's socket is in TIME_WAIT.
func timeWait(t *testing.T, path string, ln net.Listener) {
	t.Helper()
	var c net.Conn
	if err := inNetns(path, func() (err error) {
		c, err = net.Dial("tcp4", ln.Addr().String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	s.Close()
	for deadline := time.Now().Add(5 * time.Second); countState(t, path, stateTimeWait) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("no time-wait socket after 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// countState counts the IPv4 TCP sockets in a state (a number of
// include/net/tcp_states.h) in the namespace at path, from its
// /proc/net/tcp, which lists time-wait sockets too.
func countState(t *testing.T, path string, state int) int {
	t.Helper()
	var n int
	if err := inNetns(path, func() error {
		b, err := os.ReadFile("/proc/thread-self/net/tcp")
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			if f := strings.Fields(line); len(f) > 3 && f[3] == fmt.Sprintf("%02X", state) {
				n++
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}
