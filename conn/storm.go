package conn

import (
	"net/netip"
	"time"

	"github.com/tcpspan/tcpspan/bpf"
)

// DefaultStormWindow is how long orphans of one kind are folded into one
// storm connection after the first of them was emitted on its own.
const DefaultStormWindow = time.Second

// maxStorms bounds the kinds of storm folded at once; beyond it orphans
// pass through unfolded, as they would with folding off.
const maxStorms = 4096

// maxStormPeers bounds the distinct peer addresses a storm remembers; it
// counts up to this many (Storm.Peers then reads "at least").
const maxStormPeers = 1024

// Storm says that a connection stands for many orphans of the same kind:
// the same network namespace, local address and port, owner, kinds of
// event and reasons, within a short window. Its Events are the first
// folded orphan's, as an example; the totals are here.
type Storm struct {
	// Count is the number of orphan connections folded.
	Count uint32
	// Events counts their events by kind.
	Events [numEventKinds]uint32
	// Peers is the number of distinct peer addresses (at most
	// maxStormPeers; more read as that many).
	Peers uint32
	// First and Last are the first and last event times of all of them
	// (also the connection's Start and End).
	First, Last time.Time
	// Sample holds the handshakes of the first of them whose handshake is
	// known, up to StormSample: the exporter links the storm's span to
	// their traces. Samples says how many of Sample are filled.
	Sample  [StormSample]ISN
	Samples int
}

// StormSample bounds the connections a storm names (Storm.Sample).
const StormSample = 8

// numEventKinds sizes per-kind counts: EventKind values are 1..EventACKOverflow.
const numEventKinds = int(EventACKOverflow) + 1

// EventCount returns how many events of kind k the folded orphans had.
func (s *Storm) EventCount(k EventKind) uint32 {
	if int(k) >= numEventKinds {
		return 0
	}
	return s.Events[k]
}

// stormKey says which orphans are "of the same kind". Orphans never carry
// a full lifecycle, and those of one kind read the same to a person (the
// same diagnosis, with another peer), so folding them loses only the peer.
type stormKey struct {
	netns      uint32
	local      netip.AddrPort
	owner      uint32
	kinds      uint32 // bit per EventKind present
	rstReason  string // of the first RST sent
	dropReason string // of the first drop
}

// StormTally adds up a storm: the totals its Storm holds, and the distinct
// peers behind Storm.Peers. The tracker folds alike orphans with it, the
// exporter what a full export queue cannot take, the terminal alike lines.
type StormTally struct {
	Storm Storm
	peers map[netip.Addr]struct{}
	// minPeers is the most peers of a storm merged whole, whose
	// addresses are not known: Peers is at least that.
	minPeers uint32
}

// Add counts one more connection, with these events, start and end, from
// peer, whose handshake was isn.
func (t *StormTally) Add(events []Event, start, end time.Time, peer netip.Addr, isn ISN) {
	st := &t.Storm
	st.Count++
	st.sample(isn)
	for i := range events {
		if k := events[i].Kind; int(k) < numEventKinds {
			st.Events[k]++
		}
	}
	t.span(start, end)
	t.peer(peer)
}

// addFolded counts n connections of one event each, of kind k, the first
// at start and the last at end, all from peer, none with a known handshake:
// resets the kernel counted without sending them.
func (t *StormTally) addFolded(n uint32, k EventKind, start, end time.Time, peer netip.Addr) {
	st := &t.Storm
	st.Count += n
	if int(k) < numEventKinds {
		st.Events[k] += n
	}
	t.span(start, end)
	t.peer(peer)
}

// Merge counts a storm folded whole: its totals and times, and its peers
// as a floor, their addresses not being known.
func (t *StormTally) Merge(s *Storm) {
	st := &t.Storm
	st.Count += s.Count
	for i, n := range s.Events {
		st.Events[i] += n
	}
	t.span(s.First, s.Last)
	for _, isn := range s.Sample[:s.Samples] {
		st.sample(isn)
	}
	t.minPeers = max(t.minPeers, s.Peers)
	st.Peers = max(uint32(len(t.peers)), t.minPeers)
}

