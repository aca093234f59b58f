package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpspan/tcpspan/internal/testutil"
)

// A storm beyond what the pipeline carries: a one-page ring buffer, a
// kernel map of 16 connections with 64 held open, an export queue of 16.
// The agent stays up, and losses in the ring buffer, evictions from the
// map and export-queue drops are each counted, and add up.
func TestOverload(t *testing.T) {
	testutil.RequireBPF(t)
	jaeger := testutil.StartJaeger(t)
	bin := buildAgent(t)
	ns := testutil.NewNetNS(t)
	stats := filepath.Join(t.TempDir(), "stats.json")
	a := startAgentWith(t, bin, []string{"-netns", ns.Path, "-orphan-idle", "100ms", "-health-interval", "0",
		"-ring-buffer-bytes", strconv.Itoa(os.Getpagesize()), "-max-connections", "16", "-export-queue", "16",
		"-stats-file", stats, "-health-addr", "127.0.0.1:0"},
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://"+jaeger.OTLPGRPC, "OTEL_METRICS_EXPORTER=none", "OTEL_SERVICE_NAME=tcpspan-overload")
	m := regexp.MustCompile(`health_addr=(\S+)`).FindStringSubmatch(readFile(a.logPath))
	if m == nil {
		t.Fatal("no health_addr in the agent's log")
	}
	healthURL := "http://" + m[1]
	// 0100007F is 127.0.0.1 as /proc/net/tcp writes it.
	if l := listening(t, a.cmd.Process.Pid); len(l) != 1 || !strings.HasPrefix(l[0], "0100007F:") {
		t.Errorf("with -health-addr 127.0.0.1:0 the agent listens on %v, want one loopback port", l)
	}

	srv := startServer(t, ns)
	held := srv.hold(t, ns, 64) // more open at once than the kernel map holds
	for _, c := range held {
		c.Write([]byte{1})
	}
	for _, c := range held {
		c.Close()
	}
	srv.connect(t, ns, 3000)
	refuse(t, ns, 2000)

	resp, err := http.Get(healthURL + "/healthz")
	if err != nil {
		t.Fatalf("agent down after the storm: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok\n" {
		t.Errorf("/healthz: %q", body)
	}
	time.Sleep(500 * time.Millisecond) // orphans idle out
	a.stopWith(t, syscall.SIGTERM)

	n := sockets(t, ns)
	if n != 2*(64+3000)+2000 {
		t.Fatalf("the namespace opened %d sockets, the test made %d", n, 2*(64+3000)+2000)
	}
	st := readStats(t, stats)
	checkAccounting(t, st, n)
	for what, v := range map[string]uint64{
		"records lost in the ring buffer":                           sumPrefix(st, "tcpspan.records.lost{cause=ring_buffer_full"),
		"connections evicted from the kernel map and tracked again": st["tcpspan.connections.midlife"],
		"connections folded by the full export queue":               st["tcpspan.spans.folded"],
	} {
		if v == 0 {
			t.Errorf("no %s", what)
		}
	}
}

// A storm in the terminal view: a line per kind a second with the count of
// the others, not a line per connection, and a summary that adds up to
// the kernel's own counters.
func TestTerminalStorm(t *testing.T) {
	testutil.RequireBPF(t)
	bin := buildAgent(t)
	ns := testutil.NewNetNS(t)
	a := startAgentWith(t, bin, []string{"-netns", ns.Path, "-orphan-idle", "200ms", "-health-interval", "0"},
		"OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=", "OTEL_METRICS_EXPORTER=none")
	before := ns.Counters(t)
	const n = 3000
	refuse(t, ns, n)
	time.Sleep(500 * time.Millisecond) // the orphans idle out
	a.stop(t)
	rsts := ns.Counters(t)["TcpOutRsts"] - before["TcpOutRsts"]

	more := regexp.MustCompile(`^\S+  … (\d+) more in \S+ from \d+ peers?: connection refused`)
	var lines, refused int
	var summary string
	for _, l := range strings.Split(readFile(a.logPath), "\n") {
		switch {
		case strings.Contains(l, " connections, "):
			summary = l
		case more.MatchString(l):
			lines++
			c, _ := strconv.Atoi(more.FindStringSubmatch(l)[1])
			refused += c
		case strings.Contains(l, "connection refused: RST received (ECONNREFUSED)"):
			lines++
			refused++
		}
	}
	t.Logf("%d refused connects in %d lines; summary: %s", refused, lines, summary)
	if refused != n || lines > 20 {
		t.Errorf("the terminal shows %d refused connects in %d lines, want all %d in a few", refused, lines, n)
	}
	if want := fmt.Sprintf("%d tcp.refused, %d tcp.rst_sent", n, rsts); rsts != n || !strings.Contains(summary, want) {
		t.Errorf("summary %q, want %q (TcpOutRsts +%d)", summary, want, rsts)
	}
}
