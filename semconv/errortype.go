package semconv

// Values of the upstream error.type attribute that tcpspan writes on error
// spans. They are low-cardinality by design. When the only sign of trouble
// is an error reported to the application, error.type is instead the name
// of its errno, such as "EPIPE" or "EHOSTUNREACH".
const (
	// ErrorTypeRSTSent says this host reset the connection.
	ErrorTypeRSTSent = "tcp.rst_sent"
	// ErrorTypeRSTReceived says the peer reset an open connection.
	ErrorTypeRSTReceived = "tcp.rst_received"
	// ErrorTypeRefused says the peer refused the connection: it answered the
	// SYN with a reset (ECONNREFUSED).
	ErrorTypeRefused = "tcp.refused"
	// ErrorTypeTimeout says the connection timed out (ETIMEDOUT).
	ErrorTypeTimeout = "tcp.timeout"
	// ErrorTypeAcceptQueueOverflow says the handshake was dropped because the
	// listener's accept queue was full.
	ErrorTypeAcceptQueueOverflow = "tcp.accept_queue_overflow"
	// ErrorTypeHandshakeDropped says the handshake never completed for
	// another reason: a handshake packet was dropped, or SYN-ACKs went
	// unanswered.
	ErrorTypeHandshakeDropped = "tcp.handshake_dropped"
	// ErrorTypeRequestUnanswered says the connection ended cleanly while
	// it carried a request that got no answer: closed first by the peer
	// or by this end.
	ErrorTypeRequestUnanswered = "tcp.request_unanswered"
)
