// Package otlpsink is an OTLP/gRPC trace receiver that only counts: spans,
// and span events by name. It walks the protobuf wire format without
// building message objects, so that a benchmark measures the sender, not
// the receiver. Malformed requests are refused.
//
// It is for tests and benchmarks: it must not store or forward what it
// receives, and the agent must not import it. Its field numbers come from
// internal/otlpwire, like the exporter's.
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
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tcpspan/tcpspan/internal/otlpwire"
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
	s.srv = grpc.NewServer(grpc.ForceServerCodecV2(countingCodec{s}), grpc.MaxRecvMsgSize(64<<20))
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
// request holds and hands the service an empty request. It is a CodecV2,
// which gets the request as the buffers it was received in: gRPC's bridge
// for a plain Codec first copies them into one, and that copy cost more
// than the counting.
type countingCodec struct{ s *Sink }

func (c countingCodec) Name() string { return "proto" }

func (c countingCodec) Marshal(v any) (mem.BufferSlice, error) {
	if _, ok := v.(*coltracepb.ExportTraceServiceResponse); ok {
		return nil, nil // an empty response: no partial success
	}
	return nil, fmt.Errorf("otlpsink: cannot marshal %T", v)
}

func (c countingCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if _, ok := v.(*coltracepb.ExportTraceServiceRequest); !ok {
		return fmt.Errorf("otlpsink: cannot unmarshal into %T", v)
	}
	r := reader{bufs: make([][]byte, 0, len(data))}
	for _, b := range data {
		if d := b.ReadOnlyData(); len(d) > 0 {
			r.bufs = append(r.bufs, d)
		}
		r.size += b.Len()
	}
	var n counts
	if err := n.request(&r); err != nil {
		return err
	}
	c.s.requests.Add(1)
	c.s.spans.Add(n.spans)
	c.s.bytes.Add(uint64(r.size))
	if len(n.events) > 0 {
		c.s.mu.Lock()
		for _, e := range n.events {
			c.s.events[e.name] += e.n
		}
		c.s.mu.Unlock()
	}
	return nil
}

var errMalformed = errors.New("otlpsink: malformed protobuf")

// counts is what one request holds.
type counts struct {
	spans  uint64
	events []eventCount // by name; a request holds a dozen names at most
	name   []byte       // scratch for an event name
}

type eventCount struct {
	name string
	n    uint64
}

func (c *counts) request(r *reader) error {
	return r.each(r.size, otlpwire.RequestResourceSpans, func(end int) error {
		return r.each(end, otlpwire.ResourceSpansScopeSpans, func(end int) error {
			return r.each(end, otlpwire.ScopeSpansSpans, func(end int) error {
				c.spans++
				// Most spans lie within one buffer: those are walked
				// as one slice, which is much cheaper.
				if b, ok := r.take(end); ok {
					return eachField(b, otlpwire.SpanEvents, c.event)
				}
				return r.each(end, otlpwire.SpanEvents, func(end int) error {
					if b, ok := r.take(end); ok {
						return c.event(b)
					}
					return r.each(end, otlpwire.EventName, func(end int) error {
						name, err := r.read(c.name[:0], end-r.pos)
						c.name = name
						if err == nil {
							c.count(name)
						}
						return err
					})
				})
			})
		})
	})
}

// event counts the span event ev by name.
func (c *counts) event(ev []byte) error {
	return eachField(ev, otlpwire.EventName, func(name []byte) error {
		c.count(name)
		return nil
	})
}

func (c *counts) count(name []byte) {
	for i := range c.events {
		if c.events[i].name == string(name) {
			c.events[i].n++
			return
		}
	}
	c.events = append(c.events, eventCount{string(name), 1})
}

// eachField calls f with the payload of every length-delimited field num of
// the message b, and checks that b is well formed.
func eachField(b []byte, num protowire.Number, f func([]byte) error) error {
	for len(b) > 0 {
		var tag uint64
		if b[0] < 0x80 { // every tag OTLP uses but one fits in a byte
			tag, b = uint64(b[0]), b[1:]
		} else {
			v, l := protowire.ConsumeVarint(b)
			if l < 0 {
				return errMalformed
			}
			tag, b = v, b[l:]
		}
		n, typ := protowire.DecodeTag(tag)
		if n <= 0 {
			return errMalformed
		}
		if typ != protowire.BytesType {
			l := protowire.ConsumeFieldValue(n, typ, b)
			if l < 0 {
				return errMalformed
			}
			b = b[l:]
			continue
		}
		var size uint64
		if len(b) > 0 && b[0] < 0x80 {
			size, b = uint64(b[0]), b[1:]
		} else {
			v, l := protowire.ConsumeVarint(b)
			if l < 0 {
				return errMalformed
			}
			size, b = v, b[l:]
		}
		if size > uint64(len(b)) {
			return errMalformed
		}
		if n == num {
			if err := f(b[:size]); err != nil {
				return err
			}
		}
		b = b[size:]
	}
	return nil
}

