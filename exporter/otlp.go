package exporter

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/tcpspan/tcpspan/conn"
	"github.com/tcpspan/tcpspan/container"
	"github.com/tcpspan/tcpspan/internal/version"
	tcpsemconv "github.com/tcpspan/tcpspan/semconv"
)

// Defaults of the [Exporter] options.
const (
	// DefaultAgentService is the service of connections whose owner is
	// unknown, and of all connections with [WithSingleService], unless
	// OTEL_SERVICE_NAME is set in the agent's environment.
	DefaultAgentService = "tcpspan"
	// DefaultCleanRatio is the share of clean connections exported.
	// Connections with a problem are always exported.
	DefaultCleanRatio = 1.0
	// DefaultMaxServices bounds the per-process resources kept (one per
	// owning process: service.name, process.*). Beyond it, the least
	// recently used is forgotten, and rebuilt if the process shows up again.
	DefaultMaxServices = 256
	// DefaultMaxQueueSize bounds the spans waiting for export, all
	// processes together; when it is full, spans are dropped and counted.
	// At about 1-1.5 KB a span, a full queue is 8-12 MB of batches (twice
	// that with the garbage collector's headroom): under a reset storm to a
	// backend that cannot keep up, 16384 took the agent past 150 MB of RSS.
	DefaultMaxQueueSize = 8192
	// DefaultMaxBatchSize is the most spans sent in one request.
	DefaultMaxBatchSize = 512
	// DefaultBatchTimeout is how long a span may wait for its batch to
	// fill.
	DefaultBatchTimeout = 5 * time.Second
	// DefaultMaxConcurrentExports is how many requests may be in flight
	// at once.
	DefaultMaxConcurrentExports = 2
	// DefaultLinkWindow is how soon after one of its connections failed a
	// process must close another for the two spans to be linked.
	DefaultLinkWindow = 10 * time.Millisecond
)

// maxRecentFailures bounds the processes whose failed connections are
// remembered, failureHistory of each: 4096 × 520 bytes, about 2 MB, if that
// many processes fail connections within DefaultLinkWindow of one another.
const maxRecentFailures = 4096

// failureHistory is how many of a process's latest failed connections are
// remembered. The connection a process closes after a failure arrives when
// its socket is destroyed, which can be well after the close() (a FIN
// exchange, a late RST): a busy forwarder fails more connections in
// between, and its cause is not the last of them. In the rinetd storm of
// e2e/rinetd_test.go, 97% of such connections came within 8 failures of
// their cause and 98-99.6% within 16 (a few after more than 100); a reset
// inside close() always came right after its cause.
const failureHistory = 16

const instrumentationName = "github.com/tcpspan/tcpspan"

// Option configures an [Exporter].
type Option interface {
	apply(config) config
}

type optionFunc func(config) config

func (f optionFunc) apply(c config) config { return f(c) }

type config struct {
	spanExporter  sdktrace.SpanExporter
	client        otlptrace.Client
	cleanRatio    float64
	singleService bool
	agentService  string
	maxServices   int
	maxQueue      int
	maxBatch      int
	batchTimeout  time.Duration
	exportTimeout time.Duration
	concurrency   int
	base          *resource.Resource
	serviceOf     func(conn.Process) string
	cgroupRoot    string
	cleanEvents   bool
}

// WithSpanExporter sets where spans go: it must be the exporter made by
// [NewOTLP], whose OTLP client the Exporter drives directly. Other
// SDK span exporters are refused by [New]; use [WithClient]. One of the
// two is required: the exporter of NewOTLP follows the
// OTEL_EXPORTER_OTLP_* environment variables.
func WithSpanExporter(e sdktrace.SpanExporter) Option {
	return optionFunc(func(c config) config { c.spanExporter = e; return c })
}

// WithClient sets the OTLP client spans are uploaded through, for example
// otlptracegrpc.NewClient(…). The Exporter starts it in [New] and stops it
// in [Exporter.Shutdown]. It takes precedence over [WithSpanExporter].
func WithClient(c otlptrace.Client) Option {
	return optionFunc(func(cfg config) config { cfg.client = c; return cfg })
}

