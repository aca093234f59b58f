package conn

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/tcpspan/tcpspan/bpf"
	"golang.org/x/sys/unix"
)

// fakeNames stands in for the kernel's BTF in pure tests.
type fakeNames struct{}

func (fakeNames) ResetReason(v uint32) string {
	return map[uint32]string{1: "NO_SOCKET", 6: "TCP_FLAGS", 11: "TCP_ABORT_ON_CLOSE"}[v]
}

func (fakeNames) DropReason(v uint32) string {
	return map[uint32]string{30: "TCP_FLAGS", 40: "TCP_LISTEN_OVERFLOW"}[v]
}

var epoch = time.Unix(1_700_000_000, 0)

func clock(ns uint64) time.Time { return epoch.Add(time.Duration(ns)) }

func newTestTracker(t *testing.T, opts ...Option) (*Tracker, *[]*Connection) {
	t.Helper()
	var out []*Connection
	tk := New(fakeNames{}, func(c *Connection) { out = append(out, c) }, append([]Option{WithBootClock(clock), WithLinger(0), WithStormWindow(0)}, opts...)...)
	return tk, &out
}

func tuple4(local, remote string) bpf.Tuple {
	l, r := netip.MustParseAddrPort(local), netip.MustParseAddrPort(remote)
	return bpf.Tuple{Saddr: netip.AddrFrom16(l.Addr().As16()).As16(), Daddr: r.Addr().As16(),
		Sport: l.Port(), Dport: r.Port(), Family: unix.AF_INET, Netns: 7}
}

func mapped(a netip.AddrPort) [16]byte { return netip.AddrFrom16(a.Addr().As16()).As16() }

func comm16(s string) (c [16]int8) {
	for i := 0; i < len(s) && i < 15; i++ {
		c[i] = int8(s[i])
	}
	return c
}

type ev struct {
	ts        uint64
	typ       bpf.EventType
	state     uint8
	ctx       bpf.ExecCtx
	pid       uint32
	arg, arg2 uint32
	how       uint8
}

func connRecord(side uint8, tup bpf.Tuple, events ...ev) *bpf.ConnRecord {
	r := &bpf.ConnRecord{Kind: 1, Side: side, Tuple: tup, StartNs: 100, EndNs: 900,
		OwnerPid: 812, OwnerComm: comm16("rinetd"), EventsSeen: uint32(len(events))}
	for i, e := range events {
		if i >= len(r.Events) {
			break
		}
		r.Events[i].TsNs, r.Events[i].Type, r.Events[i].State = e.ts, uint8(e.typ), e.state
		r.Events[i].Ctx, r.Events[i].Pid, r.Events[i].Arg, r.Events[i].Arg2 = uint8(e.ctx), e.pid, e.arg, e.arg2
		r.Events[i].How = e.how
	}
	return r
}

func orphanRecord(tup bpf.Tuple, e ev) *bpf.OrphanRecord {
	o := &bpf.OrphanRecord{Kind: 2, Tuple: tup, OwnerPid: 812, OwnerComm: comm16("rinetd")}
	o.Ev.TsNs, o.Ev.Type, o.Ev.State, o.Ev.Ctx, o.Ev.Pid, o.Ev.Arg, o.Ev.Arg2 = e.ts, uint8(e.typ), e.state, uint8(e.ctx), e.pid, e.arg, e.arg2
	o.Ev.How = e.how
	return o
}

