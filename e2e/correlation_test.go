package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpspan/tcpspan/internal/testutil"
)

// Services of the two agents in TestCorrelationThroughNAT.
const (
	corrServiceA = "corr-host-a" // the client host's agent
	corrServiceB = "corr-host-b" // the server host's agent
)

// corrScenario is one way a connection through the NAT goes, on ports of
// its own: A dials VirtualAddr:vport, R sends it on to B's bport. A's spans
// of it are found by their peer port (vport), B's by their local port
// (bport).
type corrScenario struct {
	name         string
	vport, bport int
	clients      int      // connections A attempted: client spans expected
	outcomes     []string // what each of them saw, for the log
}

func (s *corrScenario) saw(format string, args ...any) {
	s.outcomes = append(s.outcomes, fmt.Sprintf(format, args...))
}

// TestCorrelationThroughNAT runs one agent on each end of a NAT (client
// host A, server host B, router R between them rewriting addresses and
// ports both ways) and checks in Jaeger that each connection's two ends,
// each computed alone by its own agent, share one trace id: a clean
// exchange, a server closing with the request unread, a refused connect
// (with B's NO_SOCKET reset, an orphan span), and SYNs dropped by a full
// accept queue (with B's overflow span). No span may name a parent that its
// trace does not hold.
func TestCorrelationThroughNAT(t *testing.T) {
	testutil.RequireBPF(t)
	jaeger := testutil.StartJaeger(t)
	bin := buildAgent(t)
	p := testutil.NewNATPath(t)

	start := time.Now()
	agents := make(map[string]*agent)
	for _, h := range []struct {
		ns      *testutil.NetNS
		service string
	}{{p.A, corrServiceA}, {p.B, corrServiceB}} {
		agents[h.service] = startAgentWith(t, bin,
			[]string{"-netns", h.ns.Path, "-single-service", "-orphan-idle", "500ms", "-health-interval", "0"},
			"OTEL_METRICS_EXPORTER=none", "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+jaeger.OTLPGRPC, "OTEL_SERVICE_NAME="+h.service)
	}

	scenarios := []*corrScenario{
		corrClean(t, p, 18001),
		corrReset(t, p, 18002),
		corrRefused(t, p, 18003),
		corrOverflow(t, p, 18004),
	}
	for _, s := range scenarios {
		t.Logf("%s: A dials %v:%d, B's port %d: %s", s.name, p.VirtualAddr, s.vport, s.bport, strings.Join(s.outcomes, "; "))
	}

	time.Sleep(1500 * time.Millisecond) // orphans wait 500 ms for their 4-tuple, then the batch
	for _, svc := range []string{corrServiceA, corrServiceB} {
		agents[svc].stop(t) // flushes what is queued
		t.Logf("%s: %s", svc, agents[svc].stopped())
	}

	traces := corrWaitTraces(t, jaeger, p, scenarios, start, 15*time.Second)

	// Every span that names a parent finds it in its trace (Jaeger warns
	// about the others), and a connection span is a root.
	ids := make([]string, 0, len(traces))
	for id := range traces {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		spans := traces[id]
		for _, sp := range spans {
			if sp.ParentSpanID == "" {
				continue
			}
			if _, ok := spans[sp.ParentSpanID]; !ok {
				t.Errorf("trace %s: span %s %q (%s) has parent %s, not in the trace", id, sp.SpanID, sp.Name, sp.Service, sp.ParentSpanID)
			}
			if sp.Service == corrServiceA || sp.Service == corrServiceB {
				t.Errorf("trace %s: connection span %q (%s) has a parent %s, want a root span", id, sp.Name, sp.Service, sp.ParentSpanID)
			}
		}
	}

	// Each client span of a scenario shares its trace with a span of B on
	// the scenario's port: the server's span, or B's orphan.
	for _, s := range scenarios {
		clients := corrClientSpans(traces, p, s)
		bSpans := corrServerSpans(traces, s)
		if len(clients) != s.clients {
			t.Errorf("%s: %d client spans of %s towards :%d, want %d", s.name, len(clients), corrServiceA, s.vport, s.clients)
		}
		if len(bSpans) == 0 {
			t.Errorf("%s: no span of %s on :%d", s.name, corrServiceB, s.bport)
			continue
		}
		for _, c := range clients {
			var peer *testutil.Span
			for _, sp := range traces[c.TraceID] {
				if sp.Service == corrServiceB && attr(sp, "network.local.port") == strconv.Itoa(s.bport) {
					peer = sp
					break
				}
			}
			if peer != nil {
				t.Logf("%s: trace %s\n\t%s: %s\n\t%s: %s", s.name, c.TraceID, corrServiceA, corrDescribe(c), corrServiceB, corrDescribe(peer))
				// The two ends link to each other, as the other end's
				// span ("tcpspan.link.reason": "peer").
				if !corrLinked(c, peer) || !corrLinked(peer, c) {
					t.Errorf("%s: trace %s: the ends do not link to each other (client span %s, B's span %s)",
						s.name, c.TraceID, c.SpanID, peer.SpanID)
				}
				continue
			}
			var others []string
			for _, b := range bSpans {
				others = append(others, fmt.Sprintf("\n\t\ttrace %s: %s%s", b.TraceID, corrDescribe(b), corrLinksTo(b, c)))
			}
			t.Errorf("%s: trace %s has no span of %s on :%d\n\t%s: %s%s\n\t%s spans on :%d:%s",
				s.name, c.TraceID, corrServiceB, s.bport, corrServiceA, corrDescribe(c), corrLinksTo(c, nil),
				corrServiceB, s.bport, strings.Join(others, ""))
		}
	}
}

// corrListen listens on B's address, on a port of its own.
func corrListen(t *testing.T, p *testutil.NATPath) (net.Listener, int) {
	t.Helper()
	var ln net.Listener
	p.B.Do(t, func() {
		var err error
		if ln, err = net.Listen("tcp4", netip.AddrPortFrom(p.ServerAddr, 0).String()); err != nil {
			t.Fatal(err)
		}
	})
	return ln, ln.Addr().(*net.TCPAddr).Port
}

// corrDial connects from A.
func corrDial(t *testing.T, p *testutil.NATPath, target string, timeout time.Duration) (net.Conn, error) {
	t.Helper()
	var c net.Conn
	var err error
	p.A.Do(t, func() { c, err = net.DialTimeout("tcp4", target, timeout) })
	return c, err
}

// corrServe runs serve on the first connection ln accepts, in a goroutine,
// and returns a function that waits for it to end.
func corrServe(t *testing.T, ln net.Listener, serve func(net.Conn)) (wait func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
		c, err := ln.Accept()
		if err != nil {
			t.Errorf("accept on B: %v", err)
			return
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		serve(c)
	}()
	return func() {
		select {
		case <-done:
		case <-time.After(6 * time.Second):
			t.Errorf("server on %v did not finish", ln.Addr())
		}
	}
}

// corrClean: "ping", "pong", the client closes, then the server.
func corrClean(t *testing.T, p *testutil.NATPath, vport int) *corrScenario {
	t.Helper()
	ln, bport := corrListen(t, p)
	defer ln.Close()
	s := &corrScenario{name: "clean", vport: vport, bport: bport, clients: 1}
	target := p.Forward(t, vport, bport)
	wait := corrServe(t, ln, func(c net.Conn) {
		defer c.Close()
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
			t.Errorf("clean: server read %q, %v", buf, err)
			return
		}
		c.Write([]byte("pong"))
		io.Copy(io.Discard, c) // until the client's FIN
		s.saw("B saw %v", c.RemoteAddr())
	})
	c, err := corrDial(t, p, target, 2*time.Second)
	if err != nil {
		t.Fatalf("clean: dial %s: %v", target, err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	_, err = io.ReadFull(c, buf)
	s.saw("A %v got %q, %v", c.LocalAddr(), buf, err)
	if string(buf) != "pong" {
		t.Errorf("clean: client read %q, %v", buf, err)
	}
	c.Close()
	wait()
	return s
}

// corrReset: the server takes the 18-byte request, and closes without
// reading it: the kernel resets (TCP_ABORT_ON_CLOSE).
func corrReset(t *testing.T, p *testutil.NATPath, vport int) *corrScenario {
	t.Helper()
	ln, bport := corrListen(t, p)
	defer ln.Close()
	s := &corrScenario{name: "reset", vport: vport, bport: bport, clients: 1}
	target := p.Forward(t, vport, bport)
	wait := corrServe(t, ln, func(c net.Conn) {
		unread := 0
		for deadline := time.Now().Add(3 * time.Second); unread < 18 && time.Now().Before(deadline); {
			raw, _ := c.(*net.TCPConn).SyscallConn()
			raw.Control(func(fd uintptr) { unread, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
			time.Sleep(5 * time.Millisecond)
		}
		s.saw("B saw %v, closed with %d bytes unread", c.RemoteAddr(), unread)
		c.Close()
	})
	c, err := corrDial(t, p, target, 2*time.Second)
	if err != nil {
		t.Fatalf("reset: dial %s: %v", target, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write(make([]byte, 18))
	_, err = c.Read(make([]byte, 1))
	wait()
	s.saw("A %v read: %v", c.LocalAddr(), err)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("reset: client read: %v, want connection reset by peer", err)
	}
	return s
}

// corrRefused: R forwards to a port of B where nothing listens; B resets
// the SYN (NO_SOCKET), and A's connect is refused.
func corrRefused(t *testing.T, p *testutil.NATPath, vport int) *corrScenario {
	t.Helper()
	ln, bport := corrListen(t, p)
	ln.Close()
	s := &corrScenario{name: "refused", vport: vport, bport: bport, clients: 1}
	target := p.Forward(t, vport, bport)
	c, err := corrDial(t, p, target, 2*time.Second)
	if err == nil {
		c.Close()
	}
	s.saw("A connect: %v", err)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("refused: dial %s: %v, want connection refused", target, err)
	}
	return s
}

// corrOverflow: a listener on B with a backlog of 1 that never accepts.
// A connects until a handshake times out: the first ones wait in the
// accept queue, then the queue is full and B drops the SYN (B's overflow
// span). It stops at the first drop: more dropped handshakes within a
// second from the same address (R's, to B) to the same port would be folded
// by B's agent into one storm span, which links to a sample of its
// connections rather than sharing each one's trace.
func corrOverflow(t *testing.T, p *testutil.NATPath, vport int) *corrScenario {
	t.Helper()
	var fd, bport int
	p.B.Do(t, func() {
		var err error
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
			t.Fatal(err)
		}
		if err = unix.Bind(fd, &unix.SockaddrInet4{Addr: p.ServerAddr.As4()}); err != nil {
			t.Fatal(err)
		}
		if err = unix.Listen(fd, 1); err != nil {
			t.Fatal(err)
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			t.Fatal(err)
		}
		bport = sa.(*unix.SockaddrInet4).Port
	})
	s := &corrScenario{name: "overflow", vport: vport, bport: bport}
	target := p.Forward(t, vport, bport)
	var queued []net.Conn
	for range 4 {
		s.clients++
		c, err := corrDial(t, p, target, time.Second)
		if err == nil {
			s.saw("A %v connected (queued)", c.LocalAddr())
			queued = append(queued, c)
			continue
		}
		s.saw("A connect: %v", err)
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("overflow: dial %s: %v, want a timeout", target, err)
		}
		break
	}
	if len(queued) == 0 || len(queued) == s.clients {
		t.Errorf("overflow: %d of %d connects completed, want some queued and then one dropped", len(queued), s.clients)
	}
	// The listener goes, resetting what it queued; then the clients close.
	unix.Close(fd)
	time.Sleep(100 * time.Millisecond)
	for _, c := range queued {
		c.Close()
	}
	return s
}

// corrWaitTraces polls Jaeger until every scenario has its client spans
// (service A) and a span of B on its port, or timeout, and returns all the
// traces holding a span of either agent, by trace id, their spans by span
// id.
func corrWaitTraces(t *testing.T, jaeger *testutil.Jaeger, p *testutil.NATPath, scenarios []*corrScenario, since time.Time, timeout time.Duration) map[string]map[string]*testutil.Span {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		traces := make(map[string]map[string]*testutil.Span)
		for _, svc := range []string{corrServiceA, corrServiceB} {
			for _, tr := range jaeger.Traces(t, svc, since) {
				for i := range tr.Spans {
					sp := &tr.Spans[i]
					if traces[sp.TraceID] == nil {
						traces[sp.TraceID] = make(map[string]*testutil.Span)
					}
					traces[sp.TraceID][sp.SpanID] = sp
				}
			}
		}
		var missing []string
		for _, s := range scenarios {
			if n := len(corrClientSpans(traces, p, s)); n < s.clients {
				missing = append(missing, fmt.Sprintf("%s: %d of %d client spans", s.name, n, s.clients))
			}
			if len(corrServerSpans(traces, s)) == 0 {
				missing = append(missing, fmt.Sprintf("%s: no span of %s on :%d", s.name, corrServiceB, s.bport))
			}
		}
		if len(missing) == 0 {
			return traces
		}
		if time.Now().After(deadline) {
			t.Fatalf("jaeger, after %v: %s", timeout, strings.Join(missing, "; "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// corrClientSpans returns A's client spans towards the scenario's virtual
// port, in start order.
func corrClientSpans(traces map[string]map[string]*testutil.Span, p *testutil.NATPath, s *corrScenario) []*testutil.Span {
	return corrSpans(traces, func(sp *testutil.Span) bool {
		return sp.Service == corrServiceA && sp.Kind == testutil.SpanKindClient &&
			attr(sp, "network.peer.address") == p.VirtualAddr.String() && attr(sp, "network.peer.port") == strconv.Itoa(s.vport)
	})
}

// corrServerSpans returns B's spans on the scenario's port, in start order.
func corrServerSpans(traces map[string]map[string]*testutil.Span, s *corrScenario) []*testutil.Span {
	return corrSpans(traces, func(sp *testutil.Span) bool {
		return sp.Service == corrServiceB && attr(sp, "network.local.port") == strconv.Itoa(s.bport)
	})
}

func corrSpans(traces map[string]map[string]*testutil.Span, pred func(*testutil.Span) bool) []*testutil.Span {
	var out []*testutil.Span
	for _, spans := range traces {
		for _, sp := range spans {
			if pred(sp) {
				out = append(out, sp)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// corrDescribe is one span in one line: name, status, ends, links.
func corrDescribe(sp *testutil.Span) string {
	status := sp.Status.Code.String()
	if sp.Status.Message != "" {
		status += ": " + sp.Status.Message
	}
	d := fmt.Sprintf("span %s %s %q [%s] %s:%s -> %s:%s", sp.SpanID, sp.Kind, sp.Name, status,
		attr(sp, "network.local.address"), attr(sp, "network.local.port"),
		attr(sp, "network.peer.address"), attr(sp, "network.peer.port"))
	if n := sp.Connections(); n > 1 {
		d += fmt.Sprintf(" (storm of %d)", n)
	}
	if sp.ParentSpanID != "" {
		d += " parent " + sp.ParentSpanID
	}
	for _, l := range sp.Links {
		d += fmt.Sprintf(" link %s/%s (%v)", l.TraceID, l.SpanID, l.Attributes["tcpspan.link.reason"])
	}
	return d
}

// corrLinked says whether sp links to other as its peer.
func corrLinked(sp, other *testutil.Span) bool {
	for _, l := range sp.Links {
		if l.TraceID == other.TraceID && l.SpanID == other.SpanID && fmt.Sprint(l.Attributes["tcpspan.link.reason"]) == "peer" {
			return true
		}
	}
	return false
}

// corrLinksTo says whether sp links to other's trace (any trace when other
// is nil), as a hint when they do not share one.
func corrLinksTo(sp, other *testutil.Span) string {
	for _, l := range sp.Links {
		if other == nil || l.TraceID == other.TraceID {
			return " (links to trace " + l.TraceID + ")"
		}
	}
	return ""
}
