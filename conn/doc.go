// Package conn is tcpspan's connection tracker. It turns the kernel's
// records (see package bpf) into finished [Connection] values: endpoints,
// side, owner, timestamps, the ordered events, and the outcome.
//
// It is pure Go and free of OpenTelemetry types, so that it can be tested
// anywhere and the span mapping can be tested on its output alone. It sits
// between the ring-buffer reader and the exporter: records come in through
// [Tracker.HandleConn] and [Tracker.HandleOrphan], finished connections go
// out through the function given to [New].
//
// The kernel aggregates a connection with a socket into one record. Events
// without a full socket (a dropped handshake, an RST from a listener or for
// no socket) arrive one by one as orphans; the tracker joins them by network
// namespace and 4-tuple, and emits the joined connection once no event has
// come for [DefaultOrphanIdle], or earlier into a full connection of the
// same 4-tuple. An RST for no socket and no listener has nothing to wait
// for and is emitted at once.
//
// Storms of orphans (a closed-port connect loop, a listener whose accept
// queue overflows under load) would otherwise flood the exporter and the
// trace store with spans that read the same. The first orphan of a kind is
// emitted on its own; those of the same kind that follow within
// [DefaultStormWindow] are folded into one connection with a [Storm]
// summary: counts, peers, first and last times. Connections with a full
// socket are never folded. Resets for closed ports are folded in the
// kernel already (bpf.WithResetFolding): their counts arrive through
// [Tracker.HandleFoldedResets] and join the same storms.
//
// One file per concern: types.go (the [Connection] and its parts),
// tracker.go (joining records into connections), decode.go (a record into
// a [Connection] and its [Event]s), comm.go (interning process names),
// storm.go (folding storms), traceparent.go (requests' trace contexts),
// clock*.go (kernel time to wall time) and options.go (the [Option]s of
// [New]).
//
// It must not import OpenTelemetry, the exporter or anything above it, nor
// touch the kernel: from package bpf it uses only the record types and
// constants.
package conn
