package bpf_test

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/tcpspan/tcpspan/conn"
	"github.com/tcpspan/tcpspan/internal/testutil"
	"golang.org/x/sys/unix"
)

func TestCleanConnection(t *testing.T) {
	for _, tc := range []struct {
		name          string
		network, addr string
		clientFirst   bool
		skipEOF       bool // the second closes in CLOSE_WAIT without reading the end of file
	}{
		{"client closes first", "tcp4", "127.0.0.1:0", true, false},
		{"server closes first", "tcp4", "127.0.0.1:0", false, false},
		{"ipv6 client closes first", "tcp6", "[::1]:0", true, false},
		{"server closes without reading the end of file", "tcp4", "127.0.0.1:0", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := testutil.NewNetNS(t)
			c := startCapture(t, ns, 200*time.Millisecond)
			before := ns.Counters(t)

			ln, cl, srv := ns.ConnectedPair(t, tc.network, tc.addr)
			mustWrite(t, cl, 100)
			mustRead(t, srv, 100)
			mustWrite(t, srv, 50)
			mustRead(t, cl, 50)
			first, second := srv, cl
			if tc.clientFirst {
				first, second = cl, srv
			}
			first.Close()
			if tc.skipEOF {
				waitState(t, second.(*net.TCPConn), unix.BPF_TCP_CLOSE_WAIT)
			} else if n, err := second.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("read after peer close: %d, %v", n, err)
			}
			second.Close()
			ln.Close()

			clientAddr, serverAddr := endpoint(cl.LocalAddr()), endpoint(ln.Addr())
			got := c.wait(5*time.Second, between(clientAddr, serverAddr, conn.SideClient),
				between(serverAddr, clientAddr, conn.SideServer))
			client, server := got[0], got[1]
			me := self()

			closing := []step{{conn.EventClose, conn.StateEstablished}, {conn.EventState, conn.StateFinWait1},
				{conn.EventState, conn.StateFinWait2}, {conn.EventState, conn.StateClose}}
			passive := []step{{conn.EventState, conn.StateCloseWait}, {conn.EventClose, conn.StateCloseWait},
				{conn.EventState, conn.StateLastAck}, {conn.EventState, conn.StateClose}}
			clientOpen := []step{{conn.EventState, conn.StateSynSent}, {conn.EventState, conn.StateEstablished}}
			serverOpen := []step{{conn.EventSYN, conn.StateListen}, {conn.EventState, conn.StateSynRecv},
				{conn.EventState, conn.StateEstablished}, {conn.EventAccept, conn.StateEstablished}}
			if tc.clientFirst {
				requireSteps(t, client, append(clientOpen, closing...))
				requireSteps(t, server, append(serverOpen, passive...))
			} else {
				requireSteps(t, client, append(clientOpen, passive...))
				requireSteps(t, server, append(serverOpen, closing...))
			}
			// The closer's own state change is its act; the peer's move to
			// CLOSE_WAIT is the kernel processing the FIN in softirq, which
			// on loopback runs inside the closer's close(), on its time.
			active, passiveEnd := server, client
			if tc.clientFirst {
				active, passiveEnd = client, server
			}
			for _, want := range []struct {
				x     *conn.Connection
				state conn.State
				ctx   conn.Context
			}{
				{active, conn.StateFinWait1, conn.ContextProcess},
				{passiveEnd, conn.StateCloseWait, conn.ContextKernel},
				{passiveEnd, conn.StateLastAck, conn.ContextProcess},
			} {
				for _, e := range want.x.Events {
					if e.Kind == conn.EventState && e.State == want.state && e.Context != want.ctx {
						t.Errorf("%s: move to %s in context %s, want %s", want.x.Side, want.state, e.Context, want.ctx)
					}
				}
			}
			wantInit := map[bool][2]conn.Initiator{
				true:  {conn.InitiatorLocal, conn.InitiatorRemote},
				false: {conn.InitiatorRemote, conn.InitiatorLocal},
			}[tc.clientFirst]
			for i, x := range []*conn.Connection{client, server} {
				if x.CloseInitiator != wantInit[i] {
					t.Errorf("%s close initiator %s, want %s", x.Side, x.CloseInitiator, wantInit[i])
				}
				if x.Owner != me || x.OwnerFromListener {
					t.Errorf("%s owner %v (from listener %v), want %v", x.Side, x.Owner, x.OwnerFromListener, me)
				}
				if x.Closer == nil || x.Closer.Process != me || x.Closer.UnreadBytes != 0 {
					t.Errorf("%s closer %+v, want %v with nothing unread", x.Side, x.Closer, me)
				}
				if x.Problem() || x.Orphan || x.Midlife {
					t.Errorf("%s: clean connection flagged: problem=%v orphan=%v midlife=%v", x.Side, x.Problem(), x.Orphan, x.Midlife)
				}
				if x.Network != map[string]string{"tcp4": "ipv4", "tcp6": "ipv6"}[tc.network] {
					t.Errorf("network %s", x.Network)
				}
				if !x.Start.Before(x.End) || time.Since(x.Start) > time.Minute {
					t.Errorf("%s times: start %v end %v", x.Side, x.Start, x.End)
				}
			}
			if client.Closer.FD != fdOf(t, cl.(*net.TCPConn)) && client.Closer.FD < 0 {
				t.Errorf("client closer fd %d", client.Closer.FD)
			}
			// Every event by a process names it; kernel events name nobody.
			for _, x := range []*conn.Connection{client, server} {
				for _, e := range x.Events {
					if (e.Context == conn.ContextProcess) != (e.Process.PID != 0) {
						t.Errorf("event %s ctx %s with process %v", e.Kind, e.Context, e.Process)
					}
				}
			}
			if client.BytesSent != 100 || client.BytesReceived != 50 || server.BytesSent != 50 || server.BytesReceived != 100 {
				t.Errorf("bytes: client sent %d received %d; server sent %d received %d; want 100/50 and 50/100",
					client.BytesSent, client.BytesReceived, server.BytesSent, server.BytesReceived)
			}
			requireCounterMatch(t, ns, before, c.all())
		})
	}
}
