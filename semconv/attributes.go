package semconv

import "go.opentelemetry.io/otel/attribute"

// Namespace: tcp (span attributes: the outcome of one connection)
const (
	// TCPCloseFDKey is the attribute Key for "tcpspan.close.fd". It represents the
	// file descriptor that the closing process passed to close().
	//
	// Type: int
	// Stability: Development
	//
	// Examples: 7
	TCPCloseFDKey = attribute.Key("tcpspan.close.fd")

	// TCPCloseInitiatorKey is the attribute Key for "tcpspan.close.initiator". It
	// represents which end closed the connection first: the end that sent the
	// first FIN or RST.
	//
	// Type: Enum
	// Stability: Development
	//
	// Examples: "local", "remote", "unknown"
	TCPCloseInitiatorKey = attribute.Key("tcpspan.close.initiator")

	// TCPCloseUnreadBytesKey is the attribute Key for "tcpspan.close.unread_bytes".
	// It represents the bytes that were received but never read by the
	// application when it called close(). A non-zero value makes the kernel
	// reset the connection (reason TCP_ABORT_ON_CLOSE).
	//
	// Type: int
	// Stability: Development
	//
	// Examples: 0, 18
	TCPCloseUnreadBytesKey = attribute.Key("tcpspan.close.unread_bytes")

	// TCPProcessCommKey is the attribute Key for "tcpspan.process.comm". It
	// represents the kernel's name for a process (its comm: at most 15
	// characters, settable by the process), where it differs from
	// process.executable.name, the basename of its executable.
	//
	// Type: string
	// Stability: Development
	//
	// Examples: "python3", "nginx: worker"
	TCPProcessCommKey = attribute.Key("tcpspan.process.comm")

	// TCPHandshakeDurationKey is the attribute Key for
	// "tcpspan.handshake.duration". It represents how long the handshake took,
	// in microseconds: from the SYN (a server) or connect() (a client) to
	// ESTABLISHED.
	//
	// Type: int
	// Stability: Development
	//
	// Examples: 52
	TCPHandshakeDurationKey = attribute.Key("tcpspan.handshake.duration")

	// TCPAcceptDelayKey is the attribute Key for "tcpspan.accept.delay". It
	// represents how long an established connection waited in its
	// listener's accept queue before the server's accept() took it, in
	// microseconds.
	//
	// Type: int
	// Stability: Development
	//
	// Examples: 180
	TCPAcceptDelayKey = attribute.Key("tcpspan.accept.delay")

	// TCPCloseDurationKey is the attribute Key for "tcpspan.close.duration". It
	// represents how long the close took, in microseconds: from the first
	// FIN, sent or received, to the socket's end.
	//
	// Type: int
	// Stability: Development
	//
	// Examples: 95
	TCPCloseDurationKey = attribute.Key("tcpspan.close.duration")

	// TCPCloseReleaseKey is the attribute Key for "tcpspan.close.release". It
	// represents how the process that released the socket let go of its last
	// file reference: close(), close_range(), dup2() or dup3() onto its fd,
	// execve() closing it as close-on-exec, or its exit (death by a signal
	// included), which releases every file the process still holds.
	//
	// Type: Enum
	// Stability: Development
	//
	// Examples: "close", "close_range", "dup2", "execve", "exit"
	TCPCloseReleaseKey = attribute.Key("tcpspan.close.release")

	// TCPCloseExitSignalKey is the attribute Key for "tcpspan.close.exit_signal".
	// It represents the signal that killed the process that released the
	// socket by exiting (tcpspan.close.release=exit).
	//
	// Type: string
	// Stability: Development
	//
	// Examples: "SIGKILL", "SIGSEGV"
	TCPCloseExitSignalKey = attribute.Key("tcpspan.close.exit_signal")

	// TCPCloseExitStatusKey is the attribute Key for "tcpspan.close.exit_status".
	// It represents the exit status of the process that released the socket
	// by exiting on its own (tcpspan.close.release=exit, no signal).
	//
	// Type: int
	// Stability: Development
	//
	// Examples: 0, 1
	TCPCloseExitStatusKey = attribute.Key("tcpspan.close.exit_status")

	// TCPResetAnswerKey is the attribute Key for "tcpspan.reset.answer". It
	// represents whether a reset this host sent answered a packet it received
	// (true), or was the socket's own (false): sent as a process released it,
	// or by a timer or memory pressure.
	//
	// Type: boolean
	// Stability: Development
	//
	// Examples: true, false
	TCPResetAnswerKey = attribute.Key("tcpspan.reset.answer")

	// TCPListenerQueuedKey is the attribute Key for "tcpspan.listener.queued". It
	// represents, for a connection its server never accepted and that was
	// reset because its listener was closed, how many connections were still
	// in that listener's accept queue when it closed.
	//
	// Type: int
	// Stability: Development
	//
	// Examples: 3
	TCPListenerQueuedKey = attribute.Key("tcpspan.listener.queued")

	// TCPEventsRetransmitsDroppedKey is the attribute Key for
	// "tcpspan.events.retransmits_dropped". It represents the retransmits not kept
	// as tcp.retransmit events: the kernel keeps the first 3 of a connection
	// and counts the rest (tcpspan.retransmits has the total). Only set when
	// non-zero.
	//
	// Type: int
	// Stability: Development
	//
	// Examples: 1
	TCPEventsRetransmitsDroppedKey = attribute.Key("tcpspan.events.retransmits_dropped")

	// TCPTraceparentDroppedKey is the attribute Key for
	// "tcpspan.traceparent.dropped". It represents the requests with a
	// traceparent header that the span does not link to: it links to the
	// latest 8. Only set when non-zero.
	//
	// Type: int
	// Stability: Development
	//
	// Examples: 4
	TCPTraceparentDroppedKey = attribute.Key("tcpspan.traceparent.dropped")

	// TCPResetDirectionKey is the attribute Key for "tcpspan.reset.direction". It
	// represents whether the first reset of the connection was sent by this
	// host or received from the peer.
	//
	// Type: Enum
	// Stability: Development
	//
	// Examples: "sent", "received"
	TCPResetDirectionKey = attribute.Key("tcpspan.reset.direction")

	// TCPResetReasonKey is the attribute Key for "tcpspan.reset.reason". It
	// represents the kernel's reason for a reset this host sent (enum
	// sk_rst_reason, without the SK_RST_REASON_ prefix), resolved from the
	// running kernel. "UNKNOWN" when the kernel does not report reasons
	// (before 6.10).
	//
	// Type: string
	// Stability: Development
	//
	// Examples: "TCP_ABORT_ON_CLOSE", "NO_SOCKET", "TCP_FLAGS", "UNKNOWN"
	TCPResetReasonKey = attribute.Key("tcpspan.reset.reason")

	// TCPResetContextKey is the attribute Key for "tcpspan.reset.context". It
	// represents who sent the first reset: a process inside a syscall, or the
	// kernel on its own (softirq, a timer, processing a packet).
	//
	// Type: Enum
	// Stability: Development
	//
	// Examples: "process", "kernel", "unknown"
	TCPResetContextKey = attribute.Key("tcpspan.reset.context")

	// TCPListenerBacklogKey is the attribute Key for "tcpspan.listener.backlog". It
	// represents the length of the listener's accept queue when a handshake
	// packet was dropped because the queue was full.
	//
	// Type: int
	// Stability: Development
	//
	// Examples: 6
	TCPListenerBacklogKey = attribute.Key("tcpspan.listener.backlog")

	// TCPListenerBacklogMaxKey is the attribute Key for
	// "tcpspan.listener.backlog_max". It represents the limit of the listener's
	// accept queue (the backlog given to listen(), capped by somaxconn).
	//
	// Type: int
	// Stability: Development
	//
	// Examples: 5, 4096
	TCPListenerBacklogMaxKey = attribute.Key("tcpspan.listener.backlog_max")

	// TCPBytesSentKey is the attribute Key for "tcpspan.bytes.sent". It represents
	// the payload bytes sent and acknowledged by the peer.
	//
	// Type: int
	// Stability: Development
	//
	// Examples: 0, 1448
	TCPBytesSentKey = attribute.Key("tcpspan.bytes.sent")

	// TCPBytesReceivedKey is the attribute Key for "tcpspan.bytes.received". It
	// represents the payload bytes received.
	//
	// Type: int
	// Stability: Development
	//
	// Examples: 0, 512
	TCPBytesReceivedKey = attribute.Key("tcpspan.bytes.received")

	// TCPSegmentsSentKey is the attribute Key for "tcpspan.segments.sent". It
	// represents the segments sent, retransmits included.
	//
	// Type: int
	// Stability: Development
	//
	// Examples: 6
	TCPSegmentsSentKey = attribute.Key("tcpspan.segments.sent")

	// TCPSegmentsReceivedKey is the attribute Key for "tcpspan.segments.received".
	// It represents the segments received.
	//
	// Type: int
	// Stability: Development
	//
	// Examples: 5
	TCPSegmentsReceivedKey = attribute.Key("tcpspan.segments.received")

	// TCPRetransmitsKey is the attribute Key for "tcpspan.retransmits". It
	// represents the segments the kernel retransmitted on the connection.
	//
	// Type: int
	// Stability: Development
	//
	// Examples: 0, 3
	TCPRetransmitsKey = attribute.Key("tcpspan.retransmits")

	// TCPSYNACKRetransmitsKey is the attribute Key for
	// "tcpspan.synack.retransmits". It represents how many times the SYN-ACK was
	// retransmitted: on the span the total, on a tcp.synack_retransmit event
	// the count so far.
	//
	// Type: int
	// Stability: Development
	//
	// Examples: 1, 5
	TCPSYNACKRetransmitsKey = attribute.Key("tcpspan.synack.retransmits")

	// TCPRTTKey is the attribute Key for "tcpspan.rtt". It represents the smoothed
	// round-trip time (srtt) in microseconds.
	//
	// Type: int
	// Stability: Development
	//
	// Examples: 35, 20000
	TCPRTTKey = attribute.Key("tcpspan.rtt")

	// TCPSYNEstimatedKey is the attribute Key for "tcpspan.syn.estimated". It
	// represents, on a tcp.syn event, that the SYN was not seen but placed
	// one handshake RTT (as the kernel measured it) before the handshake
	// completed: at the SYN-ACK, microseconds after the SYN. Only set when
	// true.
	//
	// Type: boolean
	// Stability: Development
	//
	// Examples: true
	TCPSYNEstimatedKey = attribute.Key("tcpspan.syn.estimated")

	// TCPObservedMidlifeKey is the attribute Key for "tcpspan.observed_midlife".
	// It represents that the connection was already open when tcpspan first
	// saw it, so the span starts late and its early events are missing. Only
	// set when true.
	//
	// Type: boolean
	// Stability: Development
	//
	// Examples: true
	TCPObservedMidlifeKey = attribute.Key("tcpspan.observed_midlife")

	// TCPOrphanKey is the attribute Key for "tcpspan.orphan". It represents that
	// there was never a full socket on this side (a dropped handshake, a reset
	// from a listener or for no socket): the span was joined from packet-level
	// events by 4-tuple. Only set when true.
	//
	// Type: boolean
	// Stability: Development
	//
	// Examples: true
	TCPOrphanKey = attribute.Key("tcpspan.orphan")

	// TCPEndUnseenKey is the attribute Key for "tcpspan.end_unseen". It
	// represents that the kernel side never saw the socket destroyed: the
	// span was emitted when the socket's address was reused, with the events
	// it had. Only set when true.
	//
	// Type: boolean
	// Stability: Development
	//
	// Examples: true
	TCPEndUnseenKey = attribute.Key("tcpspan.end_unseen")

	// TCPLinkReasonKey is the attribute Key for "tcpspan.link.reason", on a span
	// link. It says why a span links to another: "peer" (the other end of
	// the same connection), "closed_after_failure" (the process that closed
	// this connection had just seen the linked one fail), "traceparent" (an
	// application span whose request the connection carried),
	// "storm_sample" (one of the connections a storm span stands for) or
	// "connection" (from a diagnosis span to its connection's span).
	//
	// Type: string
	// Stability: Development
	//
	// Examples: "peer", "closed_after_failure"
	TCPLinkReasonKey = attribute.Key("tcpspan.link.reason")

	// TCPNetnsKey is the attribute Key for "tcpspan.netns". It represents the inode
	// number of the network namespace of the socket.
	//
	// Type: int
	// Stability: Development
	//
	// Examples: 4026531840
	TCPNetnsKey = attribute.Key("tcpspan.netns")

	// TCPOwnerFromListenerKey is the attribute Key for
	// "tcpspan.owner.from_listener". It represents that no accept() was seen, so
	// process.pid and process.executable.name name the owner of the listener
	// the connection arrived on. Only set when true.
	//
	// Type: boolean
	// Stability: Development
	//
	// Examples: true
	TCPOwnerFromListenerKey = attribute.Key("tcpspan.owner.from_listener")

	// TCPDiagnosisOfKey is the attribute Key for "tcpspan.diagnosis.of", on a
	// diagnosis span: a span in an application's trace, under the span of
	// a request that a connection failed while carrying. It says which end
	// of the connection the diagnosis is from: "client" or "server".
	//
	// Type: string
	// Stability: Development
	//
	// Examples: "server"
	TCPDiagnosisOfKey = attribute.Key("tcpspan.diagnosis.of")

	// TCPTraceparentCountKey is the attribute Key for
	// "tcpspan.traceparent.count": the requests with a W3C traceparent header
	// the connection carried. The span links to the latest of them (at most
	// 8); this counts them all. Only set when not zero.
	//
	// Type: int
	// Stability: Development
	//
	// Examples: 3
	TCPTraceparentCountKey = attribute.Key("tcpspan.traceparent.count")

	// TCPTraceparentMalformedKey is the attribute Key for
	// "tcpspan.traceparent.malformed": traceparent headers on the connection
	// whose value did not parse (or was cut by the end of its packet). Only
	// set when not zero.
	//
	// Type: int
	// Stability: Development
	//
	// Examples: 1
	TCPTraceparentMalformedKey = attribute.Key("tcpspan.traceparent.malformed")

	// TCPEventsDroppedKey is the attribute Key for "tcpspan.events.dropped". It
	// represents the events the kernel saw on the connection but could not
	// keep, so the span's event list is incomplete. Only set when non-zero.
	//
	// Type: int
	// Stability: Development
	//
	// Examples: 12
	TCPEventsDroppedKey = attribute.Key("tcpspan.events.dropped")

	// TCPStormCountKey is the attribute Key for "tcpspan.storm.count". It
	// represents that the span stands for this many connections of the same
	// kind that came within a short window: a storm, folded into one span.
	// Orphans are folded by the tracker (same local address and port, owner,
	// kinds of event and reasons), and connections the full export queue
	// cannot take by the exporter (same process, side, ends without the
	// ephemeral port, diagnosis, kinds of event and reasons). The span's
	// events are the first folded connection's; its start and end span them
	// all; the totals are in tcpspan.storm.events.<event>. Only set on such
	// spans.
	//
	// Type: int
	// Stability: Development
	//
	// Examples: 4211
	TCPStormCountKey = attribute.Key("tcpspan.storm.count")

	// TCPStormPeerAddressesKey is the attribute Key for
	// "tcpspan.storm.peer_addresses". It represents the distinct peer addresses
	// among a storm's connections, counted up to 1024 (at least that many).
	//
	// Type: int
	// Stability: Development
	//
	// Examples: 1, 1024
	TCPStormPeerAddressesKey = attribute.Key("tcpspan.storm.peer_addresses")
)

