// Package exporter turns finished connections ([conn.Connection]) into
// OpenTelemetry spans and exports them over OTLP ([Exporter]). Spans are
// written in the OTLP wire format from the mapping below, without SDK span
// objects, which cost an order of magnitude more CPU per span.
//
// The mapping is pure, free of the SDK and of I/O, so that it can
// be table-tested anywhere: [Map] gives the span of one connection as a
// [SpanData] (name, kind, times, attributes, one event per kernel event,
// status and service name), and [Diagnose] gives its status: whether it
// failed, a low-cardinality error.type and a description that reads like a
// diagnosis, such as
//
//	RST sent (TCP_ABORT_ON_CLOSE): rinetd[812] closed fd 7 with 18 bytes unread
//
// Attribute keys come from the pinned upstream semantic conventions where
// they exist and from [github.com/tcpspan/tcpspan/semconv] otherwise.
//
// A process is named as the actor of an event only when the kernel acted on
// its behalf, inside a syscall (conn.ContextProcess). Resets and drops in
// softirq run in whatever task was interrupted; that task is never reported.
//
// The export queue is bounded. What a full queue cannot take is folded by
// kind into storm spans (fold.go) rather than dropped, so that a storm the
// backend cannot keep up with is still accounted for, connection by
// connection, in a few spans.
//
// One file per concern: exporter.go ([Exporter], [New], [Exporter.Export],
// [Exporter.Shutdown]), options.go, queue.go (the bounded export queue, its
// batches and senders, and the contract with protobuf-go that carries
// encoded spans to the OTLP clients: rawScopeSpans), failures.go (links
// from a reset to the failure before it), resources.go (the per-process
// resource cache), env.go (the OTLP client and base resource from the
// standard OTEL_* environment), service.go (service names from the owner's
// environment), map.go and attrs.go (the mapping), encode.go (the wire
// format, with field numbers from internal/otlpwire), diagnose.go (the
// status), correlate.go (trace ids shared by both ends, and links) and
// fold.go (storm spans when the queue is full).
//
// It must not read the kernel, the ring buffer or the agent's counters, nor
// import agent, selfmetrics or the command; spans leave only through an
// OTLP client.
package exporter
