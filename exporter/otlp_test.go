package exporter

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/tcpspan/tcpspan/conn"
	"github.com/tcpspan/tcpspan/internal/otlpwire"
	"github.com/tcpspan/tcpspan/internal/version"
	tcpsemconv "github.com/tcpspan/tcpspan/semconv"
)

// memClient is an OTLP client that keeps what it is sent, after a round
// trip through the protobuf wire format, as a collector would see it.
type memClient struct {
	mu     sync.Mutex
	got    []*tracepb.ResourceSpans
	block  chan struct{} // if set, uploads wait for it to close
	closed bool
}

func (m *memClient) Start(context.Context) error { return nil }

func (m *memClient) Stop(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

func (m *memClient) UploadTraces(ctx context.Context, rs []*tracepb.ResourceSpans) error {
	if m.block != nil {
		select {
		case <-m.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	b, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: rs})
	if err != nil {
		return err
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.got = append(m.got, req.ResourceSpans...)
	return nil
}

// gotSpan is one span received, with its resource and scope.
type gotSpan struct {
	*tracepb.Span
	resource *resourcepb.Resource
	scope    *tracepb.ScopeSpans
}

func (m *memClient) spans() []gotSpan {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []gotSpan
	for _, rs := range m.got {
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				out = append(out, gotSpan{Span: sp, resource: rs.Resource, scope: ss})
			}
		}
	}
	return out
}

