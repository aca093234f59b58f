package e2e

// Operations: the agent under a collector outage, under overload, across a
// restart, with only its documented capabilities, and publishing its own
// metrics. Each test runs the built binary on this kernel against sockets
// in its own network namespace, and checks the agent's own final counts
// (-stats-file) against the namespace's TcpActiveOpens and TcpPassiveOpens.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tcpspan/tcpspan/internal/testutil"
)

// maxAgentRSS is the documented bound (docs/operations.md) on the agent's
// peak resident memory in these tests, where at most -export-queue spans
// wait per owning process while the collector is down.
const maxAgentRSS = 128 << 20

// server accepts connections in a namespace, reads each to EOF, closes it.
type server struct {
	ln   net.Listener
	port int
	wg   sync.WaitGroup
}

func startServer(t *testing.T, ns *testutil.NetNS) *server {
	t.Helper()
	s := &server{}
	ns.Do(t, func() {
		var err error
		if s.ln, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	})
	s.port = s.ln.Addr().(*net.TCPAddr).Port
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() { s.ln.Close(); s.wg.Wait() })
	return s
}

// connect makes n short connections to s, one after the other: each sends
// a byte and closes.
func (s *server) connect(t *testing.T, ns *testutil.NetNS, n int) {
	t.Helper()
	ns.Do(t, func() {
		for range n {
			c, err := net.Dial("tcp4", s.ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			c.Write([]byte{1})
			c.Close()
		}
	})
}

// hold opens n connections to s and keeps them open.
func (s *server) hold(t *testing.T, ns *testutil.NetNS, n int) []net.Conn {
	t.Helper()
	var conns []net.Conn
	ns.Do(t, func() {
		for range n {
			c, err := net.Dial("tcp4", s.ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
	})
	return conns
}

// refuse makes n connects to a port where nothing listens.
func refuse(t *testing.T, ns *testutil.NetNS, n int) {
	t.Helper()
	port := freePort(t, ns)
	ns.Do(t, func() {
		for range n {
			if c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
				c.Close()
				t.Fatal("connect to a closed port succeeded")
			}
		}
	})
}

// sockets is the number of TCP sockets the namespace opened, actively or
// passively: what the agent must account for.
func sockets(t *testing.T, ns *testutil.NetNS) uint64 {
	t.Helper()
	c := ns.Counters(t)
	return c["TcpActiveOpens"] + c["TcpPassiveOpens"]
}

func readStats(t *testing.T, path string) map[string]uint64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("stats file: %v", err)
	}
	st := map[string]uint64{}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("stats file: %v\n%s", err, b)
	}
	return st
}

