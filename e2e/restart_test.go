package e2e

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpspan/tcpspan/internal/testutil"
)

// bpfObjects lists the BPF programs and links a process holds, from its
// fdinfo: exactly the agent's, whatever else runs on the host.
func bpfObjects(t *testing.T, pid int) (progs, links []string) {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		// A link's fdinfo names its program too: count each id once.
		for _, line := range strings.Split(readFile(filepath.Join(dir, e.Name())), "\n") {
			if v, ok := strings.CutPrefix(line, "prog_id:"); ok && !seen["p"+strings.TrimSpace(v)] {
				seen["p"+strings.TrimSpace(v)] = true
				progs = append(progs, strings.TrimSpace(v))
			}
			if v, ok := strings.CutPrefix(line, "link_id:"); ok && !seen["l"+strings.TrimSpace(v)] {
				seen["l"+strings.TrimSpace(v)] = true
				links = append(links, strings.TrimSpace(v))
			}
		}
	}
	return progs, links
}

// SIGTERM while a connection is open, then a new agent: nothing of the
// first is left in the kernel, and the second picks the connection up and
// exports it marked as observed mid-life.
func TestRestartMidConnection(t *testing.T) {
	testutil.RequireBPF(t)
	jaeger := testutil.StartJaeger(t)
	bin := buildAgent(t)
	ns := testutil.NewNetNS(t)
	self := strings.TrimSpace(readFile("/proc/self/comm"))
	start := time.Now()
	ln, cl, srv := ns.ConnectedPair(t, "tcp4", "127.0.0.1:0")
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	args := []string{"-netns", ns.Path, "-orphan-idle", "200ms", "-health-interval", "0"}
	env := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + jaeger.OTLPGRPC, "OTEL_METRICS_EXPORTER=none", "OTEL_SERVICE_NAME=tcpspan-restart"}

	first := startAgentWith(t, bin, args, env...)
	if l := listening(t, first.cmd.Process.Pid); len(l) != 0 {
		t.Errorf("without -health-addr the agent listens on %v", l)
	}
	progs, links := bpfObjects(t, first.cmd.Process.Pid)
	t.Logf("first agent holds programs %v, links %v", progs, links)
	// One link per hook this kernel needs: 8 raw tracepoints and the
	// accept() hook's 2 (cgroup getpeername on 6.18, which refuses fexit;
	// no kprobe fallbacks there either); a
	// program for each, for cgroup_skb, attached only while an accept
	// queue is high (-syn-watch auto), and for the fallbacks.
	if len(progs) < 11 || len(links) < 10 {
		t.Fatalf("first agent holds %d programs and %d links, want one per hook (11 programs, 10 links)", len(progs), len(links))
	}
	exchange := func() {
		cl.Write([]byte("ping"))
		if _, err := io.ReadFull(srv, make([]byte, 4)); err != nil {
			t.Fatal(err)
		}
	}
	exchange()
	first.stopWith(t, syscall.SIGTERM)
	// The kernel frees a detached program after an RCU grace period,
	// which under load can outlast the agent's exit by a few hundred ms.
	gone := time.Now().Add(2 * time.Second)
	for kind, ids := range map[string][]string{"prog": progs, "link": links} {
		for _, id := range ids {
			for {
				out, err := exec.Command("bpftool", kind, "show", "id", id).CombinedOutput()
				if err != nil {
					break
				}
				if time.Now().After(gone) {
					t.Errorf("%s %s outlived the agent by 2s:\n%s", kind, id, out)
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}

	second := startAgentWith(t, bin, args, env...)
	exchange()
	cl.Close()
	io.ReadAll(srv)
	srv.Close()
	got := spansOnPort(t, jaeger, self, start, port, 2, 10*time.Second)
	second.stop(t)
	if len(got) != 2 {
		t.Fatalf("%d spans of the connection, want its two ends once each", len(got))
	}
	for _, sp := range got {
		if attr(&sp, "tcpspan.observed_midlife") != "true" {
			t.Errorf("span %q %v: tcpspan.observed_midlife %q, want true", sp.Name, sp.Kind, attr(&sp, "tcpspan.observed_midlife"))
		}
	}
}
