package exporter

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/sdk/resource"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"

	"github.com/tcpspan/tcpspan/conn"
	"github.com/tcpspan/tcpspan/container"
	"github.com/tcpspan/tcpspan/internal/version"
)

const instrumentationName = "github.com/tcpspan/tcpspan"

// Stats are the exporter's own counts.
type Stats struct {
	Recorded   uint64 // spans built for export, or dropped from a full queue
	SampledOut uint64 // clean connections not exported (WithCleanRatio)
	// Folded counts connections the full queue could not take, folded
	// into the storm span of their kind (tcpspan.storm.count) instead of
	// dropped. The first of each kind is recorded as that span: spans
	// recorded, sampled out and folded add up to the connections given.
	Folded uint64
	// Diagnoses counts the diagnosis spans sent into applications'
	// traces, beside the connections' own spans (Recorded).
	Diagnoses    uint64
	Exported     uint64 // spans the backend accepted
	ExportFailed uint64 // spans in batches the backend refused or never got
	Services     int    // per-process resources kept
}

// Dropped is the number of spans recorded but neither exported nor failed:
// dropped from a full queue, or still queued. After [Exporter.Shutdown] it
// is exactly the spans dropped.
func (s Stats) Dropped() uint64 {
	done := s.Exported + s.ExportFailed
	if done > s.Recorded+s.Diagnoses {
		return 0
	}
	return s.Recorded + s.Diagnoses - done
}

// Exporter turns finished connections into spans, one per connection, and
// exports them over OTLP. Each span goes under the resource of its owning
// process (its service.name and process.*), so that it sits beside the
// application's own spans.
//
// Spans are written directly in the OTLP wire format into batches, one
// group per resource, without OpenTelemetry SDK span objects; background
// senders upload full batches through an [otlptrace.Client], which keeps
// the OTEL_EXPORTER_OTLP_* configuration, retries, headers, TLS and
// compression of the OTLP exporters.
type Exporter struct {
	cfg   config
	names *serviceNames
	// containers names owners' containers and pods.
	containers *container.Owners
	stop       func(context.Context) error // stops the client
	scope      *commonpb.InstrumentationScope

	mu        sync.Mutex
	closed    bool
	cur       *batch // filling; nil after Shutdown
	mapper    *mapper
	enc       spanEncoder
	resources map[resourceKey]*resourceEntry
	clock     uint64 // use counter for least-recently-used eviction
	// failures remembers, per process, the last connections it opened
	// that failed, to link the connection it then closes (causeOf).
	failures map[uint32]*failureRing
	// spareFailures are histories of forgotten processes, for reuse.
	spareFailures []*failureRing
	// lastFailure is the end of the latest failure remembered (UnixNano).
	lastFailure int64
	// folds are the kinds of connection being folded while the queue is
	// full (fold.go).
	folds map[foldKey]*fold
	// links is the span links of the span being encoded, reused.
	links []spanLink
	// diag is the diagnosis span being encoded, reused.
	diag SpanData

	queue    chan *batch // full batches, bounded: maxQueue spans in all
	free     chan *batch // sent batches, kept with their buffers' capacity
	senders  sync.WaitGroup
	sendCtx  context.Context
	cancel   context.CancelFunc
	tickStop chan struct{}
	ticker   sync.WaitGroup

	recorded   atomic.Uint64
	sampledOut atomic.Uint64
	folded     atomic.Uint64
	diagnoses  atomic.Uint64
	exported   atomic.Uint64
	failed     atomic.Uint64
}