// WithCleanRatio sets the share of clean connections exported, from 0 to 1.
// The decision is made when the connection ends, so a connection with a
// reset, an error, an overflow, a drop or a retransmit is never sampled
// away. Default [DefaultCleanRatio].
func WithCleanRatio(r float64) Option {
	return optionFunc(func(c config) config { c.cleanRatio = r; return c })
}

// WithSingleService puts every span under the agent's own service instead
// of the owning process's.
func WithSingleService(on bool) Option {
	return optionFunc(func(c config) config { c.singleService = on; return c })
}

// WithAgentService names the agent's own service. Default
// [DefaultAgentService].
func WithAgentService(name string) Option {
	return optionFunc(func(c config) config { c.agentService = name; return c })
}

// WithMaxServices bounds the per-process resources kept. Default [DefaultMaxServices].
func WithMaxServices(n int) Option {
	return optionFunc(func(c config) config { c.maxServices = n; return c })
}

// WithMaxQueueSize bounds the spans waiting for export. Default [DefaultMaxQueueSize].
func WithMaxQueueSize(n int) Option {
	return optionFunc(func(c config) config { c.maxQueue = n; return c })
}

// WithMaxBatchSize sets the most spans per request. Default
// [DefaultMaxBatchSize].
func WithMaxBatchSize(n int) Option {
	return optionFunc(func(c config) config { c.maxBatch = n; return c })
}

// WithBatchTimeout sets how long spans wait to be batched. Default
// [DefaultBatchTimeout].
func WithBatchTimeout(d time.Duration) Option {
	return optionFunc(func(c config) config { c.batchTimeout = d; return c })
}

// WithExportTimeout bounds the upload of one batch, the OTLP client's
// retries included; a batch not accepted in time fails. Default 0: only the
// client's own bounds (OTEL_EXPORTER_OTLP_TIMEOUT per attempt, and its
// retry limit).
func WithExportTimeout(d time.Duration) Option {
	return optionFunc(func(c config) config { c.exportTimeout = d; return c })
}

// WithMaxConcurrentExports sets how many requests may be in flight.
// Default [DefaultMaxConcurrentExports].
func WithMaxConcurrentExports(n int) Option {
	return optionFunc(func(c config) config { c.concurrency = n; return c })
}

// WithServiceResolver replaces how an owning process is named as a
// service. Default: its OTEL_SERVICE_NAME, read from /proc/PID/environ,
// else its executable name.
func WithServiceResolver(f func(conn.Process) string) Option {
	return optionFunc(func(c config) config { c.serviceOf = f; return c })
}

// WithCleanEvents keeps the events of clean connections' spans. By
// default a connection without a problem is a lean span: its timings
// (tcpspan.handshake.duration, tcpspan.accept.delay, tcpspan.close.duration) as
// attributes, and no events.
func WithCleanEvents(on bool) Option {
	return optionFunc(func(c config) config { c.cleanEvents = on; return c })
}

// WithCgroupRoot names the cgroup v2 mount point (bpf.FindCgroup2), where
// the container of an owning process that is gone is found by its cgroup
// id. Without it, such a process's container is not named.
func WithCgroupRoot(path string) Option {
	return optionFunc(func(c config) config { c.cgroupRoot = path; return c })
}

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

type failure struct {
	trace traceID
	span  spanID
	end   int64 // UnixNano; 0 for an empty slot
}

// failureRing holds one process's latest failed connections, in the order
// they were exported.
type failureRing struct {
	f    [failureHistory]failure
	next int // the slot the next failure takes
}

type resourceKey struct {
	service string
	pid     uint32
	exe     string // basename of its executable; "" if unknown
	comm    string // the kernel's name for it
	// The owner's container and pod (container.id, k8s.pod.uid).
	container, pod string
}

// resourceEntry is the OTLP resource of one owning process, built once.
type resourceEntry struct {
	pb        *resourcepb.Resource
	schemaURL string
	used      uint64
}

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

// maxStormOverflow is how many storm spans may go past a full batch when
// the queue has no room: one stands for many orphans (tcpspan.storm.count), and
// there are few of them (one per kind a second), so they are kept rather
// than dropped with their whole count.
const maxStormOverflow = 64

