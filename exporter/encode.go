package exporter

import (
	"math"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
)

// The span is written straight into the OTLP protobuf wire format
// (opentelemetry/proto/trace/v1/trace.proto), into reused buffers: building
// SDK spans, then tracepb objects, then marshalling them cost about 65 µs
// of CPU and 230 allocations per span (docs/performance.md).

// Field numbers from opentelemetry/proto/trace/v1/trace.proto and
// common/v1/common.proto.
const (
	fieldScopeSpansSpans protowire.Number = 2

	fieldSpanTraceID    protowire.Number = 1
	fieldSpanSpanID     protowire.Number = 2
	fieldSpanName       protowire.Number = 5
	fieldSpanKind       protowire.Number = 6
	fieldSpanStart      protowire.Number = 7
	fieldSpanEnd        protowire.Number = 8
	fieldSpanAttributes protowire.Number = 9
	fieldSpanEvents     protowire.Number = 11
	fieldSpanLinks      protowire.Number = 13
	fieldSpanStatus     protowire.Number = 15
	fieldSpanFlags      protowire.Number = 16

	fieldEventTime       protowire.Number = 1
	fieldEventName       protowire.Number = 2
	fieldEventAttributes protowire.Number = 3

	fieldLinkTraceID    protowire.Number = 1
	fieldLinkSpanID     protowire.Number = 2
	fieldLinkAttributes protowire.Number = 4
	fieldLinkFlags      protowire.Number = 6

	fieldStatusMessage protowire.Number = 2
	fieldStatusCode    protowire.Number = 3

	fieldKVKey   protowire.Number = 1
	fieldKVValue protowire.Number = 2

	fieldAnyString protowire.Number = 1
	fieldAnyBool   protowire.Number = 2
	fieldAnyInt    protowire.Number = 3
	fieldAnyDouble protowire.Number = 4
)

// spanFlags are the flags of a sampled root span, as the SDK sets them: the
// W3C sampled bit, and "has is-remote" with is-remote clear (the parent, if
// any, is local).
const spanFlags = uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK) | 0x01

type traceID [16]byte
type spanID [8]byte

// spanLink is a link to another span of the agent.
type spanLink struct {
	trace traceID
	span  spanID
	attrs []attribute.KeyValue
}

// spanEncoder writes spans in the wire format. Its scratch buffers are
// reused: it is not safe for concurrent use.
type spanEncoder struct {
	span []byte // the span being written, before its length is known
	sub  []byte // one event, link or status, likewise
}

// appendSpan appends sd, with its ids and optional link, to dst as one
// element of ScopeSpans.spans.
func (enc *spanEncoder) appendSpan(dst []byte, sd *SpanData, tid traceID, sid spanID, link *spanLink) []byte {
	b := enc.span[:0]
	b = appendTag(b, fieldSpanTraceID, protowire.BytesType)
	b = appendBytes(b, tid[:])
	b = appendTag(b, fieldSpanSpanID, protowire.BytesType)
	b = appendBytes(b, sid[:])
	b = appendTag(b, fieldSpanName, protowire.BytesType)
	b = appendString(b, sd.Name)
	// trace.SpanKind has the numbers of OTLP's Span.SpanKind.
	b = appendTag(b, fieldSpanKind, protowire.VarintType)
	b = appendVarint(b, uint64(sd.Kind))
	b = appendTag(b, fieldSpanStart, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, unixNano(sd.Start))
	b = appendTag(b, fieldSpanEnd, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, unixNano(sd.End))
	for _, kv := range sd.Attributes {
		b = appendKeyValue(b, fieldSpanAttributes, kv)
	}
	for i := range sd.Events {
		ev := &sd.Events[i]
		s := enc.sub[:0]
		s = appendTag(s, fieldEventTime, protowire.Fixed64Type)
		s = protowire.AppendFixed64(s, unixNano(ev.Time))
		s = appendTag(s, fieldEventName, protowire.BytesType)
		s = appendString(s, ev.Name)
		for _, kv := range ev.Attributes {
			s = appendKeyValue(s, fieldEventAttributes, kv)
		}
		b = appendTag(b, fieldSpanEvents, protowire.BytesType)
		b = appendBytes(b, s)
		enc.sub = s
	}
	if link != nil {
		s := enc.sub[:0]
		s = appendTag(s, fieldLinkTraceID, protowire.BytesType)
		s = appendBytes(s, link.trace[:])
		s = appendTag(s, fieldLinkSpanID, protowire.BytesType)
		s = appendBytes(s, link.span[:])
		for _, kv := range link.attrs {
			s = appendKeyValue(s, fieldLinkAttributes, kv)
		}
		s = appendTag(s, fieldLinkFlags, protowire.Fixed32Type)
		s = protowire.AppendFixed32(s, spanFlags)
		b = appendTag(b, fieldSpanLinks, protowire.BytesType)
		b = appendBytes(b, s)
		enc.sub = s
	}
	if sd.StatusCode == codes.Error {
		s := enc.sub[:0]
		s = appendTag(s, fieldStatusMessage, protowire.BytesType)
		s = appendString(s, sd.StatusDescription)
		s = appendTag(s, fieldStatusCode, protowire.VarintType)
		s = appendVarint(s, uint64(tracepb.Status_STATUS_CODE_ERROR))
		b = appendTag(b, fieldSpanStatus, protowire.BytesType)
		b = appendBytes(b, s)
		enc.sub = s
	}
	b = appendTag(b, fieldSpanFlags, protowire.Fixed32Type)
	b = protowire.AppendFixed32(b, spanFlags)
	enc.span = b

	dst = appendTag(dst, fieldScopeSpansSpans, protowire.BytesType)
	return appendBytes(dst, b)
}

