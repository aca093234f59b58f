// Package e2e runs tcpspan as users do: the built binary, exporting over
// OTLP to a real Jaeger (directly, or through the OpenTelemetry Collector
// configured by otel-collector.yaml), while real sockets in a network
// namespace play the scenarios. Assertions are on what Jaeger's API returns.
package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpspan/tcpspan/internal/testutil"
)

// The test binary doubles as the scenario's server process, so that the
// server has its own pid and OTEL_SERVICE_NAME: `e2e.test` re-executed with
// E2E_ROLE=abort-server listens on E2E_ADDR, accepts one connection, and
// closes it without reading (the seed's rinetd, in short).
func TestMain(m *testing.M) {
	if os.Getenv("E2E_ROLE") == "abort-server" {
		abortServer(os.Getenv("E2E_ADDR"))
		return
	}
	os.Exit(m.Run())
}

func abortServer(addr string) {
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	fmt.Println("listening")
	c, err := ln.Accept()
	if err != nil {
		os.Exit(1)
	}
	// Wait for the request to arrive, unread, then close. Stay alive a
	// little, as servers do: the agent reads the service name from the
	// process's environment when the connection's record arrives.
	time.Sleep(200 * time.Millisecond)
	c.Close()
	ln.Close()
	time.Sleep(time.Second)
}

// agent is a running tcpspan process.
type agent struct {
	cmd     *exec.Cmd
	stderr  *os.File
	logPath string
}

// stopped returns the agent's final log line, with its counts.
func (a *agent) stopped() string {
	b, _ := os.ReadFile(a.logPath)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "msg=stopped") {
			return line
		}
	}
	return ""
}

func buildAgent(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tcpspan")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/tcpspan").CombinedOutput()
	if err != nil {
		t.Fatalf("build tcpspan: %v\n%s", err, out)
	}
	return bin
}

func startAgent(t *testing.T, bin string, ns *testutil.NetNS, env ...string) *agent {
	t.Helper()
	// Jaeger takes no metrics: the agent's own are tested through the
	// collector (selfmetrics_test.go).
	return startAgentWith(t, bin, []string{"-netns", ns.Path, "-orphan-idle", "500ms", "-health-interval", "0"},
		append([]string{"OTEL_METRICS_EXPORTER=none"}, env...)...)
}

// startAgentWith starts the agent with these arguments and variables and
// waits until it traces.
func startAgentWith(t *testing.T, bin string, args []string, env ...string) *agent {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "tcpspan.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), append([]string{"OTEL_BSP_SCHEDULE_DELAY=100"}, env...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &agent{cmd: cmd, stderr: logFile, logPath: logPath}
	t.Cleanup(func() {
		a.stop(t)
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("tcpspan log:\n%s", b)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(logPath)
		if strings.Contains(string(b), "msg=tracing") {
			return a
		}
		if strings.Contains(string(b), "tcpspan: ") {
			break // the one line of a failed start
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(logPath)
	t.Fatalf("tcpspan did not start:\n%s", b)
	return nil
}

// stop sends SIGINT, as a user would, and waits for the flush.
func (a *agent) stop(t *testing.T) { a.stopWith(t, syscall.SIGINT) }

// stopWith sends sig and waits for the agent to exit, which must be clean.
func (a *agent) stopWith(t *testing.T, sig syscall.Signal) {
	if a.cmd.ProcessState != nil {
		return
	}
	a.cmd.Process.Signal(sig)
	done := make(chan error, 1)
	go func() { done <- a.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("tcpspan exited: %v", err)
		}
	case <-time.After(20 * time.Second):
		a.cmd.Process.Kill()
		t.Errorf("tcpspan did not stop within 20 s of %v", sig)
	}
}

// scenario drives, inside ns: a clean connection, a refused connect, and a
// server process (service "checkout") closing a connection with 18 bytes
// unread. It returns the facts the spans must show.
type scenario struct {
	cleanPort, refusedPort, abortPort int
	abortServerPID                    int
	abortClient                       string // client address of the aborted connection
}

func runScenarios(t *testing.T, ns *testutil.NetNS) scenario {
	t.Helper()
	var s scenario
	// A clean exchange.
	ln, cl, srv := ns.ConnectedPair(t, "tcp4", "127.0.0.1:0")
	s.cleanPort = ln.Addr().(*net.TCPAddr).Port
	cl.Write([]byte("ping"))
	io.ReadFull(srv, make([]byte, 4))
	cl.Close()
	io.ReadAll(srv)
	srv.Close()

	// A refused connect: nothing listens on the closed listener's port.
	s.refusedPort = s.cleanPort
	ln.Close()
	ns.Do(t, func() {
		if c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", s.refusedPort)); err == nil {
			c.Close()
			t.Error("connect to a closed port succeeded")
		}
	})

	// The server process closes with the request unread.
	s.abortPort = ns.FreePort(t)
	self, _ := os.Executable()
	server := exec.Command("ip", "netns", "exec", ns.Name, self)
	server.Env = append(os.Environ(), "E2E_ROLE=abort-server", "OTEL_SERVICE_NAME=checkout",
		fmt.Sprintf("E2E_ADDR=127.0.0.1:%d", s.abortPort))
	stdout, _ := server.StdoutPipe()
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "listening\n" {
		t.Fatalf("abort server: %q", line)
	}
	s.abortServerPID = server.Process.Pid
	var victim net.Conn
	ns.Do(t, func() {
		var err error
		if victim, err = net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", s.abortPort)); err != nil {
			t.Fatal(err)
		}
	})
	s.abortClient = victim.LocalAddr().String()
	victim.Write(make([]byte, 18))
	if _, err := victim.Read(make([]byte, 1)); err == nil || !strings.Contains(err.Error(), "reset") {
		t.Errorf("client read: %v, want connection reset by peer", err)
	}
	victim.Close()
	t.Cleanup(func() { server.Wait() })
	return s
}

