// Package semconv defines tcpspan's own attribute keys, event names and
// values; upstream keys come from go.opentelemetry.io/otel/semconv/v1.43.0.
//
// tcpspan pins exactly one upstream version, re-exported as [SchemaURL].
// Wherever upstream has a key (network.transport, network.type,
// network.local.*, network.peer.*, server.*, client.*, process.pid,
// process.executable.name, thread.id, error.type), tcpspan uses it from that
// package. This package holds only what upstream lacks, under the tcp.
// namespace, written in the upstream style: a key, a constructor and, for
// enums, predefined values.
//
// Keys are grouped by where they appear:
//   - on the span: the outcome of the connection (final state, close
//     initiator, reset direction, reason and context, counters, RTT);
//   - on span events: what happened at that moment (state, context,
//     syscall, fd, errno, backlog).
//
// Span event names are the Event* constants, one per kind of kernel event.
// The error.type values tcpspan writes are the ErrorType* constants, or the
// name of an errno (such as "ECONNRESET") reported to the application.
//
// README.md in this directory lists every key and event name in one table.
//
// It holds names and constructors only: it must not redefine an upstream
// key, hold mapping logic, or import other tcpspan packages.
package semconv
