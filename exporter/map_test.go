package exporter

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcpspan/tcpspan/conn"
	tcpsemconv "github.com/tcpspan/tcpspan/semconv"
)

// Expectations spell keys out as strings on purpose: they are the contract
// users search on.

func kvs(groups ...[]attribute.KeyValue) []attribute.KeyValue { return slices.Concat(groups...) }

func one(kv ...attribute.KeyValue) []attribute.KeyValue { return kv }

// st is a state change's own attributes.
func st(to, from string) []attribute.KeyValue {
	return one(attribute.String("network.connection.state", tcpsemconv.ConnectionState(to)),
		attribute.String("tcpspan.state.previous", tcpsemconv.ConnectionState(from)))
}

func atState(s string) []attribute.KeyValue {
	return one(attribute.String("network.connection.state", tcpsemconv.ConnectionState(s)))
}

var inKernel = one(attribute.String("tcpspan.context", "kernel"))

// inProcess is process context with the acting process named.
func inProcess(p conn.Process) []attribute.KeyValue {
	return one(attribute.String("tcpspan.context", "process"),
		attribute.Int("process.pid", int(p.PID)), attribute.String("process.executable.name", p.Comm))
}

// closed is a close() event's own attributes.
func closed(tid, fd int) []attribute.KeyValue {
	return one(attribute.Int("thread.id", tid), attribute.String("tcpspan.syscall", "close"), attribute.Int("tcpspan.fd", fd),
		attribute.String("tcpspan.close.release", "close"))
}

func accepted(fd int) []attribute.KeyValue {
	return one(attribute.String("tcpspan.syscall", "accept4"), attribute.Int("tcpspan.fd", fd))
}

func endpoints(network, local string, lport int, peer string, pport int) []attribute.KeyValue {
	return one(attribute.String("network.transport", "tcp"), attribute.String("network.type", network),
		attribute.String("network.local.address", local), attribute.Int("network.local.port", lport),
		attribute.String("network.peer.address", peer), attribute.Int("network.peer.port", pport))
}

func owner(p conn.Process) []attribute.KeyValue {
	return one(attribute.Int("process.pid", int(p.PID)), attribute.String("process.executable.name", p.Comm))
}

func counters(sent, recv int64, out, in, retrans, rttUs int) []attribute.KeyValue {
	return one(attribute.Int64("tcpspan.bytes.sent", sent), attribute.Int64("tcpspan.bytes.received", recv),
		attribute.Int("tcpspan.segments.sent", out), attribute.Int("tcpspan.segments.received", in),
		attribute.Int("tcpspan.retransmits", retrans), attribute.Int("tcpspan.rtt", rttUs))
}

var inNetns = one(attribute.Int("tcpspan.netns", netns))

