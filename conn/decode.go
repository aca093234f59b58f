package conn

import (
	"net/netip"
	"slices"
	"syscall"
	"time"

	"github.com/tcpspan/tcpspan/bpf"
)

// Names resolves the kernel's reason numbers (see [bpf.KernelNames]).
type Names interface {
	ResetReason(uint32) string
	DropReason(uint32) string
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