// peer counts peer among the storm's distinct peers, up to maxStormPeers.
func (t *StormTally) peer(peer netip.Addr) {
	if t.peers == nil {
		t.peers = make(map[netip.Addr]struct{})
	}
	if len(t.peers) < maxStormPeers {
		t.peers[peer] = struct{}{}
	}
	t.Storm.Peers = max(uint32(len(t.peers)), t.minPeers)
}

// sample keeps isn in the sample, if it is known and there is room.
func (s *Storm) sample(isn ISN) {
	if isn.HasClient && s.Samples < len(s.Sample) {
		s.Sample[s.Samples] = isn
		s.Samples++
	}
}

// span widens the storm's times to cover start and end.
func (t *StormTally) span(start, end time.Time) {
	st := &t.Storm
	if st.First.IsZero() || start.Before(st.First) {
		st.First = start
	}
	if end.After(st.Last) {
		st.Last = end
	}
}

// storm is one kind of orphan being folded in the current window.
type storm struct {
	until time.Time   // wall time the window closes
	conn  *Connection // the folded connection, nil until a second orphan comes
	tally StormTally  // conn.Storm points to its Storm
}

func stormKeyOf(c *Connection) stormKey {
	k := stormKey{netns: c.Netns, local: c.Local, owner: c.Owner.PID}
	for i := range c.Events {
		e := &c.Events[i]
		k.kinds |= 1 << e.Kind
		switch {
		case e.Kind == EventRSTSent && k.rstReason == "":
			k.rstReason = e.Reason
		case e.Kind == EventDrop && k.dropReason == "":
			k.dropReason = e.Reason
		}
	}
	return k
}

// foldOrphan emits the orphan c, or folds it into the storm of its kind.
// The first orphan of a kind is emitted at once and opens a window; the
// ones that follow within the window become one connection, emitted when
// the window closes (see flushStorms).
func (t *Tracker) foldOrphan(c *Connection, now time.Time) {
	if t.cfg.stormWindow <= 0 {
		t.emitOrphanNow(c)
		return
	}
	k := stormKeyOf(c)
	s, ok := t.storms[k]
	if !ok {
		if len(t.storms) >= maxStorms {
			t.emitOrphanNow(c)
			return
		}
		t.storms[k] = &storm{until: now.Add(t.cfg.stormWindow)}
		t.emitOrphanNow(c)
		return
	}
	t.stats.OrphansFolded++
	if s.conn == nil {
		s.conn = c
		c.Storm = &s.tally.Storm
	}
	s.tally.Add(c.Events, c.Start, c.End, c.Remote.Addr(), c.ISN)
}

// foldNoSocketReset folds ev, an RST for no socket, into the storm of its
// kind if that storm has its example already, without building a
// connection for it: in a closed-port storm that is nearly every reset.
// It reports whether it did; if not, the reset goes the usual way.
func (t *Tracker) foldNoSocketReset(ev *Event, netns uint32, local, remote netip.AddrPort, isn ISN) bool {
	if t.cfg.stormWindow <= 0 {
		return false
	}
	// stormKeyOf of the one-event orphan the usual way would build.
	s, ok := t.storms[stormKey{netns: netns, local: local, kinds: 1 << ev.Kind, rstReason: ev.Reason}]
	if !ok || s.conn == nil {
		return false
	}
	t.stats.OrphansFolded++
	s.tally.Add([]Event{*ev}, ev.Time, ev.Time, remote.Addr(), isn)
	return true
}

