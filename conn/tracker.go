package conn

import (
	"net/netip"
	"sync"
	"time"

	"github.com/tcpspan/tcpspan/bpf"
)

// Stats are the tracker's own counts.
type Stats struct {
	Connections   uint64 // connections emitted with a full socket
	Orphans       uint64 // orphan connections emitted, storm spans included
	OrphanEvents  uint64 // orphan events received
	OrphansJoined uint64 // orphan 4-tuples or events merged into a full connection
	OrphansForced uint64 // orphan 4-tuples emitted early: too many pending
	OrphansFolded uint64 // orphan connections folded into a storm span
	Storms        uint64 // storm connections emitted (each counts its folded orphans)
	// ResetsFoldedInKernel counts the closed-port resets the kernel
	// counted instead of sending (bpf.WithResetFolding); they are in
	// OrphansFolded too.
	ResetsFoldedInKernel uint64
	// ConnsFolded counts the refused connects the kernel counted instead
	// of sending, emitted as ConnStorms connections with a Storm (each
	// counted once in Connections too).
	ConnsFolded, ConnStorms uint64
	// Requests counts traceparent headers received; RequestsMalformed
	// those that did not parse; RequestsDropped those of sockets beyond
	// the pending bound, or whose connection sent no record for
	// requestsIdle.
	Requests          uint64
	RequestsMalformed uint64
	RequestsDropped   uint64
}

// tupleKey is a connection's 4-tuple in its network namespace, as one
// 40-byte block without padding or pointers: hashed in one pass, where
// netip.AddrPort fields were hashed field by field.
type tupleKey struct {
	netns                 uint32
	localPort, remotePort uint16
	local, remote         [16]byte
}

func keyOf(netns uint32, local, remote netip.AddrPort) tupleKey {
	return tupleKey{netns: netns, localPort: local.Port(), remotePort: remote.Port(),
		local: local.Addr().As16(), remote: remote.Addr().As16()}
}

type pending struct {
	conn *Connection
	last time.Time // wall time of the last event received
	// alloc is what holds conn, for a connection with a full socket;
	// nil for orphans.
	alloc *connAlloc
}

// connAlloc is what a connection record needs, allocated at once: one
// allocation per connection instead of three. With WithReuse, it goes back
// to Tracker.free once its connection was emitted and nothing refers to it.
type connAlloc struct {
	conn   Connection
	closer Close
	held   pending
}

// maxFree bounds the connAllocs kept for reuse: about 1.3 KB each with a
// clean connection's events, 5 MB in all, which a burst of connections
// would otherwise leave to the garbage collector. Those unused for a whole
// flush interval are let go (see Flush).
const maxFree = 4096

type heldEntry struct {
	key tupleKey
	p   *pending
}

// Tracker joins kernel records into connections. Its methods are safe for
// concurrent use.
type Tracker struct {
	cfg   config
	names Names
	out   func(*Connection)

	comms commCache

	mu      sync.Mutex
	orphans map[tupleKey]*pending
	// orphanFIFO holds the orphans in arrival order, so that the oldest is
	// found at once when too many are pending. Entries whose 4-tuple left
	// orphans (joined or emitted) are skipped and compacted by Flush.
	orphanFIFO []heldEntry
	storms     map[stormKey]*storm
	held       map[tupleKey]*pending // finished connections lingering for late events
	heldFIFO   []heldEntry           // the same, in arrival order, for emission in order
	// heldHead is where heldFIFO starts: those before it left early (a
	// reused 4-tuple), and Flush moves the rest back to the front.
	heldHead int
	owners   map[tupleKey]Process // from a sock_diag snapshot, for mid-life connections
	// requests holds, by socket address, the traceparents of requests on
	// connections whose record has not come yet.
	requests map[uint64]*socketRequests
	// requestsSwept is when expireRequests last ran.
	requestsSwept time.Time
	stats         Stats
	// free holds connAllocs for reuse (WithReuse), and freeLow the fewest
	// it held since the last Flush: so many were not needed.
	free    []*connAlloc
	freeLow int
}