func TestConnRecordDecoding(t *testing.T) {
	tk, out := newTestTracker(t)
	tup := tuple4("10.0.0.1:92", "10.0.0.2:5555")
	r := connRecord(bpf.SideServer, tup,
		// Delivered out of order: the tracker orders by time.
		ev{ts: 300, typ: bpf.EventClose, state: 1, ctx: bpf.CtxProcess, pid: 812, arg: 7, arg2: 813, how: bpf.ReleaseClose},
		ev{ts: 200, typ: bpf.EventState, state: 1, ctx: bpf.CtxKernel, arg: 3},
		ev{ts: 310, typ: bpf.EventRSTSent, state: 7, ctx: bpf.CtxProcess, pid: 812, arg: 11, how: bpf.ReleaseClose},
		ev{ts: 150, typ: bpf.EventSYN, state: 10, ctx: bpf.CtxKernel},
	)
	r.CloserPid, r.CloserTid, r.CloserFd, r.UnreadBytes, r.CloserComm = 812, 813, 7, 18, comm16("rinetd")
	r.CloserHow = uint32(bpf.ReleaseClose)
	r.BytesSent, r.BytesReceived, r.SrttUs, r.TotalRetrans, r.FinalState = 0, 18, 42, 0, 7
	tk.HandleConn(r)

	if len(*out) != 1 {
		t.Fatalf("got %d connections", len(*out))
	}
	c := (*out)[0]
	if c.Side != SideServer || c.Network != "ipv4" || c.Local != netip.MustParseAddrPort("10.0.0.1:92") ||
		c.Remote != netip.MustParseAddrPort("10.0.0.2:5555") || c.Netns != 7 {
		t.Errorf("endpoints: %+v", c)
	}
	if got := []EventKind{c.Events[0].Kind, c.Events[1].Kind, c.Events[2].Kind, c.Events[3].Kind}; !slices.Equal(got,
		[]EventKind{EventSYN, EventState, EventClose, EventRSTSent}) {
		t.Errorf("order %v", got)
	}
	rst := c.Events[3]
	if rst.Reason != "TCP_ABORT_ON_CLOSE" || rst.Context != ContextProcess || rst.Process != (Process{812, "rinetd"}) ||
		rst.Syscall != "close" || !rst.Time.Equal(clock(310)) {
		t.Errorf("rst %+v", rst)
	}
	closeEv := c.Events[2]
	if closeEv.FD != 7 || closeEv.TID != 813 || closeEv.Syscall != "close" {
		t.Errorf("close %+v", closeEv)
	}
	if c.Closer == nil || *c.Closer != (Close{Time: clock(300), Process: Process{812, "rinetd"}, TID: 813, FD: 7, UnreadBytes: 18, Release: ReleaseClose}) {
		t.Errorf("closer %+v", c.Closer)
	}
	if c.CloseInitiator != InitiatorLocal || c.SRTT != 42*time.Microsecond || c.FinalState != StateClose || !c.Problem() {
		t.Errorf("summary: init %s srtt %s final %s problem %v", c.CloseInitiator, c.SRTT, c.FinalState, c.Problem())
	}
	if !c.Start.Equal(clock(100)) || !c.End.Equal(clock(900)) {
		t.Errorf("times %v %v", c.Start, c.End)
	}
}

func TestKernelEventsNameNoProcess(t *testing.T) {
	tk, out := newTestTracker(t)
	// A kernel-context event never carries a pid, even if one were sent.
	tk.HandleConn(connRecord(bpf.SideClient, tuple4("10.0.0.2:5555", "10.0.0.1:92"),
		ev{ts: 1, typ: bpf.EventRSTReceived, state: 1, ctx: bpf.CtxKernel, pid: 4242},
		ev{ts: 2, typ: bpf.EventError, state: 7, ctx: bpf.CtxKernel, arg: uint32(syscall.ECONNRESET)}))
	c := (*out)[0]
	if c.Events[0].Process.PID != 0 || c.Events[1].Errno != syscall.ECONNRESET || c.CloseInitiator != InitiatorRemote {
		t.Errorf("%+v", c.Events)
	}
}

func TestCloseInitiatorAndFIN(t *testing.T) {
	for _, tc := range []struct {
		name      string
		states    [][2]uint8 // old, new
		init      Initiator
		recvBytes uint64
	}{
		{"active close", [][2]uint8{{1, 4}, {4, 5}, {5, 7}}, InitiatorLocal, 50},
		{"passive close", [][2]uint8{{1, 8}, {8, 9}, {9, 7}}, InitiatorRemote, 50},
		{"simultaneous", [][2]uint8{{1, 4}, {4, 11}, {11, 7}}, InitiatorLocal, 50},
		{"no close seen", [][2]uint8{{2, 1}}, InitiatorUnknown, 51},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tk, out := newTestTracker(t)
			var evs []ev
			for i, s := range tc.states {
				evs = append(evs, ev{ts: uint64(i + 1), typ: bpf.EventState, state: s[1], ctx: bpf.CtxKernel, arg: uint32(s[0])})
			}
			r := connRecord(bpf.SideClient, tuple4("10.0.0.2:5555", "10.0.0.1:92"), evs...)
			r.BytesReceived = 51 // 50 bytes plus the FIN, as tcp_sock counts it
			tk.HandleConn(r)
			c := (*out)[0]
			if c.CloseInitiator != tc.init || c.BytesReceived != tc.recvBytes {
				t.Errorf("initiator %s bytes %d, want %s %d", c.CloseInitiator, c.BytesReceived, tc.init, tc.recvBytes)
			}
		})
	}
}