// TCPStormEventsPrefix starts the template attribute
// "tcpspan.storm.events.<event>": how many events of that kind (an event name
// without its "tcp." prefix, e.g. rst_sent) a storm's connections had in
// all.
const TCPStormEventsPrefix = "tcpspan.storm.events."

// Namespace: tcp (span event attributes: one kernel event)
const (
	// TCPStatePreviousKey is the attribute Key for "tcpspan.state.previous".
	// It represents the state a tcp.state event left, in the values of
	// network.connection.state (see ConnectionState).
	//
	// Type: string
	// Stability: Development
	//
	// Examples: "syn_sent", "established"
	TCPStatePreviousKey = attribute.Key("tcpspan.state.previous")

	// TCPContextKey is the attribute Key for "tcpspan.context". It represents who
	// acted at an event: a process inside a syscall on the socket ("process";
	// then process.pid and process.executable.name name it), or the kernel on
	// its own, in softirq, a timer or while processing a packet ("kernel";
	// the task that happened to run is not the actor and is not reported).
	//
	// Type: Enum
	// Stability: Development
	//
	// Examples: "process", "kernel", "unknown"
	TCPContextKey = attribute.Key("tcpspan.context")

	// TCPFDKey is the attribute Key for "tcpspan.fd". It represents the file
	// descriptor of the socket in the acting process at a tcp.accept or
	// tcp.close event.
	//
	// Type: int
	// Stability: Development
	//
	// Examples: 7
	TCPFDKey = attribute.Key("tcpspan.fd")

	// TCPSyscallKey is the attribute Key for "tcpspan.syscall". It represents the
	// syscall the acting process was in at an event.
	//
	// Type: string
	// Stability: Development
	//
	// Examples: "close", "accept4"
	TCPSyscallKey = attribute.Key("tcpspan.syscall")

	// TCPErrnoKey is the attribute Key for "tcpspan.errno". It represents the
	// error reported to the application, by its errno name. On the span it is
	// the first such error.
	//
	// Type: string
	// Stability: Development
	//
	// Examples: "ECONNRESET", "ECONNREFUSED", "ETIMEDOUT"
	TCPErrnoKey = attribute.Key("tcpspan.errno")

	// TCPDropReasonKey is the attribute Key for "tcpspan.drop.reason". It
	// represents the kernel's reason for dropping a packet of the connection
	// (enum skb_drop_reason, without the SKB_DROP_REASON_ prefix), resolved
	// from the running kernel.
	//
	// Type: string
	// Stability: Development
	//
	// Examples: "TCP_LISTEN_OVERFLOW", "TCP_INVALID_SEQUENCE"
	TCPDropReasonKey = attribute.Key("tcpspan.drop.reason")
)