var closedAfterFailure = []attribute.KeyValue{tcpsemconv.TCPLinkReasonClosedAfterFailure}

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
			ss := &tracepb.ScopeSpans{Scope: e.scope, SchemaUrl: tcpsemconv.SchemaURL}
			// The spans are already in the wire format: carried as the
			// message's unknown fields, they are marshalled verbatim as
			// ScopeSpans.spans, which receivers decode as usual.
			// (The OTLP clients' optional self-observability,
			// OTEL_GO_X_OBSERVABILITY, counts len(ScopeSpans.Spans) and so
			// sees none; Stats counts what was sent.)
			ss.ProtoReflect().SetUnknown(protoreflect.RawFields(g.spans))
			req = append(req, &tracepb.ResourceSpans{Resource: g.res.pb, SchemaUrl: g.res.schemaURL,
				ScopeSpans: []*tracepb.ScopeSpans{ss}})
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

// causeOf links a connection that its process closed with an error (say,
// a forwarder resetting its client) to the connection of the same process
// that failed just before its close() (its refused upstream connect): the
// cause of the cause. That is the latest of the process's failed
// connections that ended at or before the close(), and no more than
// [DefaultLinkWindow] before it. Connections arrive in the order the kernel
// finished them (the tracker keeps the ring buffer's order), so that failed
// connection is already known; those that ended after the close() are
// passed over.
func (e *Exporter) causeOf(c *conn.Connection, isErr bool) (failure, bool) {
	if !isErr || c.Side == conn.SideClient || c.Closer == nil || c.Closer.Time.IsZero() {
		return failure{}, false
	}
	h := e.failures[c.Closer.Process.PID]
	if h == nil {
		return failure{}, false
	}
	closed := c.Closer.Time.UnixNano()
	var best failure
	for _, f := range h.f {
		if f.end != 0 && f.end <= closed && f.end > best.end {
			best = f
		}
	}
	if best.end == 0 || closed-best.end > int64(DefaultLinkWindow) {
		return failure{}, false
	}
	return best, true
}

// rememberFailure records a failed connection of process pid, in place of
// its oldest one remembered.
func (e *Exporter) rememberFailure(pid uint32, f failure) {
	e.lastFailure = max(e.lastFailure, f.end)
	h := e.failures[pid]
	if h == nil {
		if len(e.failures) >= maxRecentFailures {
			e.forgetFailures()
		}
		if n := len(e.spareFailures); n > 0 {
			h = e.spareFailures[n-1]
			e.spareFailures[n-1] = nil
			e.spareFailures = e.spareFailures[:n-1]
			*h = failureRing{}
		} else {
			h = new(failureRing)
		}
		e.failures[pid] = h
	}
	h.f[h.next] = f
	h.next = (h.next + 1) % failureHistory
}

