package conn

import (
	"net/netip"
	"testing"
	"time"

	"github.com/tcpspan/tcpspan/bpf"
)

// noSocketReset is an RST the kernel sent for a packet no socket and no
// listener took: a connect to a closed port.
func noSocketResetRecord(remote string, ts uint64) *bpf.OrphanRecord {
	o := orphanRecord(tuple4("10.0.0.1:9", remote), ev{ts: ts, typ: bpf.EventRSTSent, state: 7, ctx: bpf.CtxKernel, arg: 1})
	o.OwnerPid, o.OwnerComm = 0, [16]int8{}
	return o
}

func peerN(i int) string {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 1, byte(i % 10)}), uint16(20000+i)).String()
}

func TestStormFoldsClosedPortResets(t *testing.T) {
	tk, out := newTestTracker(t, WithStormWindow(time.Second))
	// The first is emitted at once: nothing can join an RST for no socket.
	tk.HandleOrphan(noSocketResetRecord(peerN(0), 1000))
	if len(*out) != 1 || tk.PendingOrphans() != 0 {
		t.Fatalf("first reset: %d out, %d pending", len(*out), tk.PendingOrphans())
	}
	if c := (*out)[0]; !c.Orphan || c.Storm != nil || c.Events[0].Reason != "NO_SOCKET" || c.FinalState != StateClose {
		t.Fatalf("first reset: %+v", c)
	}
	for i := 1; i < 100; i++ {
		tk.HandleOrphan(noSocketResetRecord(peerN(i), uint64(1000+i*10)))
	}
	tk.Flush(time.Now())
	if len(*out) != 1 {
		t.Fatalf("storm emitted before its window closed: %d out", len(*out))
	}
	tk.Flush(time.Now().Add(2 * time.Second))
	if len(*out) != 2 {
		t.Fatalf("%d out after the window, want the first and one storm", len(*out))
	}
	c := (*out)[1]
	s := c.Storm
	if s == nil || !c.Orphan {
		t.Fatalf("second is not a storm: %+v", c)
	}
	if s.Count != 99 || s.EventCount(EventRSTSent) != 99 || s.EventCount(EventDrop) != 0 || s.Peers != 10 {
		t.Errorf("storm %+v", s)
	}
	if !s.First.Equal(clock(1010)) || !s.Last.Equal(clock(1990)) || !c.Start.Equal(s.First) || !c.End.Equal(s.Last) {
		t.Errorf("storm times %v..%v, span %v..%v", s.First, s.Last, c.Start, c.End)
	}
	if c.Local != netip.MustParseAddrPort("10.0.0.1:9") || len(c.Events) != 1 || c.Events[0].Reason != "NO_SOCKET" {
		t.Errorf("storm example %+v", c)
	}
	if st := tk.Stats(); st.Orphans != 2 || st.OrphansFolded != 99 || st.Storms != 1 || st.OrphanEvents != 100 {
		t.Errorf("stats %+v", st)
	}
	// A window that closed with nothing folded is forgotten: the next
	// reset of the kind is emitted on its own again.
	tk.HandleOrphan(noSocketResetRecord(peerN(100), 5000))
	if len(*out) != 3 || (*out)[2].Storm != nil {
		t.Errorf("after the window: %d out", len(*out))
	}
}

func TestStormKeepsKindsApart(t *testing.T) {
	tk, out := newTestTracker(t, WithStormWindow(time.Second))
	other := func(local string, reason uint32, owner uint32) *bpf.OrphanRecord {
		o := noSocketResetRecord(peerN(1), 1)
		o.Tuple = tuple4(local, peerN(1))
		o.Ev.Arg = reason
		o.OwnerPid = owner
		return o
	}
	tk.HandleOrphan(noSocketResetRecord(peerN(0), 1))
	tk.HandleOrphan(other("10.0.0.1:10", 1, 0)) // another port
	tk.HandleOrphan(other("10.0.0.2:9", 1, 0))  // another address
	tk.Close()
	if len(*out) != 3 {
		t.Fatalf("%d out, want 3 kinds each on its own", len(*out))
	}
	for _, c := range *out {
		if c.Storm != nil {
			t.Errorf("folded %+v", c)
		}
	}
}

