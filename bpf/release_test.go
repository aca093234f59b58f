package bpf_test

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
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

// Scenarios of a socket released other than by close(): a process that
// exits or is killed holding it, execve() closing it as close-on-exec,
// close_range() and dup2(). Each must be told as what it is, never as
// packet processing.

// helperEnv makes the test binary a helper process (TestMain): it holds the
// socket it inherits as fd 3 and then does what the value says.
const helperEnv = "TCPSPAN_RELEASE_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		releaseHelper(mode)
		return
	}
	os.Exit(m.Run())
}

// releaseHelper waits for a line on stdin, then releases fd 3 by mode:
// "exit N" exits with status N; "exec" runs sleep with fd 3 set
// close-on-exec. With "hold" it only waits, to be killed.
func releaseHelper(mode string) {
	bufio.NewReader(os.Stdin).ReadString('\n')
	switch {
	case mode == "hold":
		select {}
	case strings.HasPrefix(mode, "exit "):
		n, _ := strconv.Atoi(strings.TrimPrefix(mode, "exit "))
		os.Exit(n)
	case mode == "exec":
		syscall.CloseOnExec(3)
		sleep, err := exec.LookPath("sleep")
		if err == nil {
			err = syscall.Exec(sleep, []string{"sleep", "30"}, os.Environ())
		}
		fmt.Fprintln(os.Stderr, "exec:", err)
		os.Exit(2)
	}
	os.Exit(3)
}

// heldElsewhere makes a connection inside ns whose accepted end, with n
// bytes unread, is held only by a helper process in the given mode. It
// returns the running helper, its stdin, and the ends.
func heldElsewhere(t *testing.T, ns *testutil.NetNS, mode string, n int) (cmd *exec.Cmd, stdin *os.File, cl *net.TCPConn, clientAddr, serverAddr netip.AddrPort) {
	t.Helper()
	cl, srv, ln := acceptedPair(t, ns)
	t.Cleanup(func() { ln.Close(); cl.Close() })
	mustWrite(t, cl, n)
	waitUnread(t, srv, n)
	f, err := srv.File()
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	cmd.Stdin, cmd.Stderr, cmd.ExtraFiles = r, os.Stderr, []*os.File{f}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Only the helper holds the socket now.
	r.Close()
	f.Close()
	srv.Close()
	return cmd, w, cl, endpoint(cl.LocalAddr()), endpoint(ln.Addr())
}

// requireReset waits until the client end of a connection is reset.
func requireReset(t *testing.T, cl *net.TCPConn) {
	t.Helper()
	cl.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := cl.Read(make([]byte, 1)); err == nil || !strings.Contains(err.Error(), "reset") {
		t.Fatalf("client read: %v, want connection reset", err)
	}
}

// requireRelease checks the server end of a connection that pid released
// by release with unread bytes unread: the reset is the process's, not a
// packet's, and the diagnosis says so in words that contain want.
func requireRelease(t *testing.T, c *capture, server *conn.Connection, pid int, release conn.Release, unread uint32, want string) {
	t.Helper()
	rst := server.First(conn.EventRSTSent)
	if rst == nil {
		t.Fatalf("no RST sent:\n%s", describe(server))
	}
	if rst.Reason != expectedReason(c, "TCP_ABORT_ON_CLOSE") || rst.Context != conn.ContextProcess ||
		rst.Process.PID != uint32(pid) || rst.Release != release || rst.Answer {
		t.Errorf("RST %+v, want TCP_ABORT_ON_CLOSE by pid %d, released by %s, answering no packet", rst, pid, release)
	}
	if cl := server.Closer; cl == nil || cl.Process.PID != uint32(pid) || cl.Release != release || cl.UnreadBytes != unread {
		t.Errorf("closer %+v, want pid %d releasing by %s with %d bytes unread", server.Closer, pid, release, unread)
	}
	_, desc, isErr := exporter.Diagnose(server)
	if !isErr || !strings.Contains(desc, want) || strings.Contains(desc, "packet") {
		t.Errorf("diagnosis %q, want one that says %q and no packet", desc, want)
	}
	t.Logf("diagnosis: %s", desc)
}

