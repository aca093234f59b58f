package e2e

// Operations: the agent under a collector outage, under overload, across a
// restart, with only its documented capabilities, and publishing its own
// metrics. Each test runs the built binary on this kernel against sockets
// in its own network namespace, and checks the agent's own final counts
// (-stats-file) against the namespace's TcpActiveOpens and TcpPassiveOpens.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
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
		clean      = st["tcpspan.connections.clean_in_kernel"]
		malformed  = st["tcpspan.records.lost{cause=malformed}"]
		received   = st["tcpspan.connections{kind=connection}"]
		orphans    = st["tcpspan.connections{kind=orphan}"]
		recorded   = st["tcpspan.spans.recorded"]
		sampledOut = st["tcpspan.spans.sampled_out"]
		folded     = st["tcpspan.spans.folded"]
		exported   = st["tcpspan.spans.exported"]
		failed     = st["tcpspan.spans.failed"]
		unsent     = st["tcpspan.spans.unsent"]
		missed     = sumPrefix(st, "tcpspan.kernel.missed")
	)
	t.Logf("sockets %d = emitted %d + lost in ring buffer %d + untracked %d (missed runs %d, midlife %d, stale %d); "+
		"received %d + orphans %d -> spans recorded %d (sampled out %d, folded %d) = exported %d + failed %d + dropped %d; orphan records lost %d",
		sockets, emitted, lostRing, untracked, missed, st["tcpspan.connections.midlife"], st["tcpspan.connections.stale"],
		received, orphans, recorded, sampledOut, folded, exported, failed, unsent, st["tcpspan.records.lost{cause=ring_buffer_full,kind=orphan}"])
	// Kernel: each socket ends once, at its destroy, as a record emitted
	// or lost, or with no entry. A destroy the kernel skipped (missed) may
	// be emitted later as stale, or never.
	if k := emitted + lostRing + untracked + clean; k > sockets || sockets-k > missed {
		t.Errorf("kernel accounts for %d of %d sockets (missed runs %d)", k, sockets, missed)
	}
	if received+malformed != emitted {
		t.Errorf("tracker received %d connections (+%d malformed), kernel emitted %d", received, malformed, emitted)
	}
	if recorded+sampledOut+folded != received+orphans {
		t.Errorf("exporter took %d+%d sampled out+%d folded, tracker handed over %d+%d orphans", recorded, sampledOut, folded, received, orphans)
	}
	if exported+failed+unsent != recorded {
		t.Errorf("spans: exported %d + failed %d + dropped %d != recorded %d", exported, failed, unsent, recorded)
	}
	// The whole chain, as an operator reads it.
	if got := lostRing + untracked + exported + failed + unsent + folded + sampledOut + clean - orphans; got > sockets || sockets-got > missed {
		t.Errorf("lost %d + exported %d + failed %d + dropped %d + folded %d + clean in kernel %d (- %d orphans) = %d, want the %d sockets made",
			lostRing+untracked, exported, failed, unsent, folded, clean, orphans, got, sockets)
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

// listening returns the local addresses of the TCP sockets in state
// LISTEN that process pid holds, as hex "ADDR:PORT" from /proc/net/tcp{,6}.
func listening(t *testing.T, pid int) []string {
	t.Helper()
	inodes := map[string]bool{}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		if link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	var addrs []string
	for _, table := range []string{"tcp", "tcp6"} {
		for _, line := range strings.Split(readFile(fmt.Sprintf("/proc/%d/net/%s", pid, table)), "\n")[1:] {
			f := strings.Fields(line)
			// sl local rem st ... inode (10th field)
			if len(f) > 9 && f[3] == "0A" && inodes[f[9]] {
				addrs = append(addrs, f[1])
			}
		}
	}
	return addrs
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

// capNames maps every capability bit of this kernel to its name, from
// capsh itself.
func capNames(t *testing.T) []string {
	t.Helper()
	last, err := strconv.Atoi(strings.TrimSpace(readFile("/proc/sys/kernel/cap_last_cap")))
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, last+1)
	for bit := range names {
		out, err := exec.Command("capsh", fmt.Sprintf("--decode=%x", uint64(1)<<bit)).Output()
		if err != nil {
			t.Fatal(err)
		}
		_, name, _ := strings.Cut(strings.TrimSpace(string(out)), "=")
		names[bit] = strings.ToUpper(name)
	}
	return names
}

// withCaps returns a command that runs bin with exactly the capabilities
// caps: as root with every other one dropped from the bounding set, or as
// nobody with caps as ambient capabilities.
func withCaps(all []string, user string, caps []string, bin string, args ...string) *exec.Cmd {
	lower := func(cs []string) string { return strings.ToLower(strings.Join(cs, ",")) }
	var capsh []string
	if user == "root" {
		var drop []string
		for _, c := range all {
			if !slicesContains(caps, c) {
				drop = append(drop, c)
			}
		}
		capsh = []string{"--drop=" + lower(drop)}
	} else {
		capsh = []string{"--caps=" + lower(append([]string{"cap_setpcap", "cap_setuid", "cap_setgid"}, caps...)) + "+ep",
			"--keep=1", "--user=" + user, "--inh=" + lower(caps), "--addamb=" + lower(caps)}
		if len(caps) == 0 {
			capsh = capsh[:3]
		}
	}
	capsh = append(capsh, "--", "-c", `exec "$@"`, "sh", bin)
	return exec.Command("capsh", append(capsh, args...)...)
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// The agent traces with exactly the capabilities it documents for this
// host (tcpspan -capabilities), as root in a restricted container would,
// and as an ordinary user given them; without any one of them it exits
// naming it.
func TestLeastPrivilege(t *testing.T) {
	testutil.RequireBPF(t)
	if _, err := exec.LookPath("capsh"); err != nil {
		if os.Getenv(testutil.RequiredEnv) == "1" {
			t.Fatal("capsh not installed (libcap2-bin; scripts/deps.sh)")
		}
		t.Skip("capsh not installed (libcap2-bin)")
	}
	all := capNames(t)
	// A copy of the agent, and a place for its stats, that nobody can reach.
	dir, err := os.MkdirTemp("", "tcpspan-caps-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)
	bin := filepath.Join(dir, "tcpspan")
	if b, err := os.ReadFile(buildAgent(t)); err != nil || os.WriteFile(bin, b, 0o755) != nil {
		t.Fatalf("copy agent: %v", err)
	}

	for _, user := range []string{"root", "nobody"} {
		t.Run(user, func(t *testing.T) {
			out, err := withCaps(all, user, nil, bin, "-capabilities").CombinedOutput()
			if err != nil {
				t.Fatalf("tcpspan -capabilities: %v\n%s", err, out)
			}
			var required []string
			for _, line := range strings.Split(string(out), "\n") {
				if f := strings.Fields(line); len(f) > 1 && f[1] == "required:" {
					required = append(required, f[0])
				}
			}
			t.Logf("required here as %s: %v", user, required)
			for _, c := range []string{"CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"} {
				if !slicesContains(required, c) {
					t.Errorf("%s not among the required %v", c, required)
				}
			}

			ns := testutil.NewNetNS(t)
			stats := filepath.Join(dir, "stats-"+user+".json")
			logPath := filepath.Join(t.TempDir(), "tcpspan.log")
			logFile, _ := os.Create(logPath)
			defer logFile.Close()
			cmd := withCaps(all, user, required, bin, "-netns", ns.Path, "-health-interval", "0", "-stats-file", stats)
			cmd.Stdout, cmd.Stderr = logFile, logFile
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			a := &agent{cmd: cmd, stderr: logFile, logPath: logPath}
			t.Cleanup(func() { a.stop(t) })
			deadline := time.Now().Add(10 * time.Second)
			for !strings.Contains(readFile(logPath), "msg=tracing") {
				if time.Now().After(deadline) || strings.Contains(readFile(logPath), "tcpspan: ") {
					t.Fatalf("the agent did not start with %v:\n%s", required, readFile(logPath))
				}
				time.Sleep(50 * time.Millisecond)
			}
			status := readFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
			var want uint64
			for _, c := range required {
				want |= 1 << uint64(slicesIndex(all, c))
			}
			if !strings.Contains(status, fmt.Sprintf("CapEff:\t%016x\n", want)) || !strings.Contains(status, "Name:\ttcpspan\n") {
				t.Fatalf("the agent does not run with exactly %v (mask %016x):\n%s", required, want, status)
			}
			srv := startServer(t, ns)
			srv.connect(t, ns, 3)
			time.Sleep(200 * time.Millisecond)
			a.stopWith(t, syscall.SIGTERM)
			st := readStats(t, stats)
			// Terminal only, without -v: clean connections are counted in
			// the kernel, the others sent.
			emitted := st["tcpspan.records.emitted{kind=connection}"] + st["tcpspan.connections.clean_in_kernel"]
			if n := sockets(t, ns); emitted != n || n != 6 {
				t.Errorf("with only %v: %d connections recorded or counted for %d sockets", required, emitted, n)
			}
			for _, line := range strings.Split(readFile(logPath), "\n") {
				if strings.Contains(line, "level=WARN") {
					t.Logf("warning with the required set only: %s", line)
				}
			}

			for _, c := range required {
				var fewer []string
				for _, r := range required {
					if r != c {
						fewer = append(fewer, r)
					}
				}
				out, err := withCaps(all, user, fewer, bin, "-netns", ns.Path).CombinedOutput()
				msg := strings.TrimSpace(string(out))
				var exit *exec.ExitError
				if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(msg, c) || strings.Count(msg, "\n") > 0 {
					t.Errorf("without %s: %v, want exit 1 with one line naming it:\n%s", c, err, msg)
				}
			}
		})
	}
}

func slicesIndex(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// otlpJSONMetrics is the part of the collector's file exporter output
// (OTLP/JSON, one request per line) that the test reads.
type otlpJSONMetrics struct {
	ResourceMetrics []struct {
		Resource struct {
			Attributes []otlpJSONAttr `json:"attributes"`
		} `json:"resource"`
		ScopeMetrics []struct {
			Metrics []struct {
				Name string `json:"name"`
				Sum  *struct {
					DataPoints []otlpJSONPoint `json:"dataPoints"`
				} `json:"sum"`
				Gauge *struct {
					DataPoints []otlpJSONPoint `json:"dataPoints"`
				} `json:"gauge"`
			} `json:"metrics"`
		} `json:"scopeMetrics"`
	} `json:"resourceMetrics"`
}

type otlpJSONAttr struct {
	Key   string `json:"key"`
	Value struct {
		StringValue string `json:"stringValue"`
	} `json:"value"`
}

type otlpJSONPoint struct {
	Attributes []otlpJSONAttr `json:"attributes"`
	AsInt      string         `json:"asInt"`
}

// lastMetricValues reads the file exporter's output: the last value of
// every series, keyed like the stats file, and the service names seen.
func lastMetricValues(t *testing.T, path string) (map[string]uint64, map[string]bool) {
	t.Helper()
	values, services := map[string]uint64{}, map[string]bool{}
	for _, line := range strings.Split(readFile(path), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var req otlpJSONMetrics
		if err := json.Unmarshal([]byte(line), &req); err != nil {
			t.Fatalf("collector output: %v", err)
		}
		for _, rm := range req.ResourceMetrics {
			for _, a := range rm.Resource.Attributes {
				if a.Key == "service.name" {
					services[a.Value.StringValue] = true
				}
			}
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					var points []otlpJSONPoint
					if m.Sum != nil {
						points = m.Sum.DataPoints
					}
					if m.Gauge != nil {
						points = m.Gauge.DataPoints
					}
					for _, p := range points {
						var kvs []string
						for _, a := range p.Attributes {
							kvs = append(kvs, a.Key+"="+a.Value.StringValue)
						}
						key := m.Name
						if len(kvs) > 0 {
							sort.Strings(kvs)
							key += "{" + strings.Join(kvs, ",") + "}"
						}
						v, _ := strconv.ParseUint(p.AsInt, 10, 64)
						values[key] = v
					}
				}
			}
		}
	}
	return values, services
}

// The agent's own metrics go over OTLP to a real collector, whose file
// exporter writes what it received; their last values are the agent's
// final counts. The opt-in health endpoint serves the same values to
// Prometheus.
func TestSelfMetricsThroughCollector(t *testing.T) {
	testutil.RequireBPF(t)
	bin := buildAgent(t)
	otelcol := toolBinary(t, "otelcol")
	dir := t.TempDir()
	grpc := freeHostPort(t)
	out := filepath.Join(dir, "metrics.jsonl")
	config := fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
exporters:
  file:
    path: %s
    flush_interval: 100ms
  debug: {}
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [file]
    traces:
      receivers: [otlp]
      exporters: [debug]
`, grpc, out)
	cfgPath := filepath.Join(dir, "otelcol.yaml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	col := exec.Command(otelcol, "--config", cfgPath)
	colLog, _ := os.Create(filepath.Join(dir, "otelcol.log"))
	col.Stdout, col.Stderr = colLog, colLog
	if err := col.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		col.Process.Signal(syscall.SIGTERM)
		col.Wait()
		if t.Failed() {
			t.Logf("collector log:\n%s", readFile(colLog.Name()))
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; {
		if c, err := net.DialTimeout("tcp", grpc, 100*time.Millisecond); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("collector did not start:\n%s", readFile(colLog.Name()))
		}
		time.Sleep(100 * time.Millisecond)
	}

	ns := testutil.NewNetNS(t)
	stats := filepath.Join(dir, "stats.json")
	a := startAgentWith(t, bin, []string{"-netns", ns.Path, "-orphan-idle", "100ms", "-health-interval", "0",
		"-otlp-endpoint", "http://" + grpc, "-health-addr", "0", "-stats-file", stats},
		"OTEL_METRIC_EXPORT_INTERVAL=300", "OTEL_SERVICE_NAME=tcpspan-selfmetrics")
	m := regexp.MustCompile(`health_addr=(127\.0\.0\.1:\d+)`).FindStringSubmatch(readFile(a.logPath))
	if m == nil {
		t.Fatalf("a bare -health-addr port must bind loopback:\n%s", readFile(a.logPath))
	}
	srv := startServer(t, ns)
	srv.connect(t, ns, 5)
	refuse(t, ns, 2)
	time.Sleep(500 * time.Millisecond)
	resp, err := http.Get("http://" + m[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !regexp.MustCompile(`(?m)^tcpspan_records_emitted_total\{kind="connection",[^}]*\} [1-9]`).Match(page) ||
		!regexp.MustCompile(`(?m)^target_info\{[^}]*service_name="tcpspan-selfmetrics"`).Match(page) {
		t.Errorf("/metrics while tracing:\n%s", page)
	}
	// A live scrape passes Prometheus's own linter.
	promtool := exec.Command(testutil.RequireCommand(t, "promtool", "prometheus"), "check", "metrics")
	promtool.Stdin = strings.NewReader(string(page))
	if out, err := promtool.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("promtool check metrics on the agent's /metrics: %v\n%s", err, out)
	}
	a.stopWith(t, syscall.SIGTERM)
	final := readStats(t, stats)
	if final["tcpspan.records.emitted{kind=connection}"] != sockets(t, ns) {
		t.Errorf("stats file: %d records for %d sockets", final["tcpspan.records.emitted{kind=connection}"], sockets(t, ns))
	}

	// The last export, at shutdown, carries the final counts.
	var got map[string]uint64
	var services map[string]bool
	for deadline := time.Now().Add(10 * time.Second); ; {
		got, services = lastMetricValues(t, out)
		if got["tcpspan.connections{kind=connection}"] == final["tcpspan.connections{kind=connection}"] || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !services["tcpspan-selfmetrics"] {
		t.Errorf("metrics under services %v, want the agent's", services)
	}
	for key, want := range final {
		if key == "tcpspan.export.errors" {
			continue // the last export's own outcome is not in it
		}
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s: collector got %d (present %v), the agent's final count is %d", key, v, ok, want)
		}
	}
}

// Jaeger takes traces but no metrics: with the agent's own metrics left on,
// its first metrics export is answered Unimplemented, which the agent says
// in one line and then stops exporting metrics, while its spans go on.
func TestMetricsToJaegerStopAfterOneLine(t *testing.T) {
	testutil.RequireBPF(t)
	jaeger := testutil.StartJaeger(t)
	bin := buildAgent(t)
	ns := testutil.NewNetNS(t)
	stats := filepath.Join(t.TempDir(), "stats.json")
	a := startAgentWith(t, bin, []string{"-netns", ns.Path, "-health-interval", "0", "-stats-file", stats},
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://"+jaeger.OTLPGRPC, "OTEL_METRIC_EXPORT_INTERVAL=100",
		"OTEL_SERVICE_NAME=tcpspan-nometrics")
	srv := startServer(t, ns)
	for range 5 {
		srv.connect(t, ns, 1)
		time.Sleep(200 * time.Millisecond) // two metric intervals each
	}
	a.stop(t)
	log := readFile(a.logPath)
	if n := strings.Count(log, "takes no metrics"); n != 1 || !strings.Contains(log, "Unimplemented") {
		t.Errorf("%d lines say the endpoint takes no metrics, want one naming Unimplemented:\n%s", n, log)
	}
	if strings.Contains(log, "msg=export") {
		t.Errorf("export errors logged:\n%s", log)
	}
	st := readStats(t, stats)
	if st["tcpspan.export.errors"] != 0 || st["tcpspan.spans.exported"] == 0 {
		t.Errorf("export errors %d, spans exported %d: want 0 and some", st["tcpspan.export.errors"], st["tcpspan.spans.exported"])
	}
}