// appendKeyValue appends kv as field num, a KeyValue. Its size is known
// up front, so it is written in place.
func appendKeyValue(b []byte, num protowire.Number, kv attribute.KeyValue) []byte {
	var s string
	var n uint64
	var size int // of the AnyValue
	switch kv.Value.Type() {
	case attribute.BOOL:
		if kv.Value.AsBool() {
			n = 1
		}
		size = 1 + protowire.SizeVarint(n)
	case attribute.INT64:
		n = uint64(kv.Value.AsInt64())
		size = 1 + protowire.SizeVarint(n)
	case attribute.FLOAT64:
		n = math.Float64bits(kv.Value.AsFloat64())
		size = 1 + protowire.SizeFixed64()
	default:
		// Strings. tcpspan sets no slice attributes; one would go as its
		// text.
		s = kv.Value.Emit()
		size = 1 + protowire.SizeBytes(len(s))
	}
	kvSize := 1 + protowire.SizeBytes(len(kv.Key)) + 1 + protowire.SizeBytes(size)
	b = appendTag(b, num, protowire.BytesType)
	b = appendVarint(b, uint64(kvSize))
	b = appendTag(b, fieldKVKey, protowire.BytesType)
	b = appendString(b, string(kv.Key))
	b = appendTag(b, fieldKVValue, protowire.BytesType)
	b = appendVarint(b, uint64(size))
	switch kv.Value.Type() {
	case attribute.BOOL:
		b = appendTag(b, fieldAnyBool, protowire.VarintType)
		b = appendVarint(b, n)
	case attribute.INT64:
		b = appendTag(b, fieldAnyInt, protowire.VarintType)
		b = appendVarint(b, n)
	case attribute.FLOAT64:
		b = appendTag(b, fieldAnyDouble, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, n)
	default:
		b = appendTag(b, fieldAnyString, protowire.BytesType)
		b = appendString(b, s)
	}
	return b
}

func unixNano(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(t.UnixNano())
}

// keyValues converts attributes to OTLP objects, for resources: built once
// per owning process, not per span.
func keyValues(attrs []attribute.KeyValue) []*commonpb.KeyValue {
	out := make([]*commonpb.KeyValue, 0, len(attrs))
	for _, kv := range attrs {
		v := &commonpb.AnyValue{}
		switch kv.Value.Type() {
		case attribute.BOOL:
			v.Value = &commonpb.AnyValue_BoolValue{BoolValue: kv.Value.AsBool()}
		case attribute.INT64:
			v.Value = &commonpb.AnyValue_IntValue{IntValue: kv.Value.AsInt64()}
		case attribute.FLOAT64:
			v.Value = &commonpb.AnyValue_DoubleValue{DoubleValue: kv.Value.AsFloat64()}
		default:
			v.Value = &commonpb.AnyValue_StringValue{StringValue: kv.Value.Emit()}
		}
		out = append(out, &commonpb.KeyValue{Key: string(kv.Key), Value: v})
	}
	return out
}

func resourceProto(attrs []attribute.KeyValue) *resourcepb.Resource {
	return &resourcepb.Resource{Attributes: keyValues(attrs)}
}

// The helpers below write small values with a plain append: every tag
// tcpspan writes but one fits in a byte, as do most lengths and values.
// protowire's general forms cost a third of the encoding time.

func appendTag(b []byte, num protowire.Number, typ protowire.Type) []byte {
	if num < 16 {
		return append(b, byte(num)<<3|byte(typ))
	}
	return protowire.AppendTag(b, num, typ)
}

func appendVarint(b []byte, v uint64) []byte {
	if v < 0x80 {
		return append(b, byte(v))
	}
	if v < 0x4000 {
		return append(b, byte(v)|0x80, byte(v>>7))
	}
	return protowire.AppendVarint(b, v)
}

func appendString(b []byte, s string) []byte {
	b = appendVarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b []byte, v []byte) []byte {
	b = appendVarint(b, uint64(len(v)))
	return append(b, v...)
}