func TestMap(t *testing.T) {
	tests := []struct {
		name string
		conn *conn.Connection
		want SpanData
	}{
		{
			name: "clean client",
			conn: cleanClient(),
			want: SpanData{
				Name: "TCP connect", Kind: trace.SpanKindClient, Start: at(0), End: at(40),
				Attributes: kvs(endpoints("ipv4", "10.0.0.1", 41234, "10.0.0.2", 80),
					one(attribute.String("server.address", "10.0.0.2"), attribute.Int("server.port", 80)),
					owner(curl), inNetns,
					one(attribute.String("network.connection.state", "closed"), attribute.String("tcpspan.close.initiator", "local"),
						attribute.Int("tcpspan.close.fd", 3), attribute.Int("tcpspan.close.unread_bytes", 0)),
					counters(78, 512, 6, 5, 0, 35), timed(1, -1, 10)),
				Events: []EventData{
					{"tcp.state", at(0), kvs(st("SYN_SENT", "CLOSE"), inProcess(curl))},
					{"tcp.state", at(1), kvs(st("ESTABLISHED", "SYN_SENT"), inKernel)},
					{"tcp.close", at(30), kvs(atState("ESTABLISHED"), inProcess(curl), closed(100, 3))},
					{"tcp.state", at(30), kvs(st("FIN_WAIT1", "ESTABLISHED"), inProcess(curl))},
					{"tcp.state", at(31), kvs(st("FIN_WAIT2", "FIN_WAIT1"), inKernel)},
					{"tcp.state", at(40), kvs(st("CLOSE", "FIN_WAIT2"), inKernel)},
				},
				StatusCode: codes.Unset, ServiceName: "curl",
			},
		},
		{
			name: "clean server",
			conn: cleanServer(),
			want: SpanData{
				Name: "TCP accept :80", Kind: trace.SpanKindServer, Start: at(0), End: at(32),
				Attributes: kvs(endpoints("ipv4", "10.0.0.2", 80, "10.0.0.1", 41234),
					one(attribute.String("server.address", "10.0.0.2"), attribute.Int("server.port", 80),
						attribute.String("client.address", "10.0.0.1"), attribute.Int("client.port", 41234)),
					owner(nginx), inNetns,
					one(attribute.String("network.connection.state", "closed"), attribute.String("tcpspan.close.initiator", "remote"),
						attribute.Int("tcpspan.close.fd", 12), attribute.Int("tcpspan.close.unread_bytes", 0)),
					counters(512, 78, 5, 6, 0, 40), timed(1, 1, 2)),
				Events: []EventData{
					{"tcp.syn", at(0), kvs(atState("LISTEN"), inKernel)},
					{"tcp.state", at(1), kvs(st("ESTABLISHED", "NEW_SYN_RECV"), inKernel)},
					{"tcp.accept", at(2), kvs(atState("ESTABLISHED"), inProcess(nginx), accepted(12))},
					{"tcp.state", at(30), kvs(st("CLOSE_WAIT", "ESTABLISHED"), inKernel)},
					{"tcp.close", at(31), kvs(atState("CLOSE_WAIT"), inProcess(nginx), closed(201, 12))},
					{"tcp.state", at(31), kvs(st("LAST_ACK", "CLOSE_WAIT"), inProcess(nginx))},
					{"tcp.state", at(32), kvs(st("CLOSE", "LAST_ACK"), inKernel)},
				},
				StatusCode: codes.Unset, ServiceName: "nginx",
			},
		},
		{
			name: "close with unread data, TCP_ABORT_ON_CLOSE in process context",
			conn: rinetdAbort("TCP_ABORT_ON_CLOSE"),
			want: rinetdAbortSpan("TCP_ABORT_ON_CLOSE",
				"RST sent (TCP_ABORT_ON_CLOSE): rinetd[812] closed fd 7 with 18 bytes unread"),
		},
		{
			name: "reason unknown",
			conn: rinetdAbort(conn.ReasonUnknown),
			want: rinetdAbortSpan("UNKNOWN",
				"RST sent (reason not reported: kernels before 6.10 give none): rinetd[812] closed fd 7 with 18 bytes unread"),
		},
		{
			name: "refused connect",
			conn: refused(),
			want: SpanData{
				Name: "TCP connect", Kind: trace.SpanKindClient, Start: at(0), End: at(1),
				Attributes: kvs(endpoints("ipv4", "127.0.0.1", 41234, "127.0.0.1", 9999),
					one(attribute.String("server.address", "127.0.0.1"), attribute.Int("server.port", 9999)),
					owner(curl), inNetns,
					one(attribute.String("network.connection.state", "closed"), attribute.String("tcpspan.close.initiator", "remote"),
						attribute.Int64("tcpspan.bytes.sent", 0), attribute.Int64("tcpspan.bytes.received", 0),
						attribute.Int("tcpspan.segments.sent", 1), attribute.Int("tcpspan.segments.received", 1),
						attribute.Int("tcpspan.retransmits", 0),
						attribute.String("tcpspan.reset.direction", "received"), attribute.String("tcpspan.errno", "ECONNREFUSED"),
						attribute.String("error.type", "tcp.refused"))),
				Events: []EventData{
					{"tcp.state", at(0), kvs(st("SYN_SENT", "CLOSE"), inProcess(curl))},
					{"tcp.rst_received", at(1), kvs(atState("SYN_SENT"), inKernel)},
					{"tcp.error", at(1), kvs(atState("SYN_SENT"), inKernel, one(attribute.String("tcpspan.errno", "ECONNREFUSED")))},
					{"tcp.state", at(1), kvs(st("CLOSE", "SYN_SENT"), inKernel)},
				},
				StatusCode:        codes.Error,
				StatusDescription: "connection refused: RST received (ECONNREFUSED) from 127.0.0.1:9999",
				ServiceName:       "curl",
			},
		},
		{
			name: "orphan reset for no socket",
			conn: noSocket(),
			want: SpanData{
				Name: "TCP reset :9999", Kind: trace.SpanKindServer, Start: at(1), End: at(1).Add(time.Nanosecond), // an instant lasts 1 ns
				Attributes: kvs(endpoints("ipv4", "127.0.0.1", 9999, "127.0.0.1", 41234),
					one(attribute.String("server.address", "127.0.0.1"), attribute.Int("server.port", 9999),
						attribute.String("client.address", "127.0.0.1"), attribute.Int("client.port", 41234)),
					inNetns,
					one(attribute.Bool("tcpspan.orphan", true), attribute.String("tcpspan.close.initiator", "local"),
						attribute.String("tcpspan.reset.direction", "sent"), attribute.String("tcpspan.reset.reason", "NO_SOCKET"),
						attribute.String("tcpspan.reset.context", "kernel"), attribute.Bool("tcpspan.reset.answer", true), attribute.String("error.type", "tcp.rst_sent"))),
				Events: []EventData{
					{"tcp.rst_sent", at(1), kvs(inKernel, one(attribute.String("tcpspan.reset.reason", "NO_SOCKET"), attribute.Bool("tcpspan.reset.answer", true)))},
				},
				StatusCode:        codes.Error,
				StatusDescription: "RST sent (NO_SOCKET): no socket on :9999 for 127.0.0.1:41234",
				ServiceName:       "",
			},
		},
		{
			name: "storm of resets for no socket, folded",
			conn: func() *conn.Connection {
				c := noSocket()
				c.Storm = &conn.Storm{Count: 4211, Peers: 3, First: at(1), Last: at(999)}
				c.Storm.Events[conn.EventRSTSent] = 4211
				c.Start, c.End = at(1), at(999)
				return c
			}(),
			want: SpanData{
				Name: "TCP reset :9999", Kind: trace.SpanKindServer, Start: at(1), End: at(999),
				Attributes: kvs(endpoints("ipv4", "127.0.0.1", 9999, "127.0.0.1", 41234),
					one(attribute.String("server.address", "127.0.0.1"), attribute.Int("server.port", 9999),
						attribute.String("client.address", "127.0.0.1"), attribute.Int("client.port", 41234)),
					inNetns,
					one(attribute.Bool("tcpspan.orphan", true), attribute.String("tcpspan.close.initiator", "local"),
						attribute.String("tcpspan.reset.direction", "sent"), attribute.String("tcpspan.reset.reason", "NO_SOCKET"),
						attribute.String("tcpspan.reset.context", "kernel"), attribute.Bool("tcpspan.reset.answer", true),
						attribute.Int("tcpspan.storm.count", 4211), attribute.Int("tcpspan.storm.peer_addresses", 3),
						attribute.Int("tcpspan.storm.events.rst_sent", 4211),
						attribute.String("error.type", "tcp.rst_sent"))),
				Events: []EventData{
					{"tcp.rst_sent", at(1), kvs(inKernel, one(attribute.String("tcpspan.reset.reason", "NO_SOCKET"), attribute.Bool("tcpspan.reset.answer", true)))},
				},
				StatusCode:        codes.Error,
				StatusDescription: "RST sent (NO_SOCKET): no socket on :9999 for 127.0.0.1:41234; 4211 such in 998ms from 3 peers",
			},
		},
		{
			name: "orphan accept-queue overflow, then RST from listener in kernel context",
			conn: acceptOverflow(),
			want: SpanData{
				Name: "TCP reset :92", Kind: trace.SpanKindServer, Start: at(0), End: at(1000),
				Attributes: kvs(endpoints("ipv4", "127.0.0.1", 92, "127.0.0.1", 50001),
					one(attribute.String("server.address", "127.0.0.1"), attribute.Int("server.port", 92),
						attribute.String("client.address", "127.0.0.1"), attribute.Int("client.port", 50001)),
					owner(rinetd),
					one(attribute.Bool("tcpspan.owner.from_listener", true)), inNetns,
					one(attribute.Bool("tcpspan.orphan", true), attribute.String("network.connection.state", "listen"),
						attribute.String("tcpspan.close.initiator", "local"),
						attribute.Int("tcpspan.listener.backlog", 6), attribute.Int("tcpspan.listener.backlog_max", 5),
						attribute.String("tcpspan.reset.direction", "sent"), attribute.String("tcpspan.reset.reason", "TCP_FLAGS"),
						attribute.String("tcpspan.reset.context", "kernel"), attribute.Bool("tcpspan.reset.answer", true),
						attribute.String("error.type", "tcp.accept_queue_overflow"))),
				Events: []EventData{
					{"tcp.ack_overflow", at(0), kvs(atState("LISTEN"), inKernel,
						one(attribute.Int("tcpspan.listener.backlog", 6), attribute.Int("tcpspan.listener.backlog_max", 5)))},
					{"tcp.rst_sent", at(1000), kvs(atState("LISTEN"), inKernel, one(attribute.String("tcpspan.reset.reason", "TCP_FLAGS"), attribute.Bool("tcpspan.reset.answer", true)))},
				},
				StatusCode:        codes.Error,
				StatusDescription: "handshake dropped: accept queue of :92 full (6/5), then RST from listener (TCP_FLAGS)",
				ServiceName:       "rinetd",
			},
		},
		{
			name: "reset received on an established connection",
			conn: resetEstablished(),
			want: SpanData{
				Name: "TCP connect", Kind: trace.SpanKindClient, Start: at(0), End: at(50),
				Attributes: kvs(endpoints("ipv4", "10.0.0.1", 41000, "10.0.0.2", 80),
					one(attribute.String("server.address", "10.0.0.2"), attribute.Int("server.port", 80)),
					owner(curl), inNetns,
					one(attribute.String("network.connection.state", "closed"), attribute.String("tcpspan.close.initiator", "remote")),
					counters(100, 0, 3, 2, 0, 200), timed(1, -1, -1),
					one(attribute.String("tcpspan.reset.direction", "received"), attribute.String("tcpspan.errno", "ECONNRESET"),
						attribute.String("error.type", "tcp.rst_received"))),
				Events: []EventData{
					{"tcp.state", at(0), kvs(st("SYN_SENT", "CLOSE"), inProcess(curl))},
					{"tcp.state", at(1), kvs(st("ESTABLISHED", "SYN_SENT"), inKernel)},
					{"tcp.rst_received", at(50), kvs(atState("ESTABLISHED"), inKernel)},
					{"tcp.error", at(50), kvs(atState("ESTABLISHED"), inKernel, one(attribute.String("tcpspan.errno", "ECONNRESET")))},
					{"tcp.state", at(50), kvs(st("CLOSE", "ESTABLISHED"), inKernel)},
				},
				StatusCode:        codes.Error,
				StatusDescription: "RST received (ECONNRESET) from 10.0.0.2:80 while ESTABLISHED",
				ServiceName:       "curl",
			},
		},
		{
			name: "retransmits",
			conn: retransmitting(),
			want: SpanData{
				Name: "TCP connect", Kind: trace.SpanKindClient, Start: at(0), End: at(1010),
				Attributes: kvs(endpoints("ipv4", "10.0.0.1", 41234, "10.0.0.2", 80),
					one(attribute.String("server.address", "10.0.0.2"), attribute.Int("server.port", 80)),
					owner(curl), inNetns,
					one(attribute.String("network.connection.state", "closed"), attribute.String("tcpspan.close.initiator", "local"),
						attribute.Int("tcpspan.close.fd", 3), attribute.Int("tcpspan.close.unread_bytes", 0)),
					counters(78, 512, 9, 5, 3, 20000), timed(1, -1, 10)),
				Events: []EventData{
					{"tcp.state", at(0), kvs(st("SYN_SENT", "CLOSE"), inProcess(curl))},
					{"tcp.state", at(1), kvs(st("ESTABLISHED", "SYN_SENT"), inKernel)},
					{"tcp.retransmit", at(202), kvs(atState("ESTABLISHED"), inKernel)},
					{"tcp.retransmit", at(402), kvs(atState("ESTABLISHED"), inKernel)},
					{"tcp.retransmit", at(802), kvs(atState("ESTABLISHED"), inKernel)},
					{"tcp.close", at(1000), kvs(atState("ESTABLISHED"), inProcess(curl), closed(100, 3))},
					{"tcp.state", at(1000), kvs(st("FIN_WAIT1", "ESTABLISHED"), inProcess(curl))},
					{"tcp.state", at(1001), kvs(st("FIN_WAIT2", "FIN_WAIT1"), inKernel)},
					{"tcp.state", at(1010), kvs(st("CLOSE", "FIN_WAIT2"), inKernel)},
				},
				StatusCode: codes.Unset, ServiceName: "curl",
			},
		},
		{
			name: "IPv6 server, reset in kernel context",
			conn: ipv6Abort(),
			want: SpanData{
				Name: "TCP accept :443", Kind: trace.SpanKindServer, Start: at(0), End: at(21),
				Attributes: kvs(endpoints("ipv6", "2001:db8::2", 443, "2001:db8::1", 50000),
					one(attribute.String("server.address", "2001:db8::2"), attribute.Int("server.port", 443),
						attribute.String("client.address", "2001:db8::1"), attribute.Int("client.port", 50000)),
					owner(nginx), inNetns,
					one(attribute.String("network.connection.state", "closed"), attribute.String("tcpspan.close.initiator", "local"),
						attribute.Int("tcpspan.close.fd", 9), attribute.Int("tcpspan.close.unread_bytes", 0)),
					counters(4096, 300, 5, 4, 0, 50), timed(-1, -1, 1),
					one(attribute.String("tcpspan.reset.direction", "sent"), attribute.String("tcpspan.reset.reason", "TCP_ABORT_ON_DATA"),
						attribute.String("tcpspan.reset.context", "kernel"), attribute.Bool("tcpspan.reset.answer", true), attribute.String("error.type", "tcp.rst_sent"))),
				Events: []EventData{
					{"tcp.syn", at(0), kvs(atState("LISTEN"), inKernel, one(attribute.Bool("tcpspan.syn.estimated", true)))},
					{"tcp.accept", at(1), kvs(atState("ESTABLISHED"), inProcess(nginx), accepted(9))},
					{"tcp.close", at(20), kvs(atState("ESTABLISHED"), inProcess(nginx), closed(200, 9))},
					{"tcp.state", at(20), kvs(st("FIN_WAIT1", "ESTABLISHED"), inProcess(nginx))},
					{"tcp.rst_sent", at(21), kvs(atState("FIN_WAIT1"), inKernel, one(attribute.String("tcpspan.reset.reason", "TCP_ABORT_ON_DATA"), attribute.Bool("tcpspan.reset.answer", true)))},
					{"tcp.state", at(21), kvs(st("CLOSE", "FIN_WAIT1"), inKernel)},
				},
				StatusCode:        codes.Error,
				StatusDescription: "RST sent (TCP_ABORT_ON_DATA): sent by the kernel while processing a packet from [2001:db8::1]:50000 in FIN_WAIT1",
				ServiceName:       "nginx",
			},
		},
		{
			name: "mid-life, side unknown, owner unknown, events dropped",
			conn: func() *conn.Connection {
				c := cleanClient()
				c.Side, c.Midlife, c.Owner, c.Closer, c.Netns = conn.SideUnknown, true, conn.Process{}, nil, 0
				c.Events, c.EventsDropped, c.SRTT = c.Events[5:], 4, 0
				return c
			}(),
			want: SpanData{
				Name: "TCP", Kind: trace.SpanKindInternal, Start: at(0), End: at(40),
				Attributes: kvs(endpoints("ipv4", "10.0.0.1", 41234, "10.0.0.2", 80),
					one(attribute.Bool("tcpspan.observed_midlife", true), attribute.String("network.connection.state", "closed"),
						attribute.String("tcpspan.close.initiator", "local"),
						attribute.Int64("tcpspan.bytes.sent", 78), attribute.Int64("tcpspan.bytes.received", 512),
						attribute.Int("tcpspan.segments.sent", 6), attribute.Int("tcpspan.segments.received", 5),
						attribute.Int("tcpspan.retransmits", 0), attribute.Int("tcpspan.events.dropped", 4))),
				Events: []EventData{
					{"tcp.state", at(40), kvs(st("CLOSE", "FIN_WAIT2"), inKernel)},
				},
				StatusCode: codes.Unset, ServiceName: "",
			},
		},
		{
			name: "orphan SYN-ACK retransmits",
			conn: func() *conn.Connection {
				c := noSocket()
				c.Local, c.Remote = ap("10.0.0.2:80"), ap("10.0.0.1:5555")
				c.CloseInitiator = conn.InitiatorUnknown
				c.Events = []conn.Event{
					{Time: at(1000), Kind: conn.EventSYNACKRetransmit, State: conn.StateNewSynRecv, Context: conn.ContextKernel, FD: -1, Count: 1},
					{Time: at(3000), Kind: conn.EventSYNACKRetransmit, State: conn.StateNewSynRecv, Context: conn.ContextKernel, FD: -1, Count: 2},
				}
				c.FinalState, c.End = conn.StateNewSynRecv, at(3000)
				return c
			}(),
			want: SpanData{
				Name: "TCP handshake :80", Kind: trace.SpanKindServer, Start: at(1), End: at(3000),
				Attributes: kvs(endpoints("ipv4", "10.0.0.2", 80, "10.0.0.1", 5555),
					one(attribute.String("server.address", "10.0.0.2"), attribute.Int("server.port", 80),
						attribute.String("client.address", "10.0.0.1"), attribute.Int("client.port", 5555)),
					inNetns,
					one(attribute.Bool("tcpspan.orphan", true), attribute.String("network.connection.state", "syn_received"),
						attribute.String("tcpspan.close.initiator", "unknown"), attribute.Int("tcpspan.synack.retransmits", 2),
						attribute.String("error.type", "tcp.handshake_dropped"))),
				Events: []EventData{
					{"tcp.synack_retransmit", at(1000), kvs(atState("NEW_SYN_RECV"), inKernel, one(attribute.Int("tcpspan.synack.retransmits", 1)))},
					{"tcp.synack_retransmit", at(3000), kvs(atState("NEW_SYN_RECV"), inKernel, one(attribute.Int("tcpspan.synack.retransmits", 2)))},
				},
				StatusCode:        codes.Error,
				StatusDescription: "handshake not completed: SYN-ACK to 10.0.0.1:5555 retransmitted 2 times without an ACK",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkSpan(t, mapWithEvents(tt.conn), tt.want)
		})
	}
}