// reader walks a message received in several buffers, without copying it
// into one. pos counts bytes from the start of the message.
type reader struct {
	bufs [][]byte // what is left: bufs[0] is the current buffer
	pos  int
	size int
}

// each calls f for every length-delimited field num of the message that
// ends at end, positioned at the field's payload, with the payload's end;
// it skips the other fields and checks that the message is well formed.
func (r *reader) each(end int, num protowire.Number, f func(end int) error) error {
	for r.pos < end {
		tag, err := r.varint(end)
		if err != nil {
			return err
		}
		n, typ := protowire.DecodeTag(tag)
		if n <= 0 {
			return errMalformed
		}
		var skip uint64
		switch typ {
		case protowire.VarintType:
			if _, err := r.varint(end); err != nil {
				return err
			}
			continue
		case protowire.Fixed32Type:
			skip = 4
		case protowire.Fixed64Type:
			skip = 8
		case protowire.BytesType:
			if skip, err = r.varint(end); err != nil {
				return err
			}
			if n == num {
				if skip > uint64(end-r.pos) {
					return errMalformed
				}
				fieldEnd := r.pos + int(skip)
				if err := f(fieldEnd); err != nil {
					return err
				}
				if r.pos != fieldEnd {
					return errMalformed
				}
				continue
			}
		case protowire.StartGroupType:
			// Deprecated and unused by OTLP, but well formed.
			if err := r.skipGroup(end, n); err != nil {
				return err
			}
			continue
		default:
			return errMalformed
		}
		if err := r.skip(end, skip); err != nil {
			return err
		}
	}
	if r.pos != end {
		return errMalformed
	}
	return nil
}

// skipGroup skips the fields of group num, up to its end tag.
func (r *reader) skipGroup(end int, num protowire.Number) error {
	for {
		tag, err := r.varint(end)
		if err != nil {
			return err
		}
		n, typ := protowire.DecodeTag(tag)
		if n <= 0 {
			return errMalformed
		}
		switch typ {
		case protowire.EndGroupType:
			if n != num {
				return errMalformed
			}
			return nil
		case protowire.StartGroupType:
			err = r.skipGroup(end, n)
		case protowire.VarintType:
			_, err = r.varint(end)
		case protowire.Fixed32Type:
			err = r.skip(end, 4)
		case protowire.Fixed64Type:
			err = r.skip(end, 8)
		case protowire.BytesType:
			var l uint64
			if l, err = r.varint(end); err == nil {
				err = r.skip(end, l)
			}
		default:
			return errMalformed
		}
		if err != nil {
			return err
		}
	}
}

// take returns the bytes up to end and moves past them, if they all lie
// in the current buffer.
func (r *reader) take(end int) ([]byte, bool) {
	n := end - r.pos
	if len(r.bufs) == 0 || n > len(r.bufs[0]) || n <= 0 {
		return nil, false
	}
	b := r.bufs[0][:n]
	r.advance(n)
	return b, true
}

// varint reads a varint that must end before end.
func (r *reader) varint(end int) (uint64, error) {
	if len(r.bufs) > 0 {
		// Most varints lie within one buffer.
		b := r.bufs[0]
		if v, n := protowire.ConsumeVarint(b); n > 0 && n <= end-r.pos {
			r.advance(n)
			return v, nil
		}
	}
	var v uint64
	for i := 0; i < 10; i++ {
		if r.pos >= end || len(r.bufs) == 0 {
			return 0, errMalformed
		}
		c := r.bufs[0][0]
		r.advance(1)
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, nil
		}
	}
	return 0, errMalformed
}

// advance moves n bytes on, within the current buffer.
func (r *reader) advance(n int) {
	r.pos += n
	r.bufs[0] = r.bufs[0][n:]
	if len(r.bufs[0]) == 0 {
		r.bufs = r.bufs[1:]
	}
}

// skip moves n bytes on, which must end before end.
func (r *reader) skip(end int, n uint64) error {
	if n > uint64(end-r.pos) {
		return errMalformed
	}
	for left := int(n); left > 0; {
		if len(r.bufs) == 0 {
			return errMalformed
		}
		k := min(left, len(r.bufs[0]))
		r.advance(k)
		left -= k
	}
	return nil
}

// read appends the next n bytes to dst.
func (r *reader) read(dst []byte, n int) ([]byte, error) {
	for n > 0 {
		if len(r.bufs) == 0 {
			return nil, errMalformed
		}
		k := min(n, len(r.bufs[0]))
		dst = append(dst, r.bufs[0][:k]...)
		r.advance(k)
		n -= k
	}
	return dst, nil
}
