package exporter

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcpspan/tcpspan/conn"
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
	// DefaultMaxServices bounds the per-process tracer providers (one per
	// owning process, each with its resource). Beyond it, the least
	// recently used is flushed and closed.
	DefaultMaxServices = 256
	// DefaultMaxQueueSize bounds each provider's queue of ended spans
	// waiting for export; when it is full, spans are dropped and counted.
	DefaultMaxQueueSize = 16384
	// DefaultLinkWindow is how soon after one of its connections failed a
	// process must close another for the two spans to be linked.
	DefaultLinkWindow = 10 * time.Millisecond
)

// maxRecentFailures bounds the per-process memory of failed connections.
const maxRecentFailures = 4096

const instrumentationName = "github.com/tcpspan/tcpspan"

// Option configures an [Exporter].
type Option interface {
	apply(config) config
}

type optionFunc func(config) config

func (f optionFunc) apply(c config) config { return f(c) }

type config struct {
	spanExporter  sdktrace.SpanExporter
	cleanRatio    float64
	singleService bool
	agentService  string
	maxServices   int
	maxQueue      int
	batchTimeout  time.Duration
	base          *resource.Resource
	serviceOf     func(conn.Process) string
}

// WithSpanExporter sets where spans go. Default: OTLP as configured by the
// OTEL_EXPORTER_OTLP_* environment variables (see [NewOTLPFromEnv]).
func WithSpanExporter(e sdktrace.SpanExporter) Option {
	return optionFunc(func(c config) config { c.spanExporter = e; return c })
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

// WithAgentService names the agent's own service. Default: the agent's
// OTEL_SERVICE_NAME, else [DefaultAgentService].
func WithAgentService(name string) Option {
	return optionFunc(func(c config) config { c.agentService = name; return c })
}

// WithMaxServices bounds the per-process providers. Default [DefaultMaxServices].
func WithMaxServices(n int) Option {
	return optionFunc(func(c config) config { c.maxServices = n; return c })
}

// WithMaxQueueSize bounds each provider's export queue. Default [DefaultMaxQueueSize].
func WithMaxQueueSize(n int) Option {
	return optionFunc(func(c config) config { c.maxQueue = n; return c })
}

// WithBatchTimeout sets how long spans wait to be batched. Default: the
// SDK's (OTEL_BSP_SCHEDULE_DELAY, 5 s).
func WithBatchTimeout(d time.Duration) Option {
	return optionFunc(func(c config) config { c.batchTimeout = d; return c })
}

// WithServiceResolver replaces how an owning process is named as a
// service. Default: its OTEL_SERVICE_NAME, read from /proc/PID/environ,
// else its executable name.
func WithServiceResolver(f func(conn.Process) string) Option {
	return optionFunc(func(c config) config { c.serviceOf = f; return c })
}

// Stats are the exporter's own counts.
type Stats struct {
	Recorded     uint64 // spans ended and queued for export
	SampledOut   uint64 // clean connections not exported (WithCleanRatio)
	Exported     uint64 // spans the backend accepted
	ExportFailed uint64 // spans in batches the backend refused or never got
	Services     int    // live per-process providers
}

// Dropped is the number of spans recorded but neither exported nor failed:
// dropped from a full queue, or still queued. After [Exporter.Shutdown] it
// is exactly the spans dropped.
func (s Stats) Dropped() uint64 {
	done := s.Exported + s.ExportFailed
	if done > s.Recorded {
		return 0
	}
	return s.Recorded - done
}

// Exporter turns finished connections into spans, one per connection,
// through the OpenTelemetry SDK, and exports them. Each owning process gets
// its own tracer provider, so that its spans carry its service.name and
// process.* resource and sit beside the application's own spans.
type Exporter struct {
	cfg      config
	exporter *countingExporter
	names    *serviceNames

	mu        sync.Mutex
	providers map[providerKey]*providerEntry
	clock     uint64 // use counter for least-recently-used eviction
	closed    bool

	recorded   atomic.Uint64
	sampledOut atomic.Uint64
	evictions  sync.WaitGroup

	// failures remembers, per process, the last connection it opened that
	// failed, to link the connection it then closes.
	failMu   sync.Mutex
	failures map[uint32]failure
}

type failure struct {
	span trace.SpanContext
	end  time.Time
}

var _ sdktrace.SpanExporter = (*countingExporter)(nil)

type providerKey struct {
	service string
	pid     uint32
	exe     string
}

type providerEntry struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	used   uint64
}