// mapWithEvents is Map with WithCleanEvents: every span keeps its events.
func mapWithEvents(c *conn.Connection) SpanData {
	errType, desc, isErr := Diagnose(c)
	m := mapper{cleanEvents: true}
	var sd SpanData
	m.mapInto(&sd, c, errType, desc, isErr)
	return sd
}

// timed is the timing attributes of a span, in milliseconds of the
// fixtures' clock; -1 leaves one out.
func timed(handshake, queued, closing int) []attribute.KeyValue {
	var a []attribute.KeyValue
	for _, x := range []struct {
		key string
		ms  int
	}{{"tcpspan.handshake.duration", handshake}, {"tcpspan.accept.delay", queued}, {"tcpspan.close.duration", closing}} {
		if x.ms >= 0 {
			a = append(a, attribute.Int64(x.key, int64(x.ms)*1000))
		}
	}
	return a
}

// rinetdAbortSpan is the span of rinetdAbort(reason).
func rinetdAbortSpan(reason, desc string) SpanData {
	return SpanData{
		Name: "TCP accept :92", Kind: trace.SpanKindServer, Start: at(0), End: at(5),
		Attributes: kvs(endpoints("ipv4", "127.0.0.1", 92, "127.0.0.1", 50000),
			one(attribute.String("server.address", "127.0.0.1"), attribute.Int("server.port", 92),
				attribute.String("client.address", "127.0.0.1"), attribute.Int("client.port", 50000)),
			owner(rinetd), inNetns,
			one(attribute.String("network.connection.state", "closed"), attribute.String("tcpspan.close.initiator", "local"),
				attribute.Int("tcpspan.close.fd", 7), attribute.Int("tcpspan.close.unread_bytes", 18)),
			counters(0, 18, 2, 3, 0, 10), timed(0, 1, -1),
			one(attribute.String("tcpspan.reset.direction", "sent"), attribute.String("tcpspan.reset.reason", reason),
				attribute.String("tcpspan.reset.context", "process"), attribute.Bool("tcpspan.reset.answer", false), attribute.String("error.type", "tcp.rst_sent"))),
		Events: []EventData{
			{"tcp.syn", at(0), kvs(atState("LISTEN"), inKernel)},
			{"tcp.state", at(0), kvs(st("ESTABLISHED", "NEW_SYN_RECV"), inKernel)},
			{"tcp.accept", at(1), kvs(atState("ESTABLISHED"), inProcess(rinetd), accepted(7))},
			{"tcp.close", at(5), kvs(atState("ESTABLISHED"), inProcess(rinetd), closed(812, 7))},
			{"tcp.state", at(5), kvs(st("CLOSE", "ESTABLISHED"), inProcess(rinetd))},
			{"tcp.rst_sent", at(5), kvs(atState("CLOSE"), inProcess(rinetd),
				one(attribute.String("tcpspan.syscall", "close"), attribute.String("tcpspan.reset.reason", reason),
					attribute.String("tcpspan.close.release", "close"), attribute.Bool("tcpspan.reset.answer", false)))},
		},
		StatusCode:        codes.Error,
		StatusDescription: desc,
		ServiceName:       "rinetd",
	}
}