// TCPCloseFD returns an attribute KeyValue for "tcpspan.close.fd": the file
// descriptor passed to close().
func TCPCloseFD(val int) attribute.KeyValue { return TCPCloseFDKey.Int(val) }

// TCPCloseUnreadBytes returns an attribute KeyValue for
// "tcpspan.close.unread_bytes": bytes received but never read at close().
func TCPCloseUnreadBytes(val int) attribute.KeyValue { return TCPCloseUnreadBytesKey.Int(val) }

// TCPCloseRelease returns an attribute KeyValue for "tcpspan.close.release": how
// the process released the socket ("close", "exit", ...).
func TCPCloseRelease(val string) attribute.KeyValue { return TCPCloseReleaseKey.String(val) }

// TCPResetAnswer returns an attribute KeyValue for "tcpspan.reset.answer":
// whether a reset sent answered a packet received.
func TCPResetAnswer(val bool) attribute.KeyValue { return TCPResetAnswerKey.Bool(val) }

// TCPResetReason returns an attribute KeyValue for "tcpspan.reset.reason": the
// kernel's reason for a reset sent.
func TCPResetReason(val string) attribute.KeyValue { return TCPResetReasonKey.String(val) }

// TCPListenerBacklog returns an attribute KeyValue for
// "tcpspan.listener.backlog": the accept queue length at an overflow.
func TCPListenerBacklog(val int) attribute.KeyValue { return TCPListenerBacklogKey.Int(val) }

