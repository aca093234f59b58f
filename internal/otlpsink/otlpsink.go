// Package otlpsink is an OTLP/gRPC trace receiver that only counts: spans,
// and span events by name. It walks the protobuf wire format without
// building message objects, so that a benchmark measures the sender, not
// the receiver. Malformed requests are refused.
package otlpsink

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
)

// Sink is a running receiver.
type Sink struct {
	srv *grpc.Server
	lis net.Listener

	requests atomic.Uint64
	spans    atomic.Uint64
	bytes    atomic.Uint64

	mu     sync.Mutex
	events map[string]uint64 // span events by name
}

// Start listens on addr ("127.0.0.1:0" for any free port) and serves.
func Start(addr string) (*Sink, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Sink{lis: lis, events: make(map[string]uint64)}
	s.srv = grpc.NewServer(grpc.ForceServerCodec(countingCodec{s}), grpc.MaxRecvMsgSize(64<<20))
	coltracepb.RegisterTraceServiceServer(s.srv, service{})
	go s.srv.Serve(lis)
	return s, nil
}

// Addr is the address the sink listens on.
func (s *Sink) Addr() string { return s.lis.Addr().String() }

// Stop stops the receiver.
func (s *Sink) Stop() { s.srv.Stop() }

// Spans is the number of spans received.
func (s *Sink) Spans() uint64 { return s.spans.Load() }

// Requests is the number of export requests received.
func (s *Sink) Requests() uint64 { return s.requests.Load() }

// Bytes is the size of the requests received, in bytes.
func (s *Sink) Bytes() uint64 { return s.bytes.Load() }

// Events returns the number of span events named name.
func (s *Sink) Events(name string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.events[name]
}

type service struct {
	coltracepb.UnimplementedTraceServiceServer
}

func (service) Export(context.Context, *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// countingCodec replaces the proto codec on the server: it counts what a
// request holds and hands the service an empty request.
type countingCodec struct{ s *Sink }

func (c countingCodec) Name() string { return "proto" }

func (c countingCodec) Marshal(v any) ([]byte, error) {
	if _, ok := v.(*coltracepb.ExportTraceServiceResponse); ok {
		return nil, nil // an empty response: no partial success
	}
	return nil, fmt.Errorf("otlpsink: cannot marshal %T", v)
}

func (c countingCodec) Unmarshal(data []byte, v any) error {
	if _, ok := v.(*coltracepb.ExportTraceServiceRequest); !ok {
		return fmt.Errorf("otlpsink: cannot unmarshal into %T", v)
	}
	var n uint64
	events := map[string]uint64{}
	// ExportTraceServiceRequest.resource_spans = 1, ResourceSpans.scope_spans = 2,
	// ScopeSpans.spans = 2, Span.events = 11, Span.Event.name = 2.
	err := eachField(data, 1, func(rs []byte) error {
		return eachField(rs, 2, func(ss []byte) error {
			return eachField(ss, 2, func(span []byte) error {
				n++
				return eachField(span, 11, func(ev []byte) error {
					return eachField(ev, 2, func(name []byte) error {
						events[string(name)]++
						return nil
					})
				})
			})
		})
	})
	if err != nil {
		return err
	}
	c.s.requests.Add(1)
	c.s.spans.Add(n)
	c.s.bytes.Add(uint64(len(data)))
	c.s.mu.Lock()
	for k, v := range events {
		c.s.events[k] += v
	}
	c.s.mu.Unlock()
	return nil
}

var errMalformed = errors.New("otlpsink: malformed protobuf")

// eachField calls f with the payload of every length-delimited field num of
// the message b, and checks that b is well formed.
func eachField(b []byte, num protowire.Number, f func([]byte) error) error {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return errMalformed
		}
		b = b[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return errMalformed
			}
			if err := f(v); err != nil {
				return err
			}
			b = b[l:]
			continue
		}
		l = protowire.ConsumeFieldValue(n, typ, b)
		if l < 0 {
			return errMalformed
		}
		b = b[l:]
	}
	return nil
}
