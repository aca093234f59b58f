package semconv

// Span event names, one per kind of kernel event on a connection. Each event
// carries its true kernel timestamp.
const (
	// EventSYN is the name of the event for a SYN that reached the listener.
	EventSYN = "tcp.syn"
	// EventState is the name of the event for a change of the socket's TCP
	// state (tcpspan.state.previous to network.connection.state).
	EventState = "tcp.state"
	// EventAccept is the name of the event for accept() returning the socket
	// to a process (process.pid, tcpspan.fd, tcpspan.syscall).
	EventAccept = "tcp.accept"
	// EventClose is the name of the event for close() of the socket by a
	// process (process.pid, thread.id, tcpspan.fd).
	EventClose = "tcp.close"
	// EventRSTSent is the name of the event for a reset sent by this host
	// (tcpspan.reset.reason, tcpspan.context; process.pid only in process context).
	EventRSTSent = "tcp.rst_sent"
	// EventRSTReceived is the name of the event for a reset received from the
	// peer.
	EventRSTReceived = "tcp.rst_received"
	// EventError is the name of the event for an error reported to the
	// application (tcpspan.errno).
	EventError = "tcp.error"
	// EventRetransmit is the name of the event for a retransmitted segment.
	EventRetransmit = "tcp.retransmit"
	// EventSYNACKRetransmit is the name of the event for a retransmitted
	// SYN-ACK (tcpspan.synack.retransmits: the count so far).
	EventSYNACKRetransmit = "tcp.synack_retransmit"
	// EventDrop is the name of the event for a dropped packet of the
	// connection (tcpspan.drop.reason).
	EventDrop = "tcp.drop"
	// EventSYNOverflow is the name of the event for a SYN dropped because the
	// listener's accept queue was full (tcpspan.listener.backlog,
	// tcpspan.listener.backlog_max).
	EventSYNOverflow = "tcp.syn_overflow"
	// EventACKOverflow is the name of the event for a handshake ACK dropped
	// because the listener's accept queue was full (tcpspan.listener.backlog,
	// tcpspan.listener.backlog_max).
	EventACKOverflow = "tcp.ack_overflow"
)