// TCPListenerBacklogMax returns an attribute KeyValue for
// "tcpspan.listener.backlog_max": the accept queue limit.
func TCPListenerBacklogMax(val int) attribute.KeyValue { return TCPListenerBacklogMaxKey.Int(val) }

// TCPBytesSent returns an attribute KeyValue for "tcpspan.bytes.sent": payload
// bytes acknowledged by the peer.
func TCPBytesSent(val int64) attribute.KeyValue { return TCPBytesSentKey.Int64(val) }

// TCPBytesReceived returns an attribute KeyValue for "tcpspan.bytes.received":
// payload bytes received.
func TCPBytesReceived(val int64) attribute.KeyValue { return TCPBytesReceivedKey.Int64(val) }

// TCPSegmentsSent returns an attribute KeyValue for "tcpspan.segments.sent":
// segments sent.
func TCPSegmentsSent(val int) attribute.KeyValue { return TCPSegmentsSentKey.Int(val) }

// TCPSegmentsReceived returns an attribute KeyValue for
// "tcpspan.segments.received": segments received.
func TCPSegmentsReceived(val int) attribute.KeyValue { return TCPSegmentsReceivedKey.Int(val) }

// TCPRetransmits returns an attribute KeyValue for "tcpspan.retransmits":
// segments retransmitted.
func TCPRetransmits(val int) attribute.KeyValue { return TCPRetransmitsKey.Int(val) }

