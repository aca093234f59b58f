package exporter

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/reflect/protoreflect"

	tcpsemconv "github.com/tcpspan/tcpspan/semconv"
)

// maxStormOverflow is how many storm spans may go past a full batch when
// the queue has no room: one stands for many orphans (tcpspan.storm.count), and
// there are few of them (one per kind a second), so they are kept rather
// than dropped with their whole count.
const maxStormOverflow = 64

// batch holds encoded spans grouped by resource. Batches are recycled:
// their buffers keep their capacity.
type batch struct {
	groups  []group
	spans   int
	started time.Time
}

type group struct {
	res   *resourceEntry
	spans []byte // ScopeSpans.spans elements, in the wire format
	n     int
}

// pushLocked hands the filling batch to the senders, if the queue has room.
func (e *Exporter) pushLocked() bool {
	select {
	case e.queue <- e.cur:
		e.cur = e.newBatch()
		return true
	default:
		return false
	}
}

// newBatch returns a recycled batch, or a new one. Recycling keeps the
// grown buffers: growing them again for every batch cost more than
// writing the spans.
func (e *Exporter) newBatch() *batch {
	select {
	case b := <-e.free:
		b.groups = b.groups[:0]
		b.spans = 0
		return b
	default:
		return &batch{}
	}
}

func (e *Exporter) recycle(b *batch) {
	select {
	case e.free <- b:
	default:
	}
}

// group returns the batch's group of resource res, adding one, with a
// recycled buffer, if needed. Batches hold few resources: a linear search
// is cheapest.
func (b *batch) group(res *resourceEntry) *group {
	for i := range b.groups {
		if b.groups[i].res == res {
			return &b.groups[i]
		}
	}
	if len(b.groups) < cap(b.groups) {
		b.groups = b.groups[:len(b.groups)+1]
	} else {
		b.groups = append(b.groups, group{})
	}
	g := &b.groups[len(b.groups)-1]
	g.res, g.spans, g.n = res, g.spans[:0], 0
	return g
}

// tick sends a batch that waited long enough, however full, and the folds
// whose window closed.
func (e *Exporter) tick() {
	// Folds go out a window after they open, however long batches wait.
	period := max(min(e.cfg.batchTimeout/4, foldWindow), time.Millisecond)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-e.tickStop:
			return
		case now := <-t.C:
			e.mu.Lock()
			if !e.closed {
				e.flushFoldsLocked(now, false)
				if e.cur.spans > 0 && now.Sub(e.cur.started) >= e.cfg.batchTimeout {
					e.pushLocked()
				}
			}
			e.mu.Unlock()
		}
	}
}

// send uploads queued batches until the queue is closed.
func (e *Exporter) send() {
	var req []*tracepb.ResourceSpans
	for b := range e.queue {
		if e.sendCtx.Err() != nil {
			// Shutdown ran out of time: what is left is dropped, and
			// counted as such by Stats.Dropped.
			e.recycle(b)
			continue
		}
		req = req[:0]
		for i := range b.groups {
			g := &b.groups[i]
			req = append(req, &tracepb.ResourceSpans{Resource: g.res.pb, SchemaUrl: g.res.schemaURL,
				ScopeSpans: []*tracepb.ScopeSpans{rawScopeSpans(e.scope, g.spans)}})
		}
		if err := e.upload(req); err != nil {
			e.failed.Add(uint64(b.spans))
			otel.Handle(fmt.Errorf("export %d spans: %w", b.spans, err))
		} else {
			e.exported.Add(uint64(b.spans))
		}
		clear(req) // let go of the resources and scope spans
		e.recycle(b)
	}
}

// upload sends one batch, within the export timeout if there is one.
func (e *Exporter) upload(req []*tracepb.ResourceSpans) error {
	ctx := e.sendCtx
	if e.cfg.exportTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.cfg.exportTimeout)
		defer cancel()
	}
	return e.cfg.client.UploadTraces(ctx, req)
}

// rawScopeSpans returns the ScopeSpans of scope whose spans are spans:
// elements of ScopeSpans.spans already in the OTLP wire format, as the
// span encoder writes them (appendConn, appendSpan).
//
// This is the export path's contract with protobuf-go. The spans ride as
// the message's unknown fields (ScopeSpans.Spans stays empty), and every
// OTLP client hands the message to proto.Marshal (otlptracehttp directly,
// otlptracegrpc through gRPC's proto codec), which writes unknown fields
// back verbatim after the known ones. On the wire that is exactly
// ScopeSpans.spans, so receivers decode ordinary spans. If a protobuf-go
// release stopped writing unknown fields back, spans would vanish without
// an error: TestEncodedSpansReachReceivers sends them through both real
// OTLP clients to receivers that decode them with the generated OTLP
// types, and fails then. (The OTLP clients' optional self-observability,
// OTEL_GO_X_OBSERVABILITY, counts len(ScopeSpans.Spans) and so sees none;
// Stats counts what was sent.)
func rawScopeSpans(scope *commonpb.InstrumentationScope, spans []byte) *tracepb.ScopeSpans {
	ss := &tracepb.ScopeSpans{Scope: scope, SchemaUrl: tcpsemconv.SchemaURL}
	ss.ProtoReflect().SetUnknown(protoreflect.RawFields(spans))
	return ss
}
