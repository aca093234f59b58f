package testutil

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"
)

// testSpan is what TestJaeger sends and expects back.
type testSpan struct {
	service      string
	traceID      [16]byte
	spanID       [8]byte
	name         string
	kind         SpanKind
	start, end   time.Time
	attrs        map[string]any // string or int64
	event        string
	eventTime    time.Time
	eventAttrs   map[string]any
	statusCode   StatusCode
	statusDetail string
}

func newTestSpan(service, name string) testSpan {
	now := time.Now()
	s := testSpan{
		service:      service,
		name:         name,
		kind:         SpanKindClient,
		start:        now.Add(-50 * time.Millisecond),
		end:          now,
		attrs:        map[string]any{"network.peer.port": int64(8080), "tcpspan.reset.reason": "TCP_ABORT_ON_CLOSE"},
		event:        "tcp.reset",
		eventTime:    now.Add(-10 * time.Millisecond),
		eventAttrs:   map[string]any{"tcpspan.reset.direction": "sent"},
		statusCode:   StatusError,
		statusDetail: "connection reset by peer",
	}
	for i := range s.traceID {
		s.traceID[i] = byte(rand.Uint32())
	}
	for i := range s.spanID {
		s.spanID[i] = byte(rand.Uint32())
	}
	return s
}

// TestJaeger sends one span over OTLP/gRPC and one over OTLP/HTTP (JSON), both
// encoded by hand, and reads them back through the query API.
func TestJaeger(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Jaeger v2, built on first use (minutes): not in -short")
	}
	j := StartJaeger(t)
	since := time.Now().Add(-time.Minute)

	grpcSpan := newTestSpan("tcpspan-test-grpc", "connect 10.0.0.1:8080")
	sendOTLPGRPC(t, j.OTLPGRPC, grpcSpan)
	httpSpan := newTestSpan("tcpspan-test-http", "connect 10.0.0.2:8080")
	httpSpan.kind = SpanKindServer
	sendOTLPHTTPJSON(t, j.OTLPHTTP, httpSpan)

	for _, want := range []testSpan{grpcSpan, httpSpan} {
		t.Run(want.service, func(t *testing.T) {
			spans := j.WaitSpans(t, want.service, since, 1, 10*time.Second)
			if len(spans) != 1 {
				t.Fatalf("got %d spans, want 1: %+v", len(spans), spans)
			}
			checkSpan(t, spans[0], want)
		})
	}

	services := j.Services(t)
	for _, s := range []string{grpcSpan.service, httpSpan.service} {
		if !slices.Contains(services, s) {
			t.Errorf("Services() = %q, missing %q", services, s)
		}
	}
	if traces := j.Traces(t, "no-such-service", since); len(traces) != 0 {
		t.Errorf("Traces(no-such-service) = %+v, want none", traces)
	}
}

func checkSpan(t *testing.T, got Span, want testSpan) {
	t.Helper()
	if got.Service != want.service {
		t.Errorf("service.name = %q, want %q", got.Service, want.service)
	}
	if got.TraceID != hex.EncodeToString(want.traceID[:]) || got.SpanID != hex.EncodeToString(want.spanID[:]) {
		t.Errorf("ids = %s/%s, want %x/%x", got.TraceID, got.SpanID, want.traceID, want.spanID)
	}
	if got.Name != want.name {
		t.Errorf("name = %q, want %q", got.Name, want.name)
	}
	if got.Kind != want.kind {
		t.Errorf("kind = %v, want %v", got.Kind, want.kind)
	}
	if !got.Start.Equal(want.start) || !got.End.Equal(want.end) {
		t.Errorf("start/end = %v/%v, want %v/%v", got.Start, got.End, want.start, want.end)
	}
	if got.Status.Code != want.statusCode || got.Status.Message != want.statusDetail {
		t.Errorf("status = %v %q, want %v %q", got.Status.Code, got.Status.Message, want.statusCode, want.statusDetail)
	}
	for k, v := range want.attrs {
		if got.Attributes[k] != v {
			t.Errorf("attribute %s = %#v, want %#v (all: %v)", k, got.Attributes[k], v, got.Attributes)
		}
	}
	if len(got.Events) != 1 {
		t.Fatalf("events = %+v, want 1", got.Events)
	}
	ev := got.Events[0]
	if ev.Name != want.event || !ev.Time.Equal(want.eventTime) {
		t.Errorf("event = %q at %v, want %q at %v", ev.Name, ev.Time, want.event, want.eventTime)
	}
	for k, v := range want.eventAttrs {
		if ev.Attributes[k] != v {
			t.Errorf("event attribute %s = %#v, want %#v", k, ev.Attributes[k], v)
		}
	}
}

