package selfmetrics

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/tcpspan/tcpspan/agent"
	"github.com/tcpspan/tcpspan/internal/otlpwire"
	"github.com/tcpspan/tcpspan/internal/version"
)

// Kind says how a metric behaves over time.
type Kind int

const (
	// Counter only grows while the agent runs.
	Counter Kind = iota
	// Gauge goes up and down.
	Gauge
)

// Point is one value of a metric, with its attributes.
type Point struct {
	Attrs []attribute.KeyValue
	Value uint64
}

// Definition is one metric of the agent's health.
type Definition struct {
	Name        string
	Unit        string
	Description string
	Kind        Kind
	// Points extracts the metric's values from a health snapshot.
	Points func(agent.Health) []Point
}

func one(v uint64) []Point { return []Point{{Value: v}} }

var (
	attrConn   = attribute.String("kind", "connection")
	attrOrphan = attribute.String("kind", "orphan")
)

// Definitions are every metric, in the order they are documented.
var Definitions = []Definition{
	{"tcpspan.records.emitted", "{record}", "Records the kernel side wrote to the ring buffer: one per finished connection (kind=connection), one per event without a socket (kind=orphan).", Counter,
		func(h agent.Health) []Point {
			return []Point{{[]attribute.KeyValue{attrConn}, h.Kernel.ConnsEmitted}, {[]attribute.KeyValue{attrOrphan}, h.Kernel.OrphansEmitted}}
		}},
	{"tcpspan.records.lost", "{record}", "Records lost before the tracker, by cause: ring_buffer_full (the agent did not read fast enough; by kind: connection, orphan, traceparent), map_full (a connection could not be tracked), malformed (undecodable).", Counter,
		func(h agent.Health) []Point {
			full := attribute.String("cause", "ring_buffer_full")
			return []Point{
				{[]attribute.KeyValue{full, attrConn}, h.Kernel.RingbufLostConn},
				{[]attribute.KeyValue{full, attrOrphan}, h.Kernel.RingbufLostOrphan},
				{[]attribute.KeyValue{full, attribute.String("kind", "traceparent")}, h.Kernel.RingbufLostTraceparent},
				{[]attribute.KeyValue{attribute.String("cause", "map_full")}, h.Kernel.ConnMapFull},
				{[]attribute.KeyValue{attribute.String("cause", "malformed")}, h.Kernel.Malformed},
			}
		}},
	{"tcpspan.kernel.missed", "{run}", "Runs of a BPF program the kernel skipped because it was already running on that CPU (recursion), by hook: those events were never seen.", Counter,
		func(h agent.Health) []Point {
			var ps []Point
			for _, hook := range slices.Sorted(maps.Keys(h.Kernel.Missed)) {
				ps = append(ps, Point{[]attribute.KeyValue{attribute.String("hook", hook)}, h.Kernel.Missed[hook]})
			}
			return ps
		}},
	{"tcpspan.events.truncated", "{event}", "Events beyond a connection's per-connection limit, summarised instead of recorded.", Counter,
		func(h agent.Health) []Point { return one(h.Kernel.ConnEventsLost) }},
	{"tcpspan.retransmits.unsent", "{attempt}", "Retransmits of traced connections the kernel tried and gave up on before sending or counting one (the packet still queued on the host, the peer's window closed, no memory or route): not retransmits. Kernels after 6.12 tell them.", Counter,
		func(h agent.Health) []Point { return one(h.Kernel.RetransUnsent) }},
	{"tcpspan.connections.midlife", "{connection}", "Connections first seen mid-life: open before the agent started, or evicted from the full kernel connection map (-max-connections) and tracked again.", Counter,
		func(h agent.Health) []Point { return one(h.Kernel.ConnMidlife) }},
	{"tcpspan.connections.tracked", "{connection}", "Connections the kernel side tracks now (open, or closing), in its map of -max-connections entries.", Gauge,
		func(h agent.Health) []Point { return one(uint64(h.Tracked)) }},
	{"tcpspan.connections.capacity", "{connection}", "Entries of the kernel side's connection map (-max-connections); when tracked reaches it, the oldest are evicted.", Gauge,
		func(h agent.Health) []Point { return one(uint64(h.Capacity)) }},
	{"tcpspan.connections.clean_in_kernel", "{connection}", "Connections with no problem that the kernel side counted without sending a record, because nothing would export or print them (-clean-ratio 0 without -v).", Counter,
		func(h agent.Health) []Point { return one(h.Kernel.CleanSkipped) }},
	{"tcpspan.syn_watch.attaches", "{attach}", "Times the SYN watch (cgroup_skb/ingress, which sees SYNs a full accept queue drops) was attached because an accept queue was half full or more (-syn-watch auto).", Counter,
		func(h agent.Health) []Point { return one(h.Kernel.SynWatchAttaches) }},
	{"tcpspan.syn_watch.on", "{watch}", "1 while the SYN watch is attached, else 0.", Gauge,
		func(h agent.Health) []Point {
			if h.Kernel.SynWatchOn {
				return one(1)
			}
			return one(0)
		}},
	{"tcpspan.connections.untracked", "{connection}", "Connections that ended with no kernel entry, so no record.", Counter,
		func(h agent.Health) []Point { return one(h.Kernel.DestroyedUntracked) }},
	{"tcpspan.connections.stale", "{connection}", "Connections emitted when a new one reused their socket address: their end was never seen.", Counter,
		func(h agent.Health) []Point { return one(h.Kernel.ConnStale) }},
	{"tcpspan.connections", "{connection}", "Connections the tracker handed to the exporter: with a full socket (kind=connection), or joined from socket-less events by 4-tuple (kind=orphan).", Counter,
		func(h agent.Health) []Point {
			return []Point{{[]attribute.KeyValue{attrConn}, h.Tracker.Connections}, {[]attribute.KeyValue{attrOrphan}, h.Tracker.Orphans}}
		}},
	{"tcpspan.orphans.forced", "{connection}", "Socket-less 4-tuples emitted early because too many were pending.", Counter,
		func(h agent.Health) []Point { return one(h.Tracker.OrphansForced) }},
	{"tcpspan.orphans.folded", "{connection}", "Socket-less connections folded into a storm span (counted once in tcpspan.connections{kind=orphan} per storm).", Counter,
		func(h agent.Health) []Point { return one(h.Tracker.OrphansFolded) }},
	{"tcpspan.orphans.folded_in_kernel", "{connection}", "Resets for closed ports the kernel counted instead of sending a record each, all but the first of a kind per window (in tcpspan.orphans.folded too).", Counter,
		func(h agent.Health) []Point { return one(h.Kernel.ResetsFolded) }},
	{"tcpspan.connections.folded_in_kernel", "{connection}", "Refused connects the kernel counted instead of sending a record each, emitted as storm connections (tcpspan.storm.count; each counted once in tcpspan.connections{kind=connection}).", Counter,
		func(h agent.Health) []Point { return one(h.Tracker.ConnsFolded) }},
	{"tcpspan.spans.recorded", "{span}", "Spans ended and queued for export.", Counter,
		func(h agent.Health) []Point { return one(h.Export.Spans.Recorded) }},
	{"tcpspan.spans.sampled_out", "{connection}", "Clean connections not exported (-clean-ratio).", Counter,
		func(h agent.Health) []Point { return one(h.Export.Spans.SampledOut) }},
	{"tcpspan.spans.folded", "{connection}", "Connections the full export queue could not take, folded into the storm span of their kind (tcpspan.storm.count) instead of dropped; the first of each kind is recorded as that span.", Counter,
		func(h agent.Health) []Point { return one(h.Export.Spans.Folded) }},
	{"tcpspan.spans.exported", "{span}", "Spans the collector accepted.", Counter,
		func(h agent.Health) []Point { return one(h.Export.Spans.Exported) }},
	{"tcpspan.spans.failed", "{span}", "Spans in export batches that failed after retries: refused, or the collector unreachable.", Counter,
		func(h agent.Health) []Point { return one(h.Export.Spans.ExportFailed) }},
	{"tcpspan.spans.unsent", "{span}", "Spans recorded but neither exported nor failed: queued, or dropped from a full export queue. After the agent stopped, exactly the spans dropped.", Gauge,
		func(h agent.Health) []Point { return one(h.Export.Spans.Dropped()) }},
	{"tcpspan.export.errors", "{error}", "Errors the OpenTelemetry SDK reported while exporting spans or these metrics.", Counter,
		func(h agent.Health) []Point { return one(h.Export.Errors) }},
	{"tcpspan.export.services", "{service}", "Per-process resources (service.name, process.*) the exporter keeps, at most 256.", Gauge,
		func(h agent.Health) []Point { return one(uint64(h.Export.Spans.Services)) }},
}