// New returns an Exporter. base holds the resource attributes every span
// shares (host.name, OTEL_RESOURCE_ATTRIBUTES); build it with
// [BaseResource].
func New(base *resource.Resource, opts ...Option) (*Exporter, error) {
	cfg := config{
		cleanRatio:  DefaultCleanRatio,
		maxServices: DefaultMaxServices,
		maxQueue:    DefaultMaxQueueSize,
		base:        base,
	}
	for _, o := range opts {
		cfg = o.apply(cfg)
	}
	if cfg.spanExporter == nil {
		return nil, errors.New("exporter: no span exporter")
	}
	if cfg.cleanRatio < 0 || cfg.cleanRatio > 1 {
		return nil, fmt.Errorf("exporter: clean ratio %v is not between 0 and 1", cfg.cleanRatio)
	}
	if cfg.agentService == "" {
		cfg.agentService = os.Getenv("OTEL_SERVICE_NAME")
	}
	if cfg.agentService == "" {
		cfg.agentService = DefaultAgentService
	}
	if cfg.maxServices < 1 {
		cfg.maxServices = 1
	}
	e := &Exporter{
		cfg:       cfg,
		exporter:  &countingExporter{next: cfg.spanExporter},
		providers: make(map[providerKey]*providerEntry),
		failures:  make(map[uint32]failure),
	}
	if cfg.serviceOf == nil {
		e.names = newServiceNames()
		e.cfg.serviceOf = e.names.resolve
	}
	return e, nil
}

// Export records c as a span, unless it is clean and sampled out. It never
// blocks on the network: spans queue for a background batcher, and a full
// queue drops them (counted in [Stats]). It implements the agent's sink.
func (e *Exporter) Export(c *conn.Connection) {
	// Decide before mapping: a clean connection that is sampled out costs
	// a diagnosis (a few ns), not a span.
	errType, desc, isErr := Diagnose(c)
	if !isErr && !c.Problem() && !e.keepClean() {
		e.sampledOut.Add(1)
		return
	}
	sd := mapDiagnosed(c, errType, desc, isErr)
	tracer := e.tracerFor(c.Owner)
	if tracer == nil {
		return
	}
	opts := []trace.SpanStartOption{
		trace.WithNewRoot(),
		trace.WithTimestamp(sd.Start),
		trace.WithSpanKind(sd.Kind),
		trace.WithAttributes(sd.Attributes...),
	}
	if link, ok := e.causeOf(c, sd.StatusCode == codes.Error); ok {
		opts = append(opts, trace.WithLinks(link))
	}
	_, span := tracer.Start(context.Background(), sd.Name, opts...)
	if sd.StatusCode == codes.Error && c.Side == conn.SideClient && c.Owner.PID != 0 {
		e.rememberFailure(c.Owner.PID, span.SpanContext(), c.End)
	}
	for _, ev := range sd.Events {
		span.AddEvent(ev.Name, trace.WithTimestamp(ev.Time), trace.WithAttributes(ev.Attributes...))
	}
	if sd.StatusCode == codes.Error {
		span.SetStatus(codes.Error, sd.StatusDescription)
	}
	span.End(trace.WithTimestamp(sd.End))
	e.recorded.Add(1)
}

// causeOf links a connection that its process closed with an error (say,
// a forwarder resetting its client) to the connection of the same process
// that failed just before (its refused upstream connect): the cause of the
// cause. Records arrive in the order the kernel finished them, so the
// failed connection is already known.
func (e *Exporter) causeOf(c *conn.Connection, isErr bool) (trace.Link, bool) {
	if !isErr || c.Side == conn.SideClient || c.Closer == nil || c.Closer.Time.IsZero() {
		return trace.Link{}, false
	}
	e.failMu.Lock()
	f, ok := e.failures[c.Closer.Process.PID]
	e.failMu.Unlock()
	if !ok || c.Closer.Time.Before(f.end) || c.Closer.Time.Sub(f.end) > DefaultLinkWindow {
		return trace.Link{}, false
	}
	return trace.Link{SpanContext: f.span, Attributes: []attribute.KeyValue{tcpsemconv.TCPLinkReasonClosedAfterFailure}}, true
}

