package e2e

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpspan/tcpspan/internal/testutil"
)

// maxAgentRSS is the documented bound (docs/operations.md) on the agent's
// peak resident memory in these tests, where at most -export-queue spans
// wait per owning process while the collector is down.
const maxAgentRSS = 128 << 20

// peakRSS is the process's peak resident memory (VmHWM) in bytes.
func peakRSS(t *testing.T, pid int) uint64 {
	t.Helper()
	m := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindStringSubmatch(readFile(fmt.Sprintf("/proc/%d/status", pid)))
	if m == nil {
		t.Fatalf("no VmHWM for pid %d", pid)
	}
	kb, _ := strconv.ParseUint(m[1], 10, 64)
	return kb << 10
}

// The collector is down when the agent starts, comes up, crashes mid-run
// and comes back. The agent traces throughout, keeps its memory bounded,
// counts what it could not send, logs the outage a bounded number of
// times, and exports new spans once the collector is back.
func TestCollectorOutage(t *testing.T) {
	testutil.RequireBPF(t)
	jaeger := testutil.StartJaeger(t)
	jaeger.Kill(t) // nothing listens when the agent starts
	bin := buildAgent(t)
	ns := testutil.NewNetNS(t)
	self := strings.TrimSpace(readFile("/proc/self/comm"))
	stats := filepath.Join(t.TempDir(), "stats.json")
	start := time.Now()
	const queue = 64
	a := startAgentWith(t, bin, []string{"-netns", ns.Path, "-orphan-idle", "200ms", "-health-interval", "0",
		"-export-queue", strconv.Itoa(queue), "-stats-file", stats},
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://"+jaeger.OTLPGRPC, "OTEL_EXPORTER_OTLP_TIMEOUT=1000",
		"OTEL_METRICS_EXPORTER=none", "OTEL_SERVICE_NAME=tcpspan-outage")
	made := 0
	down := startServer(t, ns)
	// Far more spans than the queue holds, while nothing listens.
	down.connect(t, ns, 1500)
	made += 1500
	time.Sleep(2 * time.Second) // export attempts time out and are retried

	// Once the collector is back, spans of new connections reach it. The
	// first may still meet a queue full of the outage's spans and be
	// folded or dropped (and counted), so new connections are made in
	// rounds until one round arrives whole.
	recover := func(phase string) {
		t.Helper()
		jaeger.Restart(t)
		for round := 1; ; round++ {
			since := time.Now()
			up := startServer(t, ns)
			up.connect(t, ns, 10)
			made += 10
			got := spansOnPort(t, jaeger, self, since, up.port, 20, 5*time.Second)
			if len(got) == 20 {
				t.Logf("%s: round %d of 10 new connections reached Jaeger whole", phase, round)
				return
			}
			if round == 6 {
				t.Fatalf("%s: after %d rounds of 10 connections, the last had %d of 20 spans in Jaeger", phase, round, len(got))
			}
		}
	}
	recover("after starting without a collector")

	jaeger.Kill(t) // the collector crashes mid-run
	down.connect(t, ns, 500)
	made += 500
	time.Sleep(2 * time.Second)
	recover("after the crash")

	rss := peakRSS(t, a.cmd.Process.Pid)
	a.stopWith(t, syscall.SIGTERM)
	elapsed := time.Since(start)

	n := sockets(t, ns)
	if n != uint64(2*made) {
		t.Fatalf("the namespace opened %d sockets, the test made %d connections", n, made)
	}
	st := readStats(t, stats)
	checkAccounting(t, st, n)
	if st["tcpspan.spans.failed"]+st["tcpspan.spans.unsent"]+st["tcpspan.spans.folded"] == 0 {
		t.Error("the outage shows in no count: nothing failed, dropped or folded")
	}
	if st["tcpspan.spans.exported"] < 40 {
		t.Errorf("%d spans exported, want at least the 40 seen in Jaeger", st["tcpspan.spans.exported"])
	}
	t.Logf("peak RSS %.1f MiB (bound %d MiB)", float64(rss)/(1<<20), maxAgentRSS>>20)
	if rss > maxAgentRSS {
		t.Errorf("peak RSS %d MiB, over the documented %d MiB", rss>>20, maxAgentRSS>>20)
	}

	// The outage is logged, but at most once per 10 s interval, with the
	// number of errors held back.
	lines, suppressed := 0, 0
	for _, line := range strings.Split(readFile(a.logPath), "\n") {
		if strings.Contains(line, "msg=export ") {
			lines++
			if m := regexp.MustCompile(`similar_errors_suppressed=(\d+)`).FindStringSubmatch(line); m != nil {
				k, _ := strconv.Atoi(m[1])
				suppressed += k
			}
		}
	}
	errs := st["tcpspan.export.errors"]
	t.Logf("%d export errors, %d logged, %d reported as suppressed, in %v", errs, lines, suppressed, elapsed.Round(time.Second))
	if limit := int(elapsed/(10*time.Second)) + 1; lines < 1 || lines > limit {
		t.Errorf("%d export log lines in %v, want 1 to %d", lines, elapsed.Round(time.Second), limit)
	}
	if uint64(lines+suppressed) > errs {
		t.Errorf("log reports %d errors, the agent counted %d", lines+suppressed, errs)
	}
}
