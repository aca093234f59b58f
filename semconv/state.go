package semconv

// connectionStates maps the kernel's TCP state names
// (include/net/tcp_states.h) to the values of the upstream
// network.connection.state, RFC 9293's names. NEW_SYN_RECV, the kernel's
// request socket for a handshake under way, is syn_received.
var connectionStates = map[string]string{
	"ESTABLISHED":  "established",
	"SYN_SENT":     "syn_sent",
	"SYN_RECV":     "syn_received",
	"NEW_SYN_RECV": "syn_received",
	"FIN_WAIT1":    "fin_wait_1",
	"FIN_WAIT2":    "fin_wait_2",
	"TIME_WAIT":    "time_wait",
	"CLOSE":        "closed",
	"CLOSE_WAIT":   "close_wait",
	"LAST_ACK":     "last_ack",
	"LISTEN":       "listen",
	"CLOSING":      "closing",
}

// ConnectionState returns the network.connection.state value of a kernel
// TCP state name ("ESTABLISHED" is "established"), or "" for a name the
// kernel does not have.
func ConnectionState(kernel string) string {
	return connectionStates[kernel]
}