func TestEventsBeyondKernelSlots(t *testing.T) {
	tk, out := newTestTracker(t)
	r := connRecord(bpf.SideClient, tuple4("10.0.0.2:5555", "10.0.0.1:92"))
	r.EventsSeen = uint32(bpf.MaxConnEvents + 5)
	for i := range r.Events {
		r.Events[i].TsNs, r.Events[i].Type, r.Events[i].State = uint64(i+1), uint8(bpf.EventRetransmit), 1
	}
	tk.HandleConn(r)
	c := (*out)[0]
	if len(c.Events) != bpf.MaxConnEvents || c.EventsDropped != 5 {
		t.Errorf("%d events, %d dropped", len(c.Events), c.EventsDropped)
	}
}

// The seed's first cause: overflow drops of the handshake ACK, a SYN-ACK
// retransmit, then the listener's RST for the same 4-tuple: one connection.
func TestOrphansJoinByTuple(t *testing.T) {
	tk, out := newTestTracker(t, WithOrphanIdle(time.Second))
	victim := tuple4("10.0.0.1:92", "10.0.0.2:5555")
	other := tuple4("10.0.0.1:92", "10.0.0.3:6666")
	tk.HandleOrphan(orphanRecord(victim, ev{ts: 10, typ: bpf.EventACKOverflow, state: 10, ctx: bpf.CtxKernel, arg: 6, arg2: 5}))
	tk.HandleOrphan(orphanRecord(other, ev{ts: 15, typ: bpf.EventRSTSent, state: 0, ctx: bpf.CtxKernel, arg: 1}))
	tk.HandleOrphan(orphanRecord(victim, ev{ts: 30, typ: bpf.EventRSTSent, state: 10, ctx: bpf.CtxKernel, arg: 6, arg2: bpf.SyscallNone}))
	tk.HandleOrphan(orphanRecord(victim, ev{ts: 20, typ: bpf.EventSYNACKRetrans, state: 3, ctx: bpf.CtxKernel, arg: 1}))

	tk.Flush(time.Now())
	if len(*out) != 0 || tk.PendingOrphans() != 2 {
		t.Fatalf("emitted %d before the idle time, %d pending", len(*out), tk.PendingOrphans())
	}
	tk.Flush(time.Now().Add(2 * time.Second))
	if len(*out) != 2 {
		t.Fatalf("emitted %d, want 2", len(*out))
	}
	var c *Connection
	for _, x := range *out {
		if x.Remote == netip.MustParseAddrPort("10.0.0.2:5555") {
			c = x
		}
	}
	if c == nil || !c.Orphan || c.Side != SideServer || c.Owner != (Process{812, "rinetd"}) || !c.OwnerFromListener {
		t.Fatalf("victim: %+v", c)
	}
	if got := []EventKind{c.Events[0].Kind, c.Events[1].Kind, c.Events[2].Kind}; !slices.Equal(got,
		[]EventKind{EventACKOverflow, EventSYNACKRetransmit, EventRSTSent}) {
		t.Errorf("order %v", got)
	}
	if c.Events[0].Backlog != 6 || c.Events[0].MaxBacklog != 5 || c.Events[2].Reason != "TCP_FLAGS" ||
		c.Events[2].Process.PID != 0 || c.Events[2].Syscall != "" {
		t.Errorf("events %+v", c.Events)
	}
	if !c.Start.Equal(clock(10)) || !c.End.Equal(clock(30)) || c.FinalState != StateListen || c.CloseInitiator != InitiatorLocal {
		t.Errorf("start %v end %v final %s init %s", c.Start, c.End, c.FinalState, c.CloseInitiator)
	}
	if s := tk.Stats(); s.Orphans != 2 || s.OrphanEvents != 4 {
		t.Errorf("stats %+v", s)
	}
}