// Values flattens a health snapshot into one value per metric and
// attribute set, keyed like name{key=value,...} with the attributes sorted:
// the vocabulary of the health page and of the stats file.
func Values(h agent.Health) map[string]uint64 {
	out := map[string]uint64{}
	for _, d := range Definitions {
		for _, p := range d.Points(h) {
			out[seriesKey(d.Name, p.Attrs)] = p.Value
		}
	}
	return out
}

func seriesKey(name string, attrs []attribute.KeyValue) string {
	if len(attrs) == 0 {
		return name
	}
	kvs := make([]string, 0, len(attrs))
	for _, a := range attrs {
		kvs = append(kvs, string(a.Key)+"="+a.Value.String())
	}
	slices.Sort(kvs)
	return name + "{" + strings.Join(kvs, ",") + "}"
}

// WriteFile writes the values as a JSON object, atomically: a reader sees
// the previous file or the whole new one.
func WriteFile(path string, values map[string]uint64) error {
	b, err := json.MarshalIndent(values, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("stats file: %w", err)
	}
	_, err = tmp.Write(append(b, '\n'))
	err = cmp.Or(err, tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("stats file: %w", err)
	}
	return nil
}

// Metrics exports the agent's health as OpenTelemetry metrics.
type Metrics struct {
	// provider is set once the reader, which may stop it, already runs.
	provider atomic.Pointer[sdkmetric.MeterProvider]
	stopped  atomic.Bool // shut down, maybe by a backend that takes no metrics
}