// New returns a tracker that calls out with each finished connection. out
// is called with the tracker's lock held: it must not call back into it.
func New(names Names, out func(*Connection), opts ...Option) *Tracker {
	cfg := config{linger: DefaultLinger, orphanIdle: DefaultOrphanIdle, maxOrphans: DefaultMaxOrphans,
		stormWindow: DefaultStormWindow, bootTime: BootClock()}
	for _, o := range opts {
		cfg = o.apply(cfg)
	}
	return &Tracker{cfg: cfg, names: names, out: out, orphans: make(map[tupleKey]*pending),
		held: make(map[tupleKey]*pending), owners: make(map[tupleKey]Process), storms: make(map[stormKey]*storm),
		requests: make(map[uint64]*socketRequests)}
}

// SeedOwner records the owner of a connection that was open before the
// agent started, so that its record, flagged mid-life, names its process.
func (t *Tracker) SeedOwner(netns uint32, local, remote netip.AddrPort, p Process) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.owners[keyOf(netns, local, remote)] = p
}

// Stats returns the tracker's counts.
func (t *Tracker) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stats
}

// HandleConn takes a finished connection record. It implements [bpf.Handler].
func (t *Tracker) HandleConn(r *bpf.ConnRecord) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.fromConnRecord(r, t.newConnAlloc())
	c := &a.conn
	if len(t.requests) > 0 {
		t.joinRequests(c, r)
	}
	key := keyOf(c.Netns, c.Local, c.Remote)
	if c.Midlife && c.Owner.PID == 0 {
		if p, ok := t.owners[key]; ok {
			c.Owner = p
		}
	}
	delete(t.owners, key)
	// Orphan events of the same 4-tuple before this socket existed (a SYN
	// dropped by a full accept queue, then retried) belong to it.
	if p, ok := t.orphans[key]; ok && c.Side != SideClient {
		delete(t.orphans, key)
		c.Events = append(p.conn.Events, c.Events...)
		sortEvents(c.Events)
		if p.conn.Start.Before(c.Start) {
			c.Start = p.conn.Start
		}
		t.stats.OrphansJoined++
	}
	if t.cfg.linger <= 0 {
		t.emitConn(c)
		t.recycle(a)
		return
	}
	if prev, ok := t.held[key]; ok {
		// The 4-tuple was reused within the linger time: the connection
		// held under it leaves now, and so do all that arrived before it,
		// to keep the arrival order (see Flush).
		t.releaseThrough(prev)
	}
	p := &a.held
	p.conn, p.last, p.alloc = c, time.Now(), a
	t.held[key] = p
	t.heldFIFO = append(t.heldFIFO, heldEntry{key, p})
}

func (t *Tracker) emitConn(c *Connection) {
	t.stats.Connections++
	t.out(c)
}

// newConnAlloc returns a connAlloc to fill, reused if one is free.
func (t *Tracker) newConnAlloc() *connAlloc {
	n := len(t.free)
	if n == 0 {
		return new(connAlloc)
	}
	a := t.free[n-1]
	t.free[n-1] = nil
	t.free = t.free[:n-1]
	t.freeLow = min(t.freeLow, n-1)
	return a
}

// recycle keeps a, whose connection was emitted and is referred to by
// nothing, for reuse, if the tracker reuses memory (WithReuse). The events'
// array is kept with its capacity.
func (t *Tracker) recycle(a *connAlloc) {
	if !t.cfg.reuse || len(t.free) >= maxFree {
		return
	}
	events := a.conn.Events[:0]
	*a = connAlloc{}
	a.conn.Events = events
	t.free = append(t.free, a)
}

