package exporter

import (
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tcpspan/tcpspan/conn"
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