// TestMapNeverBlamesInterruptedTask checks every fixture: an event in
// kernel or unknown context names no process, whatever the event carries.
func TestMapNeverBlamesInterruptedTask(t *testing.T) {
	for _, c := range []*conn.Connection{cleanClient(), cleanServer(), rinetdAbort("TCP_ABORT_ON_CLOSE"), refused(),
		noSocket(), acceptOverflow(), resetEstablished(), retransmitting(), ipv6Abort()} {
		sd := mapWithEvents(c)
		if len(sd.Events) != len(c.Events) {
			t.Fatalf("%s: %d events, want %d", sd.Name, len(sd.Events), len(c.Events))
		}
		for i, e := range sd.Events {
			process := slices.ContainsFunc(e.Attributes, func(kv attribute.KeyValue) bool {
				return kv.Key == "process.pid" || kv.Key == "process.executable.name" || kv.Key == "thread.id"
			})
			if want := c.Events[i].Context == conn.ContextProcess; process != want {
				t.Errorf("%s: event %d (%s, context %s) names a process: %v, want %v", sd.Name, i, e.Name,
					c.Events[i].Context, process, want)
			}
			if !e.Time.Equal(c.Events[i].Time) {
				t.Errorf("%s: event %d at %v, want %v", sd.Name, i, e.Time, c.Events[i].Time)
			}
		}
	}
}

