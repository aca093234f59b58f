package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpspan/tcpspan/internal/jaegerapi"
	"github.com/tcpspan/tcpspan/internal/testutil"
)

// TestRinetdIncident is the seed's incident with real rinetd, checked
// through Jaeger against rinetd's own log and the kernel's counters.
//
// rinetd forwards :92 to a backend that is down, with a listen backlog of 5.
// First, with rinetd stopped (SIGSTOP), 20 clients connect and send a
// 64 KiB request: 6 fill the accept queue, the others' handshakes overflow it.
// When rinetd resumes it accepts the queued ones, fails to connect
// upstream, and closes them with the request unread (TCP_ABORT_ON_CLOSE).
// Then wrk adds a short storm.
func TestRinetdIncident(t *testing.T) {
	testutil.RequireBPF(t)
	rinetdBin, err := exec.LookPath("rinetd")
	if err != nil {
		t.Fatalf("rinetd is not installed (scripts/deps.sh installs it): %v", err)
	}
	wrkBin, err := exec.LookPath("wrk")
	if err != nil {
		t.Fatalf("wrk is not installed (scripts/deps.sh installs it): %v", err)
	}
	jaeger := testutil.StartJaeger(t)
	bin := buildAgent(t)
	ns := testutil.NewNetNS(t)
	ns.Sysctl(t, "net.core.somaxconn", "5")
	// Handshakes the kernel gives up on end within seconds, not a minute.
	ns.Sysctl(t, "net.ipv4.tcp_synack_retries", "1")

	dir := t.TempDir()
	logPath := filepath.Join(dir, "rinetd.log")
	conf := fmt.Sprintf("logfile %s\n127.0.0.1 92 127.0.0.1 9000\n", logPath)
	if err := os.WriteFile(filepath.Join(dir, "rinetd.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	const agentService = "tcpspan-e2e-rinetd"
	start := time.Now()
	// The assertions below compare every span with rinetd's log and the
	// kernel's counters, so no span may be dropped: the storm's spans
	// outrun a Jaeger on the same two cores, so give them room to wait.
	// Every close() is checked against rinetd's log, clean ones too: they
	// keep their events (-clean-events).
	a := startAgentWith(t, bin, []string{"-netns", ns.Path, "-orphan-idle", "500ms", "-health-interval", "0", "-export-queue", "65536",
		"-clean-events"},
		"OTEL_METRICS_EXPORTER=none", "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+jaeger.OTLPGRPC, "OTEL_SERVICE_NAME="+agentService)
	before := ns.Counters(t)

	rinetd := exec.Command("ip", "netns", "exec", ns.Name, rinetdBin, "-f", "-c", filepath.Join(dir, "rinetd.conf"))
	if err := rinetd.Start(); err != nil {
		t.Fatal(err)
	}
	defer rinetd.Process.Kill()
	rinetdPID := rinetd.Process.Pid // ip netns exec execs rinetd in place
	waitListening(t, ns, "127.0.0.1:92")

	// Phase 1: rinetd stopped, clients queue up and overflow.
	rinetd.Process.Signal(syscall.SIGSTOP)
	var clients []net.Conn
	ns.Do(t, func() {
		for i := 0; i < 20; i++ {
			d := net.Dialer{Timeout: 200 * time.Millisecond}
			c, err := d.Dial("tcp4", "127.0.0.1:92")
			if err != nil {
				continue // the SYN was dropped: the client retries in the kernel, not here
			}
			// More than rinetd buffers before its upstream connects
			// (16 KiB): when the upstream refuses, rinetd closes with
			// the rest unread, whichever of reading and failing comes
			// first. A short request is often read whole first.
			c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			c.Write(append([]byte("POST / HTTP/1.0\r\n\r\n"), make([]byte, 64<<10)...))
			clients = append(clients, c)
		}
	})
	time.Sleep(500 * time.Millisecond)
	rinetd.Process.Signal(syscall.SIGCONT)
	time.Sleep(time.Second)
	for _, c := range clients {
		c.Close()
	}

	// Phase 2: a short storm.
	out, err := exec.Command("ip", "netns", "exec", ns.Name, wrkBin, "-t2", "-c200", "-d1s", "--timeout", "1s",
		"http://127.0.0.1:92/").CombinedOutput()
	if err != nil {
		t.Fatalf("wrk: %v\n%s", err, out)
	}
	// Let abandoned handshakes expire (SYN-ACK retries: 1 s, then 2 s) and
	// the clients' retransmits meet the listener's RST.
	time.Sleep(6 * time.Second)
	after := ns.Counters(t)
	a.stop(t)
	stopped := a.stopped()
	t.Log(stopped)
	// Events the kernel skipped (a hook re-entered on one CPU) can leave a
	// connection without its start, so it is exported as seen mid-life; the
	// agent counts them, and only they may explain a shortfall below.
	var missed int
	if i := strings.Index(stopped, " missed="); i >= 0 {
		fmt.Sscanf(stopped[i+len(" missed="):], "%d", &missed)
	}
	// SIGTERM, so that rinetd flushes its log.
	rinetd.Process.Signal(syscall.SIGTERM)
	rinetd.Wait()

	spans := allSpans(t, jaeger, start, ns.Inode)
	checkSpanNames(t, spans)
	rinetdLog, _ := os.ReadFile(logPath)
	opened := strings.Count(string(rinetdLog), "opened")
	closedAfterFailure := strings.Count(string(rinetdLog), "done-local-closed")
	t.Logf("%d spans in the namespace; rinetd's log: %d opened, %d done-local-closed", len(spans), opened, closedAfterFailure)

	pid := strconv.Itoa(rinetdPID)
	var overflows, aborts, rinetdClosed, rstEvents, overflowEvents int
	var listenerResets int
	var abortSpans []*jaegerapi.Span
	upstreamRefused := 0
	refusedIDs := map[string]bool{}

	for i := range spans {
		sp := &spans[i]
		if sp.Service == "rinetd" && sp.Kind == jaegerapi.SpanKindClient && sp.Name == "TCP connect" &&
			attr(sp, "network.peer.port") == "9000" &&
			attr(sp, "error.type") == "tcp.refused" {
			upstreamRefused++
			refusedIDs[sp.SpanID] = true
		}
		// A storm span (tcpspan.storm.count) stands for many orphans.
		rstEvents += sp.EventCount("tcp.rst_sent")
		overflowEvents += sp.EventCount("tcp.syn_overflow") + sp.EventCount("tcp.ack_overflow")
		if sp.Service != "rinetd" || resourcePID(sp) != pid {
			continue
		}
		switch {
		case attr(sp, "error.type") == "tcp.accept_queue_overflow":
			overflows += sp.Connections()
			for _, e := range sp.Events {
				if e.Attributes["tcpspan.context"] != "kernel" || e.Attributes["process.pid"] != nil {
					t.Errorf("overflow span %s: event %s credited to %v (%v)", sp.Name, e.Name, e.Attributes["process.pid"], e.Attributes["tcpspan.context"])
				}
				if e.Name == "tcp.rst_sent" && e.Attributes["tcpspan.reset.reason"] == "TCP_FLAGS" && e.Attributes["network.connection.state"] == "listen" {
					listenerResets += sp.Connections()
				}
			}
			if !strings.HasPrefix(sp.Status.Message, "handshake dropped") || !strings.Contains(sp.Status.Message, "accept queue of :92 full") {
				t.Errorf("overflow description %q", sp.Status.Message)
			}
		case sp.Kind == jaegerapi.SpanKindServer && sp.Name == "TCP accept :92":
			if !hasCloseBy(sp, pid) {
				t.Errorf("a connection rinetd accepted has no close() by rinetd: %s %v", sp.Status.Message, eventNames(sp))
				continue
			}
			rinetdClosed++
			unread, _ := strconv.Atoi(attr(sp, "tcpspan.close.unread_bytes"))
			if unread > 0 {
				aborts++
				want := fmt.Sprintf("RST sent (TCP_ABORT_ON_CLOSE): rinetd[%d] closed fd %s with %d bytes unread", rinetdPID, attr(sp, "tcpspan.close.fd"), unread)
				if sp.Status.Message != want || attr(sp, "tcpspan.reset.context") != "process" || !hasEvent(sp, "tcp.rst_sent") {
					t.Errorf("abort span: %q (context %s), want %q", sp.Status.Message, attr(sp, "tcpspan.reset.context"), want)
				}
				abortSpans = append(abortSpans, sp)
			}
		}
	}
	t.Logf("rinetd: %d overflow spans (%d ending in the listener's TCP_FLAGS reset), %d accepted connections closed, %d with TCP_ABORT_ON_CLOSE",
		overflows, listenerResets, rinetdClosed, aborts)
	if overflows == 0 {
		t.Error("no accept-queue overflow span attributed to rinetd")
	}
	if aborts == 0 {
		t.Error("no TCP_ABORT_ON_CLOSE span attributed to rinetd")
	}
	// Each reset links to the refused upstream connect that caused it.
	linked := 0
	for _, sp := range abortSpans {
		for _, l := range sp.Links {
			if refusedIDs[l.SpanID] && l.Attributes["tcpspan.link.reason"] == "closed_after_failure" {
				linked++
				break
			}
		}
	}
	t.Logf("%d of %d TCP_ABORT_ON_CLOSE spans link to rinetd's refused upstream connect", linked, len(abortSpans))
	if linked == 0 || linked*10 < len(abortSpans)*9 {
		t.Errorf("%d of %d TCP_ABORT_ON_CLOSE spans link to a refused upstream connect, want (nearly) all", linked, len(abortSpans))
	}
	// rinetd logs "opened" as it starts the upstream connect, and
	// "done-local-closed" when it gives up: each opened line is one refused
	// upstream CLIENT span, exactly. Its done-local-closed lines fall short
	// of its close() calls by a few in a thousand (lines lost when it exits),
	// so the closes tcpspan saw must lie between the two. Both allow for
	// the events the kernel skipped, which the agent counts.
	if upstreamRefused > opened || upstreamRefused+missed < opened {
		t.Errorf("rinetd's refused upstream connects in Jaeger %d, its log says %d opened (kernel skipped %d events)", upstreamRefused, opened, missed)
	}
	if rinetdClosed+missed < closedAfterFailure || rinetdClosed > opened {
		t.Errorf("rinetd closed %d accepted connections in Jaeger; its log: %d done-local-closed, %d opened", rinetdClosed, closedAfterFailure, opened)
	}
	rsts := after["TcpOutRsts"] - before["TcpOutRsts"]
	if uint64(rstEvents) != rsts {
		t.Errorf("RSTs sent in Jaeger %d, TcpOutRsts delta %d", rstEvents, rsts)
	}
	// SYN overflows are judged at cgroup_skb/ingress with the kernel's own
	// test just before the kernel applies it; an accept() or a handshake
	// completing on another CPU in between makes the two disagree. Runs here
	// came out 0 to 2.6% above the kernel; allow 3% (and 10) either way.
	ovk := after["TcpExtListenOverflows"] - before["TcpExtListenOverflows"]
	slack := int64(ovk*3/100 + 10)
	if diff := int64(overflowEvents) - int64(ovk); ovk == 0 || diff > slack || -diff > slack {
		t.Errorf("overflow events in Jaeger %d, TcpExtListenOverflows delta %d", overflowEvents, ovk)
	}
	t.Logf("TcpOutRsts +%d (Jaeger %d), TcpExtListenOverflows +%d (Jaeger %d)", rsts, rstEvents, ovk, overflowEvents)
}

func hasCloseBy(sp *jaegerapi.Span, pid string) bool {
	for _, e := range sp.Events {
		if e.Name == "tcp.close" && fmt.Sprint(e.Attributes["process.pid"]) == pid {
			return true
		}
	}
	return false
}

// allSpans reads every span of every service from Jaeger, keeping those of
// one network namespace.
func allSpans(t *testing.T, jaeger *testutil.Jaeger, since time.Time, netns uint32) []jaegerapi.Span {
	t.Helper()
	client := jaegerapi.Client{BaseURL: jaeger.QueryURL, MaxTraces: 100000}
	services, err := client.Services()
	if err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(time.Minute)
	var spans []jaegerapi.Span
	for _, svc := range services {
		for from := since; from.Before(until); from = from.Add(2 * time.Second) {
			traces, err := client.Traces(svc, from, from.Add(2*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			for _, tr := range traces {
				for _, sp := range tr.ServiceSpans(svc) {
					if sp.Start.Before(from.Add(2*time.Second)) && attr(&sp, "tcpspan.netns") == strconv.Itoa(int(netns)) {
						spans = append(spans, sp)
					}
				}
			}
		}
	}
	return spans
}

func waitListening(t *testing.T, ns *testutil.NetNS, addr string) {
	t.Helper()
	for i := 0; i < 100; i++ {
		ok := false
		ns.Do(t, func() {
			if c, err := net.DialTimeout("tcp4", addr, 100*time.Millisecond); err == nil {
				c.Close()
				ok = true
			}
		})
		if ok {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s", addr)
}