// New returns an Exporter. base holds the resource attributes every span
// shares (host.name, OTEL_RESOURCE_ATTRIBUTES); build it with
// [BaseResource].
func New(base *resource.Resource, opts ...Option) (*Exporter, error) {
	cfg := config{
		cleanRatio:  DefaultCleanRatio,
		maxServices: DefaultMaxServices,
		maxQueue:    DefaultMaxQueueSize,
		maxBatch:    DefaultMaxBatchSize,
		concurrency: DefaultMaxConcurrentExports,
		base:        base,
	}
	for _, o := range opts {
		cfg = o.apply(cfg)
	}
	if cfg.cleanRatio < 0 || cfg.cleanRatio > 1 {
		return nil, fmt.Errorf("exporter: clean ratio %v is not between 0 and 1", cfg.cleanRatio)
	}
	var stop func(context.Context) error
	switch o, ok := cfg.spanExporter.(*OTLP); {
	case cfg.client != nil:
		if err := cfg.client.Start(context.Background()); err != nil {
			return nil, fmt.Errorf("exporter: start OTLP client: %w", err)
		}
		stop = cfg.client.Stop
	case ok:
		cfg.client, stop = o.client, o.Shutdown
	case cfg.spanExporter == nil:
		return nil, errors.New("exporter: no OTLP client")
	default:
		return nil, fmt.Errorf("exporter: span exporter %T: only the OTLP exporter of NewOTLP is supported; use WithClient", cfg.spanExporter)
	}
	if cfg.agentService == "" {
		cfg.agentService = DefaultAgentService
	}
	cfg.maxServices = max(cfg.maxServices, 1)
	cfg.maxQueue = max(cfg.maxQueue, 2)
	// The queue is the batch filling plus full batches waiting: a small
	// queue gets smaller batches, so that it still holds at most maxQueue
	// spans.
	cfg.maxBatch = max(min(cfg.maxBatch, cfg.maxQueue/2), 1)
	cfg.concurrency = max(cfg.concurrency, 1)
	if cfg.batchTimeout <= 0 {
		cfg.batchTimeout = DefaultBatchTimeout
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Exporter{
		cfg:       cfg,
		stop:      stop,
		scope:     &commonpb.InstrumentationScope{Name: instrumentationName, Version: version.Version()},
		mapper:    newCachingMapper(),
		resources: make(map[resourceKey]*resourceEntry),
		failures:  make(map[uint32]*failureRing),
		folds:     make(map[foldKey]*fold),
		// The batch being filled counts towards the queue, so the channel
		// holds the rest.
		queue:    make(chan *batch, max(cfg.maxQueue/cfg.maxBatch-1, 1)),
		sendCtx:  ctx,
		cancel:   cancel,
		tickStop: make(chan struct{}),
	}
	// Every batch that can exist at once: queued, being sent, filling.
	e.free = make(chan *batch, cap(e.queue)+cfg.concurrency+1)
	e.cur = e.newBatch()
	if cfg.serviceOf == nil {
		e.names = newServiceNames()
		e.cfg.serviceOf = e.names.resolve
	}
	e.containers = container.NewOwners(cfg.cgroupRoot)
	if e.names != nil {
		e.mapper.exeOf = e.names.executable
	}
	e.mapper.cleanEvents = cfg.cleanEvents
	for range cfg.concurrency {
		e.senders.Go(e.send)
	}
	e.ticker.Go(e.tick)
	return e, nil
}

// Export records c as a span, unless it is clean and sampled out. It never
// blocks on the network: spans queue for background senders. When the
// queue is full, c is folded into a storm span of its kind (see fold.go),
// or, past maxFolds kinds, dropped; both are counted in [Stats]. It
// implements the agent's sink, and keeps nothing of c once it returns (the
// span is encoded, or the fold copies it), so the tracker may reuse c's
// memory (conn.WithReuse).
func (e *Exporter) Export(c *conn.Connection) {
	// Decide before mapping: a clean connection that is sampled out costs
	// a look at its events, not a span. (Diagnose finds an error only
	// where there is a Problem.)
	if !c.Problem() && !e.keepClean() {
		e.sampledOut.Add(1)
		return
	}
	key := e.resourceKeyOf(c) // may read /proc: outside the lock

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	if e.cur.spans >= e.cfg.maxBatch && !e.pushLocked() &&
		(c.Storm == nil || e.cur.spans >= e.cfg.maxBatch+maxStormOverflow) {
		// The queue is full: fold c into a storm span of its kind, or,
		// if too many kinds are being folded, drop it (counted by
		// Stats.Dropped).
		if !e.foldLocked(c, key) {
			e.recorded.Add(1)
		}
		return
	}
	errType, desc, isErr := Diagnose(c)
	e.recorded.Add(1)
	tid, sid, peer, derived := connIDs(c)
	links := e.links[:0]
	if derived {
		links = append(links, peer)
	}
	if f, ok := e.causeOf(c, isErr); ok {
		links = append(links, spanLink{trace: f.trace, span: f.span, attrs: closedAfterFailure})
	}
	links = appendStormSample(links, c.Storm)
	links = appendRequestLinks(links, c)
	if isErr && c.Side == conn.SideClient && c.Owner.PID != 0 {
		e.rememberFailure(c.Owner.PID, failure{trace: tid, span: sid, end: c.End.UnixNano()})
	}
	e.appendLocked(c, errType, desc, isErr, key, tid, sid, links)
	e.links = links[:0] // keep the grown array
	if q := c.Unanswered(); isErr && q != nil {
		e.appendDiagnosisLocked(c, q, errType, desc, key, tid, sid)
	}
}

// appendDiagnosisLocked encodes the span that puts c's diagnosis into the
// trace of q, the request it failed while carrying (see
// mapper.diagnosisSpan), under c's resource. e.mu is held.
func (e *Exporter) appendDiagnosisLocked(c *conn.Connection, q *conn.Request, errType, desc string, res resourceKey,
	tid traceID, sid spanID) {
	e.mapper.diagnosisSpan(&e.diag, c, q, errType, desc)
	_, own := newIDs()
	link := spanLink{trace: tid, span: sid, attrs: connectionLinkAttrs}
	g := e.cur.group(e.resourceLocked(res))
	g.spans = e.enc.appendSpan(g.spans, &e.diag, traceID(q.TraceID), own, spanID(q.SpanID), []spanLink{link}, remoteParentFlags)
	e.diagnoses.Add(1)
	e.appendedLocked(g)
}

// newIDs returns a random trace id and span id, neither all zeros. The
// runtime's per-thread generator is cheap and needs no lock; ids need to be
// unique, not unpredictable.
func newIDs() (traceID, spanID) {
	var t traceID
	var s spanID
	for t == (traceID{}) {
		putUint64(t[:8], rand.Uint64())
		putUint64(t[8:], rand.Uint64())
	}
	for s == (spanID{}) {
		putUint64(s[:], rand.Uint64())
	}
	return t, s
}

func putUint64(b []byte, v uint64) {
	_ = b[7]
	for i := range 8 {
		b[i] = byte(v >> (8 * (7 - i)))
	}
}

func (e *Exporter) keepClean() bool {
	switch r := e.cfg.cleanRatio; {
	case r >= 1:
		return true
	case r <= 0:
		return false
	default:
		return rand.Float64() < r
	}
}

// Stats returns the exporter's counts.
func (e *Exporter) Stats() Stats {
	e.mu.Lock()
	services := len(e.resources)
	e.mu.Unlock()
	return Stats{
		Recorded:     e.recorded.Load(),
		SampledOut:   e.sampledOut.Load(),
		Folded:       e.folded.Load(),
		Diagnoses:    e.diagnoses.Load(),
		Exported:     e.exported.Load(),
		ExportFailed: e.failed.Load(),
		Services:     services,
	}
}

// Shutdown sends every queued span, bounded by ctx, and closes the
// exporter and its client. Spans still queued when ctx ends are dropped
// (see Stats.Dropped). Export after Shutdown does nothing.
func (e *Exporter) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.flushFoldsLocked(time.Time{}, true)
	e.closed = true
	last := e.cur
	e.cur = nil
	e.mu.Unlock()
	close(e.tickStop)
	e.ticker.Wait()

	if last.spans > 0 {
		select {
		case e.queue <- last:
		case <-ctx.Done():
		}
	}
	// Nothing sends on the queue any more: Export and tick check closed
	// under the lock.
	close(e.queue)
	done := make(chan struct{})
	go func() { e.senders.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		e.cancel() // abort uploads in flight and skip the rest
		<-done
		err = fmt.Errorf("exporter: flush: %w", ctx.Err())
	}
	e.cancel()
	return errors.Join(err, e.stop(ctx))
}