// A SYN dropped by a full queue and retried successfully belongs to the
// server connection that follows.
func TestOrphanJoinsLaterServerConnection(t *testing.T) {
	tk, out := newTestTracker(t)
	tup := tuple4("10.0.0.1:92", "10.0.0.2:5555")
	tk.HandleOrphan(orphanRecord(tup, ev{ts: 50, typ: bpf.EventSYNOverflow, state: 10, ctx: bpf.CtxKernel, arg: 6, arg2: 5}))
	tk.HandleConn(connRecord(bpf.SideServer, tup, ev{ts: 1050, typ: bpf.EventSYN, state: 10, ctx: bpf.CtxKernel}))
	if len(*out) != 1 || tk.PendingOrphans() != 0 {
		t.Fatalf("%d out, %d pending", len(*out), tk.PendingOrphans())
	}
	c := (*out)[0]
	if c.Orphan || len(c.Events) != 2 || c.Events[0].Kind != EventSYNOverflow || !c.Start.Equal(clock(50)) {
		t.Errorf("%+v", c)
	}
	if tk.Stats().OrphansJoined != 1 {
		t.Errorf("stats %+v", tk.Stats())
	}
}

// When a packet reaches a closed, orphaned socket, the kernel destroys the
// socket (its record comes first) and then sends the RST (an orphan event).
func TestLateResetJoinsFinishedConnection(t *testing.T) {
	tk, out := newTestTracker(t, WithLinger(time.Second))
	tup := tuple4("10.0.0.1:92", "10.0.0.2:5555")
	tk.HandleConn(connRecord(bpf.SideServer, tup, ev{ts: 100, typ: bpf.EventState, state: 7, ctx: bpf.CtxKernel, arg: 4}))
	tk.HandleOrphan(orphanRecord(tup, ev{ts: 101, typ: bpf.EventRSTSent, state: 7, ctx: bpf.CtxKernel, arg: 6}))
	tk.Flush(time.Now())
	if len(*out) != 0 {
		t.Fatalf("emitted within the linger time")
	}
	tk.Flush(time.Now().Add(2 * time.Second))
	if len(*out) != 1 || tk.PendingOrphans() != 0 {
		t.Fatalf("out %d, pending orphans %d", len(*out), tk.PendingOrphans())
	}
	c := (*out)[0]
	if c.Orphan || len(c.Events) != 2 || c.Events[1].Kind != EventRSTSent || c.Events[1].Reason != "TCP_FLAGS" {
		t.Errorf("%+v", c.Events)
	}
}

func TestOrphanBound(t *testing.T) {
	tk, out := newTestTracker(t, WithMaxOrphans(2))
	for i := 0; i < 5; i++ {
		tk.HandleOrphan(orphanRecord(tuple4("10.0.0.1:92", netip.AddrPortFrom(netip.MustParseAddr("10.0.0.2"), uint16(1000+i)).String()),
			ev{ts: uint64(i), typ: bpf.EventRSTSent, ctx: bpf.CtxKernel, arg: 1}))
	}
	if tk.PendingOrphans() != 2 || len(*out) != 3 || tk.Stats().OrphansForced != 3 {
		t.Errorf("pending %d out %d stats %+v", tk.PendingOrphans(), len(*out), tk.Stats())
	}
	for i, c := range *out {
		if c.Remote.Port() != uint16(1000+i) {
			t.Errorf("evicted #%d is %v, want the oldest first", i, c.Remote)
		}
	}
	tk.Close()
	if len(*out) != 5 || tk.PendingOrphans() != 0 {
		t.Errorf("after close: out %d pending %d", len(*out), tk.PendingOrphans())
	}
}

func TestMidlifeOwnerFromSnapshot(t *testing.T) {
	tk, out := newTestTracker(t)
	tup := tuple4("10.0.0.2:5555", "10.0.0.1:92")
	tk.SeedOwner(7, netip.MustParseAddrPort("10.0.0.2:5555"), netip.MustParseAddrPort("10.0.0.1:92"), Process{99, "curl"})
	r := connRecord(bpf.SideUnknown, tup)
	r.Flags, r.OwnerPid, r.OwnerComm = bpf.FlagMidlife, 0, [16]int8{}
	tk.HandleConn(r)
	if c := (*out)[0]; !c.Midlife || c.Owner != (Process{99, "curl"}) {
		t.Errorf("%+v", c)
	}
}

func TestIPv6(t *testing.T) {
	tk, out := newTestTracker(t)
	l, r := netip.MustParseAddrPort("[2001:db8::1]:443"), netip.MustParseAddrPort("[2001:db8::2]:50000")
	tk.HandleConn(connRecord(bpf.SideServer, bpf.Tuple{Saddr: mapped(l), Daddr: mapped(r), Sport: 443, Dport: 50000, Family: unix.AF_INET6}))
	if c := (*out)[0]; c.Local != l || c.Remote != r || c.Network != "ipv6" {
		t.Errorf("%s %s %s", c.Local, c.Remote, c.Network)
	}
}