// TestEventNames checks one name per event kind, as defined in semconv.
func TestEventNames(t *testing.T) {
	want := map[conn.EventKind]string{
		conn.EventSYN: tcpsemconv.EventSYN, conn.EventState: tcpsemconv.EventState,
		conn.EventAccept: tcpsemconv.EventAccept, conn.EventClose: tcpsemconv.EventClose,
		conn.EventRSTSent: tcpsemconv.EventRSTSent, conn.EventRSTReceived: tcpsemconv.EventRSTReceived,
		conn.EventError: tcpsemconv.EventError, conn.EventRetransmit: tcpsemconv.EventRetransmit,
		conn.EventSYNACKRetransmit: tcpsemconv.EventSYNACKRetransmit, conn.EventDrop: tcpsemconv.EventDrop,
		conn.EventSYNOverflow: tcpsemconv.EventSYNOverflow, conn.EventACKOverflow: tcpsemconv.EventACKOverflow,
	}
	for k := conn.EventSYN; k <= conn.EventACKOverflow; k++ {
		t.Run(k.String(), func(t *testing.T) {
			// The semconv names are the conn kind names under tcp.
			if got := eventName(k); got != want[k] || got != "tcp."+k.String() {
				t.Errorf("eventName(%d) = %q, want %q", k, got, want[k])
			}
		})
	}
	if got := eventName(99); got != "tcp.event_99" {
		t.Errorf("eventName(99) = %q", got)
	}
	if conn.ReasonUnknown != tcpsemconv.TCPResetReasonUnknown.Value.AsString() {
		t.Errorf("conn.ReasonUnknown %q != semconv %q", conn.ReasonUnknown, tcpsemconv.TCPResetReasonUnknown.Value.AsString())
	}
}

