package exporter

import (
	"encoding/binary"
	"math"
	"slices"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tcpspan/tcpspan/conn"
	"github.com/tcpspan/tcpspan/internal/otlpwire"
)

// The span is written straight into the OTLP protobuf wire format
// (opentelemetry/proto/trace/v1/trace.proto), into reused buffers: building
// SDK spans, then tracepb objects, then marshalling them cost about 65 µs
// of CPU and 230 allocations per span (docs/performance.md).

// spanFlags are the flags of a sampled root span, as the SDK sets them: the
// W3C sampled bit, and "has is-remote" with is-remote clear (the parent, if
// any, is local).
const spanFlags = uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK) | 0x01

// remoteParentFlags are the flags of a sampled span whose parent is another
// process's: a diagnosis span under an application's request span.
const remoteParentFlags = spanFlags | uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK)

type traceID [16]byte
type spanID [8]byte

// spanLink is a link to another span: of the agent, of the other end of
// the connection, or of an application.
type spanLink struct {
	trace traceID
	span  spanID
	attrs []attribute.KeyValue
}

// spanEncoder writes spans in the wire format. It is not safe for
// concurrent use.
type spanEncoder struct {
	w wireAttrs // kept here: as an attrWriter it would escape
}

// Reserved length bytes: a message's length is written before it, but known
// only after it, so room for it is reserved and the message is moved only
// when its length needs another number of bytes. A span (about 1-1.5 KB)
// needs two; an event, link or status usually one. Writing each message
// straight into the batch this way, instead of into scratch buffers copied
// into their parent, saves copying every span two or three times.
const (
	spanLenBytes = 2
	subLenBytes  = 1
)

// Tags of the fields attributes go to.
const (
	tagSpanAttributes  = byte(otlpwire.SpanAttributes)<<3 | byte(protowire.BytesType)
	tagEventAttributes = byte(otlpwire.EventAttributes)<<3 | byte(protowire.BytesType)
)

// appendConn appends the span of c, already diagnosed, with its ids and
// links, to dst as one element of ScopeSpans.spans. It writes what
// appendSpan writes for the SpanData of m.mapInto (TestEncodingIsProtoMarshal),
// without building it: the attributes go straight into the wire format.
func (enc *spanEncoder) appendConn(dst []byte, m *mapper, c *conn.Connection, errType, desc string, isErr bool,
	tid traceID, sid spanID, links []spanLink) []byte {
	dst = appendTag(dst, otlpwire.ScopeSpansSpans, protowire.BytesType)
	b, span := openLen(dst, spanLenBytes)
	b = appendSpanHead(b, tid, sid, spanID{}, m.spanName(c), spanKind(c), c.Start, c.End)
	w := &enc.w
	w.b, w.tag = b, tagSpanAttributes
	m.writeSpanAttributes(w, c, errType, isErr)
	events := c.Events
	if !m.withEvents(c) {
		events = nil
	}
	for i := range events {
		e := &events[i]
		w.b = appendTag(w.b, otlpwire.SpanEvents, protowire.BytesType)
		var sub int
		w.b, sub = openLen(w.b, subLenBytes)
		w.b = appendEventHead(w.b, e.Time, eventName(e.Kind))
		w.tag = tagEventAttributes
		m.writeEventAttributes(w, e)
		w.b = closeLen(w.b, sub, subLenBytes)
	}
	b, w.b = w.b, nil
	status := codes.Unset
	if isErr {
		status = codes.Error
	}
	b = appendSpanTail(b, links, status, desc, spanFlags)
	return closeLen(b, span, spanLenBytes)
}

// appendSpan appends sd, with its ids, parent (none if zero) and links, to
// dst as one element of ScopeSpans.spans. flags are the span's: spanFlags,
// or remoteParentFlags for a span whose parent is another process's.
func (enc *spanEncoder) appendSpan(dst []byte, sd *SpanData, tid traceID, sid, parent spanID, links []spanLink,
	flags uint32) []byte {
	dst = appendTag(dst, otlpwire.ScopeSpansSpans, protowire.BytesType)
	b, span := openLen(dst, spanLenBytes)
	b = appendSpanHead(b, tid, sid, parent, sd.Name, sd.Kind, sd.Start, sd.End)
	for i := range sd.Attributes {
		b = appendKeyValue(b, otlpwire.SpanAttributes, &sd.Attributes[i])
	}
	for i := range sd.Events {
		ev := &sd.Events[i]
		b = appendTag(b, otlpwire.SpanEvents, protowire.BytesType)
		var sub int
		b, sub = openLen(b, subLenBytes)
		b = appendEventHead(b, ev.Time, ev.Name)
		for i := range ev.Attributes {
			b = appendKeyValue(b, otlpwire.EventAttributes, &ev.Attributes[i])
		}
		b = closeLen(b, sub, subLenBytes)
	}
	b = appendSpanTail(b, links, sd.StatusCode, sd.StatusDescription, flags)
	return closeLen(b, span, spanLenBytes)
}

