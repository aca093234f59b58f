package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/tcpspan/tcpspan/internal/testutil"
)

// appRequest is one line of `otelapp client`: a request made in its own
// trace, by otelhttp's client span span_id.
type appRequest struct {
	TraceID string `json:"trace_id"`
	SpanID  string `json:"span_id"`
	Status  int    `json:"status"`
	Error   string `json:"error"`
}

// startApp starts an otelapp server command and waits for its "listening"
// line. It is stopped at cleanup.
func startApp(t *testing.T, bin string, env []string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	})
	line, _ := bufio.NewReader(out).ReadString('\n')
	if !strings.HasPrefix(line, "listening") {
		t.Fatalf("%s %v: %q", bin, args, line)
	}
}

// appRequests runs `otelapp client` for n requests to url.
func appRequests(t *testing.T, bin string, env []string, url string, n int) []appRequest {
	t.Helper()
	cmd := exec.Command(bin, "client", "-url", url, "-n", strconv.Itoa(n))
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("otelapp client %s: %v\n%s", url, err, out)
	}
	var reqs []appRequest
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var r appRequest
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("otelapp client: %q: %v", line, err)
		}
		reqs = append(reqs, r)
	}
	return reqs
}

// TestDiagnosisInAppTrace: a shop, instrumented with otelhttp, calls a
// forwarder that closes its connections with the request unread (the
// seed's rinetd) and a healthy backend. The shop's own trace of the failed
// request, fetched from Jaeger, must hold tcpspan's diagnosis under the
// shop's request span, linked to the connection spans, which link back to
// the shop's span. The answered request's trace gets nothing extra.
//
// The processes run on the host's loopback, and the agent is filtered to
// the two servers' ports: the applications export to the same Jaeger,
// which a network namespace would cut them off from.
func TestDiagnosisInAppTrace(t *testing.T) {
	testutil.RequireBPF(t)
	jaeger := testutil.StartJaeger(t)
	bin := buildAgent(t)
	app := toolBinary(t, "otelapp")
	forwarder, backend := freeHostPort(t), freeHostPort(t)
	port := func(hostport string) string { return hostport[strings.LastIndex(hostport, ":")+1:] }

	since := time.Now()
	a := startAgentWith(t, bin, []string{"-port", port(forwarder), "-port", port(backend),
		"-orphan-idle", "500ms", "-health-interval", "0"},
		"OTEL_METRICS_EXPORTER=none", "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+jaeger.OTLPGRPC)
	otlp := append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+jaeger.OTLPGRPC, "OTEL_BSP_SCHEDULE_DELAY=100")
	startApp(t, app, append(otlp, "OTEL_SERVICE_NAME=e2e-forwarder"), "abort-server", "-listen", forwarder, "-wait", "200ms")
	startApp(t, app, append(otlp, "OTEL_SERVICE_NAME=e2e-backend"), "server", "-listen", backend)
	shop := append(otlp, "OTEL_SERVICE_NAME=e2e-shop")
	failed := appRequests(t, app, shop, "http://"+forwarder+"/checkout", 1)[0]
	ok := appRequests(t, app, shop, "http://"+backend+"/checkout", 1)[0]
	if failed.Error == "" || ok.Status != 200 {
		t.Fatalf("requests: to the forwarder %+v (want an error), to the backend %+v (want 200)", failed, ok)
	}
	time.Sleep(300 * time.Millisecond) // the forwarder's record, then its linger
	a.stop(t)

	traces := waitAppTraces(t, jaeger, since, failed.TraceID, ok.TraceID)
	trace := traces[failed.TraceID]
	var diags []*testutil.Span
	for i := range trace {
		sp := &trace[i]
		if sp.ParentSpanID != "" && !hasSpan(trace, sp.ParentSpanID) {
			t.Errorf("span %q (%s) has a parent %s missing from the trace", sp.Name, sp.Service, sp.ParentSpanID)
		}
		if _, ok := sp.Attributes["tcpspan.diagnosis.of"]; ok {
			diags = append(diags, sp)
		}
	}
	var server *testutil.Span
	for _, d := range diags {
		t.Logf("diagnosis in the shop's trace: %q by %s, under %s: %s", d.Name, d.Service, d.ParentSpanID, d.Status.Message)
		if d.ParentSpanID != failed.SpanID || !isError(d) {
			t.Errorf("diagnosis %q: parent %s, status %v; want a child of the shop's request span %s, Error", d.Name, d.ParentSpanID, d.Status.Code, failed.SpanID)
		}
		if d.Attributes["tcpspan.diagnosis.of"] == "server" {
			server = d
		}
	}
	if server == nil {
		t.Fatalf("no server-side diagnosis in the shop's trace %s; spans:\n%s", failed.TraceID, spanList(trace))
	}
	if server.Service != "e2e-forwarder" || server.Name != "TCP reset sent" ||
		!strings.Contains(server.Status.Message, "TCP_ABORT_ON_CLOSE") || !strings.Contains(server.Status.Message, "unread") {
		t.Errorf("server diagnosis %q by %s: %q; want TCP reset sent by e2e-forwarder, TCP_ABORT_ON_CLOSE with bytes unread",
			server.Name, server.Service, server.Status.Message)
	}
	// The diagnosis links to the forwarder's connection span, which links
	// back to the shop's request span.
	conns := spansOf(t, jaeger, "e2e-forwarder", since)
	var connSpan *testutil.Span
	for i := range conns {
		if len(server.Links) == 1 && conns[i].SpanID == server.Links[0].SpanID && conns[i].TraceID == server.Links[0].TraceID {
			connSpan = &conns[i]
		}
	}
	if connSpan == nil {
		t.Fatalf("the diagnosis links to %v, not to a connection span of the forwarder", server.Links)
	}
	linked := false
	for _, l := range connSpan.Links {
		linked = linked || l.TraceID == failed.TraceID && l.SpanID == failed.SpanID && l.Attributes["tcpspan.link.reason"] == "traceparent"
	}
	if !linked || connSpan.Attributes["tcpspan.traceparent.count"] != int64(1) {
		t.Errorf("the forwarder's connection span links %v, count %v: want a traceparent link to %s/%s", connSpan.Links,
			connSpan.Attributes["tcpspan.traceparent.count"], failed.TraceID, failed.SpanID)
	}
	for _, sp := range traces[ok.TraceID] {
		if _, ok := sp.Attributes["tcpspan.diagnosis.of"]; ok {
			t.Errorf("the answered request's trace has a diagnosis: %q %s", sp.Name, sp.Status.Message)
		}
	}

	// The HTML report draws the reset with the shop's request span and
	// the diagnosis in the shop's trace beside the connection.
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed (scripts/deps.sh installs it): %v", err)
	}
	page := filepath.Join(t.TempDir(), "report.html")
	writeReport(t, buildReport(t), jaeger, since, page)
	doc := browserDOM(t, chromium, page)
	ex := findNode(doc, func(n *html.Node) bool {
		return n.Data == "section" && attrOf(n, "data-kind") == "tcp.rst_sent TCP_ABORT_ON_CLOSE"
	})
	if ex == nil {
		t.Fatal("the report has no timeline of the TCP_ABORT_ON_CLOSE reset")
	}
	roles := map[string]string{} // span id -> role
	for _, l := range findAll(ex, func(n *html.Node) bool { return n.Data == "g" && hasClass(n, "lane") }) {
		roles[attrOf(l, "data-span-id")] = attrOf(l, "data-role")
	}
	t.Logf("the reset's timeline: %v", roles)
	if roles[connSpan.SpanID] == "" || roles[failed.SpanID] != "the application's request" ||
		roles[server.SpanID] != "diagnosis in the application's trace" {
		t.Errorf("the reset's timeline draws %v; want the forwarder's connection %s, the shop's request %s and the diagnosis %s",
			roles, connSpan.SpanID, failed.SpanID, server.SpanID)
	}
}