// HandleOrphan takes an event without a tracked socket. It implements
// [bpf.Handler].
func (t *Tracker) HandleOrphan(r *bpf.OrphanRecord) {
	ev := t.event(r.Ev.TsNs, uint8(r.Ev.Type), r.Ev.State, uint8(r.Ev.Ctx), r.Ev.How, r.Ev.Pid, r.Ev.Arg, r.Ev.Arg2)
	if ev.Context == ContextProcess {
		ev.Process.Comm = t.comms.get(r.Comm[:])
	}
	local, remote, network := endpoints(&r.Tuple)
	key := keyOf(r.Tuple.Netns, local, remote)
	isn := ISN{Client: r.IsnClient, Server: r.IsnServer,
		HasClient: r.IsnKnown&bpf.ISNClient != 0, HasServer: r.IsnKnown&bpf.ISNServer != 0}

	t.mu.Lock()
	defer t.mu.Unlock()
	t.stats.OrphanEvents++
	if h, ok := t.held[key]; ok {
		// The kernel's last word on a connection that just ended.
		h.conn.Events = append(h.conn.Events, ev)
		sortEvents(h.conn.Events)
		t.stats.OrphansJoined++
		return
	}
	p, ok := t.orphans[key]
	if !ok && noSocketReset(&ev, r.OwnerPid) && t.foldNoSocketReset(&ev, r.Tuple.Netns, local, remote, isn) {
		return
	}
	now := time.Now()
	if !ok {
		if len(t.orphans) >= t.cfg.maxOrphans {
			t.evictOldest(now)
		}
		p = &pending{conn: &Connection{
			Side:              SideServer,
			Network:           network,
			Local:             local,
			Remote:            remote,
			Netns:             r.Tuple.Netns,
			Orphan:            true,
			Start:             ev.Time,
			Owner:             Process{PID: r.OwnerPid, Comm: t.comms.get(r.OwnerComm[:])},
			OwnerCgroup:       r.OwnerCgroup,
			OwnerFromListener: r.OwnerPid != 0,
			ISN:               isn,
		}}
		if noSocketReset(&ev, r.OwnerPid) {
			// Nothing can follow: no socket and no listener to join.
			// Waiting the idle time would only hold memory through a
			// closed-port storm.
			p.conn.Events = append(p.conn.Events, ev)
			p.conn.End = ev.Time
			t.emitOrphan(p.conn, now)
			return
		}
		t.orphans[key] = p
		t.orphanFIFO = append(t.orphanFIFO, heldEntry{key, p})
	}
	p.last = now
	c := p.conn
	if isn.better(c.ISN) {
		// The handshake ACK a full queue dropped knows both numbers;
		// the SYNs before it only the client's.
		c.ISN = isn
	}
	c.Events = append(c.Events, ev)
	if ev.Time.Before(c.Start) {
		c.Start = ev.Time
	}
	if ev.Time.After(c.End) {
		c.End = ev.Time
	}
	if c.Owner.PID == 0 && r.OwnerPid != 0 {
		c.Owner = Process{PID: r.OwnerPid, Comm: t.comms.get(r.OwnerComm[:])}
		c.OwnerCgroup = r.OwnerCgroup
		c.OwnerFromListener = true
	}
}

// noSocketReset reports whether ev, the first event of its 4-tuple, is an
// RST the kernel sent because no socket at all took the packet: with no
// listener (owner) either, no later event can join it.
func noSocketReset(ev *Event, owner uint32) bool {
	return owner == 0 && ev.NoSocket()
}

