package conn

import (
	"fmt"
	"net/netip"
	"syscall"
	"time"
)

// Side says how a connection was opened on this host.
type Side uint8

// Sides.
const (
	SideUnknown Side = iota // seen only mid-life, or a socket-less orphan of unknown role
	SideClient              // actively opened: connect()
	SideServer              // passively opened: accepted from a listener
)

func (s Side) String() string {
	switch s {
	case SideClient:
		return "client"
	case SideServer:
		return "server"
	}
	return "unknown"
}

// State is a kernel TCP state (include/net/tcp_states.h). These numbers are
// part of the kernel ABI (sock_diag, tracepoints) and do not change.
type State uint8

// TCP states.
const (
	StateEstablished State = 1 + iota
	StateSynSent
	StateSynRecv
	StateFinWait1
	StateFinWait2
	StateTimeWait
	StateClose
	StateCloseWait
	StateLastAck
	StateListen
	StateClosing
	StateNewSynRecv
)

var stateNames = [...]string{"", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
	"TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV"}

func (s State) String() string {
	if int(s) < len(stateNames) && s != 0 {
		return stateNames[s]
	}
	return fmt.Sprintf("STATE(%d)", uint8(s))
}

// Context says who acted when an event happened.
type Context uint8

// Contexts.
const (
	// ContextUnknown: the kernel did not say.
	ContextUnknown Context = iota
	// ContextProcess: a process, inside a syscall on this socket (or on
	// the listener it was queued on), did it. Event.Process is the actor.
	ContextProcess
	// ContextKernel: the kernel did it on its own, in softirq, a timer or
	// while processing a packet. The task that happened to be running is
	// not the actor and is not reported.
	ContextKernel
)

func (c Context) String() string {
	switch c {
	case ContextProcess:
		return "process"
	case ContextKernel:
		return "kernel"
	}
	return "unknown"
}

// Release says how a process released a socket's file: the last
// reference to it went. It is known for events in process context.
type Release uint8

// Releases.
const (
	ReleaseNone       Release = iota // not a release (accept(), connect()), or unknown
	ReleaseClose                     // close(fd)
	ReleaseCloseRange                // close_range()
	ReleaseDup                       // dup2() or dup3() onto the fd
	ReleaseExec                      // execve() closed it as close-on-exec
	ReleaseExit                      // the process exited, or was killed: every file it held went
)

var releaseNames = [...]string{"", "close", "close_range", "dup2", "execve", "exit"}

// String returns a stable, lowercase name, used as an attribute value.
func (r Release) String() string {
	if int(r) < len(releaseNames) {
		return releaseNames[r]
	}
	return fmt.Sprintf("release(%d)", uint8(r))
}

// syscall names the syscall of a release, where it has one of its own.
func (r Release) syscall() string {
	switch r {
	case ReleaseClose, ReleaseCloseRange:
		return r.String()
	case ReleaseExec:
		return "execve"
	}
	return "" // dup2 or dup3; exit has none of its own
}

// EventKind says what happened.
type EventKind uint8

// Event kinds.
const (
	EventSYN              EventKind = iota + 1 // SYN reached the listener
	EventState                                 // state change: OldState -> State
	EventAccept                                // accept() returned the socket: Process, FD
	EventClose                                 // a process released the socket: Process, TID, FD, Release
	EventRSTSent                               // RST sent: Reason, Context, Process, Syscall
	EventRSTReceived                           // RST received
	EventError                                 // error reported to the application: Errno
	EventRetransmit                            // a segment was retransmitted
	EventSYNACKRetransmit                      // the SYN-ACK was retransmitted: Count so far
	EventDrop                                  // a packet of the connection was dropped: Reason
	EventSYNOverflow                           // SYN dropped: accept queue full (Backlog/MaxBacklog)
	EventACKOverflow                           // handshake ACK dropped: accept queue full
)

var eventNames = [...]string{"", "syn", "state", "accept", "close", "rst_sent", "rst_received", "error",
	"retransmit", "synack_retransmit", "drop", "syn_overflow", "ack_overflow"}

// String returns a stable, lowercase name, used in span event names.
func (k EventKind) String() string {
	if int(k) < len(eventNames) && k != 0 {
		return eventNames[k]
	}
	return fmt.Sprintf("event(%d)", uint8(k))
}

// Process is a process that acted on or owns a socket.
type Process struct {
	PID  uint32
	Comm string
}