func TestDecodeRejectsBadRecords(t *testing.T) {
	for _, b := range [][]byte{nil, {1, 0}, {9, 0, 0, 0, 0, 0, 0, 0}, {1, 0, 0, 0, 0, 0, 0, 0}, {2, 0, 0, 0}} {
		if c, o, err := bpf.Decode(b); err == nil || c != nil || o != nil {
			t.Errorf("Decode(%v) accepted", b)
		}
	}
}

// BenchmarkHandleConn measures turning one record into a Connection, as
// the agent does it: held for the linger time, flushed periodically, the
// memory of emitted connections reused (WithReuse).
func BenchmarkHandleConn(b *testing.B) { benchHandleConn(b, true) }

// BenchmarkHandleConnNoReuse is the same with a connection allocated for
// every record, as for a sink that keeps them.
func BenchmarkHandleConnNoReuse(b *testing.B) { benchHandleConn(b, false) }

func benchHandleConn(b *testing.B, reuse bool) {
	tk := New(fakeNames{}, func(*Connection) {}, WithBootClock(clock), WithLinger(time.Nanosecond), WithReuse(reuse))
	r := connRecord(bpf.SideClient, tuple4("10.0.0.2:5555", "10.0.0.1:92"),
		ev{ts: 1, typ: bpf.EventState, state: 2, ctx: bpf.CtxProcess, pid: 1, arg: 7},
		ev{ts: 2, typ: bpf.EventState, state: 1, ctx: bpf.CtxKernel, arg: 2},
		ev{ts: 3, typ: bpf.EventClose, state: 1, ctx: bpf.CtxProcess, pid: 1, arg: 3},
		ev{ts: 4, typ: bpf.EventState, state: 4, ctx: bpf.CtxProcess, pid: 1, arg: 1},
		ev{ts: 5, typ: bpf.EventState, state: 5, ctx: bpf.CtxKernel, arg: 4},
		ev{ts: 6, typ: bpf.EventState, state: 7, ctx: bpf.CtxKernel, arg: 5})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r.Tuple.Sport = uint16(i)
		tk.HandleConn(r)
		if i++; i%1024 == 0 {
			tk.Flush(time.Now())
		}
	}
}

func TestHeldConnectionsLeaveInArrivalOrder(t *testing.T) {
	tk, out := newTestTracker(t, WithLinger(time.Millisecond))
	for i := 0; i < 20; i++ {
		tk.HandleConn(connRecord(bpf.SideClient, tuple4("10.0.0.2:"+strconv.Itoa(1000+i), "10.0.0.1:92")))
	}
	tk.Flush(time.Now().Add(time.Second))
	if len(*out) != 20 {
		t.Fatalf("%d out", len(*out))
	}
	for i, c := range *out {
		if c.Local.Port() != uint16(1000+i) {
			t.Fatalf("connection %d is port %d: not in arrival order", i, c.Local.Port())
		}
	}
}

// A forwarder's refused upstream connect arrives before the client
// connection it then resets; a client's 4-tuple is reused (the next
// request from the same port) while both are held. Both must still leave
// in arrival order, or the exporter cannot link the reset to its cause.
func TestReusedTupleKeepsArrivalOrder(t *testing.T) {
	tk, out := newTestTracker(t, WithLinger(time.Second))
	upstream := tuple4("127.0.0.1:40000", "127.0.0.1:9000")
	client := tuple4("127.0.0.1:92", "127.0.0.1:50000")
	other := tuple4("127.0.0.1:92", "127.0.0.1:50001")
	tk.HandleConn(connRecord(bpf.SideClient, upstream))
	tk.HandleConn(connRecord(bpf.SideServer, client))
	tk.HandleConn(connRecord(bpf.SideServer, other))
	tk.HandleConn(connRecord(bpf.SideServer, client)) // the client's port again
	var ports []uint16
	for _, c := range *out {
		ports = append(ports, c.Local.Port(), c.Remote.Port())
	}
	if want := []uint16{40000, 9000, 92, 50000}; !slices.Equal(ports, want) {
		t.Fatalf("emitted (local, remote ports) %v when the 4-tuple was reused, want %v: the held connections up to the reused one, in arrival order", ports, want)
	}
	tk.Flush(time.Now().Add(2 * time.Second))
	ports = ports[:0]
	for _, c := range (*out)[2:] {
		ports = append(ports, c.Remote.Port())
	}
	if want := []uint16{50001, 50000}; !slices.Equal(ports, want) {
		t.Fatalf("then emitted remote ports %v, want %v", ports, want)
	}

	// Leaving early costs no allocation, flushed or not in between.
	tk = New(fakeNames{}, func(*Connection) {}, WithBootClock(clock), WithLinger(time.Hour), WithReuse(true))
	var records []*bpf.ConnRecord
	for i := range 8 {
		records = append(records, connRecord(bpf.SideServer, tuple4("127.0.0.1:92", "127.0.0.1:"+strconv.Itoa(50000+i))))
	}
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		if i++; i%100 == 0 {
			tk.Flush(time.Now())
		}
		tk.HandleConn(records[i%8])
	}); n != 0 {
		t.Errorf("%v allocations per record whose 4-tuple was reused", n)
	}
}