func TestReleaseByKill(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCapture(t, ns, 200*time.Millisecond)
	before := ns.Counters(t)

	cmd, stdin, cl, clientAddr, serverAddr := heldElsewhere(t, ns, "hold", 29)
	defer stdin.Close()
	fmt.Fprintln(stdin, "go")
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	requireReset(t, cl)
	cl.Close()

	server := c.wait(5*time.Second, between(serverAddr, clientAddr, conn.SideServer))[0]
	requireRelease(t, c, server, cmd.Process.Pid, conn.ReleaseExit, 29, "was killed by SIGKILL, closing the socket with 29 bytes unread")
	if sig := server.Closer.ExitSignal(); sig != syscall.SIGKILL {
		t.Errorf("exit signal %v, want SIGKILL", sig)
	}
	requireCounterMatch(t, ns, before, c.all())
}

func TestReleaseByExit(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCapture(t, ns, 200*time.Millisecond)
	before := ns.Counters(t)

	cmd, stdin, cl, clientAddr, serverAddr := heldElsewhere(t, ns, "exit 3", 7)
	fmt.Fprintln(stdin, "go")
	stdin.Close()
	if err := cmd.Wait(); err == nil || cmd.ProcessState.ExitCode() != 3 {
		t.Fatalf("helper: %v, want exit status 3", err)
	}
	requireReset(t, cl)
	cl.Close()

	server := c.wait(5*time.Second, between(serverAddr, clientAddr, conn.SideServer))[0]
	requireRelease(t, c, server, cmd.Process.Pid, conn.ReleaseExit, 7, "exited (status 3), closing the socket with 7 bytes unread")
	if sig, status := server.Closer.ExitSignal(), server.Closer.ExitStatus(); sig != 0 || status != 3 {
		t.Errorf("exit signal %v status %d, want none and 3", sig, status)
	}
	requireCounterMatch(t, ns, before, c.all())
}

func TestReleaseByExec(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCapture(t, ns, 200*time.Millisecond)
	before := ns.Counters(t)

	cmd, stdin, cl, clientAddr, serverAddr := heldElsewhere(t, ns, "exec", 5)
	defer stdin.Close()
	fmt.Fprintln(stdin, "go")
	requireReset(t, cl)
	cl.Close()

	server := c.wait(5*time.Second, between(serverAddr, clientAddr, conn.SideServer))[0]
	requireRelease(t, c, server, cmd.Process.Pid, conn.ReleaseExec, 5, "as close-on-exec in execve() with 5 bytes unread")
	requireCounterMatch(t, ns, before, c.all())
}

