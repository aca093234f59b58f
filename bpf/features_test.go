package bpf_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/tcpspan/tcpspan/bpf"
	"github.com/tcpspan/tcpspan/internal/testutil"
	"golang.org/x/sys/unix"
)

// SeriesEnv names the kernel series (e.g. "6.1") whose expectations
// TestKernelFeatures checks. scripts/test-kernels.sh sets it in its VMs;
// without it the series is read from uname.
const SeriesEnv = "TCPSPAN_KERNEL_SERIES"

// Expected capabilities per kernel series: "on", "off", "kprobe" (on
// through the kprobe fallback) or "fallback" (on through another fallback
// hook, such as the syscall tracepoints for accept()). The kernels are
// Debian's cloud kernels of the matrix (scripts/test-kernels.sh) and this
// machine's 6.18, which has no kprobes and refuses tracing programs. A capability that should load but does not fails the test, and
// so does one that loads where the table says it cannot: then the table,
// or the loader's reading of the kernel, is wrong.
var expectedFeatures = map[string]map[string]string{
	"5.10": {
		bpf.CapConnections:      "on",
		bpf.CapAccept:           "on",
		bpf.CapSocketErrors:     "kprobe", // no inet_sk_error_report tracepoint
		bpf.CapResetReasons:     "off",    // tcp_send_reset(sk, skb)
		bpf.CapClosedPortResets: "kprobe",
		bpf.CapDropReasons:      "off", // kfree_skb(skb, location)
		bpf.CapDropSocket:       "off",
		bpf.CapListenOverflow:   "off",
		bpf.CapSYNOverflow:      "on",
		bpf.CapAtomicSlots:      "off", // no atomic fetch before 5.12
		bpf.CapTraceparent:      "on",
		bpf.CapReleases:         "on",
	},
	"6.1": {
		bpf.CapConnections:      "on",
		bpf.CapAccept:           "on",
		bpf.CapSocketErrors:     "on",
		bpf.CapResetReasons:     "off",
		bpf.CapClosedPortResets: "kprobe",
		bpf.CapDropReasons:      "on",
		bpf.CapDropSocket:       "off",
		bpf.CapListenOverflow:   "off", // drop reasons, but not TCP_LISTEN_OVERFLOW
		bpf.CapSYNOverflow:      "on",
		bpf.CapAtomicSlots:      "on",
		bpf.CapTraceparent:      "on",
		bpf.CapReleases:         "on",
	},
	"6.12": {
		bpf.CapConnections:      "on",
		bpf.CapAccept:           "on",
		bpf.CapSocketErrors:     "on",
		bpf.CapResetReasons:     "on",
		bpf.CapClosedPortResets: "on",
		bpf.CapDropReasons:      "on",
		bpf.CapDropSocket:       "on",
		bpf.CapListenOverflow:   "off", // no SKB_DROP_REASON_TCP_LISTEN_OVERFLOW in its BTF
		bpf.CapSYNOverflow:      "on",
		bpf.CapAtomicSlots:      "on",
		bpf.CapTraceparent:      "on",
		bpf.CapReleases:         "on",
	},
	"6.18": {
		bpf.CapConnections:      "on",
		bpf.CapAccept:           "fallback", // tracing programs are refused (EPERM): syscall tracepoints
		bpf.CapSocketErrors:     "on",
		bpf.CapResetReasons:     "on",
		bpf.CapClosedPortResets: "on",
		bpf.CapDropReasons:      "on",
		bpf.CapDropSocket:       "on",
		bpf.CapListenOverflow:   "on",
		bpf.CapSYNOverflow:      "on",
		bpf.CapAtomicSlots:      "on",
		bpf.CapTraceparent:      "on",
		bpf.CapReleases:         "on",
	},
}

// kernelSeries is the series under test: from SeriesEnv, else "major.minor"
// of the running kernel.
func kernelSeries(t *testing.T) string {
	if s := os.Getenv(SeriesEnv); s != "" {
		return s
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	return regexp.MustCompile(`^\d+\.\d+`).FindString(unix.ByteSliceToString(u.Release[:]))
}

func TestKernelFeatures(t *testing.T) {
	testutil.RequireBPF(t)
	series := kernelSeries(t)
	want, ok := expectedFeatures[series]
	if !ok {
		t.Skipf("no expected capabilities for kernel series %q: add a row to expectedFeatures", series)
	}
	var warnings []string
	tr, err := bpf.Load(bpf.WithVerifierLogs(true), bpf.WithWarnings(func(s string) { warnings = append(warnings, s) }))
	if err != nil {
		t.Fatalf("load on %s: %v", series, err)
	}
	defer tr.Close()
	f := tr.Features()
	t.Logf("kernel %s:\n%s", series, f)
	for _, c := range f.Caps {
		w, ok := want[c.Name]
		if !ok {
			t.Errorf("capability %s has no expectation for %s", c.Name, series)
			continue
		}
		switch {
		case w == "off" && c.On:
			t.Errorf("%s loads on %s, expected off: %s", c.Name, series, c.How)
		case w != "off" && !c.On:
			t.Errorf("%s expected on %s, but it is off: %s", c.Name, series, c.Why)
		case w == "kprobe" && !strings.Contains(c.How, "kprobe"):
			t.Errorf("%s on %s through %q, expected the kprobe fallback", c.Name, series, c.How)
		case w == "fallback" && !strings.Contains(c.How, "(fallback"):
			t.Errorf("%s on %s through %q, expected its fallback", c.Name, series, c.How)
		case w == "on" && (strings.Contains(c.How, "kprobe") || strings.Contains(c.How, "fallback")):
			t.Errorf("%s on %s through %q, expected without kprobes or fallbacks", c.Name, series, c.How)
		case !c.On && c.Why == "":
			t.Errorf("%s is off without a reason", c.Name)
		}
	}
	for name := range want {
		if _, ok := f.Capability(name); !ok {
			t.Errorf("expected capability %s is not reported", name)
		}
	}
	// Every capability that is off is also a warning, naming why.
	for _, c := range f.Caps {
		if c.On {
			continue
		}
		found := false
		for _, w := range warnings {
			found = found || strings.HasPrefix(w, c.Name+" off: ")
		}
		if !found {
			t.Errorf("no warning for %s, which is off; warnings: %q", c.Name, warnings)
		}
	}
}