// A listener whose accept queue overflows under load: each 4-tuple's
// events are joined first (overflow, SYN-ACK retransmit, RST), then the
// joined orphans fold by kind.
func TestStormFoldsOverflowOrphansAfterJoining(t *testing.T) {
	tk, out := newTestTracker(t, WithStormWindow(time.Second), WithOrphanIdle(time.Second))
	for i := 0; i < 50; i++ {
		tup := tuple4("10.0.0.1:92", peerN(i))
		base := uint64(i * 100)
		tk.HandleOrphan(orphanRecord(tup, ev{ts: base + 1, typ: bpf.EventACKOverflow, state: 10, ctx: bpf.CtxKernel, arg: 6, arg2: 5}))
		tk.HandleOrphan(orphanRecord(tup, ev{ts: base + 2, typ: bpf.EventSYNACKRetrans, state: 3, ctx: bpf.CtxKernel, arg: 1}))
		if i%2 == 0 { // half are retransmitted twice: same kind still
			tk.HandleOrphan(orphanRecord(tup, ev{ts: base + 3, typ: bpf.EventSYNACKRetrans, state: 3, ctx: bpf.CtxKernel, arg: 2}))
		}
		tk.HandleOrphan(orphanRecord(tup, ev{ts: base + 4, typ: bpf.EventRSTSent, state: 10, ctx: bpf.CtxKernel, arg: 6, arg2: bpf.SyscallNone}))
	}
	// One of another kind: reset with another reason.
	tk.HandleOrphan(orphanRecord(tuple4("10.0.0.1:92", "10.0.9.9:1"), ev{ts: 9000, typ: bpf.EventRSTSent, state: 10, ctx: bpf.CtxKernel, arg: 11}))
	if len(*out) != 0 {
		t.Fatalf("listener orphans emitted before the idle time: %d", len(*out))
	}
	now := time.Now()
	tk.Flush(now.Add(1500 * time.Millisecond)) // idle passed: joined, first of each kind out
	if len(*out) != 2 {
		t.Fatalf("%d out after the idle time, want the first of each of 2 kinds", len(*out))
	}
	tk.Flush(now.Add(3 * time.Second)) // window closed
	if len(*out) != 3 {
		t.Fatalf("%d out after the window, want one storm more", len(*out))
	}
	c := (*out)[2]
	if c.Storm == nil || c.Owner != (Process{812, "rinetd"}) || !c.OwnerFromListener {
		t.Fatalf("storm %+v", c)
	}
	s := c.Storm
	// 75 SYN-ACK retransmits in all; the first of the kind went on its own.
	var first *Connection
	for _, x := range (*out)[:2] {
		if x.Has(EventACKOverflow) {
			first = x
		}
	}
	if first == nil {
		t.Fatalf("no overflow orphan among the first emitted")
	}
	if s.Count != 49 || s.EventCount(EventACKOverflow) != 49 || s.EventCount(EventRSTSent) != 49 ||
		s.EventCount(EventSYNACKRetransmit) != uint32(75-first.Count(EventSYNACKRetransmit)) || s.Peers != 10 {
		t.Errorf("storm %+v", s)
	}
	if len(c.Events) < 3 || c.Events[0].Kind != EventACKOverflow || c.Events[len(c.Events)-1].Reason != "TCP_FLAGS" {
		t.Errorf("storm example events %+v", c.Events)
	}
}

// Two alike orphans are no storm: the second goes out as it is, when the
// window closes.
func TestStormOfOneIsNoStorm(t *testing.T) {
	tk, out := newTestTracker(t, WithStormWindow(time.Second))
	tk.HandleOrphan(noSocketResetRecord(peerN(0), 1))
	tk.HandleOrphan(noSocketResetRecord(peerN(1), 2))
	tk.Flush(time.Now().Add(2 * time.Second))
	if st := tk.Stats(); len(*out) != 2 || (*out)[1].Storm != nil || (*out)[1].Remote.String() != peerN(1) ||
		st.Storms != 0 || st.Orphans != 2 || st.OrphansFolded != 0 {
		t.Errorf("%d out, second %+v, stats %+v", len(*out), (*out)[1], tk.Stats())
	}
}

func TestStormFoldingOff(t *testing.T) {
	tk, out := newTestTracker(t) // window 0
	for i := 0; i < 5; i++ {
		tk.HandleOrphan(noSocketResetRecord(peerN(i), uint64(i)))
	}
	if len(*out) != 5 || tk.Stats().OrphansFolded != 0 {
		t.Errorf("%d out, stats %+v", len(*out), tk.Stats())
	}
}

// BenchmarkHandleOrphanStorm measures a closed-port storm's resets as the
// tracker takes them once the storm of their kind is open: folded.
func BenchmarkHandleOrphanStorm(b *testing.B) {
	tk := New(fakeNames{}, func(*Connection) {}, WithBootClock(clock), WithStormWindow(time.Hour))
	records := make([]*bpf.OrphanRecord, 1024)
	for i := range records {
		records[i] = noSocketResetRecord(peerN(i), uint64(1000+i))
	}
	tk.HandleOrphan(records[0]) // emitted
	tk.HandleOrphan(records[1]) // the storm's example
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		tk.HandleOrphan(records[i%len(records)])
	}
	b.StopTimer()
	if st := tk.Stats(); st.OrphansFolded != uint64(b.N)+1 {
		b.Fatalf("stats %+v: not every reset was folded", st)
	}
}