func (p Process) String() string {
	if p.PID == 0 {
		return ""
	}
	return fmt.Sprintf("%s[%d]", p.Comm, p.PID)
}

// Event is one kernel event on a connection, at its true time.
type Event struct {
	Time     time.Time
	Kind     EventKind
	State    State   // socket state at the event (the new state for EventState)
	OldState State   // EventState only
	Context  Context // who acted
	Process  Process // the actor, when Context is ContextProcess
	TID      uint32  // EventClose
	FD       int32   // EventAccept, EventClose; -1 otherwise or unknown
	Syscall  string  // the actor's syscall ("close", "accept4"), if known
	// Release: how the actor released the socket, when the event is part
	// of a release (process context).
	Release Release
	// ViaListener: the release was of the listener this never-accepted
	// child was queued on. Queued is then, on EventRSTSent, that
	// listener's accept queue length when it closed (0 if unknown).
	ViaListener bool
	Queued      uint32
	// Answer: an EventRSTSent that answers a packet received. Otherwise
	// it is the socket's own reset: a release, a timer, memory pressure.
	Answer bool
	// Reason is the kernel's reason for EventRSTSent and EventDrop, without
	// prefix (e.g. "TCP_ABORT_ON_CLOSE"). ReasonUnknown when the kernel
	// does not report one.
	Reason string
	// Errno: on EventError, the error reported to the application; on an
	// EventState into CLOSE, the socket's error as it closed, if any (the
	// application may read it before the kernel's report of it runs).
	Errno syscall.Errno
	// PeerWindow is, on EventError, the receive window the peer last
	// advertised, in bytes: 0 when it stopped taking data.
	PeerWindow uint32
	Count      uint32 // EventSYNACKRetransmit: retransmits so far
	// Estimated: EventSYN was not seen but placed by the handshake's RTT
	// (see bpf.SynWatchAuto).
	Estimated  bool
	Backlog    uint32 // overflows: accept queue length
	MaxBacklog uint32 // overflows: accept queue limit
}

// NoSocket reports whether e is a reset the kernel sent because no socket
// at all took the packet it answers: reason NO_SOCKET, or, on kernels that
// give no reasons (before 6.10), an answer sent with no socket, in no state.
func (e *Event) NoSocket() bool {
	if e.Kind != EventRSTSent {
		return false
	}
	return e.Reason == "NO_SOCKET" || e.Reason == ReasonUnknown && e.Answer && e.State == 0 && e.Context == ContextKernel
}

// ReasonUnknown is Event.Reason when the running kernel does not report
// reset reasons (before 6.10).
const ReasonUnknown = "UNKNOWN"

// Initiator says which end closed first.
type Initiator uint8

// Initiators.
const (
	InitiatorUnknown Initiator = iota
	InitiatorLocal             // this host sent the first FIN (or RST)
	InitiatorRemote            // the peer sent the first FIN (or RST)
)

func (i Initiator) String() string {
	switch i {
	case InitiatorLocal:
		return "local"
	case InitiatorRemote:
		return "remote"
	}
	return "unknown"
}

// Close is the release of the socket by a process: a close() call, or
// another way its last file reference went (Release).
type Close struct {
	Time        time.Time
	Process     Process
	TID         uint32
	FD          int32  // -1 when the release names none (exit, close_range of many)
	UnreadBytes uint32 // received but never read by the application
	Release     Release
	// ExitCode is the task's exit code for ReleaseExit: see ExitSignal
	// and ExitStatus.
	ExitCode uint32
}

// ExitSignal returns the signal that killed the process that released the
// socket by exiting, or 0.
func (c *Close) ExitSignal() syscall.Signal {
	if c.Release != ReleaseExit {
		return 0
	}
	return syscall.Signal(c.ExitCode & 0x7f)
}

// ExitStatus returns the exit status of a process that released the socket
// by exiting on its own (ExitSignal is 0).
func (c *Close) ExitStatus() int {
	return int(c.ExitCode>>8) & 0xff
}

