package e2e

// The harness of the operations tests: the agent under a collector outage
// (outage_test.go), under overload (overload_test.go), across a restart
// (restart_test.go), with only its documented capabilities
// (privileges_test.go), and publishing its own metrics
// (selfmetrics_test.go). Each test runs the built binary on this kernel
// against sockets in its own network namespace, and checks the agent's own
// final counts (-stats-file) against the namespace's TcpActiveOpens and
// TcpPassiveOpens.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcpspan/tcpspan/internal/testutil"
)

// server accepts connections in a namespace, reads each to EOF, closes it.
type server struct {
	ln   net.Listener
	port int
	wg   sync.WaitGroup
}

func startServer(t *testing.T, ns *testutil.NetNS) *server {
	t.Helper()
	s := &server{}
	ns.Do(t, func() {
		var err error
		if s.ln, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	})
	s.port = s.ln.Addr().(*net.TCPAddr).Port
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() { s.ln.Close(); s.wg.Wait() })
	return s
}

// connect makes n short connections to s, one after the other: each sends
// a byte and closes.
func (s *server) connect(t *testing.T, ns *testutil.NetNS, n int) {
	t.Helper()
	ns.Do(t, func() {
		for range n {
			c, err := net.Dial("tcp4", s.ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			c.Write([]byte{1})
			c.Close()
		}
	})
}

// hold opens n connections to s and keeps them open.
func (s *server) hold(t *testing.T, ns *testutil.NetNS, n int) []net.Conn {
	t.Helper()
	var conns []net.Conn
	ns.Do(t, func() {
		for range n {
			c, err := net.Dial("tcp4", s.ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
	})
	return conns
}

// refuse makes n connects to a port where nothing listens.
func refuse(t *testing.T, ns *testutil.NetNS, n int) {
	t.Helper()
	port := ns.FreePort(t)
	ns.Do(t, func() {
		for range n {
			if c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
				c.Close()
				t.Fatal("connect to a closed port succeeded")
			}
		}
	})
}

// sockets is the number of TCP sockets the namespace opened, actively or
// passively: what the agent must account for.
func sockets(t *testing.T, ns *testutil.NetNS) uint64 {
	t.Helper()
	c := ns.Counters(t)
	return c["TcpActiveOpens"] + c["TcpPassiveOpens"]
}

func readStats(t *testing.T, path string) map[string]uint64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("stats file: %v", err)
	}
	st := map[string]uint64{}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("stats file: %v\n%s", err, b)
	}
	return st
}

func sumPrefix(st map[string]uint64, prefix string) uint64 {
	var n uint64
	for k, v := range st {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}

// checkAccounting checks that every socket the namespace opened is
// accounted for, once, by the agent's final counts: lost in the kernel, or
// a record that became a span exported, failed, dropped or sampled out.
func checkAccounting(t *testing.T, st map[string]uint64, sockets uint64) {
	t.Helper()
	var (
		emitted    = st["tcpspan.records.emitted{kind=connection}"]
		lostRing   = st["tcpspan.records.lost{cause=ring_buffer_full,kind=connection}"]
		untracked  = st["tcpspan.connections.untracked"]
		clean      = st["tcpspan.connections.clean_in_kernel"]
		malformed  = st["tcpspan.records.lost{cause=malformed}"]
		received   = st["tcpspan.connections{kind=connection}"]
		orphans    = st["tcpspan.connections{kind=orphan}"]
		recorded   = st["tcpspan.spans.recorded"]
		sampledOut = st["tcpspan.spans.sampled_out"]
		folded     = st["tcpspan.spans.folded"]
		exported   = st["tcpspan.spans.exported"]
		failed     = st["tcpspan.spans.failed"]
		unsent     = st["tcpspan.spans.unsent"]
		missed     = sumPrefix(st, "tcpspan.kernel.missed")
	)
	t.Logf("sockets %d = emitted %d + lost in ring buffer %d + untracked %d (missed runs %d, midlife %d, stale %d); "+
		"received %d + orphans %d -> spans recorded %d (sampled out %d, folded %d) = exported %d + failed %d + dropped %d; orphan records lost %d",
		sockets, emitted, lostRing, untracked, missed, st["tcpspan.connections.midlife"], st["tcpspan.connections.stale"],
		received, orphans, recorded, sampledOut, folded, exported, failed, unsent, st["tcpspan.records.lost{cause=ring_buffer_full,kind=orphan}"])
	// Kernel: each socket ends once, at its destroy, as a record emitted
	// or lost, or with no entry. A destroy the kernel skipped (missed) may
	// be emitted later as stale, or never.
	if k := emitted + lostRing + untracked + clean; k > sockets || sockets-k > missed {
		t.Errorf("kernel accounts for %d of %d sockets (missed runs %d)", k, sockets, missed)
	}
	if received+malformed != emitted {
		t.Errorf("tracker received %d connections (+%d malformed), kernel emitted %d", received, malformed, emitted)
	}
	if recorded+sampledOut+folded != received+orphans {
		t.Errorf("exporter took %d+%d sampled out+%d folded, tracker handed over %d+%d orphans", recorded, sampledOut, folded, received, orphans)
	}
	if exported+failed+unsent != recorded {
		t.Errorf("spans: exported %d + failed %d + dropped %d != recorded %d", exported, failed, unsent, recorded)
	}
	// The whole chain, as an operator reads it.
	if got := lostRing + untracked + exported + failed + unsent + folded + sampledOut + clean - orphans; got > sockets || sockets-got > missed {
		t.Errorf("lost %d + exported %d + failed %d + dropped %d + folded %d + clean in kernel %d (- %d orphans) = %d, want the %d sockets made",
			lostRing+untracked, exported, failed, unsent, folded, clean, orphans, got, sockets)
	}
}

// spansOnPort waits until Jaeger has n spans of service since the given
// time with port as local or peer port, and returns them.
func spansOnPort(t *testing.T, jaeger *testutil.Jaeger, service string, since time.Time, port, n int, timeout time.Duration) []testutil.Span {
	t.Helper()
	deadline := time.Now().Add(timeout)
	p := strconv.Itoa(port)
	for {
		var got []testutil.Span
		for _, sp := range spansOf(t, jaeger, service, since) {
			if attr(&sp, "network.local.port") == p || attr(&sp, "network.peer.port") == p {
				got = append(got, sp)
			}
		}
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// listening returns the local addresses of the TCP sockets in state
// LISTEN that process pid holds, as hex "ADDR:PORT" from /proc/net/tcp{,6}.
func listening(t *testing.T, pid int) []string {
	t.Helper()
	inodes := map[string]bool{}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		if link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	var addrs []string
	for _, table := range []string{"tcp", "tcp6"} {
		for _, line := range strings.Split(readFile(fmt.Sprintf("/proc/%d/net/%s", pid, table)), "\n")[1:] {
			f := strings.Fields(line)
			// sl local rem st ... inode (10th field)
			if len(f) > 9 && f[3] == "0A" && inodes[f[9]] {
				addrs = append(addrs, f[1])
			}
		}
	}
	return addrs
}
