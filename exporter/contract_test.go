package exporter

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/tcpspan/tcpspan/conn"
	"github.com/tcpspan/tcpspan/internal/otlpwire"
)

// The export path's contract (see rawScopeSpans): spans encoded by the
// exporter ride as unknown fields of a ScopeSpans message, and protobuf-go
// writes them back verbatim when an OTLP client marshals its request.
// These tests hold that contract at the boundary, with the real clients and
// receivers that decode with the generated OTLP types, so that a
// protobuf-go or OTLP client release that drops or rewrites unknown fields
// fails here instead of losing every span in silence.

// receiver records the requests an OTLP receiver decoded.
type receiver struct {
	mu   sync.Mutex
	reqs []*coltracepb.ExportTraceServiceRequest
}

func (r *receiver) add(req *coltracepb.ExportTraceServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, req)
}

func (r *receiver) requests() []*coltracepb.ExportTraceServiceRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reqs)
}

// grpcReceiver is the OTLP/gRPC trace service, decoding with gRPC's proto
// codec into the generated types, as a collector does.
type grpcReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	*receiver
}

func (g grpcReceiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	g.add(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// startGRPCReceiver returns an OTLP/gRPC client of a receiver on loopback.
func startGRPCReceiver(t *testing.T, r *receiver) otlptrace.Client {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, grpcReceiver{receiver: r})
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return otlptracegrpc.NewClient(otlptracegrpc.WithEndpoint(ln.Addr().String()), otlptracegrpc.WithInsecure())
}

// startHTTPReceiver returns an OTLP/HTTP (http/protobuf) client of a
// receiver on loopback.
func startHTTPReceiver(t *testing.T, r *receiver) otlptrace.Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var body io.Reader = req.Body
		if req.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(req.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		b, err := io.ReadAll(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var msg coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &msg); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.add(&msg)
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	}))
	t.Cleanup(srv.Close)
	return otlptracehttp.NewClient(otlptracehttp.WithEndpoint(srv.Listener.Addr().String()), otlptracehttp.WithInsecure())
}

// TestEncodedSpansReachReceivers exports connections through each real
// OTLP client and checks that the receiver decodes every one as a span of
// ScopeSpans.spans, with nothing left over as unknown fields.
func TestEncodedSpansReachReceivers(t *testing.T) {
	for _, tt := range []struct {
		protocol string
		start    func(*testing.T, *receiver) otlptrace.Client
	}{
		{otlpwire.ProtocolGRPC, startGRPCReceiver},
		{otlpwire.ProtocolHTTP, startHTTPReceiver},
	} {
		t.Run(tt.protocol, func(t *testing.T) {
			r := &receiver{}
			e, err := New(nil, WithClient(tt.start(t, r)), WithBatchTimeout(time.Millisecond),
				WithServiceResolver(func(p conn.Process) string { return p.Comm + "-svc" }))
			if err != nil {
				t.Fatal(err)
			}
			conns := []*conn.Connection{cleanClient(), cleanServer(), refused(), rinetdAbort("TCP_ABORT_ON_CLOSE")}
			m := newCachingMapper()
			var want []string
			for _, c := range conns {
				want = append(want, m.spanName(c))
				e.Export(c)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := e.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			if st := e.Stats(); st.Exported != uint64(len(conns)) || st.ExportFailed != 0 {
				t.Fatalf("stats %+v: want %d spans exported", st, len(conns))
			}

			var got []string
			for _, req := range r.requests() {
				for _, rs := range req.ResourceSpans {
					for _, ss := range rs.ScopeSpans {
						if u := ss.ProtoReflect().GetUnknown(); len(u) > 0 {
							t.Errorf("the receiver left %d bytes of ScopeSpans undecoded", len(u))
						}
						if ss.Scope.GetName() != instrumentationName {
							t.Errorf("scope %q, want %q", ss.Scope.GetName(), instrumentationName)
						}
						for _, sp := range ss.Spans {
							if len(sp.TraceId) != 16 || len(sp.SpanId) != 8 || sp.StartTimeUnixNano == 0 || sp.EndTimeUnixNano < sp.StartTimeUnixNano {
								t.Errorf("span %q: trace id %x, span id %x, %d..%d", sp.Name, sp.TraceId, sp.SpanId, sp.StartTimeUnixNano, sp.EndTimeUnixNano)
							}
							got = append(got, sp.Name)
						}
					}
				}
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("the receiver decoded spans %q, want %q", got, want)
			}
		})
	}
}

// TestRawScopeSpansMarshalVerbatim pins the contract to the byte: the
// marshalled ScopeSpans is its known fields followed by the encoded spans,
// unchanged, and decodes to the very spans that were encoded.
func TestRawScopeSpansMarshalVerbatim(t *testing.T) {
	var enc spanEncoder
	m := newCachingMapper()
	var spans []byte
	for _, c := range []*conn.Connection{cleanClient(), refused()} {
		errType, desc, isErr := Diagnose(c)
		tid, sid := newIDs()
		spans = enc.appendConn(spans, m, c, errType, desc, isErr, tid, sid, nil)
	}
	scope := &commonpb.InstrumentationScope{Name: instrumentationName, Version: "test"}

	got, err := proto.Marshal(rawScopeSpans(scope, spans))
	if err != nil {
		t.Fatal(err)
	}
	head, err := proto.Marshal(&tracepb.ScopeSpans{Scope: scope, SchemaUrl: rawScopeSpans(scope, nil).SchemaUrl})
	if err != nil {
		t.Fatal(err)
	}
	if want := append(head, spans...); !bytes.Equal(got, want) {
		t.Fatalf("marshalled ScopeSpans (%d bytes) is not its known fields (%d) followed by the encoded spans (%d)",
			len(got), len(head), len(spans))
	}
	var back tracepb.ScopeSpans
	if err := proto.Unmarshal(got, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Spans) != 2 || len(back.ProtoReflect().GetUnknown()) != 0 {
		t.Fatalf("decoded %d spans and %d unknown bytes, want 2 spans and none", len(back.Spans), len(back.ProtoReflect().GetUnknown()))
	}
}