// appendSpanHead appends the fields of a span before its attributes. A zero
// parent is none.
func appendSpanHead(b []byte, tid traceID, sid, parent spanID, name string, kind trace.SpanKind, start, end time.Time) []byte {
	b = appendTag(b, otlpwire.SpanTraceID, protowire.BytesType)
	b = appendBytes(b, tid[:])
	b = appendTag(b, otlpwire.SpanSpanID, protowire.BytesType)
	b = appendBytes(b, sid[:])
	if parent != (spanID{}) {
		b = appendTag(b, otlpwire.SpanParentID, protowire.BytesType)
		b = appendBytes(b, parent[:])
	}
	b = appendTag(b, otlpwire.SpanName, protowire.BytesType)
	b = appendString(b, name)
	// trace.SpanKind has the numbers of OTLP's Span.SpanKind.
	b = appendTag(b, otlpwire.SpanKind, protowire.VarintType)
	b = appendVarint(b, uint64(kind))
	end = spanEnd(start, end)
	b = appendTag(b, otlpwire.SpanStart, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, unixNano(start))
	b = appendTag(b, otlpwire.SpanEnd, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, unixNano(end))
}

// spanEnd returns the end of a span that starts at start: end, or for an
// instant (an orphan's one event) 1 ns later. Receivers such as Jaeger's
// flag a span that ends as it starts as a negative duration.
func spanEnd(start, end time.Time) time.Time {
	if !end.After(start) {
		return start.Add(time.Nanosecond)
	}
	return end
}

// appendEventHead appends the fields of an event before its attributes.
func appendEventHead(b []byte, t time.Time, name string) []byte {
	b = appendTag(b, otlpwire.EventTime, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, unixNano(t))
	b = appendTag(b, otlpwire.EventName, protowire.BytesType)
	return appendString(b, name)
}

// appendSpanTail appends the fields of a span after its events: its links,
// status and flags.
func appendSpanTail(b []byte, links []spanLink, status codes.Code, desc string, flags uint32) []byte {
	for i := range links {
		link := &links[i]
		b = appendTag(b, otlpwire.SpanLinks, protowire.BytesType)
		var sub int
		b, sub = openLen(b, subLenBytes)
		b = appendTag(b, otlpwire.LinkTraceID, protowire.BytesType)
		b = appendBytes(b, link.trace[:])
		b = appendTag(b, otlpwire.LinkSpanID, protowire.BytesType)
		b = appendBytes(b, link.span[:])
		for i := range link.attrs {
			b = appendKeyValue(b, otlpwire.LinkAttributes, &link.attrs[i])
		}
		b = appendTag(b, otlpwire.LinkFlags, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, spanFlags)
		b = closeLen(b, sub, subLenBytes)
	}
	if status == codes.Error {
		b = appendTag(b, otlpwire.SpanStatus, protowire.BytesType)
		var sub int
		b, sub = openLen(b, subLenBytes)
		b = appendTag(b, otlpwire.StatusMessage, protowire.BytesType)
		b = appendString(b, desc)
		b = appendTag(b, otlpwire.StatusCode, protowire.VarintType)
		b = appendVarint(b, uint64(tracepb.Status_STATUS_CODE_ERROR))
		b = closeLen(b, sub, subLenBytes)
	}
	b = appendTag(b, otlpwire.SpanFlags, protowire.Fixed32Type)
	return protowire.AppendFixed32(b, flags)
}

// openLen reserves n bytes for the length of a message about to be appended
// to b, and returns where the message starts.
func openLen(b []byte, n int) ([]byte, int) {
	for range n {
		b = append(b, 0)
	}
	return b, len(b)
}