// sendOTLPHTTPJSON posts an OTLP/JSON ExportTraceServiceRequest to /v1/traces.
func sendOTLPHTTPJSON(t *testing.T, baseURL string, s testSpan) {
	t.Helper()
	attrs := func(m map[string]any) []any {
		var out []any
		for k, v := range m {
			var val map[string]any
			switch v := v.(type) {
			case string:
				val = map[string]any{"stringValue": v}
			case int64:
				val = map[string]any{"intValue": strconv.FormatInt(v, 10)}
			}
			out = append(out, map[string]any{"key": k, "value": val})
		}
		return out
	}
	nanos := func(t time.Time) string { return strconv.FormatInt(t.UnixNano(), 10) }
	req := map[string]any{
		"resourceSpans": []any{map[string]any{
			"resource": map[string]any{"attributes": attrs(map[string]any{"service.name": s.service})},
			"scopeSpans": []any{map[string]any{
				"scope": map[string]any{"name": "tcpspan-test"},
				"spans": []any{map[string]any{
					"traceId":           hex.EncodeToString(s.traceID[:]),
					"spanId":            hex.EncodeToString(s.spanID[:]),
					"name":              s.name,
					"kind":              int(s.kind),
					"startTimeUnixNano": nanos(s.start),
					"endTimeUnixNano":   nanos(s.end),
					"attributes":        attrs(s.attrs),
					"events": []any{map[string]any{
						"timeUnixNano": nanos(s.eventTime),
						"name":         s.event,
						"attributes":   attrs(s.eventAttrs),
					}},
					"status": map[string]any{"code": int(s.statusCode), "message": s.statusDetail},
				}},
			}},
		}},
	}
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(baseURL+"/v1/traces", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/traces: %s: %s", resp.Status, answer)
	}
}

// sendOTLPGRPC calls TraceService/Export over cleartext HTTP/2 with a
// hand-encoded protobuf ExportTraceServiceRequest: gRPC without its module.
func sendOTLPGRPC(t *testing.T, hostport string, s testSpan) {
	t.Helper()
	msg := encodeExportRequest(s)
	frame := make([]byte, 5, 5+len(msg)) // uncompressed flag, big-endian length
	binary.BigEndian.PutUint32(frame[1:], uint32(len(msg)))
	frame = append(frame, msg...)

	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: &http.Transport{Protocols: &protocols}, Timeout: 10 * time.Second}
	req, err := http.NewRequest(http.MethodPost,
		"http://"+hostport+"/opentelemetry.proto.collector.trace.v1.TraceService/Export", bytes.NewReader(frame))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	// Jaeger's gRPC server stops gracefully: leave no connection open.
	defer client.CloseIdleConnections()
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body) // trailers arrive after the body
	status := resp.Trailer.Get("Grpc-Status")
	if status == "" { // a trailers-only answer puts it in the headers
		status = resp.Header.Get("Grpc-Status")
	}
	if resp.StatusCode != http.StatusOK || status != "0" {
		t.Fatalf("gRPC Export: HTTP %s, grpc-status %q, grpc-message %q",
			resp.Status, status, resp.Trailer.Get("Grpc-Message")+resp.Header.Get("Grpc-Message"))
	}
}

// Protobuf wire format, just enough for OTLP traces.
type pb []byte

func (b pb) tag(field, wire int) pb        { return binary.AppendUvarint(b, uint64(field<<3|wire)) }
func (b pb) varint(field int, v uint64) pb { return binary.AppendUvarint(b.tag(field, 0), v) }
func (b pb) fixed64(field int, v uint64) pb {
	return binary.LittleEndian.AppendUint64(b.tag(field, 1), v)
}
func (b pb) bytes(field int, v []byte) pb {
	return append(binary.AppendUvarint(b.tag(field, 2), uint64(len(v))), v...)
}
func (b pb) str(field int, v string) pb { return b.bytes(field, []byte(v)) }

// keyValues encodes attributes as repeated KeyValue{key=1, value=2 AnyValue}
// with AnyValue{string_value=1, int_value=3}.
func (b pb) keyValues(field int, m map[string]any) pb {
	for k, v := range m {
		var val pb
		switch v := v.(type) {
		case string:
			val = val.str(1, v)
		case int64:
			val = val.varint(3, uint64(v))
		default:
			panic(fmt.Sprintf("attribute %s: unsupported %T", k, v))
		}
		b = b.bytes(field, pb(nil).str(1, k).bytes(2, val))
	}
	return b
}

// encodeExportRequest encodes ExportTraceServiceRequest{resource_spans=1:
// ResourceSpans{resource=1: Resource{attributes=1}, scope_spans=2:
// ScopeSpans{scope=1: {name=1}, spans=2: Span}}}.
func encodeExportRequest(s testSpan) []byte {
	event := pb(nil).
		fixed64(1, uint64(s.eventTime.UnixNano())).
		str(2, s.event).
		keyValues(3, s.eventAttrs)
	status := pb(nil).str(2, s.statusDetail).varint(3, uint64(s.statusCode))
	span := pb(nil).
		bytes(1, s.traceID[:]).
		bytes(2, s.spanID[:]).
		str(5, s.name).
		varint(6, uint64(s.kind)).
		fixed64(7, uint64(s.start.UnixNano())).
		fixed64(8, uint64(s.end.UnixNano())).
		keyValues(9, s.attrs).
		bytes(11, event).
		bytes(15, status)
	scopeSpans := pb(nil).bytes(1, pb(nil).str(1, "tcpspan-test")).bytes(2, span)
	resource := pb(nil).keyValues(1, map[string]any{"service.name": s.service})
	resourceSpans := pb(nil).bytes(1, resource).bytes(2, scopeSpans)
	return pb(nil).bytes(1, resourceSpans)
}
