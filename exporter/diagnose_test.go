package exporter

import (
	"strings"
	"syscall"
	"testing"

	"github.com/tcpspan/tcpspan/conn"
)

func TestDiagnose(t *testing.T) {
	tests := []struct {
		name     string
		conn     *conn.Connection
		wantType string
		wantDesc string // "" with wantType "": not an error
	}{
		{name: "clean client", conn: cleanClient()},
		{name: "clean server", conn: cleanServer()},
		{name: "retransmits alone are not an error", conn: retransmitting()},
		{
			name:     "close with unread data (blog case 2)",
			conn:     rinetdAbort("TCP_ABORT_ON_CLOSE"),
			wantType: "tcp.rst_sent",
			wantDesc: "RST sent (TCP_ABORT_ON_CLOSE): rinetd[812] closed fd 7 with 18 bytes unread",
		},
		{
			name:     "reason unknown on an old kernel",
			conn:     rinetdAbort(conn.ReasonUnknown),
			wantType: "tcp.rst_sent",
			wantDesc: "RST sent (reason not reported: kernels before 6.10 give none): rinetd[812] closed fd 7 with 18 bytes unread",
		},
		{
			name: "close without closer record: comm from owner, fd from close event, one byte",
			conn: func() *conn.Connection {
				c := rinetdAbort("TCP_ABORT_ON_CLOSE")
				c.Closer = &conn.Close{Process: rinetd, FD: -1, UnreadBytes: 1}
				c.Events[5].Process.Comm = ""
				c.Events[5].Syscall = ""
				return c
			}(),
			wantType: "tcp.rst_sent",
			wantDesc: "RST sent (TCP_ABORT_ON_CLOSE): rinetd[812] closed fd 7 with 1 byte unread",
		},
		{
			name: "reset by a process outside close()",
			conn: func() *conn.Connection {
				c := cleanServer()
				c.Events = append(c.Events[:3:3], rstSent(10, "TCP_STATE", conn.ContextProcess, nginx, conn.StateEstablished, ""))
				return c
			}(),
			wantType: "tcp.rst_sent",
			wantDesc: "RST sent (TCP_STATE): sent by nginx[200]",
		},
		{
			name:     "refused connect",
			conn:     refused(),
			wantType: "tcp.refused",
			wantDesc: "connection refused: RST received (ECONNREFUSED) from 127.0.0.1:9999",
		},
		{
			name:     "orphan reset for no socket",
			conn:     noSocket(),
			wantType: "tcp.rst_sent",
			wantDesc: "RST sent (NO_SOCKET): no socket on :9999 for 127.0.0.1:41234",
		},
		{
			name:     "accept queue overflow then RST from listener (blog case 1)",
			conn:     acceptOverflow(),
			wantType: "tcp.accept_queue_overflow",
			wantDesc: "handshake dropped: accept queue of :92 full (6/5), then RST from listener (TCP_FLAGS)",
		},
		{
			name: "accept queue overflow, reason unknown",
			conn: func() *conn.Connection {
				c := acceptOverflow()
				c.Events[1].Reason = conn.ReasonUnknown
				return c
			}(),
			wantType: "tcp.accept_queue_overflow",
			wantDesc: "handshake dropped: accept queue of :92 full (6/5), then RST from listener (reason not reported: kernels before 6.10 give none)",
		},
		{
			name: "reset for no socket on a kernel without reasons",
			conn: func() *conn.Connection {
				c := noSocket()
				c.Events[0].Reason = conn.ReasonUnknown
				return c
			}(),
			wantType: "tcp.rst_sent",
			wantDesc: "RST sent (reason not reported: kernels before 6.10 give none): no socket on :9999 for 127.0.0.1:41234",
		},
		{
			name: "accept queue overflow, SYNs only",
			conn: func() *conn.Connection {
				c := acceptOverflow()
				c.Events = []conn.Event{
					overflow(0, conn.EventSYNOverflow, 129, 128),
					overflow(1000, conn.EventSYNOverflow, 129, 128),
					overflow(3000, conn.EventSYNOverflow, 130, 128),
				}
				return c
			}(),
			wantType: "tcp.accept_queue_overflow",
			wantDesc: "handshake dropped 3 times: accept queue of :92 full (129/128)",
		},
		{
			name: "accept queue overflow, then the listener is gone",
			conn: func() *conn.Connection {
				c := acceptOverflow()
				c.Events[1].Reason = "NO_SOCKET"
				return c
			}(),
			wantType: "tcp.accept_queue_overflow",
			wantDesc: "handshake dropped: accept queue of :92 full (6/5), then RST sent (NO_SOCKET): no socket on :92 for 127.0.0.1:50001",
		},
		{
			name: "overflow on a connection that later completed",
			conn: func() *conn.Connection {
				c := cleanServer()
				c.Events = append([]conn.Event{overflow(-1000, conn.EventSYNOverflow, 6, 5)}, c.Events...)
				return c
			}(),
		},
		{
			name:     "reset received on an established connection",
			conn:     resetEstablished(),
			wantType: "tcp.rst_received",
			wantDesc: "RST received (ECONNRESET) from 10.0.0.2:80 while ESTABLISHED",
		},
		{
			name: "reset received, no error reported",
			conn: func() *conn.Connection {
				c := resetEstablished()
				c.Events = append(c.Events[:3:3], c.Events[4])
				return c
			}(),
			wantType: "tcp.rst_received",
			wantDesc: "RST received from 10.0.0.2:80 while ESTABLISHED",
		},
		{
			name:     "IPv6, reset in kernel context",
			conn:     ipv6Abort(),
			wantType: "tcp.rst_sent",
			wantDesc: "RST sent (TCP_ABORT_ON_DATA): sent by the kernel while processing a packet from [2001:db8::1]:50000 in FIN_WAIT1",
		},
		{
			name: "keepalive timeout",
			conn: func() *conn.Connection {
				c := resetEstablished()
				c.Events = append(c.Events[:2:2], rstSent(50, "TCP_KEEPALIVE_TIMEOUT", conn.ContextKernel, compile, conn.StateEstablished, ""),
					errEv(50, syscall.ETIMEDOUT, conn.StateEstablished))
				return c
			}(),
			wantType: "tcp.timeout",
			wantDesc: "connection timed out (ETIMEDOUT) waiting for 10.0.0.2:80 in ESTABLISHED: keepalive probes went unanswered, and the kernel sent RST (TCP_KEEPALIVE_TIMEOUT)",
		},
		{
			name: "timeout, then a late reset for no socket: the application's error leads",
			conn: func() *conn.Connection {
				c := resetEstablished()
				c.Retransmits = 2
				c.Events = append(c.Events[:2:2],
					state(400, conn.ContextKernel, compile, conn.StateEstablished, conn.StateClose),
					errEv(400, syscall.ETIMEDOUT, conn.StateClose),
					answering(rstSent(425, "NO_SOCKET", conn.ContextKernel, compile, 0, "")))
				return c
			}(),
			wantType: "tcp.timeout",
			wantDesc: "connection timed out (ETIMEDOUT) waiting for 10.0.0.2:80 in ESTABLISHED after 2 retransmits; " +
				"then, 25ms later, RST sent (NO_SOCKET): no socket on :41000 for 10.0.0.2:80",
		},
		{
			name: "timeout with the peer's window closed",
			conn: func() *conn.Connection {
				c := resetEstablished()
				stall := errEv(1500, syscall.ETIMEDOUT, conn.StateClose)
				stall.PeerWindow = 0
				c.Events = append(c.Events[:2:2], state(1500, conn.ContextKernel, compile, conn.StateEstablished, conn.StateClose), stall)
				return c
			}(),
			wantType: "tcp.timeout",
			wantDesc: "connection timed out (ETIMEDOUT) waiting for 10.0.0.2:80 in ESTABLISHED: its receive window stayed closed (zero window), as if its application stopped reading",
		},
		{
			name: "linger-0 close: the error reported after the release is no one's",
			conn: func() *conn.Connection {
				c := cleanServer()
				c.Closer = &conn.Close{Process: nginx, FD: 9, Release: conn.ReleaseClose}
				c.Events = append(c.Events[:3:3], closeEv(10, nginx, 9, conn.StateEstablished),
					rstSent(10, "TCP_STATE", conn.ContextProcess, nginx, conn.StateClose, "close"),
					errEv(10, syscall.ECONNRESET, conn.StateClose))
				return c
			}(),
			wantType: "tcp.rst_sent",
			wantDesc: "RST sent (TCP_STATE): nginx[200] closed fd 9",
		},
		{
			name: "killed with unread data: the exit, not a packet",
			conn: func() *conn.Connection {
				c := rinetdAbort("TCP_ABORT_ON_CLOSE")
				c.Closer = &conn.Close{Process: rinetd, FD: -1, UnreadBytes: 29, Release: conn.ReleaseExit, ExitCode: 9}
				for i := range c.Events {
					if c.Events[i].Context == conn.ContextProcess {
						c.Events[i].Release, c.Events[i].Syscall, c.Events[i].FD = conn.ReleaseExit, "", -1
					}
				}
				return c
			}(),
			wantType: "tcp.rst_sent",
			wantDesc: "RST sent (TCP_ABORT_ON_CLOSE): rinetd[812] was killed by SIGKILL, closing the socket with 29 bytes unread",
		},
		{
			name: "exited on its own with unread data",
			conn: func() *conn.Connection {
				c := rinetdAbort("TCP_ABORT_ON_CLOSE")
				c.Closer = &conn.Close{Process: rinetd, FD: -1, UnreadBytes: 3, Release: conn.ReleaseExit, ExitCode: 1 << 8}
				for i := range c.Events {
					if c.Events[i].Context == conn.ContextProcess {
						c.Events[i].Release, c.Events[i].Syscall, c.Events[i].FD = conn.ReleaseExit, "", -1
					}
				}
				return c
			}(),
			wantType: "tcp.rst_sent",
			wantDesc: "RST sent (TCP_ABORT_ON_CLOSE): rinetd[812] exited (status 1), closing the socket with 3 bytes unread",
		},
		{
			name: "listener closed with connections queued",
			conn: func() *conn.Connection {
				c := cleanServer()
				c.OwnerFromListener = true
				rst := rstSent(10, "TCP_STATE", conn.ContextProcess, nginx, conn.StateEstablished, "close")
				rst.ViaListener, rst.Queued = true, 3
				c.Events = append(c.Events[:2:2], rst, errEv(10, syscall.ECONNRESET, conn.StateClose))
				return c
			}(),
			wantType: "tcp.rst_sent",
			wantDesc: "RST sent (TCP_STATE): nginx[200] closed its listener :80 with 3 connections still queued",
		},
		{
			name: "a release the kernel side does not tell is not a packet",
			conn: func() *conn.Connection {
				c := rinetdAbort("TCP_ABORT_ON_CLOSE")
				c.Closer = nil
				c.Events = append(c.Events[:0:0], c.Events[:4]...)
				c.Events = append(c.Events, rstSent(5, "TCP_ABORT_ON_CLOSE", conn.ContextKernel, compile, conn.StateClose, ""))
				return c
			}(),
			wantType: "tcp.rst_sent",
			wantDesc: "RST sent (TCP_ABORT_ON_CLOSE): sent by the kernel as a process released the socket in CLOSE, " +
				"by other means than close(), close_range(), dup2(), execve() or exit (io_uring, for one)",
		},
		{
			name: "reset, context not reported",
			conn: func() *conn.Connection {
				c := cleanServer()
				c.Events = append(c.Events[:3:3], rstSent(10, "TCP_STATE", conn.ContextUnknown, compile, conn.StateEstablished, ""))
				return c
			}(),
			wantType: "tcp.rst_sent",
			wantDesc: "RST sent (TCP_STATE): sent to 10.0.0.1:41234 in ESTABLISHED (acting context not reported)",
		},
		{
			name: "connect timed out",
			conn: func() *conn.Connection {
				c := refused()
				c.Remote = ap("10.0.0.2:80")
				c.Retransmits = 6
				c.Events = []conn.Event{c.Events[0], errEv(127000, syscall.ETIMEDOUT, conn.StateSynSent)}
				return c
			}(),
			wantType: "tcp.timeout",
			wantDesc: "connection timed out (ETIMEDOUT) waiting for 10.0.0.2:80 in SYN_SENT after 6 retransmits",
		},
		{
			name: "refused without a reset event",
			conn: func() *conn.Connection {
				c := refused()
				c.Events = []conn.Event{c.Events[0], c.Events[2]}
				return c
			}(),
			wantType: "tcp.refused",
			wantDesc: "connection refused (ECONNREFUSED) by 127.0.0.1:9999",
		},
		{
			name: "other errno",
			conn: func() *conn.Connection {
				c := cleanClient()
				c.Events = append(c.Events[:2:2], errEv(20, syscall.EPIPE, conn.StateEstablished))
				return c
			}(),
			wantType: "EPIPE",
			wantDesc: "error EPIPE (broken pipe) with 10.0.0.2:80 in ESTABLISHED",
		},
		{
			name: "orphan: handshake packet dropped",
			conn: func() *conn.Connection {
				c := acceptOverflow()
				c.Events = []conn.Event{{Time: at(0), Kind: conn.EventDrop, State: conn.StateListen,
					Context: conn.ContextKernel, Process: phpFPM, FD: -1, Reason: "TCP_LISTEN_OVERFLOW"}}
				return c
			}(),
			wantType: "tcp.handshake_dropped",
			wantDesc: "handshake dropped: packet from 127.0.0.1:50001 to :92 dropped (TCP_LISTEN_OVERFLOW)",
		},
		{
			name: "orphan: SYN-ACKs unanswered",
			conn: func() *conn.Connection {
				c := acceptOverflow()
				c.Events = nil
				for i := range 5 {
					c.Events = append(c.Events, conn.Event{Time: at(1000 << i), Kind: conn.EventSYNACKRetransmit,
						State: conn.StateNewSynRecv, Context: conn.ContextKernel, FD: -1, Count: uint32(i + 1)})
				}
				return c
			}(),
			wantType: "tcp.handshake_dropped",
			wantDesc: "handshake not completed: SYN-ACK to 127.0.0.1:50001 retransmitted 5 times without an ACK",
		},
		{
			name: "mid-life, side unknown, clean",
			conn: func() *conn.Connection {
				c := cleanClient()
				c.Side, c.Midlife = conn.SideUnknown, true
				c.Events = c.Events[3:]
				return c
			}(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotType, gotDesc, gotErr := Diagnose(tt.conn)
			if gotErr != (tt.wantType != "") || gotType != tt.wantType || gotDesc != tt.wantDesc {
				t.Errorf("Diagnose() =\n\t%q, %q, %v\nwant\n\t%q, %q, %v",
					gotType, gotDesc, gotErr, tt.wantType, tt.wantDesc, tt.wantType != "")
			}
			// Interrupted tasks must never be blamed.
			for _, bad := range []string{compile.Comm, phpFPM.Comm} {
				if strings.Contains(gotDesc, bad) {
					t.Errorf("description names %q, a task interrupted by softirq: %q", bad, gotDesc)
				}
			}
			// Export samples clean connections out by Problem alone.
			if gotErr && !tt.conn.Problem() {
				t.Errorf("an error (%s) on a connection without a Problem", gotType)
			}
		})
	}
}

func BenchmarkDiagnose(b *testing.B) {
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
				Diagnose(bc.conn)
			}
		})
	}
}