// TestReuse feeds the same records to a tracker that reuses emitted
// connections and to one that does not: what each sink sees at the time it
// is called must be the same, including a 4-tuple reused within the linger
// time (the first connection leaves early, with those before it), late
// orphan events and connections with more events than the last.
func TestReuse(t *testing.T) {
	run := func(reuse bool) []string {
		var seen []string
		tk := New(fakeNames{}, func(c *Connection) {
			v := *c
			v.Closer, v.Events = nil, nil // printed below, not as addresses
			seen = append(seen, fmt.Sprintf("%+v closer=%+v events=%+v", v, c.Closer, c.Events))
		}, WithBootClock(clock), WithLinger(time.Second), WithStormWindow(0), WithReuse(reuse))
		start := time.Now()
		ports := rand.New(rand.NewPCG(1, 2))
		for round := range 3 {
			for i := range 40 {
				tup := tuple4("10.0.0.2:"+strconv.Itoa(1000+ports.IntN(9)), "10.0.0.1:92")
				evs := []ev{{ts: uint64(10 * i), typ: bpf.EventState, state: 2, ctx: bpf.CtxProcess, pid: 1, arg: 7}}
				for j := range i % 5 {
					evs = append(evs, ev{ts: uint64(10*i + j + 1), typ: bpf.EventState, state: 1, ctx: bpf.CtxKernel, arg: 2})
				}
				r := connRecord(bpf.SideClient, tup, evs...)
				if i%3 == 0 {
					r.CloserPid, r.CloserComm, r.CloserFd = uint32(i), comm16("curl"), 5
					r.Events[0].Type, r.Events[0].Pid, r.Events[0].Arg = uint8(bpf.EventClose), uint32(i), 5
				}
				tk.HandleConn(r)
				if i%4 == 0 {
					tk.HandleOrphan(orphanRecord(tup, ev{ts: uint64(10*i + 9), typ: bpf.EventRSTSent, state: 7, ctx: bpf.CtxKernel, arg: 6}))
				}
			}
			tk.Flush(start.Add(time.Duration(round+1) * 2 * time.Second))
		}
		tk.Close()
		return seen
	}
	want, got := run(false), run(true)
	if len(want) != 120 {
		t.Fatalf("%d connections emitted, want 120", len(want))
	}
	if !slices.Equal(got, want) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("connection %d with reuse:\n%s\nwithout:\n%s", i, got[i], want[i])
			}
		}
		t.Fatalf("%d connections with reuse, %d without", len(got), len(want))
	}
}

func TestReuseAllocates(t *testing.T) {
	tk := New(fakeNames{}, func(*Connection) {}, WithBootClock(clock), WithLinger(0), WithReuse(true))
	r := connRecord(bpf.SideClient, tuple4("10.0.0.2:5555", "10.0.0.1:92"),
		ev{ts: 1, typ: bpf.EventState, state: 2, ctx: bpf.CtxProcess, pid: 1, arg: 7})
	if n := testing.AllocsPerRun(100, func() { tk.HandleConn(r) }); n != 0 {
		t.Errorf("%v allocations per record with reuse", n)
	}
	// Unused for a whole flush interval, the kept memory is let go.
	tk.Flush(time.Now())
	tk.Flush(time.Now())
	if len(tk.free) != 0 {
		t.Errorf("%d kept after an idle interval", len(tk.free))
	}
}
