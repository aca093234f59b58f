package otlpsink

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

func TestCounts(t *testing.T) {
	s, err := Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	c := otlptracegrpc.NewClient(otlptracegrpc.WithEndpoint(s.Addr()), otlptracegrpc.WithInsecure())
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Stop(ctx)
	span := func(events ...string) *tracepb.Span {
		sp := &tracepb.Span{Name: "x", TraceId: make([]byte, 16), SpanId: make([]byte, 8)}
		for _, e := range events {
			sp.Events = append(sp.Events, &tracepb.Span_Event{Name: e})
		}
		return sp
	}
	rs := []*tracepb.ResourceSpans{
		{ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{span("tcp.rst_sent", "tcp.close"), span()}}}},
		{ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{span("tcp.rst_sent")}}, {Spans: []*tracepb.Span{span()}}}},
	}
	for range 2 {
		if err := c.UploadTraces(ctx, rs); err != nil {
			t.Fatal(err)
		}
	}
	if s.Spans() != 8 || s.Requests() != 2 || s.Events("tcp.rst_sent") != 4 || s.Events("tcp.close") != 2 || s.Bytes() == 0 {
		t.Errorf("spans %d requests %d rst_sent %d close %d bytes %d; want 8, 2, 4, 2, >0",
			s.Spans(), s.Requests(), s.Events("tcp.rst_sent"), s.Events("tcp.close"), s.Bytes())
	}
}

func TestMalformed(t *testing.T) {
	var s Sink
	s.events = map[string]uint64{}
	// resource_spans (1), length 5, but only 2 bytes follow.
	if err := (countingCodec{&s}).Unmarshal([]byte{0x0a, 0x05, 0x12, 0x00}, new(coltracepb.ExportTraceServiceRequest)); err == nil {
		t.Error("a truncated request was accepted")
	}
	if s.Spans() != 0 {
		t.Errorf("%d spans counted from a malformed request", s.Spans())
	}
}