func checkSpan(t *testing.T, got, want SpanData) {
	t.Helper()
	if got.Name != want.Name || got.Kind != want.Kind || !got.Start.Equal(want.Start) || !got.End.Equal(want.End) {
		t.Errorf("span = %q %s [%v, %v], want %q %s [%v, %v]", got.Name, got.Kind, got.Start, got.End,
			want.Name, want.Kind, want.Start, want.End)
	}
	if got.StatusCode != want.StatusCode || got.StatusDescription != want.StatusDescription {
		t.Errorf("status = %s %q, want %s %q", got.StatusCode, got.StatusDescription, want.StatusCode, want.StatusDescription)
	}
	if got.ServiceName != want.ServiceName {
		t.Errorf("service name = %q, want %q", got.ServiceName, want.ServiceName)
	}
	checkAttributes(t, "span", got.Attributes, want.Attributes)
	if len(got.Events) != len(want.Events) {
		t.Errorf("%d events, want %d:\n%s", len(got.Events), len(want.Events), eventList(got.Events))
		return
	}
	for i := range want.Events {
		g, w := got.Events[i], want.Events[i]
		if g.Name != w.Name || !g.Time.Equal(w.Time) {
			t.Errorf("event %d = %s at %v, want %s at %v", i, g.Name, g.Time, w.Name, w.Time)
		}
		checkAttributes(t, fmt.Sprintf("event %d (%s)", i, w.Name), g.Attributes, w.Attributes)
	}
}

