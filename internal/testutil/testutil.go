// Package testutil holds the helpers of tcpspan's privileged tests: one gate
// for tests that need root to load BPF, and network namespaces that keep
// each scenario's traffic away from the host's.
//
// Only tests import it: the agent's packages must not. What it sets up
// (namespaces, NAT paths, a Jaeger process) it tears down with the test's
// Cleanup; it must not change the host otherwise.
package testutil

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// RequiredEnv, set to "1", turns the skips of [RequireBPF] into failures.
// The test command sets it when it runs as root, so that a privileged test
// can never pass CI by skipping.
const RequiredEnv = "TCPSPAN_BPF_TESTS_REQUIRED"

// RequireBPF skips the test, with the reason, unless it runs as root on a
// kernel with BTF: it loads BPF programs and creates network namespaces.
func RequireBPF(tb testing.TB) {
	tb.Helper()
	skip := tb.Skip
	if os.Getenv(RequiredEnv) == "1" {
		skip = tb.Fatal
	}
	if os.Geteuid() != 0 {
		skip("needs root: loads BPF programs and creates network namespaces (run: sudo make test)")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		skip("needs kernel BTF at /sys/kernel/btf/vmlinux")
	}
}

// RequireCommand returns the path of the command name, or skips the test
// when it is not installed, naming the Debian package that brings it. Where
// [RequiredEnv] is set (the test command as root, after installing every
// package) a missing command fails the test instead.
func RequireCommand(tb testing.TB, name, debianPackage string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		msg := fmt.Sprintf("needs %s (Debian package %s; sudo make deps)", name, debianPackage)
		if os.Getenv(RequiredEnv) == "1" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	return path
}

// NetNS is a named network namespace with loopback up, deleted at cleanup.
type NetNS struct {
	Name  string
	Path  string
	Inode uint32
}

var nsCounter atomic.Uint32

// NewNetNS creates a network namespace for one test.
func NewNetNS(tb testing.TB) *NetNS {
	tb.Helper()
	name := fmt.Sprintf("tcpspan-test-%d-%d", os.Getpid(), nsCounter.Add(1))
	MustRun(tb, "ip", "netns", "add", name)
	tb.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	MustRun(tb, "ip", "-n", name, "link", "set", "lo", "up")
	ns := &NetNS{Name: name, Path: "/var/run/netns/" + name}
	var st unix.Stat_t
	if err := unix.Stat(ns.Path, &st); err != nil {
		tb.Fatalf("stat %s: %v", ns.Path, err)
	}
	ns.Inode = uint32(st.Ino)
	return ns
}

// Do runs fn on an OS thread inside the namespace. Sockets created in fn
// belong to the namespace for their whole life, whichever goroutine uses
// them later; goroutines started in fn do not run inside it.
func (ns *NetNS) Do(tb testing.TB, fn func()) {
	tb.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			done <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(ns.Path)
		if err != nil {
			done <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("setns %s: %w", ns.Path, err)
			return
		}
		fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it dies with this goroutine.
			done <- fmt.Errorf("restore netns: %w", err)
			return
		}
		runtime.UnlockOSThread()
		done <- nil
	}()
	if err := <-done; err != nil {
		tb.Fatal(err)
	}
}

// FreePort returns a loopback port that nothing in the namespace listens
// on: one the kernel just gave a listener, which is closed again.
func (ns *NetNS) FreePort(tb testing.TB) int {
	tb.Helper()
	var port int
	ns.Do(tb, func() {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		port = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	})
	return port
}

// RawListener listens on a loopback port inside the namespace with an
// exact backlog, which net.Listen does not allow. It never accepts; the
// caller closes fd.
func (ns *NetNS) RawListener(tb testing.TB, backlog int) (fd int, addr netip.AddrPort) {
	tb.Helper()
	ns.Do(tb, func() {
		var err error
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
			tb.Fatal(err)
		}
		if err = unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			tb.Fatal(err)
		}
		if err = unix.Listen(fd, backlog); err != nil {
			tb.Fatal(err)
		}
	})
	sa, err := unix.Getsockname(fd)
	if err != nil {
		tb.Fatal(err)
	}
	return fd, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port))
}

// Exec runs a command inside the namespace (ip netns exec).
func (ns *NetNS) Exec(tb testing.TB, args ...string) string {
	tb.Helper()
	return MustRun(tb, append([]string{"ip", "netns", "exec", ns.Name}, args...)...)
}

// Sysctl sets a sysctl inside the namespace.
func (ns *NetNS) Sysctl(tb testing.TB, key, value string) {
	tb.Helper()
	ns.Exec(tb, "sysctl", "-q", "-w", key+"="+value)
}

// Counters reads the namespace's SNMP and netstat counters, keyed like
// nstat: "TcpOutRsts", "TcpExtListenOverflows".
func (ns *NetNS) Counters(tb testing.TB) map[string]uint64 {
	tb.Helper()
	out := map[string]uint64{}
	for _, f := range []string{"/proc/net/snmp", "/proc/net/netstat"} {
		parseSNMP(ns.Exec(tb, "cat", f), out)
	}
	return out
}

// parseSNMP reads the header/value line pairs of /proc/net/snmp and netstat.
func parseSNMP(text string, out map[string]uint64) {
	sc := bufio.NewScanner(strings.NewReader(text))
	var header []string
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		prefix := strings.TrimSuffix(fields[0], ":")
		if header == nil || header[0] != fields[0] {
			header = fields
			continue
		}
		for i := 1; i < len(fields) && i < len(header); i++ {
			v, err := strconv.ParseUint(fields[i], 10, 64)
			if err == nil {
				out[prefix+header[i]] = v
			}
		}
		header = nil
	}
}

// MustRun runs a command and returns its output, failing the test on error.
func MustRun(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ConnectedPair listens on addr and connects to it inside the namespace,
// and returns the listener, the client end and the accepted server end.
// network is "tcp4" or "tcp6"; addr a loopback address with port 0.
func (ns *NetNS) ConnectedPair(tb testing.TB, network, addr string) (ln net.Listener, client, server net.Conn) {
	tb.Helper()
	ns.Do(tb, func() {
		var err error
		if ln, err = net.Listen(network, addr); err != nil {
			tb.Fatal(err)
		}
		if client, err = net.Dial(network, ln.Addr().String()); err != nil {
			tb.Fatal(err)
		}
	})
	server, err := ln.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	return ln, client, server
}
