package bpf_test

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tcpspan/tcpspan/bpf"
	"github.com/tcpspan/tcpspan/internal/testutil"
)

// Above 2, kernel.perf_event_paranoid lets only CAP_SYS_ADMIN open perf
// events: Debian's kernels of the matrix default to 3, Ubuntu's to 4.
// tcpspan's hooks attach through bpf(2), which the setting does not govern;
// only its fallbacks (kprobes, syscall tracepoints) attach through perf
// events. So without CAP_SYS_ADMIN, at paranoid 3, the agent loads as it
// does as root, except that each kprobe fallback is off and says why; and
// `tcpspan -capabilities` lists CAP_SYS_ADMIN as optional, for them.
//
// The capability is dropped from one thread's effective set (capabilities
// are per thread), which then loads a Tracer; the thread ends with the test
// goroutine, its capabilities never restored.
func TestLoadWithoutSysAdmin(t *testing.T) {
	testutil.RequireBPF(t)
	ns := testutil.NewNetNS(t)
	setParanoid(t, 3)

	root, err := bpf.Load(bpf.WithNetns(ns.Inode))
	if err != nil {
		t.Fatalf("load as root: %v", err)
	}
	want := root.Features()
	root.Close()

	type result struct {
		features bpf.Features
		err      error
	}
	done := make(chan result)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := dropEffective(unix.CAP_SYS_ADMIN); err != nil {
			done <- result{err: err}
			return
		}
		tr, err := bpf.Load(bpf.WithNetns(ns.Inode))
		if err != nil {
			done <- result{err: err}
			return
		}
		defer tr.Close()
		done <- result{features: tr.Features()}
	}()
	r := <-done
	if r.err != nil {
		t.Fatalf("load without CAP_SYS_ADMIN at perf_event_paranoid 3: %v", r.err)
	}
	for _, w := range want.Caps {
		got, ok := r.features.Capability(w.Name)
		if !ok {
			t.Errorf("%s not reported without CAP_SYS_ADMIN", w.Name)
			continue
		}
		switch {
		case w.On && strings.Contains(w.How, "kprobe"):
			// A fallback through a perf event: off, saying why.
			if got.On || !strings.Contains(got.Why, "kernel.perf_event_paranoid is 3") {
				t.Errorf("%s without CAP_SYS_ADMIN: on %v, %q; want off, naming perf_event_paranoid", w.Name, got.On, got.Why)
			}
			t.Logf("%s off without CAP_SYS_ADMIN: %s", w.Name, got.Why)
		case got.On != w.On || got.How != w.How:
			t.Errorf("%s without CAP_SYS_ADMIN: on %v (%s), want on %v (%s) as root", w.Name, got.On, got.How, w.On, w.How)
		}
	}
}

// setParanoid sets kernel.perf_event_paranoid for the test, and restores it.
func setParanoid(t *testing.T, v int) {
	t.Helper()
	const path = "/proc/sys/kernel/perf_event_paranoid"
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(v)), 0); err != nil {
		t.Fatalf("set perf_event_paranoid: %v", err)
	}
	t.Cleanup(func() { os.WriteFile(path, old, 0) })
}

// dropEffective removes capability c from the calling thread's effective
// set; the permitted set keeps it.
func dropEffective(c uint) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	data[c/32].Effective &^= 1 << (c % 32)
	return unix.Capset(&hdr, &data[0])
}
