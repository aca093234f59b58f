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
package exporter