func sumPrefix(st map[string]uint64, prefix string) uint64 {
	var n uint64
	for k, v := range st {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}

// checkAccounting checks that every socket the namespace opened is
// accounted for, once, by the agent's final counts: lost in the kernel, or
// a record that became a span exported, failed, dropped or sampled out.
func checkAccounting(t *testing.T, st map[string]uint64, sockets uint64) {
	t.Helper()
	var (
		emitted    = st["tcpspan.records.emitted{kind=connection}"]
		lostRing   = st["tcpspan.records.lost{cause=ring_buffer_full,kind=connection}"]
		untracked  = st["tcpspan.connections.untracked"]
		malformed  = st["tcpspan.records.lost{cause=malformed}"]
		received   = st["tcpspan.connections{kind=connection}"]
		orphans    = st["tcpspan.connections{kind=orphan}"]
		recorded   = st["tcpspan.spans.recorded"]
		sampledOut = st["tcpspan.spans.sampled_out"]
		exported   = st["tcpspan.spans.exported"]
		failed     = st["tcpspan.spans.failed"]
		unsent     = st["tcpspan.spans.unsent"]
		missed     = sumPrefix(st, "tcpspan.kernel.missed")
	)
	t.Logf("sockets %d = emitted %d + lost in ring buffer %d + untracked %d (missed runs %d, midlife %d, stale %d); "+
		"received %d + orphans %d -> spans recorded %d (sampled out %d) = exported %d + failed %d + dropped %d; orphan records lost %d",
		sockets, emitted, lostRing, untracked, missed, st["tcpspan.connections.midlife"], st["tcpspan.connections.stale"],
		received, orphans, recorded, sampledOut, exported, failed, unsent, st["tcpspan.records.lost{cause=ring_buffer_full,kind=orphan}"])
	// Kernel: each socket ends once, at its destroy, as a record emitted
	// or lost, or with no entry. A destroy the kernel skipped (missed) may
	// be emitted later as stale, or never.
	if k := emitted + lostRing + untracked; k > sockets || sockets-k > missed {
		t.Errorf("kernel accounts for %d of %d sockets (missed runs %d)", k, sockets, missed)
	}
	if received+malformed != emitted {
		t.Errorf("tracker received %d connections (+%d malformed), kernel emitted %d", received, malformed, emitted)
	}
	if recorded+sampledOut != received+orphans {
		t.Errorf("exporter took %d+%d sampled out, tracker handed over %d+%d orphans", recorded, sampledOut, received, orphans)
	}
	if exported+failed+unsent != recorded {
		t.Errorf("spans: exported %d + failed %d + dropped %d != recorded %d", exported, failed, unsent, recorded)
	}
	// The whole chain, as an operator reads it.
	if got := lostRing + untracked + exported + failed + unsent + sampledOut - orphans; got > sockets || sockets-got > missed {
		t.Errorf("lost %d + exported %d + failed %d + dropped %d (- %d orphans) = %d, want the %d sockets made",
			lostRing+untracked, exported, failed, unsent, orphans, got, sockets)
	}
}

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

// spansOnPort waits until Jaeger has n spans of service since the given
// time with port as local or peer port, and returns them.
func spansOnPort(t *testing.T, jaeger *testutil.Jaeger, service string, since time.Time, port, n int, timeout time.Duration) []testutil.Span {
	t.Helper()
	deadline := time.Now().Add(timeout)
	p := strconv.Itoa(port)
	for {
		var got []testutil.Span
		for _, sp := range spansOf(t, jaeger, service, since) {
			if attr(&sp, "network.local.port") == p || attr(&sp, "network.peer.port") == p {
				got = append(got, sp)
			}
		}
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(200 * time.Millisecond)
	}
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
	// dropped (and counted), so new connections are made in rounds until
	// one round arrives whole.
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
	if st["tcpspan.spans.failed"]+st["tcpspan.spans.unsent"] == 0 {
		t.Error("the outage shows in no count: nothing failed, nothing dropped")
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
		"spans dropped from the export queue":                       st["tcpspan.spans.unsent"],
	} {
		if v == 0 {
			t.Errorf("no %s", what)
		}
	}
}

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
	progs, links := bpfObjects(t, first.cmd.Process.Pid)
	t.Logf("first agent holds programs %v, links %v", progs, links)
	if len(progs) < 12 || len(links) < 12 {
		t.Fatalf("first agent holds %d programs and %d links, want one per hook", len(progs), len(links))
	}
	exchange := func() {
		cl.Write([]byte("ping"))
		if _, err := io.ReadFull(srv, make([]byte, 4)); err != nil {
			t.Fatal(err)
		}
	}
	exchange()
	first.stopWith(t, syscall.SIGTERM)
	for kind, ids := range map[string][]string{"prog": progs, "link": links} {
		for _, id := range ids {
			if out, err := exec.Command("bpftool", kind, "show", "id", id).CombinedOutput(); err == nil {
				t.Errorf("%s %s outlived the agent:\n%s", kind, id, out)
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
		if attr(&sp, "tcp.observed_midlife") != "true" {
			t.Errorf("span %q %v: tcp.observed_midlife %q, want true", sp.Name, sp.Kind, attr(&sp, "tcp.observed_midlife"))
		}
	}
}