// waitAppTraces fetches the shop's traces until those with the ids are
// complete enough: the failed one with a diagnosis, or the time is up.
func waitAppTraces(t *testing.T, jaeger *testutil.Jaeger, since time.Time, ids ...string) map[string][]testutil.Span {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := map[string][]testutil.Span{}
		for _, tr := range jaeger.Traces(t, "e2e-shop", since) {
			got[tr.TraceID] = tr.Spans
		}
		done := len(got[ids[0]]) > 0 && len(got[ids[1]]) > 0
		for _, sp := range got[ids[0]] {
			if sp.Attributes["tcpspan.diagnosis.of"] == "server" {
				return got
			}
		}
		if time.Now().After(deadline) {
			if !done {
				t.Fatalf("Jaeger has no trace %v of e2e-shop since %v", ids, since)
			}
			return got
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func hasSpan(spans []testutil.Span, id string) bool {
	for _, sp := range spans {
		if sp.SpanID == id {
			return true
		}
	}
	return false
}

func spanList(spans []testutil.Span) string {
	var b strings.Builder
	for _, sp := range spans {
		b.WriteString("  " + sp.Service + " " + sp.Name + " " + sp.SpanID + " parent " + sp.ParentSpanID + " " + sp.Status.Message + "\n")
	}
	return b.String()
}