func TestSpansInJaeger(t *testing.T) {
	testutil.RequireBPF(t)
	jaeger := testutil.StartJaeger(t)
	bin := buildAgent(t)
	for _, proto := range []struct{ name, endpoint, protocol, insecure string }{
		{"grpc", "http://" + jaeger.OTLPGRPC, "grpc", ""},
		{"http", jaeger.OTLPHTTP, "http/protobuf", ""},
		// A bare host:port, as the specification allows for gRPC.
		{"grpc-host-port", jaeger.OTLPGRPC, "grpc", "true"},
	} {
		t.Run(proto.name, func(t *testing.T) {
			ns := testutil.NewNetNS(t)
			start := time.Now()
			a := startAgent(t, bin, ns, "OTEL_EXPORTER_OTLP_ENDPOINT="+proto.endpoint,
				"OTEL_EXPORTER_OTLP_PROTOCOL="+proto.protocol, "OTEL_EXPORTER_OTLP_INSECURE="+proto.insecure,
				"OTEL_SERVICE_NAME=tcpspan-e2e-"+proto.name)
			s := runScenarios(t, ns)
			time.Sleep(time.Second) // orphan idle, then the batch
			a.stop(t)
			checkSpans(t, jaeger, s, start, "tcpspan-e2e-"+proto.name)
		})
	}
}