func (e *Exporter) rememberFailure(pid uint32, sc trace.SpanContext, end time.Time) {
	e.failMu.Lock()
	defer e.failMu.Unlock()
	if len(e.failures) >= maxRecentFailures {
		clear(e.failures)
	}
	e.failures[pid] = failure{span: sc, end: end}
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

// tracerFor returns the tracer of the owning process's provider.
func (e *Exporter) tracerFor(owner conn.Process) trace.Tracer {
	key := providerKey{service: e.cfg.agentService, pid: uint32(os.Getpid()), exe: "tcpspan"}
	if !e.cfg.singleService && owner.PID != 0 {
		name := e.cfg.serviceOf(owner)
		if name == "" {
			name = e.cfg.agentService
		}
		key = providerKey{service: name, pid: owner.PID, exe: owner.Comm}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.clock++
	if p, ok := e.providers[key]; ok {
		p.used = e.clock
		return p.tracer
	}
	if len(e.providers) >= e.cfg.maxServices {
		e.evictOldest()
	}
	res := e.resourceFor(key)
	bspOpts := []sdktrace.BatchSpanProcessorOption{sdktrace.WithMaxQueueSize(e.cfg.maxQueue)}
	if e.cfg.batchTimeout > 0 {
		bspOpts = append(bspOpts, sdktrace.WithBatchTimeout(e.cfg.batchTimeout))
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.AlwaysSample()), // the tail decision is made in Export
		sdktrace.WithBatcher(e.exporter, bspOpts...))
	p := &providerEntry{tp: tp, used: e.clock,
		tracer: tp.Tracer(instrumentationName, trace.WithSchemaURL(tcpsemconv.SchemaURL))}
	e.providers[key] = p
	return p.tracer
}

func (e *Exporter) resourceFor(k providerKey) *resource.Resource {
	own := resource.NewSchemaless(
		semconv.ServiceName(k.service),
		semconv.ProcessPID(int(k.pid)),
		semconv.ProcessExecutableName(k.exe))
	if e.cfg.base == nil {
		return own
	}
	merged, err := resource.Merge(e.cfg.base, own)
	if err != nil {
		return own
	}
	return merged
}

// evictOldest flushes and closes the least recently used provider, in the
// background so that the reader never waits on the network.
func (e *Exporter) evictOldest() {
	var oldest providerKey
	var at uint64
	for k, p := range e.providers {
		if at == 0 || p.used < at {
			oldest, at = k, p.used
		}
	}
	p := e.providers[oldest]
	delete(e.providers, oldest)
	e.evictions.Add(1)
	go func() {
		defer e.evictions.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p.tp.Shutdown(ctx)
	}()
}

// Stats returns the exporter's counts.
func (e *Exporter) Stats() Stats {
	e.mu.Lock()
	services := len(e.providers)
	e.mu.Unlock()
	return Stats{
		Recorded:     e.recorded.Load(),
		SampledOut:   e.sampledOut.Load(),
		Exported:     e.exporter.exported.Load(),
		ExportFailed: e.exporter.failed.Load(),
		Services:     services,
	}
}

// Shutdown flushes every queued span, bounded by ctx, and closes the
// exporter. Spans still queued when ctx ends are dropped (see Stats.Dropped).
func (e *Exporter) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	e.closed = true
	providers := e.providers
	e.providers = nil
	e.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, 0, len(providers))
	var errMu sync.Mutex
	for _, p := range providers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.tp.Shutdown(ctx); err != nil {
				errMu.Lock()
				errs = append(errs, err)
				errMu.Unlock()
			}
		}()
	}
	wg.Wait()
	e.evictions.Wait()
	errs = append(errs, e.exporter.next.Shutdown(ctx))
	return errors.Join(errs...)
}

// countingExporter counts what the backend accepted and refused. Provider
// shutdowns do not shut it down: it is shared.
type countingExporter struct {
	next     sdktrace.SpanExporter
	exported atomic.Uint64
	failed   atomic.Uint64
}

func (c *countingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := c.next.ExportSpans(ctx, spans)
	if err != nil {
		c.failed.Add(uint64(len(spans)))
		return err
	}
	c.exported.Add(uint64(len(spans)))
	return nil
}

func (c *countingExporter) Shutdown(context.Context) error { return nil }

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

// OTLPEndpointFromEnv reports the configured OTLP traces endpoint, from
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT, and
// checks that it is a URL with a scheme and host. Empty means none set.
func OTLPEndpointFromEnv() (string, error) {
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		v := strings.TrimSpace(os.Getenv(name))
		if v == "" {
			continue
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", fmt.Errorf("%s=%q: want a URL such as http://127.0.0.1:4317", name, v)
		}
		return v, nil
	}
	return "", nil
}

// OTLPProtocolFromEnv returns the OTLP protocol from
// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL, by
// default grpc.
func OTLPProtocolFromEnv() (string, error) {
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		switch v := strings.TrimSpace(os.Getenv(name)); v {
		case "":
			continue
		case ProtocolGRPC, ProtocolHTTP:
			return v, nil
		default:
			return "", fmt.Errorf("%s=%q: tcpspan supports %q and %q", name, v, ProtocolGRPC, ProtocolHTTP)
		}
	}
	return ProtocolGRPC, nil
}

// NewOTLPFromEnv returns an OTLP span exporter configured by the standard
// OTEL_EXPORTER_OTLP_* variables (endpoint, headers, timeout, TLS), over
// gRPC or HTTP as the protocol variable says. It does not connect: an
// unreachable collector shows up as export errors, retried by the SDK.
func NewOTLPFromEnv(ctx context.Context) (sdktrace.SpanExporter, error) {
	if _, err := OTLPEndpointFromEnv(); err != nil {
		return nil, err
	}
	proto, err := OTLPProtocolFromEnv()
	if err != nil {
		return nil, err
	}
	if proto == ProtocolHTTP {
		return otlptracehttp.New(ctx)
	}
	return otlptracegrpc.New(ctx)
}
