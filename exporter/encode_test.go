package exporter

import (
	"bytes"
	"context"
	"errors"
	"math"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/tcpspan/tcpspan/conn"
	"github.com/tcpspan/tcpspan/internal/otlpwire"
)

// wantValue is what an attribute of the mapping must become on the wire:
// the same type and value.
func wantValue(t *testing.T, what string, kv attribute.KeyValue, got *commonpb.KeyValue) {
	t.Helper()
	if got.Key != string(kv.Key) {
		t.Errorf("%s: key %q, want %q", what, got.Key, kv.Key)
		return
	}
	ok := false
	switch v := got.Value.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		ok = kv.Value.Type() == attribute.STRING && v.StringValue == kv.Value.AsString()
	case *commonpb.AnyValue_IntValue:
		ok = kv.Value.Type() == attribute.INT64 && v.IntValue == kv.Value.AsInt64()
	case *commonpb.AnyValue_BoolValue:
		ok = kv.Value.Type() == attribute.BOOL && v.BoolValue == kv.Value.AsBool()
	case *commonpb.AnyValue_DoubleValue:
		ok = kv.Value.Type() == attribute.FLOAT64 && v.DoubleValue == kv.Value.AsFloat64()
	}
	if !ok {
		t.Errorf("%s: %s = %v on the wire, want %v (%v)", what, got.Key, got.Value, kv.Value.String(), kv.Value.Type())
	}
}

// Every fixture, exported and decoded as a collector would, is exactly its
// mapping: name, kind, times, every attribute with its type, every event.
func TestEncodedSpanIsTheMapping(t *testing.T) {
	conns := map[string]*conn.Connection{
		"clean client": cleanClient(), "clean server": cleanServer(), "abort": rinetdAbort("TCP_ABORT_ON_CLOSE"),
		"refused": refused(), "no socket": noSocket(), "overflow": acceptOverflow(),
		"reset established": resetEstablished(), "retransmitting": retransmitting(), "ipv6": ipv6Abort(),
		"storm": func() *conn.Connection {
			c := noSocket()
			c.Storm = &conn.Storm{Count: 4211, Peers: 3, First: at(1), Last: at(999)}
			c.Storm.Events[conn.EventRSTSent] = 4211
			return c
		}(),
	}
	for name, c := range conns {
		t.Run(name, func(t *testing.T) {
			e, mem := newTestExporter(t)
			// Export twice: the second span is written with the buffers
			// and caches the first one left behind.
			e.Export(c)
			e.Export(c)
			if err := e.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			spans := mem.spans()
			if len(spans) != 2 {
				t.Fatalf("%d spans, want 2", len(spans))
			}
			want := Map(c)
			for _, s := range spans {
				if s.Name != want.Name || int(s.Kind) != int(want.Kind) {
					t.Errorf("span %q kind %v, want %q %v", s.Name, s.Kind, want.Name, want.Kind)
				}
				if !nanos(s.StartTimeUnixNano).Equal(want.Start) || !nanos(s.EndTimeUnixNano).Equal(want.End) {
					t.Errorf("times %d-%d", s.StartTimeUnixNano, s.EndTimeUnixNano)
				}
				if s.Flags != spanFlags {
					t.Errorf("flags %#x, want %#x", s.Flags, spanFlags)
				}
				if len(s.Attributes) != len(want.Attributes) {
					t.Fatalf("%d attributes, want %d", len(s.Attributes), len(want.Attributes))
				}
				for i, kv := range want.Attributes {
					wantValue(t, "span", kv, s.Attributes[i])
				}
				if len(s.Events) != len(want.Events) {
					t.Fatalf("%d events, want %d", len(s.Events), len(want.Events))
				}
				for i, ev := range want.Events {
					got := s.Events[i]
					if got.Name != ev.Name || !nanos(got.TimeUnixNano).Equal(ev.Time) || len(got.Attributes) != len(ev.Attributes) {
						t.Fatalf("event %d: %s at %d with %d attributes, want %s at %v with %d", i,
							got.Name, got.TimeUnixNano, len(got.Attributes), ev.Name, ev.Time, len(ev.Attributes))
					}
					for j, kv := range ev.Attributes {
						wantValue(t, got.Name, kv, got.Attributes[j])
					}
				}
				wantCode := tracepb.Status_STATUS_CODE_UNSET
				if want.StatusDescription != "" {
					wantCode = tracepb.Status_STATUS_CODE_ERROR
				}
				if s.Status.GetCode() != wantCode || s.Status.GetMessage() != want.StatusDescription {
					t.Errorf("status %v %q, want %v %q", s.Status.GetCode(), s.Status.GetMessage(), wantCode, want.StatusDescription)
				}
			}
			if string(spans[0].SpanId) == string(spans[1].SpanId) || string(spans[0].TraceId) == string(spans[1].TraceId) {
				t.Error("two spans share an id")
			}
		})
	}
}

