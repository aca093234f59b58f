package bpf_test

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/tcpspan/tcpspan/bpf"
	"github.com/tcpspan/tcpspan/conn"
	"github.com/tcpspan/tcpspan/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestAcceptHooks: accept() and accept4() name the accepting process, the
// new fd and the system call, through the hook the kernel uses (fexit where
// it loads, else the cgroup getpeername hooks, else the syscall
// tracepoints) and through each fallback asked for. The getpeername hooks
// know neither fd nor syscall, and see only an accept() that asks for the
// peer's address, as servers do. The first accept() of a listener that predates the agent
// teaches the kernel side its address (listener_accepted), so the SYN watch
// need not go on for it.
func TestAcceptHooks(t *testing.T) {
	testutil.RequireBPF(t)
	for _, hook := range []struct {
		name string
		opts []bpf.Option
		how  string // in the capability's How; "" for the kernel's choice
	}{
		{"kernel's choice", nil, ""},
		{"getpeername hooks", []bpf.Option{bpf.WithAcceptPeerHook()}, "cgroup/getpeername4"},
		{"syscall tracepoints", []bpf.Option{bpf.WithAcceptTracepoints()}, "tracepoints syscalls/sys_exit_accept4"},
	} {
		t.Run(hook.name, func(t *testing.T) {
			ns := testutil.NewNetNS(t)
			lfd, server := rawListener(t, ns, 64)
			c := startCapture(t, ns, 200*time.Millisecond, hook.opts...)
			cp, _ := c.tracer.Features().Capability(bpf.CapAccept)
			t.Logf("accept: %s; %s", cp.How, cp.Why)
			if !cp.On || !strings.Contains(cp.How, hook.how) {
				t.Fatalf("accept hook %+v, want on through %q", cp, hook.how)
			}
			watch, _ := c.tracer.Features().Capability(bpf.CapSYNOverflow)
			if err := c.tracer.AddListener(ns.Inode, server.Port(), uint32(os.Getpid()), "bpf.test", 0, 64); err != nil {
				t.Fatal(err)
			}

			for i, sc := range []struct {
				name string
				nr   uintptr
			}{{"accept", unix.SYS_ACCEPT}, {"accept4", unix.SYS_ACCEPT4}} {
				cfd := connectFrom(t, ns, 0, server)
				sa, err := unix.Getsockname(cfd)
				if err != nil {
					t.Fatal(err)
				}
				client := netip.AddrPortFrom(server.Addr(), uint16(sa.(*unix.SockaddrInet4).Port))
				time.Sleep(20 * time.Millisecond)
				var nfd uintptr
				var peer [128]byte
				peerLen := uint32(len(peer))
				ns.Do(t, func() {
					var errno unix.Errno
					nfd, _, errno = unix.Syscall6(sc.nr, uintptr(lfd), uintptr(unsafe.Pointer(&peer[0])),
						uintptr(unsafe.Pointer(&peerLen)), 0, 0, 0)
					if errno != 0 {
						t.Fatalf("%s: %v", sc.name, errno)
					}
				})
				if i == 0 && watch.On {
					// The listener was learned from the accept() in time:
					// its child's ask for the watch is withdrawn.
					time.Sleep(500 * time.Millisecond)
					if on, n := synWatch(t, c); on || n != 0 {
						t.Errorf("SYN watch on=%v after %d attaches for a listener learned at %s(), want off, never attached", on, n, sc.name)
					}
				}
				unix.Close(int(nfd))
				unix.Close(cfd)
				got := c.wait(5*time.Second, between(server, client, conn.SideServer))[0]
				e := got.First(conn.EventAccept)
				if e == nil {
					t.Fatalf("%s: no accept event:\n%s", sc.name, describe(got))
				}
				wantFD, wantSyscall := int32(nfd), sc.name
				if strings.Contains(cp.How, "getpeername") {
					wantFD, wantSyscall = -1, ""
				}
				if e.Process != self() || e.FD != wantFD || e.Syscall != wantSyscall || e.Context != conn.ContextProcess {
					t.Errorf("%s: accept event %+v, want %v fd %d in %q", sc.name, e, self(), wantFD, wantSyscall)
				}
				if got.Owner != self() {
					t.Errorf("%s: owner %v, want %v", sc.name, got.Owner, self())
				}
			}
		})
	}
}
