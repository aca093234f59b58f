package otlpsink

import (
	"context"
	"strconv"
	"testing"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
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
	if err := (countingCodec{&s}).Unmarshal(mem.BufferSlice{mem.SliceBuffer{0x0a, 0x05, 0x12, 0x00}}, new(coltracepb.ExportTraceServiceRequest)); err == nil {
		t.Error("a truncated request was accepted")
	}
	if s.Spans() != 0 {
		t.Errorf("%d spans counted from a malformed request", s.Spans())
	}
}

// TestBuffers counts one request received in buffers of every size: gRPC
// hands the codec the request as it came, split anywhere, even inside a
// varint.
func TestBuffers(t *testing.T) {
	span := func(events ...string) *tracepb.Span {
		sp := &tracepb.Span{Name: "x", TraceId: make([]byte, 16), SpanId: make([]byte, 8), StartTimeUnixNano: 1 << 60}
		for _, e := range events {
			sp.Events = append(sp.Events, &tracepb.Span_Event{Name: e, TimeUnixNano: 1 << 62})
		}
		return sp
	}
	long := string(make([]byte, 300)) // a name whose length takes two bytes
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{
		{ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{span("tcp.rst_sent", "tcp.close"), span(long)}}}},
		{ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{span("tcp.rst_sent")}}, {Spans: []*tracepb.Span{span()}}}},
	}}
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	// A group, unknown to OTLP but well formed, in the request.
	b = protowire.AppendTag(b, 7, protowire.StartGroupType)
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, 300)
	b = protowire.AppendTag(b, 7, protowire.EndGroupType)
	for size := 1; size <= len(b); size++ {
		var data mem.BufferSlice
		for i := 0; i < len(b); i += size {
			data = append(data, mem.SliceBuffer(b[i:min(i+size, len(b))]))
		}
		s := Sink{events: map[string]uint64{}}
		if err := (countingCodec{&s}).Unmarshal(data, new(coltracepb.ExportTraceServiceRequest)); err != nil {
			t.Fatalf("buffers of %d bytes: %v", size, err)
		}
		if s.Spans() != 4 || s.Events("tcp.rst_sent") != 2 || s.Events("tcp.close") != 1 || s.Events(long) != 1 || s.Bytes() != uint64(len(b)) {
			t.Fatalf("buffers of %d bytes: spans %d rst_sent %d close %d long %d bytes %d", size,
				s.Spans(), s.Events("tcp.rst_sent"), s.Events("tcp.close"), s.Events(long), s.Bytes())
		}
	}
	// Cut short anywhere inside the last resource, the request is refused.
	last := len(b) - 8
	for cut := last - 20; cut < last; cut++ {
		s := Sink{events: map[string]uint64{}}
		data := mem.BufferSlice{mem.SliceBuffer(b[:cut/2]), mem.SliceBuffer(b[cut/2 : cut])}
		if err := (countingCodec{&s}).Unmarshal(data, new(coltracepb.ExportTraceServiceRequest)); err == nil {
			t.Errorf("request cut at %d of %d accepted", cut, len(b))
		}
	}
}

// BenchmarkUnmarshal counts a request of 512 spans like tcpspan's (about 20
// attributes and 6 events each), received in 16 KiB buffers as HTTP/2
// frames bring it.
func BenchmarkUnmarshal(b *testing.B) {
	kv := func(k, v string) *commonpb.KeyValue {
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
	}
	sp := &tracepb.Span{Name: "TCP connect", TraceId: make([]byte, 16), SpanId: make([]byte, 8),
		StartTimeUnixNano: 1 << 60, EndTimeUnixNano: 1 << 60}
	for i := range 20 {
		sp.Attributes = append(sp.Attributes, kv("tcp.attribute."+strconv.Itoa(i), "value"))
	}
	for range 6 {
		sp.Events = append(sp.Events, &tracepb.Span_Event{Name: "tcp.state", TimeUnixNano: 1 << 60,
			Attributes: []*commonpb.KeyValue{kv("network.connection.state", "established"), kv("tcpspan.state.previous", "syn_sent"), kv("tcpspan.context", "kernel")}})
	}
	ss := &tracepb.ScopeSpans{}
	for range 512 {
		ss.Spans = append(ss.Spans, sp)
	}
	req, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{ScopeSpans: []*tracepb.ScopeSpans{ss}}}})
	if err != nil {
		b.Fatal(err)
	}
	var data mem.BufferSlice
	for i := 0; i < len(req); i += 16 << 10 {
		data = append(data, mem.SliceBuffer(req[i:min(i+16<<10, len(req))]))
	}
	s := Sink{events: map[string]uint64{}}
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	for b.Loop() {
		if err := (countingCodec{&s}).Unmarshal(data, new(coltracepb.ExportTraceServiceRequest)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*512), "ns/span")
}