func TestKeyValueTypes(t *testing.T) {
	for _, kv := range []attribute.KeyValue{
		attribute.String("s", ""), attribute.String("s", "x"), attribute.Bool("b", false), attribute.Bool("b", true),
		attribute.Int64("i", 0), attribute.Int64("i", -1), attribute.Int64("i", math.MaxInt64),
		attribute.Float64("f", 0.5), attribute.Float64("f", math.Inf(-1)),
	} {
		sd := SpanData{Name: "x", Attributes: []attribute.KeyValue{kv}}
		var enc spanEncoder
		mem := &memClient{}
		e, err := New(nil, WithClient(mem))
		if err != nil {
			t.Fatal(err)
		}
		e.mu.Lock()
		g := e.cur.group(e.resourceLocked(resourceKey{service: "s"}))
		g.spans = enc.appendSpan(g.spans, &sd, traceID{1}, spanID{1}, spanID{}, nil, spanFlags)
		g.n++
		e.cur.spans++
		e.mu.Unlock()
		if err := e.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		spans := mem.spans()
		if len(spans) != 1 || len(spans[0].Attributes) != 1 {
			t.Fatalf("%v: got %v", kv, spans)
		}
		wantValue(t, "attribute", kv, spans[0].Attributes[0])
	}
}

// A backend slower than the spans come: the queue is bounded, Export never
// waits, and what the queue cannot take is folded into a storm span of its
// kind: every connection is exported, one span or a storm's count.
func TestFullQueueFoldsAndCounts(t *testing.T) {
	mem := &memClient{block: make(chan struct{})}
	e, err := New(nil, WithClient(mem), WithMaxBatchSize(10), WithMaxQueueSize(40),
		WithMaxConcurrentExports(1), WithBatchTimeout(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range 1000 {
		c := refused()
		c.Local = netip.AddrPortFrom(c.Local.Addr(), uint16(20000+i)) // ephemeral ports differ
		c.Start, c.End = at(i), at(i+1)
		e.Export(c)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Export blocked for %v", d)
	}
	close(mem.block)
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := e.Stats()
	spans := mem.spans()
	storms := stormSpans(spans)
	if len(storms) != 1 {
		t.Fatalf("%d storm spans in %d, want 1; stats %+v", len(storms), len(spans), st)
	}
	// In the queue: 40 spans, plus the batch the sender was blocked on;
	// the rest in one storm span.
	if st.Dropped() != 0 || st.Exported != uint64(len(spans)) || st.Exported > 51 || st.Exported < 41 {
		t.Fatalf("stats %+v, %d spans received, %d storms: want 40-50 exported, the rest in one storm", st, len(spans), len(storms))
	}
	s := storms[0]
	if n := accounted(spans); n != 1000 || uint64(attrInt(s, "tcpspan.storm.count")) != st.Folded+1 || st.Recorded+st.Folded != 1000 {
		t.Errorf("the spans account for %d connections, the storm for %d of %d folded: want 1000", n, attrInt(s, "tcpspan.storm.count"), st.Folded)
	}
	if s.Status.Code != tracepb.Status_STATUS_CODE_ERROR || !strings.Contains(s.Status.Message, " such in ") ||
		attrInt(s, "tcpspan.storm.events.rst_received") != int64(st.Folded+1) || attrInt(s, "tcpspan.storm.peer_addresses") != 1 {
		t.Errorf("storm span: status %v, attributes %v", s.Status, s.Attributes)
	}
	// It spans the connections it stands for: from the first folded to the last.
	if got, want := time.Unix(0, int64(s.EndTimeUnixNano)), at(1000); !got.Equal(want) {
		t.Errorf("storm ends at %v, want %v", got, want)
	}
}

// Only alike connections fold together: the same peer refusing some
// connections and resetting others gives two storm spans, each with its own
// diagnosis, though their events are of the same kinds.
func TestFoldKeepsDiagnosesApart(t *testing.T) {
	mem := &memClient{block: make(chan struct{})}
	e, err := New(nil, WithClient(mem), WithMaxBatchSize(10), WithMaxQueueSize(40),
		WithMaxConcurrentExports(1), WithBatchTimeout(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	reset := func() *conn.Connection {
		c := refused()
		c.Events = []conn.Event{c.Events[0], ev(1, conn.EventRSTReceived, conn.ContextKernel, curl, conn.StateEstablished),
			errEv(1, syscall.ECONNRESET, conn.StateEstablished), c.Events[3]}
		return c
	}
	for i := range 1000 {
		if i%2 == 0 {
			e.Export(refused())
		} else {
			e.Export(reset())
		}
	}
	close(mem.block)
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	types := map[string]int64{}
	for _, s := range stormSpans(mem.spans()) {
		for _, a := range s.Attributes {
			if a.Key == "error.type" {
				types[a.Value.GetStringValue()] += attrInt(s, "tcpspan.storm.count")
			}
		}
	}
	if len(types) != 2 || types["tcp.refused"] == 0 || types["tcp.rst_received"] == 0 || accounted(mem.spans()) != 1000 {
		t.Errorf("storm spans by error.type: %v; the spans account for %d of 1000", types, accounted(mem.spans()))
	}
}

// Folding is bounded: past maxFolds kinds at once, the queue's overflow is
// dropped and counted, as without folding.
func TestFullQueueDropsPastMaxFolds(t *testing.T) {
	mem := &memClient{block: make(chan struct{})}
	e, err := New(nil, WithClient(mem), WithMaxBatchSize(10), WithMaxQueueSize(40),
		WithMaxConcurrentExports(1), WithBatchTimeout(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	for i := range n {
		c := refused()
		c.Remote = netip.AddrPortFrom(c.Remote.Addr(), uint16(10000+i)) // a kind each
		e.Export(c)
	}
	close(mem.block)
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := e.Stats()
	spans := mem.spans()
	if len(stormSpans(spans)) != 0 || st.Folded != 0 || st.Recorded != n ||
		st.Exported != uint64(len(spans)) || st.Dropped() != n-uint64(len(spans)) || st.Dropped() < n-maxFolds-51 {
		t.Errorf("stats %+v, %d spans received: want %d kinds folded (one span each) and the rest past 40-50 dropped", st, len(spans), maxFolds)
	}
}

// stormSpans returns the spans with tcpspan.storm.count.
func stormSpans(spans []gotSpan) []gotSpan {
	var out []gotSpan
	for _, sp := range spans {
		if attrInt(sp, "tcpspan.storm.count") >= 0 {
			out = append(out, sp)
		}
	}
	return out
}

// accounted is how many connections spans stand for: one each, or a
// storm's count.
func accounted(spans []gotSpan) int64 {
	var n int64
	for _, sp := range spans {
		if c := attrInt(sp, "tcpspan.storm.count"); c >= 0 {
			n += c
		} else {
			n++
		}
	}
	return n
}

// Folds go out once their window has passed, while the agent runs: not
// only at Shutdown, and not only when a batch has waited its time.
func TestFoldSentAfterItsWindow(t *testing.T) {
	for _, batchTimeout := range []time.Duration{10 * time.Millisecond, time.Hour} {
		mem := &memClient{block: make(chan struct{})}
		e, err := New(nil, WithClient(mem), WithMaxBatchSize(2), WithMaxQueueSize(4),
			WithMaxConcurrentExports(1), WithBatchTimeout(batchTimeout))
		if err != nil {
			t.Fatal(err)
		}
		for range 50 {
			e.Export(refused())
		}
		close(mem.block)
		deadline := time.Now().Add(2*foldWindow + time.Second)
		folding := func() int {
			e.mu.Lock()
			defer e.mu.Unlock()
			return len(e.folds)
		}
		for folding() > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		// The batch the storm span went into is sent when full or when
		// its time is up.
		e.mu.Lock()
		e.pushLocked()
		e.mu.Unlock()
		for accounted(mem.spans()) < 50 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := accounted(mem.spans()); n != 50 {
			t.Errorf("batch timeout %v: before Shutdown, the spans account for %d of 50 connections; stats %+v", batchTimeout, n, e.Stats())
		}
		e.Shutdown(context.Background())
	}
}

// Shutdown is bounded by its context; what it could not send is counted.
func TestShutdownTimeout(t *testing.T) {
	mem := &memClient{block: make(chan struct{})}
	defer close(mem.block)
	e, err := New(nil, WithClient(mem), WithMaxBatchSize(10))
	if err != nil {
		t.Fatal(err)
	}
	for range 35 {
		e.Export(refused())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = e.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want the deadline", err)
	}
	st := e.Stats()
	if st.Recorded != 35 || st.Exported != 0 || st.ExportFailed+st.Dropped() != 35 {
		t.Errorf("stats %+v", st)
	}
	e.Export(refused())
	if st := e.Stats(); st.Recorded != 35 {
		t.Errorf("Export after Shutdown recorded a span: %+v", st)
	}
}

// A queue smaller than two batches gets smaller batches: it still holds at
// most its size, besides the batch being sent.
func TestSmallQueue(t *testing.T) {
	mem := &memClient{block: make(chan struct{})}
	e, err := New(nil, WithClient(mem), WithMaxQueueSize(16), WithMaxConcurrentExports(1), WithBatchTimeout(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		e.Export(refused())
	}
	close(mem.block)
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// 16 queued, plus the batch of 8 the sender was blocked on, plus the
	// storm span of the rest.
	st := e.Stats()
	spans := mem.spans()
	if st.Exported < 17 || st.Exported > 25 || st.Exported != uint64(len(spans)) || accounted(spans) != 100 || st.Dropped() != 0 {
		t.Errorf("stats %+v, spans account for %d: want 16-24 exported, the rest in a storm", st, accounted(spans))
	}
}

// The encoder writes what proto.Marshal writes for the same span, byte for
// byte (fields in number order, lengths in their shortest form), for every
// fixture, with and without a link, and with values whose lengths need one,
// two and three bytes: both from a SpanData (appendSpan) and straight from
// the connection, as the exporter does (appendConn).
func TestEncodingIsProtoMarshal(t *testing.T) {
	conns := []*conn.Connection{cleanClient(), cleanServer(), rinetdAbort("TCP_ABORT_ON_CLOSE"), refused(), noSocket(),
		acceptOverflow(), resetEstablished(), retransmitting(), ipv6Abort()}
	long := func(n int) string { return strings.Repeat("x", n) }
	for _, n := range []int{1, 100, 127, 128, 300, 16383, 16384, 70000} {
		c := rinetdAbort(long(n))
		c.Owner.Comm = long(n / 2)
		conns = append(conns, c)
	}
	storm := noSocket()
	storm.Storm = &conn.Storm{Count: 4211, Peers: 3, First: at(1), Last: at(999)}
	storm.Storm.Events[conn.EventRSTSent] = 4211
	storm.Storm.Events[conn.EventDrop] = 7
	odd := cleanServer() // every flag, and a state the kernel may add one day
	odd.Midlife, odd.EndUnseen, odd.OwnerFromListener, odd.EventsDropped = true, true, true, 3
	odd.Events = append(odd.Events, conn.Event{Time: at(50), Kind: conn.EventState, State: 40, OldState: 41, Context: conn.ContextKernel, FD: -1})
	odd.FinalState = 40
	conns = append(conns, storm, odd)
	m := newCachingMapper()
	var enc spanEncoder
	var sd SpanData
	for i, c := range conns {
		errType, desc, isErr := Diagnose(c)
		m.mapInto(&sd, c, errType, desc, isErr)
		peer := spanLink{trace: traceID{1, 2}, span: spanID{7}, attrs: peerLinkAttrs}
		cause := spanLink{trace: traceID{9}, span: spanID{8}, attrs: closedAfterFailure}
		for _, links := range [][]spanLink{nil, {cause}, {peer, cause}} {
			for _, parent := range []spanID{{}, {4, 5}} {
				flags := spanFlags
				if parent != (spanID{}) {
					flags = remoteParentFlags
				}
				want := protowire.AppendTag([]byte{0xff}, otlpwire.ScopeSpansSpans, protowire.BytesType)
				b, err := proto.MarshalOptions{Deterministic: true}.Marshal(spanProto(&sd, traceID{1, 2}, spanID{3}, parent, links, flags))
				if err != nil {
					t.Fatal(err)
				}
				want = protowire.AppendBytes(want, b)
				got := enc.appendSpan([]byte{0xff}, &sd, traceID{1, 2}, spanID{3}, parent, links, flags)
				if !bytes.Equal(got, want) {
					t.Errorf("connection %d (%s), %d links, parent %x: appendSpan differs from proto.Marshal\n got %x\nwant %x", i, sd.Name, len(links), parent, got, want)
				}
				if parent != (spanID{}) {
					continue // connection spans have no parent
				}
				got = enc.appendConn([]byte{0xff}, m, c, errType, desc, isErr, traceID{1, 2}, spanID{3}, links)
				if !bytes.Equal(got, want) {
					t.Errorf("connection %d (%s), %d links: appendConn differs from proto.Marshal\n got %x\nwant %x", i, sd.Name, len(links), got, want)
				}
			}
		}
	}
}

// spanProto builds the OTLP message of a span, as the SDK's exporter would.
func spanProto(sd *SpanData, tid traceID, sid, parent spanID, links []spanLink, flags uint32) *tracepb.Span {
	s := &tracepb.Span{TraceId: tid[:], SpanId: sid[:], Name: sd.Name, Kind: tracepb.Span_SpanKind(sd.Kind),
		StartTimeUnixNano: unixNano(sd.Start), EndTimeUnixNano: unixNano(sd.End),
		Attributes: keyValues(sd.Attributes), Flags: flags}
	if parent != (spanID{}) {
		s.ParentSpanId = parent[:]
	}
	for _, ev := range sd.Events {
		s.Events = append(s.Events, &tracepb.Span_Event{TimeUnixNano: unixNano(ev.Time), Name: ev.Name, Attributes: keyValues(ev.Attributes)})
	}
	for _, link := range links {
		s.Links = append(s.Links, &tracepb.Span_Link{TraceId: link.trace[:], SpanId: link.span[:],
			Attributes: keyValues(link.attrs), Flags: spanFlags})
	}
	if sd.StatusCode == codes.Error {
		s.Status = &tracepb.Status{Message: sd.StatusDescription, Code: tracepb.Status_STATUS_CODE_ERROR}
	}
	return s
}