// checkAttributes compares attribute sets, type included; duplicates count.
func checkAttributes(t *testing.T, what string, got, want []attribute.KeyValue) {
	t.Helper()
	g, w := render(got), render(want)
	if !slices.Equal(g, w) {
		t.Errorf("%s attributes:\n\tgot  %s\n\twant %s", what, strings.Join(g, " "), strings.Join(w, " "))
	}
}

func render(kvs []attribute.KeyValue) []string {
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = fmt.Sprintf("%s=%s(%s)", kv.Key, kv.Value.String(), kv.Value.Type())
	}
	slices.Sort(out)
	return out
}

func eventList(evs []EventData) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "\t%s %s %s\n", e.Time.Format(time.StampMilli), e.Name, strings.Join(render(e.Attributes), " "))
	}
	return b.String()
}

func BenchmarkMap(b *testing.B) {
	for _, bc := range []struct {
		name string
		conn *conn.Connection
	}{
		{"clean", cleanServer()},
		{"rst_sent_process", rinetdAbort("TCP_ABORT_ON_CLOSE")},
		{"accept_overflow", acceptOverflow()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Map(bc.conn)
			}
		})
	}
}

// A clean connection's span carries its timings and no events, unless
// WithCleanEvents; a connection with a problem keeps its whole history.
// Lean, a clean span is at most half its full size on the wire.
func TestCleanSpansAreLean(t *testing.T) {
	for _, c := range []*conn.Connection{cleanClient(), cleanServer()} {
		lean := Map(c)
		if len(lean.Events) != 0 {
			t.Errorf("%s: %d events on a clean span", lean.Name, len(lean.Events))
		}
		if !slices.ContainsFunc(lean.Attributes, func(kv attribute.KeyValue) bool { return kv.Key == "tcpspan.handshake.duration" }) {
			t.Errorf("%s: no tcpspan.handshake.duration", lean.Name)
		}
		size := func(cleanEvents bool) int {
			m := newCachingMapper()
			m.cleanEvents = cleanEvents
			var enc spanEncoder
			errType, desc, isErr := Diagnose(c)
			return len(enc.appendConn(nil, m, c, errType, desc, isErr, traceID{1}, spanID{1}, nil))
		}
		full, leanSize := size(true), size(false)
		t.Logf("%s: %d bytes lean, %d with events", lean.Name, leanSize, full)
		if 2*leanSize > full {
			t.Errorf("%s: lean span %d bytes, more than half of %d", lean.Name, leanSize, full)
		}
	}
	abort := rinetdAbort("TCP_ABORT_ON_CLOSE")
	if sd := Map(abort); len(sd.Events) != len(abort.Events) {
		t.Errorf("a span with a problem has %d events, want all %d", len(sd.Events), len(abort.Events))
	}
}