// Start registers one observable instrument per [Definitions] entry, read
// from current at each collection, and exports them periodically (every
// OTEL_METRIC_EXPORT_INTERVAL, 60 s by default) over OTLP with protocol,
// configured by the OTEL_EXPORTER_OTLP_* variables like the spans. Like
// the span exporter, it does not connect at start: an unreachable
// collector shows as export errors, through the OpenTelemetry error
// handler. A backend that answers that it takes no metrics (gRPC
// Unimplemented, HTTP 404, as Jaeger does) stops the export for good:
// refused is called once with its answer, and no export error is counted.
func Start(ctx context.Context, res *resource.Resource, protocol string, current func() agent.Health, refused func(error)) (*Metrics, error) {
	var exp sdkmetric.Exporter
	var err error
	switch protocol {
	case otlpwire.ProtocolHTTP:
		exp, err = otlpmetrichttp.New(ctx)
	case otlpwire.ProtocolGRPC, "":
		exp, err = otlpmetricgrpc.New(ctx)
	default:
		return nil, fmt.Errorf("metrics protocol %q: want %q or %q", protocol, otlpwire.ProtocolGRPC, otlpwire.ProtocolHTTP)
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP metric exporter: %w", err)
	}
	m := &Metrics{}
	guarded := &stopWhenRefused{Exporter: exp, refused: func(err error) {
		if refused != nil {
			refused(err)
		}
		// Stop collecting too (reading the health walks the kernel's
		// connection map); from the reader's own goroutine, so not here.
		go m.stop()
	}}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(sdkmetric.NewPeriodicReader(guarded)))
	m.provider.Store(mp)
	if err := register(mp.Meter(ScopeName, metric.WithInstrumentationVersion(version.Version())), current); err != nil {
		mp.Shutdown(ctx)
		return nil, err
	}
	return m, nil
}

// stop shuts the provider down once, with nothing left to export.
func (m *Metrics) stop() error {
	if !m.stopped.CompareAndSwap(false, true) {
		return nil
	}
	if mp := m.provider.Load(); mp != nil {
		return mp.Shutdown(context.Background())
	}
	return nil
}

func register(m metric.Meter, current func() agent.Health) error {
	instruments := make([]metric.Int64Observable, len(Definitions))
	for i, d := range Definitions {
		var err error
		switch d.Kind {
		case Counter:
			instruments[i], err = m.Int64ObservableCounter(d.Name, metric.WithUnit(d.Unit), metric.WithDescription(d.Description))
		case Gauge:
			instruments[i], err = m.Int64ObservableGauge(d.Name, metric.WithUnit(d.Unit), metric.WithDescription(d.Description))
		}
		if err != nil {
			return fmt.Errorf("instrument %s: %w", d.Name, err)
		}
	}
	observables := make([]metric.Observable, len(instruments))
	for i, in := range instruments {
		observables[i] = in
	}
	_, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		h := current()
		for i, d := range Definitions {
			for _, p := range d.Points(h) {
				o.ObserveInt64(instruments[i], int64(min(p.Value, math.MaxInt64)), metric.WithAttributes(p.Attrs...))
			}
		}
		return nil
	}, observables...)
	return err
}

// Shutdown exports the last values, bounded by ctx, and stops.
func (m *Metrics) Shutdown(ctx context.Context) error {
	if !m.stopped.CompareAndSwap(false, true) {
		return nil // stopped by a backend that takes no metrics
	}
	err := m.provider.Load().Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("last metrics export: %w", err)
	}
	return err
}