// flushStorms emits the storms whose window closed by now (all of them if
// all is set), and forgets the kinds whose window passed with nothing
// folded, so that the next orphan of such a kind is emitted at once.
func (t *Tracker) flushStorms(now time.Time, all bool) {
	for k, s := range t.storms {
		if !all && now.Before(s.until) {
			continue
		}
		delete(t.storms, k)
		c := s.conn
		switch {
		case c == nil:
		case c.Storm.Count == 1:
			// One alike orphan after the first is no storm: it goes
			// out as it is, counted as an orphan, not as folded.
			c.Storm = nil
			t.stats.OrphansFolded--
			t.emitOrphanNow(c)
		default:
			c.Start, c.End = c.Storm.First, c.Storm.Last
			t.stats.Storms++
			t.emitOrphanNow(c)
		}
	}
}

// HandleFoldedResets takes the closed-port resets the kernel counted
// instead of sending (bpf.WithResetFolding): those after the first of
// their kind in a window, the first having come as an orphan. They join the
// storm of their kind as orphans folded here would, or start one if its
// window has closed; either way each is counted in the storm span. It
// implements [bpf.Handler].
func (t *Tracker) HandleFoldedResets(r *bpf.FoldedResets) {
	if r.Count == 0 {
		return
	}
	n := uint32(min(r.Count, uint64(^uint32(0))))
	ev := t.event(r.FirstNs, uint8(bpf.EventRSTSent), 0, uint8(bpf.CtxKernel), uint8(bpf.HowAnswer), 0, r.Reason, 0)
	last := t.cfg.bootTime(r.LastNs)
	local, remote, network := endpoints(&r.Tuple)
	now := time.Now()

	t.mu.Lock()
	defer t.mu.Unlock()
	t.stats.ResetsFoldedInKernel += uint64(n)
	t.stats.OrphansFolded += uint64(n)
	// Never passed through unfolded as an orphan would be (folding off,
	// too many storms): a count has no connection of its own to send.
	k := stormKey{netns: r.Tuple.Netns, local: local, kinds: 1 << ev.Kind, rstReason: ev.Reason}
	s, ok := t.storms[k]
	if !ok {
		s = &storm{until: now.Add(max(t.cfg.stormWindow, 0))}
		t.storms[k] = s
	}
	if s.conn == nil {
		// The storm's example is the first one counted; the 4-tuple's
		// port is the example orphan's to tell.
		s.conn = &Connection{
			Side:           SideServer,
			Network:        network,
			Local:          local,
			Remote:         remote,
			Netns:          r.Tuple.Netns,
			Orphan:         true,
			Start:          ev.Time,
			End:            ev.Time,
			Events:         []Event{ev},
			CloseInitiator: InitiatorLocal,
			Storm:          &s.tally.Storm,
		}
	}
	s.tally.addFolded(n, ev.Kind, ev.Time, last, remote.Addr())
}

// HandleFoldedConns takes refused connects the kernel counted instead of
// sending (bpf.WithResetFolding): those after the first of their kind in a
// window, the first having come as a connection record. They go out as one
// connection, the first of them as it ended, with a [Storm] that counts
// them all; one alone goes out as it is. It implements [bpf.Handler].
func (t *Tracker) HandleFoldedConns(r *bpf.FoldedConns) {
	if r.Count == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.fromConnRecord(&r.First, t.newConnAlloc())
	c := &a.conn
	if r.Count > 1 {
		// Every one of them had these events: the kernel folds only
		// connections with the same kinds and number of events.
		s := &Storm{Count: r.Count, Peers: 1, First: c.Start, Last: t.cfg.bootTime(r.LastNs)}
		if c.End.After(s.Last) {
			s.Last = c.End
		}
		for i := range c.Events {
			if k := c.Events[i].Kind; int(k) < numEventKinds {
				s.Events[k] += r.Count
			}
		}
		s.sample(c.ISN)
		c.Storm, c.End = s, s.Last
		t.stats.ConnStorms++
		t.stats.ConnsFolded += uint64(r.Count)
	}
	t.emitConn(c)
	t.recycle(a)
}
