// Package selfmetrics publishes tcpspan's own health: what the kernel side
// emitted and lost (ring buffer full, map full, runs the kernel skipped),
// what the tracker joined, and what became of the spans (exported, failed,
// dropped). An agent that loses data under load or while its collector is
// down must say so where its operators look: as OpenTelemetry metrics over
// the same OTLP settings as the spans, as a Prometheus page on an opt-in local
// endpoint, and as a JSON file of the final counts.
//
// It only reads counters the agent keeps anyway ([agent.Health]): the
// metrics are observable instruments evaluated at collection time, so
// publishing them costs nothing on the hot path. It lives apart from
// package agent because it pulls in the metrics SDK, its exporters and an
// HTTP server, which the pipeline itself does not need. Metric names are
// listed in [Definitions] and in semconv/README.md.
//
// It must not change the pipeline or what it exports: it only reads. Only
// the command imports it, never the packages below it.
package selfmetrics
