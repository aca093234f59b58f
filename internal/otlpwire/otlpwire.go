// Package otlpwire names the protobuf field numbers of the OTLP trace
// messages that tcpspan writes or reads in the wire format by hand: the
// exporter's span encoder and the test sink (internal/otlpsink). It is the
// one place those numbers are written. It also names the OTLP transports
// tcpspan speaks, as OTEL_EXPORTER_OTLP_PROTOCOL spells them, for traces
// (exporter) and for its own metrics (selfmetrics) alike.
//
// It holds constants only, each taken from opentelemetry/proto
// (collector/trace/v1/trace_service.proto, trace/v1/trace.proto,
// common/v1/common.proto) and checked against the generated descriptors
// of go.opentelemetry.io/proto/otlp by its test. It must not encode or
// decode anything, nor import other tcpspan packages.
package otlpwire

import "google.golang.org/protobuf/encoding/protowire"

// The OTLP transports tcpspan supports, as the OpenTelemetry environment
// variables name them (OTEL_EXPORTER_OTLP_PROTOCOL and its per-signal
// forms).
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// ExportTraceServiceRequest (collector/trace/v1/trace_service.proto).
const (
	RequestResourceSpans protowire.Number = 1 // resource_spans
)

// ResourceSpans and ScopeSpans (trace/v1/trace.proto).
const (
	ResourceSpansScopeSpans protowire.Number = 2 // ResourceSpans.scope_spans
	ScopeSpansSpans         protowire.Number = 2 // ScopeSpans.spans
)

// Span (trace/v1/trace.proto).
const (
	SpanTraceID    protowire.Number = 1  // trace_id
	SpanSpanID     protowire.Number = 2  // span_id
	SpanParentID   protowire.Number = 4  // parent_span_id
	SpanName       protowire.Number = 5  // name
	SpanKind       protowire.Number = 6  // kind
	SpanStart      protowire.Number = 7  // start_time_unix_nano
	SpanEnd        protowire.Number = 8  // end_time_unix_nano
	SpanAttributes protowire.Number = 9  // attributes
	SpanEvents     protowire.Number = 11 // events
	SpanLinks      protowire.Number = 13 // links
	SpanStatus     protowire.Number = 15 // status
	SpanFlags      protowire.Number = 16 // flags
)

// Span.Event (trace/v1/trace.proto).
const (
	EventTime       protowire.Number = 1 // time_unix_nano
	EventName       protowire.Number = 2 // name
	EventAttributes protowire.Number = 3 // attributes
)

// Span.Link (trace/v1/trace.proto).
const (
	LinkTraceID    protowire.Number = 1 // trace_id
	LinkSpanID     protowire.Number = 2 // span_id
	LinkAttributes protowire.Number = 4 // attributes
	LinkFlags      protowire.Number = 6 // flags
)

// Status (trace/v1/trace.proto).
const (
	StatusMessage protowire.Number = 2 // message
	StatusCode    protowire.Number = 3 // code
)

// KeyValue and AnyValue (common/v1/common.proto).
const (
	KeyValueKey   protowire.Number = 1 // KeyValue.key
	KeyValueValue protowire.Number = 2 // KeyValue.value

	AnyValueString protowire.Number = 1 // AnyValue.string_value
	AnyValueBool   protowire.Number = 2 // AnyValue.bool_value
	AnyValueInt    protowire.Number = 3 // AnyValue.int_value
	AnyValueDouble protowire.Number = 4 // AnyValue.double_value
)