// Flush emits the connections whose linger time has passed and the orphan
// connections that have had no event for the idle time, as of now. Call it
// periodically.
func (t *Tracker) Flush(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	// The reusable connAllocs that were not needed since the last Flush
	// are let go: an idle agent keeps none.
	keep := len(t.free) - t.freeLow
	clear(t.free[keep:])
	t.free = t.free[:keep]
	defer func() { t.freeLow = len(t.free) }()
	t.expireRequests(now)
	// In arrival order, so that a connection that failed is emitted before
	// the one its process closed because of it.
	n := t.heldHead
	for _, h := range t.heldFIFO[n:] {
		if now.Sub(h.p.last) < t.cfg.linger {
			break
		}
		t.releaseHeld(h)
		n++
	}
	held := copy(t.heldFIFO, t.heldFIFO[n:])
	clear(t.heldFIFO[held:])
	t.heldFIFO, t.heldHead = t.heldFIFO[:held], 0
	for k, p := range t.orphans {
		if now.Sub(p.last) >= t.cfg.orphanIdle {
			delete(t.orphans, k)
			t.emitOrphan(p.conn, now)
		}
	}
	live := t.orphanFIFO[:0]
	for _, o := range t.orphanFIFO {
		if t.orphans[o.key] == o.p {
			live = append(live, o)
		}
	}
	clear(t.orphanFIFO[len(live):])
	t.orphanFIFO = live
	t.flushStorms(now, false)
}

// Close emits every held and pending connection.
func (t *Tracker) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, h := range t.heldFIFO[t.heldHead:] {
		t.releaseHeld(h)
	}
	clear(t.heldFIFO)
	t.heldFIFO, t.heldHead = t.heldFIFO[:0], 0
	now := time.Now()
	for k, p := range t.orphans {
		delete(t.orphans, k)
		t.emitOrphan(p.conn, now)
	}
	t.orphanFIFO = t.orphanFIFO[:0]
	t.flushStorms(now, true)
}

// releaseThrough emits the held connections in arrival order, up to and
// including p's. Emitting p's alone, ahead of those before it, put a
// forwarder's reset of its client ahead of the refused upstream connect
// that caused it, which the exporter could then not link. Under a storm
// 4-tuples are reused within the linger time all the time (it runs from
// the record's arrival, and the reader drains records in bursts): 10,792
// times in 65,387 records in one run of e2e/rinetd_test.go.
func (t *Tracker) releaseThrough(p *pending) {
	for t.heldHead < len(t.heldFIFO) {
		h := t.heldFIFO[t.heldHead]
		t.heldFIFO[t.heldHead] = heldEntry{}
		t.heldHead++
		t.releaseHeld(h)
		if h.p == p {
			break
		}
	}
}

// releaseHeld emits a held connection and lets its memory be reused.
func (t *Tracker) releaseHeld(h heldEntry) {
	if t.held[h.key] == h.p {
		delete(t.held, h.key)
	}
	if h.p.conn != nil {
		t.emitConn(h.p.conn)
		h.p.conn = nil
	}
	// The FIFO entry was the last reference: the held map's is gone, or
	// is another connection's.
	if a := h.p.alloc; a != nil {
		t.recycle(a)
	}
}

// PendingOrphans returns how many orphan 4-tuples wait for more events.
func (t *Tracker) PendingOrphans() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.orphans)
}

// evictOldest emits the orphan 4-tuple that arrived first.
func (t *Tracker) evictOldest(now time.Time) {
	for len(t.orphanFIFO) > 0 {
		o := t.orphanFIFO[0]
		t.orphanFIFO[0] = heldEntry{}
		t.orphanFIFO = t.orphanFIFO[1:]
		if t.orphans[o.key] != o.p {
			continue // joined or emitted already
		}
		delete(t.orphans, o.key)
		t.stats.OrphansForced++
		t.emitOrphan(o.p.conn, now)
		return
	}
}

// emitOrphan completes an orphan connection and hands it to storm folding.
func (t *Tracker) emitOrphan(c *Connection, now time.Time) {
	sortEvents(c.Events)
	if len(c.Events) > 0 {
		last := c.Events[len(c.Events)-1]
		c.FinalState = last.State
		if last.Kind == EventRSTSent {
			c.CloseInitiator = InitiatorLocal
		}
	}
	t.foldOrphan(c, now)
}

func (t *Tracker) emitOrphanNow(c *Connection) {
	t.stats.Orphans++
	t.out(c)
}