func newTestExporter(t *testing.T, opts ...Option) (*Exporter, *memClient) {
	t.Helper()
	mem := &memClient{}
	base, err := BaseResource(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(base, append([]Option{WithClient(mem), WithBatchTimeout(time.Millisecond),
		WithServiceResolver(func(p conn.Process) string { return p.Comm + "-svc" })}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return e, mem
}

func resourceValue(s gotSpan, key string) string {
	for _, kv := range s.resource.GetAttributes() {
		if kv.Key == key {
			return anyText(kv.Value)
		}
	}
	return ""
}

// anyText renders an attribute value as text, whatever its type.
func anyText(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	}
	return fmt.Sprintf("%v", v)
}

func nanos(ns uint64) time.Time { return time.Unix(0, int64(ns)) }

func TestExportSendsOTLP(t *testing.T) {
	e, mem := newTestExporter(t)
	abort := rinetdAbort("TCP_ABORT_ON_CLOSE")
	e.Export(abort)
	e.Export(cleanClient())
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := mem.spans()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	var s gotSpan
	for _, x := range spans {
		if x.Kind == tracepb.Span_SPAN_KIND_SERVER {
			s = x
		}
	}
	want := Map(abort)
	if s.Name != want.Name || !nanos(s.StartTimeUnixNano).Equal(abort.Start) || !nanos(s.EndTimeUnixNano).Equal(abort.End) {
		t.Errorf("span %q %v-%v, want %q %v-%v", s.Name, nanos(s.StartTimeUnixNano), nanos(s.EndTimeUnixNano), want.Name, abort.Start, abort.End)
	}
	if s.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || s.Status.GetMessage() != want.StatusDescription {
		t.Errorf("status %v %q, want error %q", s.Status.GetCode(), s.Status.GetMessage(), want.StatusDescription)
	}
	if len(s.Events) != len(abort.Events) {
		t.Fatalf("%d events, want %d", len(s.Events), len(abort.Events))
	}
	for i, ev := range s.Events {
		if !nanos(ev.TimeUnixNano).Equal(abort.Events[i].Time) || ev.Name != want.Events[i].Name {
			t.Errorf("event %d: %s at %v, want %s at %v", i, ev.Name, nanos(ev.TimeUnixNano), want.Events[i].Name, abort.Events[i].Time)
		}
	}
	if s.scope.Scope.GetName() != instrumentationName || s.scope.Scope.GetVersion() != version.Version() ||
		s.scope.SchemaUrl != tcpsemconv.SchemaURL {
		t.Errorf("scope %v %q", s.scope.Scope, s.scope.SchemaUrl)
	}
	if len(s.TraceId) != 16 || len(s.SpanId) != 8 {
		t.Errorf("trace id %x, span id %x", s.TraceId, s.SpanId)
	}
	if got := resourceValue(s, string(semconv.ServiceNameKey)); got != "rinetd-svc" {
		t.Errorf("service.name %q, want the owner's service", got)
	}
	if got := resourceValue(s, string(semconv.ProcessPIDKey)); got != "812" {
		t.Errorf("process.pid %q", got)
	}
	if resourceValue(s, string(semconv.HostNameKey)) == "" {
		t.Error("no host.name")
	}
	if len(s.ParentSpanId) != 0 {
		t.Error("a connection span must be a root span")
	}
	st := e.Stats()
	if st.Recorded != 2 || st.Exported != 2 || st.Dropped() != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestTailDecision(t *testing.T) {
	e, mem := newTestExporter(t, WithCleanRatio(0))
	e.Export(cleanClient())
	e.Export(cleanServer())
	e.Export(refused())
	e.Export(retransmitting())
	e.Shutdown(context.Background())
	if got := len(mem.spans()); got != 2 {
		t.Errorf("%d spans exported, want the 2 with problems", got)
	}
	if st := e.Stats(); st.SampledOut != 2 || st.Recorded != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestSingleServiceAndUnknownOwner(t *testing.T) {
	e, mem := newTestExporter(t, WithSingleService(true), WithAgentService("edge-agent"))
	e.Export(rinetdAbort("TCP_ABORT_ON_CLOSE"))
	e.Shutdown(context.Background())
	if got := resourceValue(mem.spans()[0], string(semconv.ServiceNameKey)); got != "edge-agent" {
		t.Errorf("service.name %q, want the agent's", got)
	}

	e, mem = newTestExporter(t, WithAgentService("edge-agent"))
	orphan := noSocket() // nobody listens: no owner
	orphan.Owner = conn.Process{}
	e.Export(orphan)
	e.Shutdown(context.Background())
	s := mem.spans()[0]
	if got := resourceValue(s, string(semconv.ServiceNameKey)); got != "edge-agent" {
		t.Errorf("service.name %q for an ownerless connection, want the agent's", got)
	}
	// The agent did not act: its own process is not named.
	if pid, exe := resourceValue(s, string(semconv.ProcessPIDKey)), resourceValue(s, string(semconv.ProcessExecutableNameKey)); pid != "" || exe != "" {
		t.Errorf("process.pid %q, process.executable.name %q on an ownerless connection, want none", pid, exe)
	}
	// An instant lasts 1 ns: Jaeger flags a span that ends as it starts.
	if s.EndTimeUnixNano != s.StartTimeUnixNano+1 {
		t.Errorf("span %d-%d, want 1 ns long", s.StartTimeUnixNano, s.EndTimeUnixNano)
	}
}

func TestResourcesAreBounded(t *testing.T) {
	e, mem := newTestExporter(t, WithMaxServices(2))
	for i := 0; i < 5; i++ {
		c := rinetdAbort("TCP_ABORT_ON_CLOSE")
		c.Owner = conn.Process{PID: uint32(1000 + i), Comm: "p"}
		e.Export(c)
	}
	if n := e.Stats().Services; n != 2 {
		t.Errorf("%d resources kept, want 2", n)
	}
	e.Shutdown(context.Background())
	spans := mem.spans()
	if len(spans) != 5 {
		t.Fatalf("%d spans, want 5: spans of forgotten resources must still be sent", len(spans))
	}
	pids := map[string]bool{}
	for _, s := range spans {
		pids[resourceValue(s, string(semconv.ProcessPIDKey))] = true
	}
	if len(pids) != 5 {
		t.Errorf("resource pids %v, want 5 distinct", pids)
	}
}

// The owner's own OTEL_SERVICE_NAME, read from a real process.
func TestServiceNameFromProcessEnvironment(t *testing.T) {
	cmd := exec.Command("sleep", "5")
	cmd.Env = append(os.Environ(), "OTEL_SERVICE_NAME=checkout")
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start sleep: %v", err)
	}
	defer cmd.Process.Kill()
	// Until the child's exec is complete, /proc shows the parent's
	// environment, or none: the comm changes before the new environment is
	// in place.
	for i := 0; i < 200; i++ {
		if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid)); strings.TrimSpace(string(comm)) == "sleep" {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	names := newServiceNames()
	if got := names.resolve(conn.Process{PID: uint32(cmd.Process.Pid), Comm: "sleep"}); got != "checkout" {
		t.Errorf("service %q, want checkout from the process's environment", got)
	}
	if got := names.resolve(conn.Process{PID: uint32(os.Getpid()), Comm: "exporter.test"}); got != os.Getenv("OTEL_SERVICE_NAME") && got != "exporter.test" {
		t.Errorf("service %q, want the executable name", got)
	}
}

func TestBaseResourceFromEnv(t *testing.T) {
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=prod,service.name=ignored")
	res, err := BaseResource(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var env, svc bool
	for _, kv := range res.Attributes() {
		env = env || (kv.Key == "deployment.environment.name" && kv.Value.AsString() == "prod")
		svc = svc || kv.Key == semconv.ServiceNameKey
	}
	if !env || svc {
		t.Errorf("resource %v: want OTEL_RESOURCE_ATTRIBUTES without service.name", res.Attributes())
	}
}

func TestNewOTLPProtocols(t *testing.T) {
	for _, p := range []string{otlpwire.ProtocolGRPC, otlpwire.ProtocolHTTP} {
		exp, err := NewOTLP(context.Background(), p)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		exp.Shutdown(context.Background())
	}
	if _, err := NewOTLP(context.Background(), "http/json"); err == nil || !strings.Contains(err.Error(), "supports") {
		t.Errorf("http/json: %v", err)
	}
}

// A collector that never answers holds a batch no longer than the export
// timeout (OTEL_BSP_EXPORT_TIMEOUT): the batch fails, counted.
func TestExportTimeout(t *testing.T) {
	srv := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		<-stream.Context().Done()
		return stream.Context().Err()
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Stop()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+ln.Addr().String())
	exp, err := NewOTLP(context.Background(), otlpwire.ProtocolGRPC)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(nil, WithSpanExporter(exp), WithBatchTimeout(time.Millisecond), WithExportTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e.Export(refused())
	for e.Stats().ExportFailed == 0 {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("the batch was not given up within 5 s: %+v", e.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("given up after %v, before the timeout", d)
	}
	e.Shutdown(context.Background())
}

// An unreachable collector costs failed exports, counted; nothing blocks.
func TestUnreachableCollectorIsCounted(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "200")
	exp, err := NewOTLP(context.Background(), otlpwire.ProtocolGRPC)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(nil, WithSpanExporter(exp), WithBatchTimeout(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := 0; i < 10; i++ {
		e.Export(refused())
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Export blocked for %v", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	e.Shutdown(ctx)
	st := e.Stats()
	if st.Exported != 0 || st.ExportFailed+st.Dropped() != 10 {
		t.Errorf("stats %+v: want all 10 spans failed or dropped, none exported", st)
	}
}

// A storm span stands for many orphans: with the queue full it still goes
// out, past the batch's size, while ordinary spans are folded.
func TestStormSpanKeptWhenQueueFull(t *testing.T) {
	e, mem := newTestExporter(t, WithMaxQueueSize(4))
	mem.block = make(chan struct{})
	for i := 0; i < 100; i++ {
		e.Export(refused())
	}
	storm := noSocket()
	storm.Storm = &conn.Storm{Count: 4211, Peers: 1, First: storm.Start, Last: storm.End}
	storm.Storm.Events[conn.EventRSTSent] = 4211
	e.Export(storm)
	if e.Stats().Folded == 0 {
		t.Fatalf("the queue of 4 never filled: %+v", e.Stats())
	}
	close(mem.block)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, s := range stormSpans(mem.spans()) {
		found = found || attrInt(s, "tcpspan.storm.count") == 4211
	}
	st := e.Stats()
	if n := accounted(mem.spans()); !found || st.Dropped() != 0 || n != 100+4211 {
		t.Errorf("storm span exported: %v; spans account for %d connections; stats %+v", found, n, st)
	}
}

// A tracker storm that finds even its overflow room taken is folded with
// others of its kind: the counts add up.
func TestStormSpansFoldWhenQueueFull(t *testing.T) {
	e, mem := newTestExporter(t, WithMaxQueueSize(4), WithMaxBatchSize(2))
	mem.block = make(chan struct{})
	for range 200 {
		storm := noSocket()
		storm.Storm = &conn.Storm{Count: 10, Peers: 3, First: storm.Start, Last: storm.End}
		storm.Storm.Events[conn.EventRSTSent] = 10
		e.Export(storm)
	}
	close(mem.block)
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := mem.spans()
	if n := accounted(spans); n != 2000 || e.Stats().Dropped() != 0 || len(spans) >= 200 {
		t.Errorf("%d spans account for %d orphans, want fewer than 200 for 2000; stats %+v", len(spans), n, e.Stats())
	}
	for _, s := range stormSpans(spans) {
		if attrInt(s, "tcpspan.storm.peer_addresses") != 3 || attrInt(s, "tcpspan.storm.events.rst_sent") != attrInt(s, "tcpspan.storm.count") {
			t.Errorf("storm span attributes %v", s.Attributes)
		}
	}
}

// rinetd's upstream connect is refused, then rinetd resets its client: the
// reset's span links to the refused connect, the cause of the cause.
func TestResetLinksToTheFailureBeforeIt(t *testing.T) {
	e, mem := newTestExporter(t)
	upstream := refused()
	upstream.Owner = rinetd
	upstream.Start, upstream.End = at(3), at(4)
	e.Export(upstream)
	e.Export(rinetdAbort("TCP_ABORT_ON_CLOSE")) // closed at 5 ms: within the window
	late := rinetdAbort("TCP_ABORT_ON_CLOSE")
	late.Closer.Time = at(50) // too long after
	e.Export(late)
	other := rinetdAbort("TCP_ABORT_ON_CLOSE")
	other.Closer.Process = nginx // another process
	e.Export(other)
	e.Shutdown(context.Background())

	spans := mem.spans()
	if len(spans) != 4 {
		t.Fatalf("%d spans", len(spans))
	}
	var up gotSpan
	for _, s := range spans {
		if s.Kind == tracepb.Span_SPAN_KIND_CLIENT {
			up = s
		}
	}
	linked := 0
	for _, s := range spans {
		if len(s.Links) == 0 {
			continue
		}
		linked++
		l := s.Links[0]
		if !bytes.Equal(l.SpanId, up.SpanId) || !bytes.Equal(l.TraceId, up.TraceId) {
			t.Errorf("link to %x, want the refused upstream %x", l.SpanId, up.SpanId)
		}
		if len(l.Attributes) != 1 || anyText(l.Attributes[0].Value) != "closed_after_failure" {
			t.Errorf("link attributes %v", l.Attributes)
		}
	}
	if linked != 1 {
		t.Errorf("%d spans linked, want only the reset closed 1 ms after the failure, by the same process", linked)
	}
}

// Under a storm the queue is full, and rinetd's refused upstream connects
// are folded: the resets it sends its clients then link to the storm span
// that stands for them, not to an older failure.
func TestResetLinksToAFoldedFailure(t *testing.T) {
	e, mem := newTestExporter(t, WithMaxQueueSize(4), WithMaxBatchSize(2))
	mem.block = make(chan struct{})
	for i := range 20 {
		c := refused()
		c.Owner = rinetd
		c.Local = netip.AddrPortFrom(c.Local.Addr(), uint16(40000+i))
		c.Start, c.End = at(3), at(4)
		e.Export(c)
	}
	if e.Stats().Folded == 0 {
		t.Fatalf("the queue of 4 never filled: %+v", e.Stats())
	}
	e.Export(rinetdAbort("TCP_ABORT_ON_CLOSE")) // closed at 5 ms, after the failures
	close(mem.block)
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	var storm, abort gotSpan
	for _, s := range mem.spans() {
		switch {
		case s.Kind == tracepb.Span_SPAN_KIND_CLIENT && attrInt(s, "tcpspan.storm.count") > 0:
			storm = s
		case s.Kind == tracepb.Span_SPAN_KIND_SERVER:
			abort = s
		}
	}
	if storm.Span == nil || abort.Span == nil {
		t.Fatalf("no storm span of refused connects, or no reset span, in %d spans", len(mem.spans()))
	}
	if len(abort.Links) != 1 || !bytes.Equal(abort.Links[0].SpanId, storm.SpanId) || !bytes.Equal(abort.Links[0].TraceId, storm.TraceId) {
		t.Errorf("reset links %v, want the storm span %x", abort.Links, storm.SpanId)
	}
}

// rinetd serves many clients at once: the connection it closes after a
// refused upstream connect arrives when its socket is destroyed, and by
// then more of rinetd's upstream connects may have failed (the record of a
// client that rinetd closed at 5 ms arrives after an upstream failure at 6
// ms). Each reset links to the failure that came last before its close(),
// not to the last failure seen.
func TestResetLinksToTheFailureBeforeItsClose(t *testing.T) {
	e, mem := newTestExporter(t)
	upstream := func(port uint16, endMs int) *conn.Connection {
		c := refused()
		c.Owner = rinetd
		c.Local = netip.AddrPortFrom(c.Local.Addr(), port)
		c.Remote = ap("127.0.0.1:9000")
		c.Start, c.End = at(endMs-1), at(endMs)
		return c
	}
	client := func(port uint16, closeMs int) *conn.Connection {
		c := rinetdAbort("TCP_ABORT_ON_CLOSE")
		c.Remote = netip.AddrPortFrom(c.Remote.Addr(), port)
		c.Closer.Time, c.End = at(closeMs), at(closeMs+1)
		return c
	}
	// In the order they reach the exporter.
	e.Export(upstream(40001, 4))
	e.Export(upstream(40002, 6))
	e.Export(client(50001, 5)) // closed after 40001 failed, before 40002 did
	e.Export(upstream(40003, 8))
	e.Export(client(50002, 7)) // after 40002
	e.Export(client(50003, 8)) // as 40003 failed: closed in its wake
	e.Export(client(50004, 3)) // before any failure: no link
	e.Shutdown(context.Background())

	ids := map[string]uint16{}
	for _, s := range mem.spans() {
		if s.Kind == tracepb.Span_SPAN_KIND_CLIENT {
			ids[string(s.SpanId)] = uint16(attrInt(s, "network.local.port"))
		}
	}
	want := map[int64]uint16{50001: 40001, 50002: 40002, 50003: 40003, 50004: 0}
	got := map[int64]uint16{}
	for _, s := range mem.spans() {
		if s.Kind != tracepb.Span_SPAN_KIND_SERVER {
			continue
		}
		port := attrInt(s, "network.peer.port")
		got[port] = 0
		if len(s.Links) > 0 {
			got[port] = ids[string(s.Links[0].SpanId)]
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("client port -> the upstream port its reset links to: %v, want %v", got, want)
	}
}

// A process's failures are remembered in bounded memory, without an
// allocation per failure. When too many processes failed, those whose
// failures are too old to be linked are forgotten first.
func TestFailureMemoryIsBounded(t *testing.T) {
	e, _ := newTestExporter(t)
	defer e.Shutdown(context.Background())
	end := t0.UnixNano()
	for range failureHistory {
		end++
		e.rememberFailure(rinetd.PID, failure{end: end})
	}
	if n := testing.AllocsPerRun(100, func() {
		end++
		e.rememberFailure(rinetd.PID, failure{end: end})
	}); n != 0 {
		t.Errorf("%v allocations per failure", n)
	}
	for pid := range uint32(maxRecentFailures - 2) {
		e.rememberFailure(1000+pid, failure{end: end})
	}
	end += 2 * int64(DefaultLinkWindow)
	e.rememberFailure(curl.PID, failure{end: end})
	e.rememberFailure(nginx.PID, failure{end: end}) // the map is full
	if _, ok := e.failures[curl.PID]; len(e.failures) != 2 || !ok {
		t.Errorf("%d processes remembered, want the 2 with recent failures", len(e.failures))
	}
	// All recent: forgotten at once.
	for pid := range uint32(maxRecentFailures - 2) {
		e.rememberFailure(1000+pid, failure{end: end})
	}
	e.rememberFailure(rinetd.PID, failure{end: end})
	if len(e.failures) != 1 {
		t.Errorf("%d processes remembered after too many recent ones, want 1", len(e.failures))
	}
}

// attrInt is the integer attribute key of span s, or -1.
func attrInt(s gotSpan, key string) int64 {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value.GetIntValue()
		}
	}
	return -1
}

// process.executable.name is the basename of /proc/PID/exe; the comm, the
// kernel's name for the process, is kept beside it where it differs (a
// program started through a link of another name).
func TestExecutableName(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep(1)")
	}
	real, err := filepath.EvalSymlinks(sleep)
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "napper")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(link, "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()

	mem := &memClient{}
	e, err := New(nil, WithClient(mem), WithBatchTimeout(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	c := cleanClient()
	c.Owner = conn.Process{PID: uint32(cmd.Process.Pid), Comm: "napper"}
	c.Events = nil
	e.Export(c)
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := mem.spans()[0]
	want := filepath.Base(real)
	if got := resourceValue(s, string(semconv.ProcessExecutableNameKey)); got != want {
		t.Errorf("process.executable.name %q, want %q (from /proc/PID/exe)", got, want)
	}
	if got := resourceValue(s, "tcpspan.process.comm"); got != "napper" {
		t.Errorf("tcpspan.process.comm %q, want the comm napper", got)
	}
	if got := attrText(s, string(semconv.ProcessExecutableNameKey)); got != want {
		t.Errorf("span process.executable.name %q, want %q", got, want)
	}
}

// attrText returns a span attribute's value as text, or "".
func attrText(s gotSpan, key string) string {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return anyText(kv.Value)
		}
	}
	return ""
}