// TCPSYNACKRetransmits returns an attribute KeyValue for
// "tcpspan.synack.retransmits": SYN-ACK retransmits.
func TCPSYNACKRetransmits(val int) attribute.KeyValue { return TCPSYNACKRetransmitsKey.Int(val) }

// TCPRTT returns an attribute KeyValue for "tcpspan.rtt": the smoothed
// round-trip time in microseconds.
func TCPRTT(val int) attribute.KeyValue { return TCPRTTKey.Int(val) }

// TCPSYNEstimated returns an attribute KeyValue for "tcpspan.syn.estimated":
// the SYN's time is estimated from the handshake RTT.
func TCPSYNEstimated(val bool) attribute.KeyValue { return TCPSYNEstimatedKey.Bool(val) }

// TCPObservedMidlife returns an attribute KeyValue for
// "tcpspan.observed_midlife": the connection was open before it was first seen.
func TCPObservedMidlife(val bool) attribute.KeyValue { return TCPObservedMidlifeKey.Bool(val) }

// TCPOrphan returns an attribute KeyValue for "tcpspan.orphan": there was never a
// full socket on this side.
func TCPOrphan(val bool) attribute.KeyValue { return TCPOrphanKey.Bool(val) }

// TCPLinkReasonClosedAfterFailure marks a link from a connection that a
// process closed to the connection of the same process that failed just
// before, such as a forwarder's refused upstream connect.
var TCPLinkReasonClosedAfterFailure = TCPLinkReasonKey.String("closed_after_failure")