// Resets the kernel counted instead of sending (bpf.WithResetFolding) join
// the storm of their kind, which their example orphan opened; counted
// after that storm's window, they make one of their own.
func TestStormFoldsKernelCounts(t *testing.T) {
	tk, out := newTestTracker(t, WithStormWindow(time.Second))
	tk.HandleOrphan(noSocketResetRecord(peerN(0), 1000))
	folded := &bpf.FoldedResets{Tuple: tuple4("10.0.0.1:9", "10.0.1.0:0"), Reason: 1, Count: 500, FirstNs: 1010, LastNs: 1990}
	tk.HandleFoldedResets(folded)
	tk.Flush(time.Now().Add(2 * time.Second))
	if len(*out) != 2 {
		t.Fatalf("%d out, want the example and one storm", len(*out))
	}
	c := (*out)[1]
	s := c.Storm
	if s == nil || s.Count != 500 || s.EventCount(EventRSTSent) != 500 || s.Peers != 1 {
		t.Fatalf("storm %+v", s)
	}
	if !c.Start.Equal(clock(1010)) || !c.End.Equal(clock(1990)) || c.Remote != netip.MustParseAddrPort("10.0.1.0:0") {
		t.Errorf("storm %v..%v from %s", c.Start, c.End, c.Remote)
	}
	if e := c.Events[0]; len(c.Events) != 1 || !e.NoSocket() || e.Reason != "NO_SOCKET" || !e.Answer || c.CloseInitiator != InitiatorLocal {
		t.Errorf("storm example %+v", c)
	}
	if st := tk.Stats(); st.Orphans != 2 || st.OrphansFolded != 500 || st.ResetsFoldedInKernel != 500 || st.Storms != 1 {
		t.Errorf("stats %+v", st)
	}

	// One reset counted alone is no storm: it goes out as an orphan.
	folded.Count, folded.FirstNs, folded.LastNs = 1, 9000, 9000
	tk.HandleFoldedResets(folded)
	tk.Flush(time.Now().Add(4 * time.Second))
	if len(*out) != 3 || (*out)[2].Storm != nil || (*out)[2].Count(EventRSTSent) != 1 {
		t.Fatalf("%d out, last %+v", len(*out), (*out)[len(*out)-1])
	}
	if st := tk.Stats(); st.Orphans != 3 || st.OrphansFolded != 500 || st.ResetsFoldedInKernel != 501 {
		t.Errorf("stats %+v", st)
	}
}

// Refused connects the kernel counted go out as their first one, with a
// storm that counts them and the events each of them had; one alone goes
// out as it is.
func TestStormFromKernelRefusedConnects(t *testing.T) {
	tk, out := newTestTracker(t)
	refused := connRecord(1, tuple4("10.0.0.2:40000", "10.0.0.1:9"),
		ev{ts: 100, typ: bpf.EventState, state: 2, ctx: bpf.CtxProcess, pid: 812, arg: 7},
		ev{ts: 150, typ: bpf.EventRSTReceived, state: 2, ctx: bpf.CtxKernel},
		ev{ts: 160, typ: bpf.EventState, state: 7, ctx: bpf.CtxKernel, arg: 2, arg2: 111},
		ev{ts: 170, typ: bpf.EventError, state: 7, ctx: bpf.CtxKernel, arg: 111})
	tk.HandleFoldedConns(&bpf.FoldedConns{Count: 40, LastNs: 5000, First: *refused})
	if len(*out) != 1 {
		t.Fatalf("%d out, want one storm", len(*out))
	}
	c := (*out)[0]
	s := c.Storm
	if s == nil || c.Orphan || c.Side != SideClient || s.Count != 40 || s.Peers != 1 ||
		s.EventCount(EventRSTReceived) != 40 || s.EventCount(EventState) != 80 || s.EventCount(EventError) != 40 {
		t.Fatalf("storm %+v of %+v", s, c)
	}
	if !c.Start.Equal(clock(100)) || !c.End.Equal(clock(5000)) || !s.Last.Equal(clock(5000)) {
		t.Errorf("storm %v..%v", c.Start, c.End)
	}
	tk.HandleFoldedConns(&bpf.FoldedConns{Count: 1, LastNs: 900, First: *refused})
	if len(*out) != 2 || (*out)[1].Storm != nil {
		t.Fatalf("a count of one: %+v", (*out)[len(*out)-1])
	}
	if st := tk.Stats(); st.Connections != 2 || st.ConnStorms != 1 || st.ConnsFolded != 40 {
		t.Errorf("stats %+v", st)
	}
}