// closeLen writes the length of the message b[start:] into the n bytes
// reserved before it (see openLen), moving the message if its length needs
// another number of bytes.
func closeLen(b []byte, start, n int) []byte {
	size := len(b) - start
	need := sizeVarint(uint64(size))
	switch {
	case need > n:
		b = append(b, make([]byte, need-n)...)
		copy(b[start+need-n:], b[start:start+size])
	case need < n:
		copy(b[start-n+need:], b[start:start+size])
		b = b[:len(b)-(n-need)]
	}
	// The varint fills exactly the room before the message.
	protowire.AppendVarint(b[start-n:start-n], uint64(size))
	return b
}

// appendKeyValue appends kv as field num, a KeyValue. Its size is known
// up front, so it is written in place, with one capacity check: a span has
// about fifty attributes, and appending them a byte or a field at a time
// was most of the cost of encoding it.
func appendKeyValue(b []byte, num protowire.Number, kv *attribute.KeyValue) []byte {
	var s string
	var n uint64
	var valTag byte // the AnyValue field that holds the value
	var valSize int // of that field's value
	switch kv.Value.Type() {
	case attribute.STRING:
		s = kv.Value.AsString()
		valTag, valSize = byte(otlpwire.AnyValueString)<<3|byte(protowire.BytesType), sizeVarint(uint64(len(s)))+len(s)
	case attribute.BOOL:
		if kv.Value.AsBool() {
			n = 1
		}
		valTag, valSize = byte(otlpwire.AnyValueBool)<<3|byte(protowire.VarintType), 1
	case attribute.INT64:
		n = uint64(kv.Value.AsInt64())
		valTag, valSize = byte(otlpwire.AnyValueInt)<<3|byte(protowire.VarintType), sizeVarint(n)
	case attribute.FLOAT64:
		n = math.Float64bits(kv.Value.AsFloat64())
		valTag, valSize = byte(otlpwire.AnyValueDouble)<<3|byte(protowire.Fixed64Type), 8
	default:
		// tcpspan sets no slice attributes; one would go as its text.
		s = kv.Value.String()
		valTag, valSize = byte(otlpwire.AnyValueString)<<3|byte(protowire.BytesType), sizeVarint(uint64(len(s)))+len(s)
	}
	key := string(kv.Key)
	anySize := 1 + valSize
	kvSize := 1 + sizeVarint(uint64(len(key))) + len(key) + 1 + sizeVarint(uint64(anySize)) + anySize
	if num >= 16 { // not for the fields tcpspan writes attributes to
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(kvSize))
	} else {
		b = append(b, byte(num)<<3|byte(protowire.BytesType))
		b = appendVarint(b, uint64(kvSize))
	}
	i := len(b)
	b = slices.Grow(b, kvSize)[:i+kvSize]
	b[i] = byte(otlpwire.KeyValueKey)<<3 | byte(protowire.BytesType)
	i = putVarint(b, i+1, uint64(len(key)))
	i += copy(b[i:], key)
	b[i] = byte(otlpwire.KeyValueValue)<<3 | byte(protowire.BytesType)
	i = putVarint(b, i+1, uint64(anySize))
	b[i] = valTag
	i++
	switch {
	case valTag&7 == byte(protowire.Fixed64Type):
		binary.LittleEndian.PutUint64(b[i:], n)
	case valTag&7 == byte(protowire.VarintType):
		putVarint(b, i, n)
	default:
		i = putVarint(b, i, uint64(len(s)))
		copy(b[i:], s)
	}
	return b
}

// sizeVarint is protowire.SizeVarint, quicker for the small values that
// nearly all lengths and values here are.
func sizeVarint(v uint64) int {
	switch {
	case v < 1<<7:
		return 1
	case v < 1<<14:
		return 2
	}
	return protowire.SizeVarint(v)
}

// putVarint writes v at b[i:], which has room for it, and returns the
// index after it.
func putVarint(b []byte, i int, v uint64) int {
	for v >= 0x80 {
		b[i] = byte(v) | 0x80
		v >>= 7
		i++
	}
	b[i] = byte(v)
	return i + 1
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
			v.Value = &commonpb.AnyValue_StringValue{StringValue: kv.Value.String()}
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
	if v < 0x80 { // small enough to be inlined: this is the common case
		return append(b, byte(v))
	}
	return appendLongVarint(b, v)
}

func appendLongVarint(b []byte, v uint64) []byte {
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