// forgetFailures makes room for processes: it forgets those whose latest
// failure is too old to be linked, or, if that frees less than a quarter
// of the room, all of them.
func (e *Exporter) forgetFailures() {
	for pid, h := range e.failures {
		latest := h.f[(h.next+failureHistory-1)%failureHistory].end
		if e.lastFailure-latest > int64(DefaultLinkWindow) {
			delete(e.failures, pid)
			e.spareFailures = append(e.spareFailures, h)
		}
	}
	if len(e.failures) > maxRecentFailures*3/4 {
		for pid, h := range e.failures {
			delete(e.failures, pid)
			e.spareFailures = append(e.spareFailures, h)
		}
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

// resourceKeyOf names the service, process and container c's span goes
// under.
func (e *Exporter) resourceKeyOf(c *conn.Connection) resourceKey {
	owner := c.Owner
	if e.cfg.singleService {
		return resourceKey{service: e.cfg.agentService, pid: uint32(os.Getpid()), exe: "tcpspan"}
	}
	if owner.PID == 0 {
		// No process owns it (a reset for no socket, a connection seen
		// mid-life): the agent's service, but never the agent's process,
		// which did not act.
		return resourceKey{service: e.cfg.agentService}
	}
	// One look at /proc per process (cached): its service and executable.
	var name, exe string
	if e.names != nil {
		n := e.names.lookup(owner)
		name, exe = n.name, n.exe
	} else {
		name = e.cfg.serviceOf(owner)
	}
	if name == "" {
		name = e.cfg.agentService
	}
	info := e.containers.Of(owner.PID, owner.Comm, c.OwnerCgroup)
	return resourceKey{service: name, pid: owner.PID, exe: exe, comm: owner.Comm, container: info.ID, pod: info.PodUID}
}

// resourceLocked returns the resource of key, building it on first use.
func (e *Exporter) resourceLocked(key resourceKey) *resourceEntry {
	e.clock++
	if r, ok := e.resources[key]; ok {
		r.used = e.clock
		return r
	}
	if len(e.resources) >= e.cfg.maxServices {
		// Forget the least recently used. Batches that hold it keep it
		// until they are sent.
		var oldest resourceKey
		var at uint64
		for k, r := range e.resources {
			if at == 0 || r.used < at {
				oldest, at = k, r.used
			}
		}
		delete(e.resources, oldest)
	}
	res := e.resourceFor(key)
	r := &resourceEntry{pb: resourceProto(res.Attributes()), schemaURL: res.SchemaURL(), used: e.clock}
	e.resources[key] = r
	return r
}

func (e *Exporter) resourceFor(k resourceKey) *resource.Resource {
	attrs := []attribute.KeyValue{semconv.ServiceName(k.service)}
	if k.pid != 0 {
		attrs = append(attrs, semconv.ProcessPID(int(k.pid)))
		switch {
		case k.exe == "":
			attrs = append(attrs, semconv.ProcessExecutableName(k.comm))
		case k.exe == k.comm || k.comm == "":
			attrs = append(attrs, semconv.ProcessExecutableName(k.exe))
		default:
			attrs = append(attrs, semconv.ProcessExecutableName(k.exe), tcpsemconv.TCPProcessCommKey.String(k.comm))
		}
	}
	if k.container != "" {
		attrs = append(attrs, semconv.ContainerID(k.container))
	}
	if k.pod != "" {
		attrs = append(attrs, semconv.K8SPodUID(k.pod))
	}
	own := resource.NewSchemaless(attrs...)
	if e.cfg.base == nil {
		return own
	}
	merged, err := resource.Merge(e.cfg.base, own)
	if err != nil {
		return own
	}
	return merged
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

// BaseResource is what every span's resource shares: host.name, the
// OTEL_RESOURCE_ATTRIBUTES of the agent's environment, and the SDK's
// identity. service.name and process.* are set per owning process.
func BaseResource(ctx context.Context) (*resource.Resource, error) {
	res, err := resource.New(ctx, resource.WithHost(), resource.WithTelemetrySDK(),
		resource.WithAttributes(attribute.String("telemetry.distro.name", "tcpspan")))
	if err != nil {
		return nil, fmt.Errorf("detect resource: %w", err)
	}
	// OTEL_RESOURCE_ATTRIBUTES, without its service.name, which is per process.
	env, err := resource.New(ctx, resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	var kept []attribute.KeyValue
	for _, kv := range env.Attributes() {
		if kv.Key != semconv.ServiceNameKey {
			kept = append(kept, kv)
		}
	}
	return resource.Merge(res, resource.NewSchemaless(kept...))
}

// Protocols of OTLP export (OTEL_EXPORTER_OTLP_PROTOCOL).
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// OTLP is an OTLP trace exporter whose client the [Exporter] drives
// directly, with spans it has already encoded. It is also an ordinary SDK
// span exporter.
type OTLP struct {
	*otlptrace.Exporter
	client otlptrace.Client
}

// NewOTLP returns an OTLP span exporter ([*OTLP]) over protocol
// ([ProtocolGRPC] or [ProtocolHTTP]), configured, as the OpenTelemetry SDK
// does it, by the standard OTEL_EXPORTER_OTLP_* variables (endpoint,
// headers, timeout, TLS, compression), which the command has checked. It
// does not connect: an unreachable collector shows up as export errors,
// retried by the client.
func NewOTLP(ctx context.Context, protocol string) (sdktrace.SpanExporter, error) {
	switch protocol {
	case ProtocolGRPC, ProtocolHTTP:
	default:
		return nil, fmt.Errorf("OTLP protocol %q: tcpspan supports %q and %q", protocol, ProtocolGRPC, ProtocolHTTP)
	}
	var client otlptrace.Client
	if protocol == ProtocolHTTP {
		client = otlptracehttp.NewClient()
	} else {
		client = otlptracegrpc.NewClient()
	}
	exp, err := otlptrace.New(ctx, client)
	if err != nil {
		return nil, err
	}
	return &OTLP{Exporter: exp, client: client}, nil
}