// Connection is one TCP connection seen from one host side, finished: the
// socket was destroyed, or (for an Orphan) no event came for a while.
type Connection struct {
	Side    Side
	Network string // "ipv4" or "ipv6"
	Local   netip.AddrPort
	Remote  netip.AddrPort
	Netns   uint32 // network namespace inode

	Start time.Time // first thing seen: SYN, connect(), child creation
	End   time.Time // socket destroyed, or last orphan event

	// Midlife: the connection was open before it was first seen.
	Midlife bool
	// EndUnseen: the kernel side never saw the socket destroyed; the
	// connection was emitted when its socket address was reused, with what
	// it had by then (End is its last event).
	EndUnseen bool
	// Orphan: there was never a full socket on this side (a dropped
	// handshake, an RST from a listener or for no socket). The record is
	// joined from packet-level events by 4-tuple.
	Orphan bool
	// Storm, when set, says this orphan stands for Storm.Count orphans of
	// the same kind that came within a short window (see [Storm]). The
	// exporter sets it too, on a connection that stands for those a full
	// export queue could not take.
	Storm *Storm

	Owner Process
	// OwnerCgroup is the owner's cgroup v2 id when it connected, accepted
	// or listened (0 if unknown): its container, once it is gone.
	OwnerCgroup uint64
	// OwnerFromListener: no accept() was seen; Owner owns the listener.
	OwnerFromListener bool
	// Closer is the close() call, if one was seen.
	Closer *Close

	Events []Event // in time order
	// EventsDropped counts events the kernel saw but could not keep.
	EventsDropped uint32
	// RetransmitEventsDropped counts retransmits not kept as events: the
	// kernel keeps the first few (bpf.MaxRetransEvents).
	RetransmitEventsDropped uint32

	FinalState    State
	BytesSent     uint64 // acknowledged by the peer
	BytesReceived uint64
	SegsOut       uint32
	SegsIn        uint32
	Retransmits   uint32
	SRTT          time.Duration

	CloseInitiator Initiator

	// Requests are the latest requests with a W3C traceparent header the
	// connection carried (at most MaxRequests), in time order;
	// RequestsSeen counts them all, and RequestsMalformed the headers
	// that did not parse.
	Requests          []Request
	RequestsSeen      uint32
	RequestsMalformed uint32

	// ISN holds the handshake's initial sequence numbers, as far as this
	// side saw them: what both ends of a connection share, through NAT.
	ISN ISN
}

// ISN is what a connection's two ends both know of its handshake: the
// initial sequence numbers of the client's SYN and of the server's SYN-ACK.
// Address and port translation leave them alone. A connection that never
// got its SYN-ACK (refused, timed out, dropped by a full accept queue) has
// only the client's.
type ISN struct {
	Client, Server       uint32
	HasClient, HasServer bool
}

// isnOf maps a socket's own and its peer's numbers to the client's and the
// server's by the side that opened it. An unknown side knows neither.
func isnOf(side Side, local, remote uint32, hasLocal, hasRemote bool) ISN {
	switch side {
	case SideClient:
		return ISN{Client: local, Server: remote, HasClient: hasLocal, HasServer: hasRemote}
	case SideServer:
		return ISN{Client: remote, Server: local, HasClient: hasRemote, HasServer: hasLocal}
	}
	return ISN{}
}

// better reports whether i knows more of the handshake than o.
func (i ISN) better(o ISN) bool {
	return i.HasClient && (!o.HasClient || i.HasServer && !o.HasServer)
}

// Has reports whether any event is of kind k.
func (c *Connection) Has(k EventKind) bool {
	return c.First(k) != nil
}

// First returns the first event of kind k, or nil.
func (c *Connection) First(k EventKind) *Event {
	for i := range c.Events {
		if c.Events[i].Kind == k {
			return &c.Events[i]
		}
	}
	return nil
}

// Count returns the number of events of kind k.
func (c *Connection) Count(k EventKind) int {
	n := 0
	for i := range c.Events {
		if c.Events[i].Kind == k {
			n++
		}
	}
	return n
}

// Unanswered returns the request the connection carried when it ended, if
// no answer byte followed it: its latest one, if it is in flight.
func (c *Connection) Unanswered() *Request {
	if n := len(c.Requests); n > 0 && c.Requests[n-1].InFlight {
		return &c.Requests[n-1]
	}
	return nil
}

// Problem reports whether the connection had anything worth a look: a
// reset, an error, an overflow, a drop, a retransmit, or a request left
// unanswered.
func (c *Connection) Problem() bool {
	if c.Orphan || c.Retransmits > 0 || c.Unanswered() != nil {
		return true
	}
	for i := range c.Events {
		switch c.Events[i].Kind {
		case EventRSTSent, EventRSTReceived, EventError, EventRetransmit, EventSYNACKRetransmit,
			EventDrop, EventSYNOverflow, EventACKOverflow:
			return true
		}
	}
	return false
}
