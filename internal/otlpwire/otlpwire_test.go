package otlpwire

import (
	"testing"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// TestNumbersMatchDescriptors checks every constant against the field of
// the same name in the generated OTLP messages, so that a number written
// here by hand cannot drift from the .proto files.
func TestNumbersMatchDescriptors(t *testing.T) {
	for _, tt := range []struct {
		msg   proto.Message
		field protoreflect.Name
		got   protowire.Number
	}{
		{&collectorpb.ExportTraceServiceRequest{}, "resource_spans", RequestResourceSpans},
		{&tracepb.ResourceSpans{}, "scope_spans", ResourceSpansScopeSpans},
		{&tracepb.ScopeSpans{}, "spans", ScopeSpansSpans},

		{&tracepb.Span{}, "trace_id", SpanTraceID},
		{&tracepb.Span{}, "span_id", SpanSpanID},
		{&tracepb.Span{}, "parent_span_id", SpanParentID},
		{&tracepb.Span{}, "name", SpanName},
		{&tracepb.Span{}, "kind", SpanKind},
		{&tracepb.Span{}, "start_time_unix_nano", SpanStart},
		{&tracepb.Span{}, "end_time_unix_nano", SpanEnd},
		{&tracepb.Span{}, "attributes", SpanAttributes},
		{&tracepb.Span{}, "events", SpanEvents},
		{&tracepb.Span{}, "links", SpanLinks},
		{&tracepb.Span{}, "status", SpanStatus},
		{&tracepb.Span{}, "flags", SpanFlags},

		{&tracepb.Span_Event{}, "time_unix_nano", EventTime},
		{&tracepb.Span_Event{}, "name", EventName},
		{&tracepb.Span_Event{}, "attributes", EventAttributes},

		{&tracepb.Span_Link{}, "trace_id", LinkTraceID},
		{&tracepb.Span_Link{}, "span_id", LinkSpanID},
		{&tracepb.Span_Link{}, "attributes", LinkAttributes},
		{&tracepb.Span_Link{}, "flags", LinkFlags},

		{&tracepb.Status{}, "message", StatusMessage},
		{&tracepb.Status{}, "code", StatusCode},

		{&commonpb.KeyValue{}, "key", KeyValueKey},
		{&commonpb.KeyValue{}, "value", KeyValueValue},
		{&commonpb.AnyValue{}, "string_value", AnyValueString},
		{&commonpb.AnyValue{}, "bool_value", AnyValueBool},
		{&commonpb.AnyValue{}, "int_value", AnyValueInt},
		{&commonpb.AnyValue{}, "double_value", AnyValueDouble},
	} {
		md := tt.msg.ProtoReflect().Descriptor()
		fd := md.Fields().ByName(tt.field)
		if fd == nil {
			t.Errorf("%s has no field %s", md.FullName(), tt.field)
			continue
		}
		if fd.Number() != tt.got {
			t.Errorf("%s.%s is field %d, the constant says %d", md.FullName(), tt.field, fd.Number(), tt.got)
		}
	}
}
