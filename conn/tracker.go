package conn

import (
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/tcpspan/tcpspan/bpf"
)

// Defaults of the tracker options.
const (
	// DefaultOrphanIdle is how long a 4-tuple's orphan events wait for more
	// before they are emitted as one connection. It covers the kernel's
	// handshake timers: SYN-ACK and data retransmits back off to seconds.
	DefaultOrphanIdle = 5 * time.Second
	// DefaultMaxOrphans bounds the pending orphan 4-tuples; beyond it the
	// oldest are emitted early (and counted in Stats.OrphansForced).
	DefaultMaxOrphans = 65536
	// DefaultLinger is how long a finished connection is held before it is
	// emitted, so that the kernel's last word on it can join it: when a
	// packet arrives for a closed, orphaned socket, tcp_reset() destroys
	// the socket and only then is the answering RST sent, as an orphan
	// event right behind the connection's record.
	DefaultLinger = 100 * time.Millisecond
)

// Names resolves the kernel's reason numbers (see [bpf.KernelNames]).
type Names interface {
	ResetReason(uint32) string
	DropReason(uint32) string
}

// Option configures a [Tracker].
type Option interface {
	apply(config) config
}

type optionFunc func(config) config

func (f optionFunc) apply(c config) config { return f(c) }

type config struct {
	reuse       bool
	linger      time.Duration
	orphanIdle  time.Duration
	maxOrphans  int
	stormWindow time.Duration
	bootTime    func(ns uint64) time.Time
}

// WithOrphanIdle sets how long orphan events of a 4-tuple wait for more.
// Default [DefaultOrphanIdle].
func WithOrphanIdle(d time.Duration) Option {
	return optionFunc(func(c config) config { c.orphanIdle = d; return c })
}

// WithLinger sets how long finished connections are held for late events;
// zero emits them at once. They leave in the order they arrived: when a
// held connection's 4-tuple is reused, it leaves at once, with those that
// arrived before it. Default [DefaultLinger].
func WithLinger(d time.Duration) Option {
	return optionFunc(func(c config) config { c.linger = d; return c })
}

// WithMaxOrphans bounds pending orphan 4-tuples. Default [DefaultMaxOrphans].
func WithMaxOrphans(n int) Option {
	return optionFunc(func(c config) config { c.maxOrphans = n; return c })
}

// WithStormWindow sets how long orphans of one kind (see [Storm]) are
// folded into one connection after the first was emitted; zero turns
// folding off. Default [DefaultStormWindow].
func WithStormWindow(d time.Duration) Option {
	return optionFunc(func(c config) config { c.stormWindow = d; return c })
}

// WithReuse tells the tracker that out keeps nothing of a full connection
// after it returns: not the *Connection, nor its Events or Closer (strings
// may be kept; they are never changed). The tracker then reuses their
// memory for later records instead of allocating it anew for each; at
// thousands of connections a second that garbage was most of the cost of
// a record. Orphan connections are never reused. Default off.
func WithReuse(on bool) Option {
	return optionFunc(func(c config) config { c.reuse = on; return c })
}

// WithBootClock sets the conversion of kernel timestamps
// (bpf_ktime_get_boot_ns) to wall time. Default [BootClock].
func WithBootClock(f func(ns uint64) time.Time) Option {
	return optionFunc(func(c config) config { c.bootTime = f; return c })
}

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