// dupOf returns a new descriptor of c's socket, outside Go's netpoller.
func dupOf(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	raw.Control(func(f uintptr) { fd, err = unix.Dup(int(f)) })
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

func TestReleaseByCloseRangeAndDup2(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCapture(t, ns, 200*time.Millisecond)
	before := ns.Counters(t)
	me := os.Getpid()

	releases := []struct {
		release conn.Release
		do      func(fd int) error
		want    string
	}{
		{conn.ReleaseCloseRange, func(fd int) error { return unix.CloseRange(uint(fd), uint(fd), 0) }, "(close_range()) with 11 bytes unread"},
		{conn.ReleaseDup, func(fd int) error {
			null, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(null)
			if err := unix.Dup2(null, fd); err != nil {
				return err
			}
			return unix.Close(fd)
		}, "by dup2() onto its number with 11 bytes unread"},
	}
	for _, r := range releases {
		cl, srv, ln := acceptedPair(t, ns)
		mustWrite(t, cl, 11)
		waitUnread(t, srv, 11)
		fd := dupOf(t, srv)
		srv.Close()
		if err := r.do(fd); err != nil {
			t.Fatalf("%s: %v", r.release, err)
		}
		requireReset(t, cl)
		cl.Close()
		ln.Close()

		server := c.wait(5*time.Second, between(endpoint(ln.Addr()), endpoint(cl.LocalAddr()), conn.SideServer))[0]
		requireRelease(t, c, server, me, r.release, 11, r.want)
		if server.Closer.FD != int32(fd) {
			t.Errorf("%s: closer fd %d, want %d", r.release, server.Closer.FD, fd)
		}
	}
	requireCounterMatch(t, ns, before, c.all())
}

// A listener closed with connections in its accept queue resets each; the
// bytes they carried are kept although tcp_disconnect() zeroes the
// counters, and the diagnosis names the listener's close, with how many
// were queued.
func TestListenerClosedWithQueue(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCapture(t, ns, 200*time.Millisecond)
	before := ns.Counters(t)

	const queued = 3
	lfd, addr := rawListener(t, ns, 16)
	for range queued {
		fd := connectFrom(t, ns, 0, addr)
		// Non-blocking: write once the handshake is done.
		deadline := time.Now().Add(2 * time.Second)
		for {
			_, err := unix.Write(fd, make([]byte, 18))
			if err == nil {
				break
			}
			if err != unix.EAGAIN || time.Now().After(deadline) {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	time.Sleep(100 * time.Millisecond) // the data lands in the queued children
	// Close the listener, and keep its number taken until the test's
	// cleanup closes it again.
	null, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(null)
	if err := unix.Close(lfd); err != nil {
		t.Fatal(err)
	}
	if err := unix.Dup3(null, lfd, unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}

	var preds []func(*conn.Connection) bool
	for range queued {
		preds = append(preds, func(x *conn.Connection) bool { return x.Side == conn.SideServer && x.Local == addr })
	}
	for _, server := range c.wait(5*time.Second, preds...) {
		rst := server.First(conn.EventRSTSent)
		if rst == nil || rst.Reason != expectedReason(c, "TCP_STATE") || rst.Context != conn.ContextProcess ||
			!rst.ViaListener || rst.Queued != queued || rst.Release != conn.ReleaseClose {
			t.Errorf("RST %+v, want TCP_STATE by the listener's close() with %d queued\n%s", rst, queued, describe(server))
		}
		if server.BytesReceived != 18 || server.SegsIn == 0 {
			t.Errorf("bytes received %d, segments in %d: want the 18 bytes the client sent", server.BytesReceived, server.SegsIn)
		}
		want := fmt.Sprintf("closed its listener :%d with %d connections still queued", addr.Port(), queued)
		if _, desc, _ := exporter.Diagnose(server); !strings.Contains(desc, want) {
			t.Errorf("diagnosis %q, want %q", desc, want)
		}
		if e := server.First(conn.EventError); e != nil && server.Closer != nil {
			t.Errorf("a never-accepted connection has a closer %+v", server.Closer)
		}
	}
	requireCounterMatch(t, ns, before, c.all())
}

// A blocking connect() to a closed port: one error event, and the SYN
// counted although the failed connect's disconnect zeroes the counters.
func TestConnectRefusedBlocking(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCapture(t, ns, 200*time.Millisecond)
	requireCapability(t, c, bpf.CapClosedPortResets)
	before := ns.Counters(t)

	var local netip.AddrPort
	var connectErr error
	server := netip.MustParseAddrPort("127.0.0.1:9")
	ns.Do(t, func() {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			t.Fatal(err)
		}
		sa, _ := unix.Getsockname(fd)
		local = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(sa.(*unix.SockaddrInet4).Port))
		connectErr = unix.Connect(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: int(server.Port())})
	})
	if connectErr != unix.ECONNREFUSED {
		t.Fatalf("connect: %v, want ECONNREFUSED", connectErr)
	}
	client := c.wait(5*time.Second, between(local, server, conn.SideClient),
		func(x *conn.Connection) bool { return x.Orphan && x.Local == server && x.Remote == local })[0]
	if n := client.Count(conn.EventError); n != 1 {
		t.Errorf("%d error events, want exactly one:\n%s", n, describe(client))
	}
	if e := client.First(conn.EventError); e == nil || e.Errno != syscall.ECONNREFUSED {
		t.Errorf("error %+v, want ECONNREFUSED", e)
	}
	if client.SegsOut != 1 {
		t.Errorf("segments sent %d, want 1: the SYN", client.SegsOut)
	}
	if typ, _, _ := exporter.Diagnose(client); typ != "tcp.refused" {
		t.Errorf("error.type %q, want tcp.refused", typ)
	}
	requireCounterMatch(t, ns, before, c.all())
}
