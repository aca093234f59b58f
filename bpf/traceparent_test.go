package bpf_test

import (
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tcpspan/tcpspan/bpf"
	"github.com/tcpspan/tcpspan/conn"
	"github.com/tcpspan/tcpspan/internal/testutil"
	"golang.org/x/sys/unix"
)

// request is an HTTP/1.1 request with the given header lines.
func request(headers ...string) []byte {
	return []byte("GET /checkout HTTP/1.1\r\nHost: shop\r\nUser-Agent: test\r\n" + strings.Join(headers, "") + "\r\n")
}

func traceparentOf(trace, span string) string { return "00-" + trace + "-" + span + "-01" }

// TestTraceparentCaptured sends two requests on one connection (keep-alive):
// the first answered, the second never read by the server, which closes
// with it unread, as the seed's rinetd did. Both ends' spans must carry
// both traceparents, in order, and only the second in flight. A third
// connection carries a malformed header, which is counted and not linked.
func TestTraceparentCaptured(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCapture(t, ns, 200*time.Millisecond)
	requireCapability(t, c, bpf.CapTraceparent)
	const (
		trace1, span1 = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
		trace2, span2 = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	)
	ln, cl, srv := ns.ConnectedPair(t, "tcp4", "127.0.0.1:0")
	req1 := request("traceparent: " + traceparentOf(trace1, span1) + "\r\n")
	if _, err := cl.Write(req1); err != nil {
		t.Fatal(err)
	}
	mustRead(t, srv, len(req1))
	answer := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	srv.Write([]byte(answer))
	mustRead(t, cl, len(answer))
	// Go's net/http writes the header as "Traceparent".
	req2 := request("Traceparent:" + traceparentOf(trace2, span2) + "\r\n")
	if _, err := cl.Write(req2); err != nil {
		t.Fatal(err)
	}
	waitUnread(t, srv.(*net.TCPConn), len(req2))
	srv.Close() // unread: RST
	if _, err := cl.Read(make([]byte, 1)); err == nil {
		t.Error("client read after the server's abort succeeded")
	}
	cl.Close()

	badLn, bad, badSrv := ns.ConnectedPair(t, "tcp4", "127.0.0.1:0")
	req3 := request("traceparent: 00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01\r\n")
	bad.Write(req3)
	mustRead(t, badSrv, len(req3))
	bad.Close()
	io.ReadAll(badSrv)
	badSrv.Close()
	badLn.Close()
	ln.Close()

	serverAddr := endpoint(ln.Addr())
	got := c.wait(5*time.Second, between(endpoint(cl.LocalAddr()), serverAddr, conn.SideClient),
		between(serverAddr, endpoint(cl.LocalAddr()), conn.SideServer),
		between(endpoint(bad.LocalAddr()), endpoint(badLn.Addr()), conn.SideClient),
		between(endpoint(badLn.Addr()), endpoint(bad.LocalAddr()), conn.SideServer))
	for i, x := range got[:2] {
		want := []struct {
			trace, span string
			inFlight    bool
		}{{trace1, span1, false}, {trace2, span2, true}}
		if len(x.Requests) != len(want) || x.RequestsSeen != 2 || x.RequestsMalformed != 0 {
			t.Fatalf("%s: requests %+v (seen %d, malformed %d), want 2\n%s", x.Side, x.Requests, x.RequestsSeen, x.RequestsMalformed, describe(x))
		}
		for j, w := range want {
			q := x.Requests[j]
			if hex.EncodeToString(q.TraceID[:]) != w.trace || hex.EncodeToString(q.SpanID[:]) != w.span || !q.Sampled {
				t.Errorf("%s request %d: %x/%x sampled %v, want %s/%s sampled", x.Side, j, q.TraceID, q.SpanID, q.Sampled, w.trace, w.span)
			}
			if q.InFlight != w.inFlight || q.Sent != (i == 0) {
				t.Errorf("%s request %d: in flight %v sent %v, want %v and %v", x.Side, j, q.InFlight, q.Sent, w.inFlight, i == 0)
			}
			if q.Time.Before(x.Start) || q.Time.After(x.End) {
				t.Errorf("%s request %d at %v, outside the connection (%v to %v)", x.Side, j, q.Time, x.Start, x.End)
			}
		}
	}
	for _, x := range got[2:] {
		if len(x.Requests) != 0 || x.RequestsMalformed != 1 {
			t.Errorf("%s with an uppercase traceparent: requests %+v, malformed %d; want none and 1", x.Side, x.Requests, x.RequestsMalformed)
		}
	}
}

// TestTraceparentOff: with the capture off, no program looks at requests.
func TestTraceparentOff(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCapture(t, ns, 200*time.Millisecond, bpf.WithTraceparent(false))
	if cp, _ := c.tracer.Features().Capability(bpf.CapTraceparent); cp.On {
		t.Fatalf("%s on with WithTraceparent(false): %s", bpf.CapTraceparent, cp.How)
	}
	ln, cl, srv := ns.ConnectedPair(t, "tcp4", "127.0.0.1:0")
	req := request(fmt.Sprintf("traceparent: %s\r\n", traceparentOf("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")))
	cl.Write(req)
	mustRead(t, srv, len(req))
	cl.Close()
	srv.Close()
	ln.Close()
	x := c.wait(5*time.Second, between(endpoint(cl.LocalAddr()), endpoint(ln.Addr()), conn.SideClient))[0]
	if len(x.Requests) != 0 || x.RequestsSeen != 0 {
		t.Errorf("requests %+v with the capture off", x.Requests)
	}
}

// TestTraceparentAfterServerClose is the race a forwarder loses when its
// upstream fails fast: it closes the client's connection before the request
// arrives. The client sends it into CLOSE_WAIT, and still sees the request,
// in flight. The server's orphaned socket gets it in FIN_WAIT2 on some
// kernels (6.18); on others (6.12) it has already become a time-wait
// socket, which has no connection to join: then only the client has it.
func TestTraceparentAfterServerClose(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCapture(t, ns, 200*time.Millisecond)
	requireCapability(t, c, bpf.CapTraceparent)
	const trace, span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	ln, cl, srv := ns.ConnectedPair(t, "tcp4", "127.0.0.1:0")
	srv.Close()
	waitState(t, cl.(*net.TCPConn), unix.BPF_TCP_CLOSE_WAIT)
	if _, err := cl.Write(request("traceparent: " + traceparentOf(trace, span) + "\r\n")); err != nil {
		t.Fatal(err)
	}
	cl.Read(make([]byte, 1)) // EOF, or the reset
	cl.Close()
	ln.Close()
	got := c.wait(5*time.Second, between(endpoint(cl.LocalAddr()), endpoint(ln.Addr()), conn.SideClient),
		between(endpoint(ln.Addr()), endpoint(cl.LocalAddr()), conn.SideServer))
	for _, x := range got {
		if x.Side == conn.SideServer && len(x.Requests) == 0 {
			t.Logf("server: the request came after its socket became a time-wait socket")
			continue
		}
		if len(x.Requests) != 1 || hex.EncodeToString(x.Requests[0].SpanID[:]) != span || !x.Requests[0].InFlight {
			t.Errorf("%s: requests %+v, want the one sent after the server's FIN, in flight\n%s", x.Side, x.Requests, describe(x))
		}
	}
}