func checkSpans(t *testing.T, jaeger *testutil.Jaeger, s scenario, since time.Time, agentService string) {
	t.Helper()
	self := strings.TrimSpace(readFile("/proc/self/comm"))
	pid := strconv.Itoa(os.Getpid())

	// Clean: a client and a server span, status unset, owned by this test.
	mine := spansOf(t, jaeger, self, since)
	client := find(mine, func(sp *testutil.Span) bool {
		return sp.Kind == testutil.SpanKindClient && attr(sp, "network.peer.port") == strconv.Itoa(s.cleanPort) && !isError(sp)
	})
	server := find(mine, func(sp *testutil.Span) bool {
		return sp.Kind == testutil.SpanKindServer && sp.Name == fmt.Sprintf("TCP accept :%d", s.cleanPort)
	})
	if client == nil || server == nil {
		t.Fatalf("clean connection: client %v server %v among %d spans of %s", client, server, len(mine), self)
	}
	for _, sp := range []*testutil.Span{client, server} {
		if sp.Status.Code != testutil.StatusUnset || resourcePID(sp) != pid || attr(sp, "process.pid") != pid {
			t.Errorf("clean %s span: status %s, owner pid %s (resource %s), want unset and %s",
				sp.Kind, sp.Status.Code, attr(sp, "process.pid"), resourcePID(sp), pid)
		}
	}

	// Refused: the client's span is an error with the refusal; the RST for
	// no socket has no owner, so it sits under the agent's service.
	refused := find(mine, func(sp *testutil.Span) bool {
		return sp.Kind == testutil.SpanKindClient && attr(sp, "error.type") == "tcp.refused"
	})
	if refused == nil || !strings.Contains(refused.Status.Message, "connection refused") || !hasEvent(refused, "tcp.rst_received") {
		t.Errorf("refused client span: %+v", refused)
	}
	noSocket := find(spansOf(t, jaeger, agentService, since), func(sp *testutil.Span) bool {
		return attr(sp, "tcpspan.reset.reason") == "NO_SOCKET" && attr(sp, "network.local.port") == strconv.Itoa(s.refusedPort)
	})
	if noSocket == nil || !isError(noSocket) || noSocket.Kind != testutil.SpanKindServer {
		t.Fatalf("NO_SOCKET reset span under %s: %+v", agentService, noSocket)
	}
	if noSocket.Name != fmt.Sprintf("TCP reset :%d", s.refusedPort) {
		t.Errorf("NO_SOCKET reset span named %q, want TCP reset :%d", noSocket.Name, s.refusedPort)
	}
	// Nobody acted but the kernel: not the agent's process either. An
	// instant, it still lasts long enough for Jaeger to take as is.
	if resourcePID(noSocket) != "" || noSocket.Attributes["@jaeger@warnings"] != nil {
		t.Errorf("NO_SOCKET reset span: resource process.pid %q, Jaeger warnings %v; want neither",
			resourcePID(noSocket), noSocket.Attributes["@jaeger@warnings"])
	}
	if refused != nil && refused.Name != "TCP connect" {
		t.Errorf("refused client span named %q, want TCP connect", refused.Name)
	}

	// The abort: under the server's own service, attributed to its pid,
	// with the close and the reset as events.
	checkout := spansOf(t, jaeger, "checkout", since)
	abort := find(checkout, func(sp *testutil.Span) bool { return sp.Kind == testutil.SpanKindServer && isError(sp) })
	if abort == nil {
		t.Fatalf("no error span under service checkout (%d spans)", len(checkout))
	}
	wantDesc := fmt.Sprintf("RST sent (TCP_ABORT_ON_CLOSE): e2e.test[%d] closed fd", s.abortServerPID)
	if !strings.HasPrefix(abort.Status.Message, wantDesc) || !strings.Contains(abort.Status.Message, "with 18 bytes unread") {
		t.Errorf("description %q, want %q... with 18 bytes unread", abort.Status.Message, wantDesc)
	}
	if attr(abort, "tcpspan.reset.reason") != "TCP_ABORT_ON_CLOSE" || attr(abort, "error.type") != "tcp.rst_sent" ||
		attr(abort, "tcpspan.reset.context") != "process" {
		t.Errorf("abort attributes: %v", abort.Attributes)
	}
	if resourcePID(abort) != strconv.Itoa(s.abortServerPID) {
		t.Errorf("abort span resource process.pid %s, want the server's %d", resourcePID(abort), s.abortServerPID)
	}
	if !hasEvent(abort, "tcp.close") || !hasEvent(abort, "tcp.rst_sent") {
		t.Errorf("abort events: %v", eventNames(abort))
	}
	reset := find(mine, func(sp *testutil.Span) bool {
		return sp.Kind == testutil.SpanKindClient && attr(sp, "network.peer.port") == strconv.Itoa(s.abortPort)
	})
	if reset == nil || !isError(reset) || !hasEvent(reset, "tcp.rst_received") {
		t.Errorf("the aborted client's span: %+v", reset)
	}

	// No span of the run has an address in its name.
	all := append(append(mine, checkout...), spansOf(t, jaeger, agentService, since)...)
	checkSpanNames(t, all)
}

