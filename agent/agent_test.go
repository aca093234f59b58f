package agent_test

import (
	"context"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcpspan/tcpspan/agent"
	"github.com/tcpspan/tcpspan/bpf"
	"github.com/tcpspan/tcpspan/conn"
	"github.com/tcpspan/tcpspan/internal/testutil"
)

// A connection and a listener that exist before the agent starts are picked
// up: the connection's record is flagged mid-life and names its owner, and
// the listener's owner is known for what happens on its port.
func TestPicksUpWhatPredatesTheAgent(t *testing.T) {
	testutil.RequireBPF(t)
	ns := testutil.NewNetNS(t)

	ln, cl, srv := ns.ConnectedPair(t, "tcp4", "127.0.0.1:0")
	defer ln.Close()
	defer srv.Close()

	var mu sync.Mutex
	var got []*conn.Connection
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := agent.Run(ctx, agent.Config{
			NetnsPath:      ns.Path,
			OrphanIdle:     200 * time.Millisecond,
			HealthInterval: -1,
			Ready:          func(*bpf.Tracer) { close(ready) },
		}, func(c *conn.Connection) {
			mu.Lock()
			got = append(got, c)
			mu.Unlock()
		})
		done <- err
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("agent: %v", err)
	}

	// The pre-existing connection closes now.
	cl.Close()
	if _, err := srv.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("server read: %v", err)
	}
	srv.Close()
	// A new connection that the pre-existing listener never accepts: closing
	// the listener resets it, in the listener owner's close().
	var queued net.Conn
	ns.Do(t, func() {
		var err error
		if queued, err = net.Dial("tcp4", ln.Addr().String()); err != nil {
			t.Fatal(err)
		}
	})
	defer queued.Close()
	time.Sleep(50 * time.Millisecond)
	ln.Close()

	deadline := time.Now().Add(5 * time.Second)
	var client, server, child *conn.Connection
	for time.Now().Before(deadline) && (client == nil || server == nil || child == nil) {
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		for _, c := range got {
			if c.Local.String() == cl.LocalAddr().String() {
				client = c
			}
			if c.Remote.String() == cl.LocalAddr().String() {
				server = c
			}
			if c.Remote.String() == queued.LocalAddr().String() {
				child = c
			}
		}
		mu.Unlock()
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("agent: %v", err)
	}
	if client == nil || server == nil || child == nil {
		t.Fatalf("records missing: client %v server %v child %v", client, server, child)
	}
	comm, _ := os.ReadFile("/proc/self/comm")
	me := conn.Process{PID: uint32(os.Getpid()), Comm: strings.TrimSpace(string(comm))}
	for _, c := range []*conn.Connection{client, server} {
		if !c.Midlife || c.Side != conn.SideUnknown {
			t.Errorf("%s -> %s: midlife %v side %s, want mid-life of unknown side", c.Local, c.Remote, c.Midlife, c.Side)
		}
		if c.Owner != me {
			t.Errorf("%s -> %s: owner %v, want %v from the snapshot", c.Local, c.Remote, c.Owner, me)
		}
		if c.Closer == nil || c.Closer.Process != me {
			t.Errorf("%s -> %s: closer %+v", c.Local, c.Remote, c.Closer)
		}
	}
	if client.CloseInitiator != conn.InitiatorLocal || server.CloseInitiator != conn.InitiatorRemote {
		t.Errorf("initiators %s %s", client.CloseInitiator, server.CloseInitiator)
	}
	if child.Midlife || child.Side != conn.SideServer || child.Owner != me || !child.OwnerFromListener {
		t.Errorf("unaccepted child: midlife %v side %s owner %v from listener %v; want a server owned by the listener's %v",
			child.Midlife, child.Side, child.Owner, child.OwnerFromListener, me)
	}
	if rst := child.First(conn.EventRSTSent); rst == nil || rst.Context != conn.ContextProcess || rst.Process != me || rst.Syscall != "close" {
		t.Errorf("unaccepted child's reset %+v: want one by %v in close() of the listener", rst, me)
	}
	// The close() was of the listener's file, not of the child's: the child
	// has no closer, and no close event of its own.
	if child.Closer != nil || child.Has(conn.EventClose) {
		t.Errorf("unaccepted child: closer %+v, close event %v; want neither", child.Closer, child.Has(conn.EventClose))
	}
}