// fromConnRecord fills a, new or reused, with the connection of r.
func (t *Tracker) fromConnRecord(r *bpf.ConnRecord, a *connAlloc) *connAlloc {
	local, remote, network := endpoints(&r.Tuple)
	c := &a.conn
	events := c.Events[:0] // a reused connAlloc keeps its array
	requests := c.Requests[:0]
	*c = Connection{
		Requests:          requests,
		Side:              Side(r.Side),
		Network:           network,
		Local:             local,
		Remote:            remote,
		Netns:             r.Tuple.Netns,
		Start:             t.cfg.bootTime(r.StartNs),
		End:               t.cfg.bootTime(r.EndNs),
		Midlife:           r.Flags&bpf.FlagMidlife != 0,
		EndUnseen:         r.Flags&bpf.FlagEndUnseen != 0,
		Owner:             Process{PID: r.OwnerPid, Comm: t.comms.get(r.OwnerComm[:])},
		OwnerCgroup:       r.OwnerCgroup,
		OwnerFromListener: r.Flags&bpf.FlagOwnerFromListener != 0,
		FinalState:        State(r.FinalState),
		BytesSent:         r.BytesSent,
		BytesReceived:     r.BytesReceived,
		SegsOut:           r.SegsOut,
		SegsIn:            r.SegsIn,
		Retransmits:       r.TotalRetrans,
		SRTT:              time.Duration(r.SrttUs) * time.Microsecond,
		ISN: isnOf(Side(r.Side), r.IsnLocal, r.IsnRemote,
			r.Flags&bpf.FlagISNLocal != 0, r.Flags&bpf.FlagISNRemote != 0),
	}
	if r.CloserPid != 0 {
		a.closer = Close{
			Process:     Process{PID: r.CloserPid, Comm: t.comms.get(r.CloserComm[:])},
			TID:         r.CloserTid,
			FD:          int32(r.CloserFd),
			UnreadBytes: r.UnreadBytes,
			ExitCode:    r.CloserExit,
			Release:     Release(r.CloserHow),
		}
		c.Closer = &a.closer
	}
	if r.RetransSeen > uint32(bpf.MaxRetransEvents) {
		c.RetransmitEventsDropped = r.RetransSeen - uint32(bpf.MaxRetransEvents)
	}
	n := int(r.EventsSeen)
	if n > bpf.MaxConnEvents {
		c.EventsDropped = uint32(n - bpf.MaxConnEvents)
		n = bpf.MaxConnEvents
	}
	if cap(events) < n {
		events = make([]Event, 0, n)
	}
	// Decoded in place: an Event is 120 bytes, and building each on the
	// stack to copy it in cost as much as decoding it.
	c.Events = events[:n]
	for i := range n {
		e := &r.Events[i]
		ev := &c.Events[i]
		t.decodeEvent(ev, e.TsNs, e.Type, e.State, e.Ctx, e.How, e.Pid, e.Arg, e.Arg2)
		if ev.Context == ContextProcess {
			ev.Process.Comm = c.actorComm(ev.Process.PID)
		}
		if ev.Kind == EventClose && c.Closer != nil && c.Closer.Time.IsZero() && ev.Process.PID == c.Closer.Process.PID {
			c.Closer.Time = ev.Time
		}
	}
	sortEvents(c.Events)
	if c.EndUnseen && len(c.Events) > 0 {
		c.End = c.Events[len(c.Events)-1].Time
	}
	c.CloseInitiator = closeInitiator(c.Events)
	if finReceived(c.Events) && c.BytesReceived > 0 {
		// tcp_sock.bytes_received counts the FIN's sequence number.
		c.BytesReceived--
	}
	return a
}

// finReceived tells from the state path whether the peer's FIN arrived:
// ESTABLISHED->CLOSE_WAIT, FIN_WAIT1->CLOSING, or the kernel moving
// FIN_WAIT1/FIN_WAIT2 to CLOSE (entering time-wait) without a reset. The
// last can also be the FIN_WAIT2 timeout of a silent peer, which then
// undercounts by one byte.
func finReceived(events []Event) bool {
	for _, e := range events {
		switch {
		case e.Kind == EventRSTReceived:
			return false
		case e.Kind == EventState && (e.State == StateCloseWait || e.State == StateClosing):
			return true
		case e.Kind == EventState && e.State == StateClose &&
			(e.OldState == StateFinWait1 || e.OldState == StateFinWait2):
			return true
		}
	}
	return false
}

// actorComm names a pid from what the record knows: the owner or closer.
func (c *Connection) actorComm(pid uint32) string {
	switch {
	case c.Closer != nil && c.Closer.Process.PID == pid:
		return c.Closer.Process.Comm
	case c.Owner.PID == pid:
		return c.Owner.Comm
	}
	return ""
}

// event decodes one kernel event (struct conn_event).
func (t *Tracker) event(ts uint64, typ, state, ctx, how uint8, pid, arg, arg2 uint32) Event {
	var ev Event
	t.decodeEvent(&ev, ts, typ, state, ctx, how, pid, arg, arg2)
	return ev
}

// decodeEvent decodes one kernel event into ev, overwriting all of it.
func (t *Tracker) decodeEvent(ev *Event, ts uint64, typ, state, ctx, how uint8, pid, arg, arg2 uint32) {
	*ev = Event{
		Time:    t.cfg.bootTime(ts),
		Kind:    eventKind(bpf.EventType(typ)),
		State:   State(state),
		Context: Context(ctx),
		FD:      -1,
	}
	if ev.Context == ContextProcess {
		ev.Process.PID = pid
		ev.Release = Release(how & bpf.ReleaseMask)
		ev.ViaListener = how&bpf.HowViaListener != 0
	}
	switch bpf.EventType(typ) {
	case bpf.EventState:
		ev.OldState = State(arg)
		ev.Errno = syscall.Errno(arg2)
	case bpf.EventAccept:
		ev.FD = int32(arg)
		ev.Syscall = syscallName(arg2)
	case bpf.EventClose:
		ev.FD = int32(arg)
		ev.TID = arg2
		ev.Syscall = ev.Release.syscall()
	case bpf.EventRSTSent:
		if arg == bpf.ResetReasonUnknown {
			ev.Reason = ReasonUnknown
		} else {
			ev.Reason = t.names.ResetReason(arg)
		}
		ev.Answer = how&bpf.HowAnswer != 0
		if ev.Context == ContextProcess {
			ev.Syscall = ev.Release.syscall()
			if ev.ViaListener {
				ev.Queued = arg2
			}
		}
	case bpf.EventError:
		ev.Errno = syscall.Errno(arg)
		ev.PeerWindow = arg2
	case bpf.EventSYN:
		ev.Estimated = arg == bpf.SynEstimated
	case bpf.EventSYNACKRetrans:
		ev.Count = arg
	case bpf.EventDrop:
		ev.Reason = t.names.DropReason(arg)
	case bpf.EventSYNOverflow, bpf.EventACKOverflow:
		ev.Backlog, ev.MaxBacklog = arg, arg2
	}
}