func spansOf(t *testing.T, jaeger *testutil.Jaeger, service string, since time.Time) []testutil.Span {
	t.Helper()
	var spans []testutil.Span
	for _, tr := range jaeger.Traces(t, service, since) {
		spans = append(spans, tr.ServiceSpans(service)...)
	}
	return spans
}

func find(spans []testutil.Span, pred func(*testutil.Span) bool) *testutil.Span {
	for i := range spans {
		if pred(&spans[i]) {
			return &spans[i]
		}
	}
	return nil
}

// attr returns a span attribute as text ("" when absent).
func attr(sp *testutil.Span, key string) string {
	if sp == nil {
		return ""
	}
	if v, ok := sp.Attributes[key]; ok {
		return fmt.Sprint(v)
	}
	return ""
}

// resourcePID returns the span's resource process.pid as text.
func resourcePID(sp *testutil.Span) string {
	if v, ok := sp.Resource["process.pid"]; ok {
		return fmt.Sprint(v)
	}
	return ""
}

func hasEvent(sp *testutil.Span, name string) bool {
	for _, e := range sp.Events {
		if e.Name == name {
			return true
		}
	}
	return false
}

func eventNames(sp *testutil.Span) []string {
	var names []string
	for _, e := range sp.Events {
		names = append(names, e.Name)
	}
	return names
}

func isError(sp *testutil.Span) bool { return sp.Status.Code == testutil.StatusError }

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// toolBinary builds one of tools/ with scripts/tools.sh and returns its path.
func toolBinary(t *testing.T, name string) string {
	t.Helper()
	cmd := exec.Command("../scripts/tools.sh", name)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("build %s: %v", name, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

// startCollector runs the collector with the repository's
// otel-collector.yaml, its loopback ports moved to free ones and its trace
// exporter pointed at jaeger. It returns the OTLP/gRPC endpoint.
func startCollector(t *testing.T, jaeger *testutil.Jaeger) string {
	t.Helper()
	config, err := os.ReadFile("../otel-collector.yaml")
	if err != nil {
		t.Fatal(err)
	}
	grpc, http, health := freeHostPort(t), freeHostPort(t), freeHostPort(t)
	text := strings.NewReplacer(
		"127.0.0.1:4317", grpc,
		"127.0.0.1:4318", http,
		"127.0.0.1:13133", health,
		"127.0.0.1:14317", jaeger.OTLPGRPC,
		// The collector's own metrics listen on localhost:8888 by default,
		// where another collector on this host may already be.
		"\nservice:\n", "\nservice:\n  telemetry:\n    metrics:\n      level: none\n",
	).Replace(string(config))
	if !strings.Contains(text, "level: none") {
		t.Fatal("otel-collector.yaml has no top-level service section")
	}
	runCollector(t, text, grpc)
	return grpc
}

// runCollector runs the collector with config, a YAML text, and waits
// until it listens for OTLP/gRPC on grpc. Cleanup stops it, and logs its
// output if the test failed.
func runCollector(t *testing.T, config, grpc string) {
	t.Helper()
	bin := toolBinary(t, "otelcol")
	dir := t.TempDir()
	path := filepath.Join(dir, "otel-collector.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "otelcol.log")
	logFile, _ := os.Create(logPath)
	cmd := exec.Command(bin, "--config", path)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("collector log:\n%s", readFile(logPath))
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", grpc, 100*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("collector did not start:\n%s", readFile(logPath))
}

func freeHostPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// The same scenarios with the collector from otel-collector.yaml between
// the agent and Jaeger.
func TestSpansThroughCollector(t *testing.T) {
	testutil.RequireBPF(t)
	jaeger := testutil.StartJaeger(t)
	collector := startCollector(t, jaeger)
	bin := buildAgent(t)
	ns := testutil.NewNetNS(t)
	start := time.Now()
	a := startAgent(t, bin, ns, "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+collector, "OTEL_SERVICE_NAME=tcpspan-e2e-collector")
	s := runScenarios(t, ns)
	time.Sleep(time.Second)
	a.stop(t)
	time.Sleep(3 * time.Second) // the collector's batch timeout is 2 s
	checkSpans(t, jaeger, s, start, "tcpspan-e2e-collector")
}
