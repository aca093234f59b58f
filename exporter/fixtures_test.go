package exporter

import (
	"net/netip"
	"syscall"
	"time"

	"github.com/tcpspan/tcpspan/conn"
)

// Hand-made connections, shaped like the tracker's output.

var t0 = time.Date(2026, 11, 25, 7, 0, 0, 0, time.UTC)

// at returns t0 plus ms milliseconds.
func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

const netns = 4026531840

var (
	curl   = conn.Process{PID: 100, Comm: "curl"}
	nginx  = conn.Process{PID: 200, Comm: "nginx"}
	rinetd = conn.Process{PID: 812, Comm: "rinetd"}
	// Tasks that softirq happened to interrupt. The tracker never puts them
	// on a kernel-context event; the fixtures do, to prove they are ignored.
	compile = conn.Process{PID: 999, Comm: "compile"}
	phpFPM  = conn.Process{PID: 4242, Comm: "php-fpm"}
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func state(ms int, ctx conn.Context, p conn.Process, from, to conn.State) conn.Event {
	return conn.Event{Time: at(ms), Kind: conn.EventState, OldState: from, State: to, Context: ctx, Process: p, FD: -1}
}

func estimated(e conn.Event) conn.Event {
	e.Estimated = true
	return e
}

func ev(ms int, k conn.EventKind, ctx conn.Context, p conn.Process, s conn.State) conn.Event {
	return conn.Event{Time: at(ms), Kind: k, State: s, Context: ctx, Process: p, FD: -1}
}

func closeEv(ms int, p conn.Process, fd int32, s conn.State) conn.Event {
	return conn.Event{Time: at(ms), Kind: conn.EventClose, State: s, Context: conn.ContextProcess, Process: p,
		TID: p.PID, FD: fd, Syscall: "close", Release: conn.ReleaseClose}
}

func acceptEv(ms int, p conn.Process, fd int32) conn.Event {
	return conn.Event{Time: at(ms), Kind: conn.EventAccept, State: conn.StateEstablished, Context: conn.ContextProcess,
		Process: p, FD: fd, Syscall: "accept4"}
}

// rstSent is a reset sent; in process context inside close() when sys is
// "close".
func rstSent(ms int, reason string, ctx conn.Context, p conn.Process, s conn.State, sys string) conn.Event {
	e := conn.Event{Time: at(ms), Kind: conn.EventRSTSent, State: s, Context: ctx, Process: p, FD: -1,
		Reason: reason, Syscall: sys}
	if sys == "close" {
		e.Release = conn.ReleaseClose
	}
	return e
}

// answering marks a reset as the kernel's answer to a packet received.
func answering(e conn.Event) conn.Event {
	e.Answer = true
	return e
}

func errEv(ms int, errno syscall.Errno, s conn.State) conn.Event {
	return conn.Event{Time: at(ms), Kind: conn.EventError, State: s, Context: conn.ContextKernel, Process: compile,
		FD: -1, Errno: errno, PeerWindow: 65535}
}

func overflow(ms int, k conn.EventKind, backlog, max uint32) conn.Event {
	return conn.Event{Time: at(ms), Kind: k, State: conn.StateListen, Context: conn.ContextKernel, Process: phpFPM,
		FD: -1, Backlog: backlog, MaxBacklog: max}
}

// cleanClient: curl connects to 10.0.0.2:80, talks, closes first.
func cleanClient() *conn.Connection {
	return &conn.Connection{
		Side: conn.SideClient, Network: "ipv4", Netns: netns,
		Local: ap("10.0.0.1:41234"), Remote: ap("10.0.0.2:80"),
		Start: at(0), End: at(40),
		Owner:  curl,
		Closer: &conn.Close{Time: at(30), Process: curl, TID: 100, FD: 3},
		Events: []conn.Event{
			state(0, conn.ContextProcess, curl, conn.StateClose, conn.StateSynSent),
			state(1, conn.ContextKernel, compile, conn.StateSynSent, conn.StateEstablished),
			closeEv(30, curl, 3, conn.StateEstablished),
			state(30, conn.ContextProcess, curl, conn.StateEstablished, conn.StateFinWait1),
			state(31, conn.ContextKernel, compile, conn.StateFinWait1, conn.StateFinWait2),
			state(40, conn.ContextKernel, compile, conn.StateFinWait2, conn.StateClose),
		},
		FinalState: conn.StateClose,
		BytesSent:  78, BytesReceived: 512, SegsOut: 6, SegsIn: 5,
		SRTT:           35 * time.Microsecond,
		CloseInitiator: conn.InitiatorLocal,
	}
}

// cleanServer: nginx accepts from 10.0.0.1:41234, the client closes first.
func cleanServer() *conn.Connection {
	return &conn.Connection{
		Side: conn.SideServer, Network: "ipv4", Netns: netns,
		Local: ap("10.0.0.2:80"), Remote: ap("10.0.0.1:41234"),
		Start: at(0), End: at(32),
		Owner:  nginx,
		Closer: &conn.Close{Time: at(31), Process: nginx, TID: 201, FD: 12},
		Events: []conn.Event{
			ev(0, conn.EventSYN, conn.ContextKernel, compile, conn.StateListen),
			state(1, conn.ContextKernel, compile, conn.StateNewSynRecv, conn.StateEstablished),
			acceptEv(2, nginx, 12),
			state(30, conn.ContextKernel, compile, conn.StateEstablished, conn.StateCloseWait),
			{Time: at(31), Kind: conn.EventClose, State: conn.StateCloseWait, Context: conn.ContextProcess,
				Process: nginx, TID: 201, FD: 12, Syscall: "close", Release: conn.ReleaseClose},
			state(31, conn.ContextProcess, nginx, conn.StateCloseWait, conn.StateLastAck),
			state(32, conn.ContextKernel, compile, conn.StateLastAck, conn.StateClose),
		},
		FinalState: conn.StateClose,
		BytesSent:  512, BytesReceived: 78, SegsOut: 5, SegsIn: 6,
		SRTT:           40 * time.Microsecond,
		CloseInitiator: conn.InitiatorRemote,
	}
}

// rinetdAbort is blog case 2: rinetd accepts a client on :92, fails to
// reach its backend and closes the client socket with data unread.
func rinetdAbort(reason string) *conn.Connection {
	return &conn.Connection{
		Side: conn.SideServer, Network: "ipv4", Netns: netns,
		Local: ap("127.0.0.1:92"), Remote: ap("127.0.0.1:50000"),
		Start: at(0), End: at(5),
		Owner:  rinetd,
		Closer: &conn.Close{Time: at(5), Process: rinetd, TID: 812, FD: 7, UnreadBytes: 18},
		Events: []conn.Event{
			ev(0, conn.EventSYN, conn.ContextKernel, phpFPM, conn.StateListen),
			state(0, conn.ContextKernel, phpFPM, conn.StateNewSynRecv, conn.StateEstablished),
			acceptEv(1, rinetd, 7),
			closeEv(5, rinetd, 7, conn.StateEstablished),
			state(5, conn.ContextProcess, rinetd, conn.StateEstablished, conn.StateClose),
			rstSent(5, reason, conn.ContextProcess, rinetd, conn.StateClose, "close"),
		},
		FinalState:    conn.StateClose,
		BytesReceived: 18, SegsOut: 2, SegsIn: 3,
		SRTT:           10 * time.Microsecond,
		CloseInitiator: conn.InitiatorLocal,
	}
}

// refused: curl connects to a closed port on loopback.
func refused() *conn.Connection {
	return &conn.Connection{
		Side: conn.SideClient, Network: "ipv4", Netns: netns,
		Local: ap("127.0.0.1:41234"), Remote: ap("127.0.0.1:9999"),
		Start: at(0), End: at(1),
		Owner: curl,
		Events: []conn.Event{
			state(0, conn.ContextProcess, curl, conn.StateClose, conn.StateSynSent),
			ev(1, conn.EventRSTReceived, conn.ContextKernel, curl, conn.StateSynSent),
			errEv(1, syscall.ECONNREFUSED, conn.StateSynSent),
			state(1, conn.ContextKernel, curl, conn.StateSynSent, conn.StateClose),
		},
		FinalState: conn.StateClose, SegsOut: 1, SegsIn: 1,
		CloseInitiator: conn.InitiatorRemote,
	}
}

// noSocket: the other side of refused, the RST for no socket on :9999.
func noSocket() *conn.Connection {
	return &conn.Connection{
		Side: conn.SideServer, Network: "ipv4", Netns: netns, Orphan: true,
		Local: ap("127.0.0.1:9999"), Remote: ap("127.0.0.1:41234"),
		Start: at(1), End: at(1),
		Events: []conn.Event{
			answering(rstSent(1, "NO_SOCKET", conn.ContextKernel, curl, 0, "")),
		},
		CloseInitiator: conn.InitiatorLocal,
	}
}

// acceptOverflow is blog case 1: the handshake ACK hits rinetd's full accept
// queue on :92, a later ACK gets an RST from the listener; softirq ran in
// php-fpm, which must not be named.
func acceptOverflow() *conn.Connection {
	rst := answering(rstSent(1000, "TCP_FLAGS", conn.ContextKernel, phpFPM, conn.StateListen, ""))
	return &conn.Connection{
		Side: conn.SideServer, Network: "ipv4", Netns: netns, Orphan: true,
		Local: ap("127.0.0.1:92"), Remote: ap("127.0.0.1:50001"),
		Start: at(0), End: at(1000),
		Owner: rinetd, OwnerFromListener: true,
		Events: []conn.Event{
			overflow(0, conn.EventACKOverflow, 6, 5),
			rst,
		},
		FinalState:     conn.StateListen,
		CloseInitiator: conn.InitiatorLocal,
	}
}

// resetEstablished: the server at 10.0.0.2:80 resets an open connection.
func resetEstablished() *conn.Connection {
	return &conn.Connection{
		Side: conn.SideClient, Network: "ipv4", Netns: netns,
		Local: ap("10.0.0.1:41000"), Remote: ap("10.0.0.2:80"),
		Start: at(0), End: at(50),
		Owner: curl,
		Events: []conn.Event{
			state(0, conn.ContextProcess, curl, conn.StateClose, conn.StateSynSent),
			state(1, conn.ContextKernel, compile, conn.StateSynSent, conn.StateEstablished),
			ev(50, conn.EventRSTReceived, conn.ContextKernel, compile, conn.StateEstablished),
			errEv(50, syscall.ECONNRESET, conn.StateEstablished),
			state(50, conn.ContextKernel, compile, conn.StateEstablished, conn.StateClose),
		},
		FinalState: conn.StateClose,
		BytesSent:  100, SegsOut: 3, SegsIn: 2,
		SRTT:           200 * time.Microsecond,
		CloseInitiator: conn.InitiatorRemote,
	}
}

// retransmitting: a clean client whose data was retransmitted three times.
func retransmitting() *conn.Connection {
	c := cleanClient()
	c.End = at(1010)
	c.Closer.Time = at(1000)
	c.Events = []conn.Event{
		state(0, conn.ContextProcess, curl, conn.StateClose, conn.StateSynSent),
		state(1, conn.ContextKernel, compile, conn.StateSynSent, conn.StateEstablished),
		ev(202, conn.EventRetransmit, conn.ContextKernel, compile, conn.StateEstablished),
		ev(402, conn.EventRetransmit, conn.ContextKernel, compile, conn.StateEstablished),
		ev(802, conn.EventRetransmit, conn.ContextKernel, compile, conn.StateEstablished),
		closeEv(1000, curl, 3, conn.StateEstablished),
		state(1000, conn.ContextProcess, curl, conn.StateEstablished, conn.StateFinWait1),
		state(1001, conn.ContextKernel, compile, conn.StateFinWait1, conn.StateFinWait2),
		state(1010, conn.ContextKernel, compile, conn.StateFinWait2, conn.StateClose),
	}
	c.SegsOut, c.Retransmits, c.SRTT = 9, 3, 20*time.Millisecond
	return c
}

// ipv6Abort: an IPv6 server keeps receiving data after it closed, so the
// kernel resets (TCP_ABORT_ON_DATA) from softirq.
func ipv6Abort() *conn.Connection {
	return &conn.Connection{
		Side: conn.SideServer, Network: "ipv6", Netns: netns,
		Local: ap("[2001:db8::2]:443"), Remote: ap("[2001:db8::1]:50000"),
		Start: at(0), End: at(21),
		Owner:  nginx,
		Closer: &conn.Close{Time: at(20), Process: nginx, TID: 200, FD: 9},
		Events: []conn.Event{
			// Its SYN was not seen: placed by the handshake's RTT.
			estimated(ev(0, conn.EventSYN, conn.ContextKernel, compile, conn.StateListen)),
			acceptEv(1, nginx, 9),
			closeEv(20, nginx, 9, conn.StateEstablished),
			state(20, conn.ContextProcess, nginx, conn.StateEstablished, conn.StateFinWait1),
			answering(rstSent(21, "TCP_ABORT_ON_DATA", conn.ContextKernel, compile, conn.StateFinWait1, "")),
			state(21, conn.ContextKernel, compile, conn.StateFinWait1, conn.StateClose),
		},
		FinalState: conn.StateClose,
		BytesSent:  4096, BytesReceived: 300, SegsOut: 5, SegsIn: 4,
		SRTT:           50 * time.Microsecond,
		CloseInitiator: conn.InitiatorLocal,
	}
}