// eventKinds maps the kernel's event types to the tracker's: an array, as
// a map lookup per event was a tenth of decoding a record.
var eventKinds = func() (k [256]EventKind) {
	for typ, kind := range map[bpf.EventType]EventKind{
		bpf.EventState:         EventState,
		bpf.EventSYN:           EventSYN,
		bpf.EventAccept:        EventAccept,
		bpf.EventClose:         EventClose,
		bpf.EventRSTSent:       EventRSTSent,
		bpf.EventRSTReceived:   EventRSTReceived,
		bpf.EventError:         EventError,
		bpf.EventRetransmit:    EventRetransmit,
		bpf.EventSYNACKRetrans: EventSYNACKRetransmit,
		bpf.EventDrop:          EventDrop,
		bpf.EventSYNOverflow:   EventSYNOverflow,
		bpf.EventACKOverflow:   EventACKOverflow,
	} {
		k[typ] = kind
	}
	return k
}()

// eventKind returns the tracker's kind of a kernel event type, or zero for
// a type it does not know.
func eventKind(typ bpf.EventType) EventKind {
	if int(typ) < len(eventKinds) {
		return eventKinds[typ]
	}
	return 0
}

// closeInitiator finds which end closed first from the state path: a local
// FIN moves ESTABLISHED to FIN_WAIT1, a remote FIN to CLOSE_WAIT; a reset
// closes it outright.
func closeInitiator(events []Event) Initiator {
	for _, e := range events {
		switch {
		case e.Kind == EventState && e.State == StateFinWait1:
			return InitiatorLocal
		case e.Kind == EventState && e.State == StateCloseWait:
			return InitiatorRemote
		case e.Kind == EventRSTSent:
			return InitiatorLocal
		case e.Kind == EventRSTReceived:
			return InitiatorRemote
		}
	}
	return InitiatorUnknown
}

// sortEvents orders events by time. They mostly arrive in order already.
func sortEvents(evs []Event) {
	byTime := func(a, b Event) int { return a.Time.Compare(b.Time) }
	if !slices.IsSortedFunc(evs, byTime) {
		slices.SortStableFunc(evs, byTime)
	}
}

// endpoints converts a kernel tuple. IPv4 addresses, whether from an
// AF_INET socket or IPv4-mapped on a dual-stack AF_INET6 one, come out as
// plain IPv4: that is what went over the wire.
func endpoints(t *bpf.Tuple) (local, remote netip.AddrPort, network string) {
	la := netip.AddrFrom16(t.Saddr).Unmap()
	ra := netip.AddrFrom16(t.Daddr).Unmap()
	network = "ipv6"
	if la.Is4() {
		network = "ipv4"
	}
	return netip.AddrPortFrom(la, t.Sport), netip.AddrPortFrom(ra, t.Dport), network
}

// maxComms bounds the commCache.
const maxComms = 4096

// commCache interns process names: the same few repeat on every record,
// and a string for each cost an allocation per record and more for the GC.
type commCache struct {
	mu sync.Mutex
	m  map[[16]int8]string
}

func (cc *commCache) get(b []int8) string {
	if len(b) != 16 {
		return comm(b)
	}
	k := [16]int8(b)
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if s, ok := cc.m[k]; ok {
		return s
	}
	if cc.m == nil || len(cc.m) >= maxComms {
		cc.m = make(map[[16]int8]string)
	}
	s := comm(b)
	cc.m[k] = s
	return s
}

func comm(b []int8) string {
	buf := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		buf = append(buf, byte(c))
	}
	return string(buf)
}

// syscallName names the x86_64 syscall of an accept event (its arg2).
func syscallName(nr uint32) string {
	switch nr {
	case bpf.SyscallAccept:
		return "accept"
	case bpf.SyscallAccept4:
		return "accept4"
	}
	return ""
}