// TCPDiagnosisOf returns an attribute KeyValue for "tcpspan.diagnosis.of": the
// end of the connection a diagnosis span is from.
func TCPDiagnosisOf(side string) attribute.KeyValue { return TCPDiagnosisOfKey.String(side) }

// TCPLinkReasonPeer marks a link to the span of the other end of the same
// connection, in the same trace (the trace id comes from the handshake).
var TCPLinkReasonPeer = TCPLinkReasonKey.String("peer")

// TCPLinkReasonStormSample marks a link from a storm span to one of the
// connections it stands for (a bounded sample of them).
var TCPLinkReasonStormSample = TCPLinkReasonKey.String("storm_sample")

// TCPLinkReasonTraceparent marks a link to the application span named by
// a W3C traceparent header of a request the connection carried.
var TCPLinkReasonTraceparent = TCPLinkReasonKey.String("traceparent")

// TCPLinkReasonConnection marks a link from a diagnosis span, in an
// application's trace, to the connection span it diagnoses.
var TCPLinkReasonConnection = TCPLinkReasonKey.String("connection")

// TCPEndUnseen returns an attribute KeyValue for "tcpspan.end_unseen": the
// socket's end was never seen.
func TCPEndUnseen(val bool) attribute.KeyValue { return TCPEndUnseenKey.Bool(val) }

// TCPNetns returns an attribute KeyValue for "tcpspan.netns": the network
// namespace inode.
func TCPNetns(val int) attribute.KeyValue { return TCPNetnsKey.Int(val) }

// TCPOwnerFromListener returns an attribute KeyValue for
// "tcpspan.owner.from_listener": the owner is the listener's owner.
func TCPOwnerFromListener(val bool) attribute.KeyValue { return TCPOwnerFromListenerKey.Bool(val) }

