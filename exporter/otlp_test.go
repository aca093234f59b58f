package exporter

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcpspan/tcpspan/conn"
)

// keepSpans is an in-memory exporter whose spans survive Shutdown.
type keepSpans struct{ *tracetest.InMemoryExporter }

func (keepSpans) Shutdown(context.Context) error { return nil }

func newTestExporter(t *testing.T, opts ...Option) (*Exporter, keepSpans) {
	t.Helper()
	mem := keepSpans{tracetest.NewInMemoryExporter()}
	base, err := BaseResource(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(base, append([]Option{WithSpanExporter(mem), WithBatchTimeout(time.Millisecond),
		WithServiceResolver(func(p conn.Process) string { return p.Comm + "-svc" })}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return e, mem
}

func resourceValue(s tracetest.SpanStub, key string) string {
	for _, kv := range s.Resource.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

func TestExportRecordsSpansThroughTheSDK(t *testing.T) {
	e, mem := newTestExporter(t)
	abort := rinetdAbort("TCP_ABORT_ON_CLOSE")
	e.Export(abort)
	e.Export(cleanClient())
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := mem.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	var s tracetest.SpanStub
	for _, x := range spans {
		if x.SpanKind == trace.SpanKindServer {
			s = x
		}
	}
	want := Map(abort)
	if s.Name != want.Name || !s.StartTime.Equal(abort.Start) || !s.EndTime.Equal(abort.End) {
		t.Errorf("span %q %v-%v, want %q %v-%v", s.Name, s.StartTime, s.EndTime, want.Name, abort.Start, abort.End)
	}
	if s.Status.Code != codes.Error || s.Status.Description != want.StatusDescription {
		t.Errorf("status %v %q, want error %q", s.Status.Code, s.Status.Description, want.StatusDescription)
	}
	if len(s.Events) != len(abort.Events) {
		t.Fatalf("%d events, want %d", len(s.Events), len(abort.Events))
	}
	for i, ev := range s.Events {
		if !ev.Time.Equal(abort.Events[i].Time) || ev.Name != want.Events[i].Name {
			t.Errorf("event %d: %s at %v, want %s at %v", i, ev.Name, ev.Time, want.Events[i].Name, abort.Events[i].Time)
		}
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
	if s.Parent.IsValid() {
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
	if got := len(mem.GetSpans()); got != 2 {
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
	if got := resourceValue(mem.GetSpans()[0], string(semconv.ServiceNameKey)); got != "edge-agent" {
		t.Errorf("service.name %q, want the agent's", got)
	}

	e, mem = newTestExporter(t, WithAgentService("edge-agent"))
	orphan := noSocket() // nobody listens: no owner
	orphan.Owner = conn.Process{}
	e.Export(orphan)
	e.Shutdown(context.Background())
	if got := resourceValue(mem.GetSpans()[0], string(semconv.ServiceNameKey)); got != "edge-agent" {
		t.Errorf("service.name %q for an ownerless connection, want the agent's", got)
	}
}

func TestProvidersAreBounded(t *testing.T) {
	e, mem := newTestExporter(t, WithMaxServices(2))
	for i := 0; i < 5; i++ {
		c := rinetdAbort("TCP_ABORT_ON_CLOSE")
		c.Owner = conn.Process{PID: uint32(1000 + i), Comm: "p"}
		e.Export(c)
	}
	if n := e.Stats().Services; n != 2 {
		t.Errorf("%d providers live, want 2", n)
	}
	e.Shutdown(context.Background())
	if got := len(mem.GetSpans()); got != 5 {
		t.Errorf("%d spans, want 5: evicted providers must flush", got)
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

func TestOTLPEnvironment(t *testing.T) {
	for _, tc := range []struct {
		env     map[string]string
		wantErr string
		proto   string
	}{
		{env: map[string]string{}, proto: ProtocolGRPC},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, proto: ProtocolGRPC},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "127.0.0.1:4317"}, wantErr: "want a URL"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "ftp://x"}, wantErr: "want a URL"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, proto: ProtocolHTTP},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, wantErr: "supports"},
	} {
		for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
			"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"} {
			t.Setenv(k, tc.env[k])
		}
		_, errEndpoint := OTLPEndpointFromEnv()
		proto, errProto := OTLPProtocolFromEnv()
		err := errEndpoint
		if err == nil {
			err = errProto
		}
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%v: error %v, want %q", tc.env, err, tc.wantErr)
		case tc.wantErr == "" && err != nil:
			t.Errorf("%v: %v", tc.env, err)
		case tc.wantErr == "" && proto != tc.proto:
			t.Errorf("%v: protocol %s, want %s", tc.env, proto, tc.proto)
		}
	}
}

// An unreachable collector costs failed exports, counted; nothing blocks.
func TestUnreachableCollectorIsCounted(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "200")
	exp, err := NewOTLPFromEnv(context.Background())
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

var _ sdktrace.SpanExporter = keepSpans{}

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

	spans := mem.GetSpans()
	if len(spans) != 4 {
		t.Fatalf("%d spans", len(spans))
	}
	var up tracetest.SpanStub
	for _, s := range spans {
		if s.SpanKind == trace.SpanKindClient {
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
		if l.SpanContext.SpanID() != up.SpanContext.SpanID() || l.SpanContext.TraceID() != up.SpanContext.TraceID() {
			t.Errorf("link to %v, want the refused upstream %v", l.SpanContext.SpanID(), up.SpanContext.SpanID())
		}
		if len(l.Attributes) != 1 || l.Attributes[0].Value.AsString() != "closed_after_failure" {
			t.Errorf("link attributes %v", l.Attributes)
		}
	}
	if linked != 1 {
		t.Errorf("%d spans linked, want only the reset closed 1 ms after the failure, by the same process", linked)
	}
}