// TCPEventsDropped returns an attribute KeyValue for "tcpspan.events.dropped":
// events the kernel could not keep.
func TCPEventsDropped(val int) attribute.KeyValue { return TCPEventsDroppedKey.Int(val) }

// TCPStormCount returns an attribute KeyValue for "tcpspan.storm.count": the
// connections a storm span stands for.
func TCPStormCount(val int) attribute.KeyValue { return TCPStormCountKey.Int(val) }

// TCPStormPeerAddresses returns an attribute KeyValue for
// "tcpspan.storm.peer_addresses": distinct peer addresses in a storm.
func TCPStormPeerAddresses(val int) attribute.KeyValue { return TCPStormPeerAddressesKey.Int(val) }

// TCPStormEvents returns an attribute KeyValue for "tcpspan.storm.events.<event>":
// the events of one kind in a storm. event is an event name without its
// "tcp." prefix, e.g. "rst_sent".
func TCPStormEvents(event string, val int) attribute.KeyValue {
	return attribute.Int(TCPStormEventsPrefix+event, val)
}

// TCPStatePrevious returns an attribute KeyValue for
// "tcpspan.state.previous": the state a state change left.
func TCPStatePrevious(val string) attribute.KeyValue { return TCPStatePreviousKey.String(val) }

// TCPFD returns an attribute KeyValue for "tcpspan.fd": the socket's file
// descriptor in the acting process.
func TCPFD(val int) attribute.KeyValue { return TCPFDKey.Int(val) }

// TCPSyscall returns an attribute KeyValue for "tcpspan.syscall": the syscall
// the acting process was in.
func TCPSyscall(val string) attribute.KeyValue { return TCPSyscallKey.String(val) }

// TCPErrno returns an attribute KeyValue for "tcpspan.errno": the errno name of
// an error reported to the application.
func TCPErrno(val string) attribute.KeyValue { return TCPErrnoKey.String(val) }

// TCPDropReason returns an attribute KeyValue for "tcpspan.drop.reason": the
// kernel's reason for dropping a packet.
func TCPDropReason(val string) attribute.KeyValue { return TCPDropReasonKey.String(val) }

// Enum values for tcpspan.close.initiator.
var (
	// TCPCloseInitiatorLocal says this host sent the first FIN or RST.
	TCPCloseInitiatorLocal = TCPCloseInitiatorKey.String("local")
	// TCPCloseInitiatorRemote says the peer sent the first FIN or RST.
	TCPCloseInitiatorRemote = TCPCloseInitiatorKey.String("remote")
	// TCPCloseInitiatorUnknown says no FIN or RST was seen.
	TCPCloseInitiatorUnknown = TCPCloseInitiatorKey.String("unknown")
)

// Enum values for tcpspan.reset.direction.
var (
	// TCPResetDirectionSent says this host sent the reset.
	TCPResetDirectionSent = TCPResetDirectionKey.String("sent")
	// TCPResetDirectionReceived says the peer sent the reset.
	TCPResetDirectionReceived = TCPResetDirectionKey.String("received")
)

// Predefined values for tcpspan.reset.reason.
var (
	// TCPResetReasonUnknown says the running kernel does not report reset
	// reasons (before 6.10).
	TCPResetReasonUnknown = TCPResetReasonKey.String("UNKNOWN")
)

// Enum values for tcpspan.reset.context.
var (
	// TCPResetContextProcess says a process sent the reset, inside a syscall.
	TCPResetContextProcess = TCPResetContextKey.String("process")
	// TCPResetContextKernel says the kernel sent the reset on its own.
	TCPResetContextKernel = TCPResetContextKey.String("kernel")
	// TCPResetContextUnknown says the kernel did not tell who sent it.
	TCPResetContextUnknown = TCPResetContextKey.String("unknown")
)

// Enum values for tcpspan.context.
var (
	// TCPContextProcess says a process acted, inside a syscall.
	TCPContextProcess = TCPContextKey.String("process")
	// TCPContextKernel says the kernel acted on its own.
	TCPContextKernel = TCPContextKey.String("kernel")
	// TCPContextUnknown says the kernel did not tell who acted.
	TCPContextUnknown = TCPContextKey.String("unknown")
)
