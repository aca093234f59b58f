package exporter

import (
	"net/netip"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcpspan/tcpspan/conn"
	tcpsemconv "github.com/tcpspan/tcpspan/semconv"
)

// SpanData is the span of one connection, ready to be recorded with a
// tracer: start it with trace.WithTimestamp(Start), trace.WithSpanKind(Kind)
// and Attributes, add Events with their own timestamps, set the status, and
// end it with trace.WithTimestamp(End).
type SpanData struct {
	// Name is low-cardinality: "TCP connect 10.0.0.2:80" (client),
	// "TCP accept :80" (server), "TCP :80" (orphan), "TCP" (side unknown).
	// It never holds an ephemeral port.
	Name string
	// Kind is SERVER for accepted connections and orphans, CLIENT for
	// connect()ed ones, INTERNAL when the side is unknown.
	Kind trace.SpanKind
	// Start and End are the first and last things seen on the connection.
	Start, End time.Time
	// Attributes describe the connection and its outcome.
	Attributes []attribute.KeyValue
	// Events are the kernel events, in time order.
	Events []EventData
	// StatusCode is codes.Error for a failed connection, codes.Unset
	// otherwise.
	StatusCode codes.Code
	// StatusDescription is the diagnosis of a failed connection (see
	// [Diagnose]), empty otherwise.
	StatusDescription string
	// ServiceName is the owning process's executable name, or "" when the
	// owner is unknown; the caller decides the fallback.
	ServiceName string
}

// EventData is one span event: a kernel event at its true time.
type EventData struct {
	// Name is one of the semconv.Event* names, such as "tcp.rst_sent".
	Name string
	// Time is when the kernel saw the event.
	Time time.Time
	// Attributes describe the event. The acting process is named only
	// when the kernel acted on its behalf (process context).
	Attributes []attribute.KeyValue
}

// Map returns the span of the finished connection c. It does not modify c
// or keep references to it.
func Map(c *conn.Connection) SpanData {
	errType, desc, isErr := Diagnose(c)
	var m mapper
	var sd SpanData
	m.mapInto(&sd, c, errType, desc, isErr)
	return sd
}

// mapper maps connections to spans. Its zero value allocates fresh slices
// and strings for every span, as Map needs. The exporter keeps one that
// reuses its slices from span to span (it encodes each span before mapping
// the next) and caches the strings that repeat: addresses and span names.
type mapper struct {
	evAttrs []attribute.KeyValue // backing array of all events' attributes
	addrs   map[netip.Addr]string
	names   map[nameKey]string
}

type nameKey struct {
	orphan bool
	side   conn.Side
	ap     netip.AddrPort
}

// maxCachedStrings bounds each of the mapper's string caches.
const maxCachedStrings = 4096

func newCachingMapper() *mapper {
	return &mapper{addrs: make(map[netip.Addr]string), names: make(map[nameKey]string)}
}

// mapInto fills sd with the span of c, already diagnosed, reusing sd's
// slices.
func (m *mapper) mapInto(sd *SpanData, c *conn.Connection, errType, desc string, isErr bool) {
	*sd = SpanData{
		Name:        m.spanName(c),
		Kind:        spanKind(c),
		Start:       c.Start,
		End:         c.End,
		Attributes:  m.spanAttributes(sd.Attributes[:0], c, errType, isErr),
		Events:      m.spanEvents(sd.Events[:0], c),
		StatusCode:  codes.Unset,
		ServiceName: c.Owner.Comm,
	}
	if isErr {
		sd.StatusCode, sd.StatusDescription = codes.Error, desc
	}
}

func (m *mapper) addr(a netip.Addr) string {
	if m.addrs == nil {
		return a.String()
	}
	if s, ok := m.addrs[a]; ok {
		return s
	}
	if len(m.addrs) >= maxCachedStrings {
		clear(m.addrs)
	}
	s := a.String()
	m.addrs[a] = s
	return s
}

// spanName caches names by what they are made of: the remote address and
// port for clients, the local port otherwise.
func (m *mapper) spanName(c *conn.Connection) string {
	if m.names == nil {
		return spanName(c)
	}
	k := nameKey{orphan: c.Orphan, side: c.Side}
	if c.Side == conn.SideClient && !c.Orphan {
		k.ap = c.Remote
	} else {
		k.ap = netip.AddrPortFrom(netip.Addr{}, c.Local.Port())
	}
	if s, ok := m.names[k]; ok {
		return s
	}
	if len(m.names) >= maxCachedStrings {
		clear(m.names)
	}
	s := spanName(c)
	m.names[k] = s
	return s
}

func spanName(c *conn.Connection) string {
	switch {
	case c.Orphan:
		return "TCP " + localPort(c.Local)
	case c.Side == conn.SideClient && c.Remote.IsValid():
		return "TCP connect " + c.Remote.String()
	case c.Side == conn.SideClient:
		return "TCP connect"
	case c.Side == conn.SideServer:
		return "TCP accept " + localPort(c.Local)
	}
	return "TCP"
}

func spanKind(c *conn.Connection) trace.SpanKind {
	switch {
	case c.Orphan, c.Side == conn.SideServer:
		return trace.SpanKindServer
	case c.Side == conn.SideClient:
		return trace.SpanKindClient
	}
	return trace.SpanKindInternal
}

// spanAttributeCap is room for the span attributes of nearly every
// connection (a reset one needs 27); rarer ones grow the slice.
const spanAttributeCap = 32

func (m *mapper) spanAttributes(a []attribute.KeyValue, c *conn.Connection, errType string, isErr bool) []attribute.KeyValue {
	if a == nil {
		a = make([]attribute.KeyValue, 0, spanAttributeCap)
	}
	a = append(a, semconv.NetworkTransportTCP, networkType(c))
	if c.Local.IsValid() {
		a = append(a, semconv.NetworkLocalAddress(m.addr(c.Local.Addr())), semconv.NetworkLocalPort(int(c.Local.Port())))
	}
	if c.Remote.IsValid() {
		a = append(a, semconv.NetworkPeerAddress(m.addr(c.Remote.Addr())), semconv.NetworkPeerPort(int(c.Remote.Port())))
	}
	switch {
	case c.Orphan || c.Side == conn.SideServer:
		a = m.appendEndpoint(a, semconv.ServerAddressKey, semconv.ServerPortKey, c.Local)
		a = m.appendEndpoint(a, semconv.ClientAddressKey, semconv.ClientPortKey, c.Remote)
	case c.Side == conn.SideClient:
		a = m.appendEndpoint(a, semconv.ServerAddressKey, semconv.ServerPortKey, c.Remote)
	}
	a = appendProcess(a, c.Owner)
	if c.OwnerFromListener {
		a = append(a, tcpsemconv.TCPOwnerFromListener(true))
	}
	if c.Netns != 0 {
		a = append(a, tcpsemconv.TCPNetns(int(c.Netns)))
	}
	if c.Midlife {
		a = append(a, tcpsemconv.TCPObservedMidlife(true))
	}
	if c.Orphan {
		a = append(a, tcpsemconv.TCPOrphan(true))
	}
	if c.EndUnseen {
		a = append(a, tcpsemconv.TCPEndUnseen(true))
	}
	if c.FinalState != 0 {
		a = append(a, tcpsemconv.TCPStateFinal(c.FinalState.String()))
	}
	a = append(a, closeInitiator(c.CloseInitiator))
	if cl := c.Closer; cl != nil {
		if cl.FD >= 0 {
			a = append(a, tcpsemconv.TCPCloseFD(int(cl.FD)))
		}
		a = append(a, tcpsemconv.TCPCloseUnreadBytes(int(cl.UnreadBytes)))
	}
	if !c.Orphan {
		a = append(a,
			tcpsemconv.TCPBytesSent(int64(c.BytesSent)),
			tcpsemconv.TCPBytesReceived(int64(c.BytesReceived)),
			tcpsemconv.TCPSegmentsSent(int(c.SegsOut)),
			tcpsemconv.TCPSegmentsReceived(int(c.SegsIn)),
			tcpsemconv.TCPRetransmits(int(c.Retransmits)))
		if c.SRTT > 0 {
			a = append(a, tcpsemconv.TCPRTT(int(c.SRTT/time.Microsecond)))
		}
	}
	if c.Has(conn.EventSYNACKRetransmit) {
		a = append(a, tcpsemconv.TCPSYNACKRetransmits(synackRetransmits(c)))
	}
	if ov := firstOverflow(c); ov != nil {
		a = append(a, tcpsemconv.TCPListenerBacklog(int(ov.Backlog)), tcpsemconv.TCPListenerBacklogMax(int(ov.MaxBacklog)))
	}
	if rst := firstReset(c); rst != nil {
		if rst.Kind == conn.EventRSTSent {
			a = append(a, tcpsemconv.TCPResetDirectionSent, tcpsemconv.TCPResetReason(resetReason(rst.Reason)), resetContext(rst.Context))
		} else {
			a = append(a, tcpsemconv.TCPResetDirectionReceived)
		}
	}
	if e := firstErrno(c); e != nil {
		a = append(a, tcpsemconv.TCPErrno(errnoName(e.Errno)))
	}
	if c.EventsDropped > 0 {
		a = append(a, tcpsemconv.TCPEventsDropped(int(c.EventsDropped)))
	}
	if s := c.Storm; s != nil {
		a = append(a, tcpsemconv.TCPStormCount(int(s.Count)), tcpsemconv.TCPStormPeerAddresses(int(s.Peers)))
		for k := conn.EventSYN; k <= conn.EventACKOverflow; k++ {
			if n := s.EventCount(k); n > 0 {
				a = append(a, tcpsemconv.TCPStormEvents(k.String(), int(n)))
			}
		}
	}
	if isErr {
		a = append(a, semconv.ErrorTypeKey.String(errType))
	}
	return a
}

// eventAttributeCap is the room reserved per event on average: kernel
// events need two to four attributes, a close() in process context seven.
const eventAttributeCap = 5

func (m *mapper) spanEvents(evs []EventData, c *conn.Connection) []EventData {
	if len(c.Events) == 0 {
		return evs
	}
	if cap(evs) < len(c.Events) {
		evs = make([]EventData, 0, len(c.Events))
	}
	// One backing array for the attributes of all events.
	buf := m.evAttrs[:0]
	if cap(buf) < len(c.Events)*eventAttributeCap {
		buf = make([]attribute.KeyValue, 0, len(c.Events)*eventAttributeCap)
	}
	for i := range c.Events {
		e := &c.Events[i]
		start := len(buf)
		buf = appendEventAttributes(buf, e)
		evs = append(evs, EventData{Name: eventName(e.Kind), Time: e.Time, Attributes: buf[start:len(buf):len(buf)]})
	}
	if m.addrs != nil { // reusing: keep the (possibly grown) array for the next span
		m.evAttrs = buf
	}
	return evs
}

func appendEventAttributes(a []attribute.KeyValue, e *conn.Event) []attribute.KeyValue {
	if e.State != 0 {
		a = append(a, tcpsemconv.TCPState(e.State.String()))
	}
	if e.Kind == conn.EventState && e.OldState != 0 {
		a = append(a, tcpsemconv.TCPStateOld(e.OldState.String()))
	}
	a = append(a, eventContext(e.Context))
	if e.Context == conn.ContextProcess {
		a = appendProcess(a, e.Process)
		if e.TID != 0 {
			a = append(a, semconv.ThreadID(int(e.TID)))
		}
		if e.Syscall != "" {
			a = append(a, tcpsemconv.TCPSyscall(e.Syscall))
		}
	}
	if e.FD >= 0 && (e.Kind == conn.EventAccept || e.Kind == conn.EventClose) {
		a = append(a, tcpsemconv.TCPFD(int(e.FD)))
	}
	switch e.Kind {
	case conn.EventRSTSent:
		a = append(a, tcpsemconv.TCPResetReason(resetReason(e.Reason)))
	case conn.EventDrop:
		if e.Reason != "" {
			a = append(a, tcpsemconv.TCPDropReason(e.Reason))
		}
	case conn.EventError:
		if e.Errno != 0 {
			a = append(a, tcpsemconv.TCPErrno(errnoName(e.Errno)))
		}
	case conn.EventSYNACKRetransmit:
		if e.Count > 0 {
			a = append(a, tcpsemconv.TCPSYNACKRetransmits(int(e.Count)))
		}
	case conn.EventSYNOverflow, conn.EventACKOverflow:
		a = append(a, tcpsemconv.TCPListenerBacklog(int(e.Backlog)), tcpsemconv.TCPListenerBacklogMax(int(e.MaxBacklog)))
	}
	return a
}

// eventName returns the span event name of an event kind.
func eventName(k conn.EventKind) string {
	switch k {
	case conn.EventSYN:
		return tcpsemconv.EventSYN
	case conn.EventState:
		return tcpsemconv.EventState
	case conn.EventAccept:
		return tcpsemconv.EventAccept
	case conn.EventClose:
		return tcpsemconv.EventClose
	case conn.EventRSTSent:
		return tcpsemconv.EventRSTSent
	case conn.EventRSTReceived:
		return tcpsemconv.EventRSTReceived
	case conn.EventError:
		return tcpsemconv.EventError
	case conn.EventRetransmit:
		return tcpsemconv.EventRetransmit
	case conn.EventSYNACKRetransmit:
		return tcpsemconv.EventSYNACKRetransmit
	case conn.EventDrop:
		return tcpsemconv.EventDrop
	case conn.EventSYNOverflow:
		return tcpsemconv.EventSYNOverflow
	case conn.EventACKOverflow:
		return tcpsemconv.EventACKOverflow
	}
	return "tcp.event_" + strconv.Itoa(int(k))
}

func networkType(c *conn.Connection) attribute.KeyValue {
	switch {
	case c.Network == "ipv6":
		return semconv.NetworkTypeIPv6
	case c.Network == "ipv4":
		return semconv.NetworkTypeIPv4
	case c.Local.Addr().Is6() && !c.Local.Addr().Is4In6():
		return semconv.NetworkTypeIPv6
	}
	return semconv.NetworkTypeIPv4
}

func (m *mapper) appendEndpoint(a []attribute.KeyValue, addrKey, portKey attribute.Key, ap netip.AddrPort) []attribute.KeyValue {
	if !ap.IsValid() {
		return a
	}
	return append(a, addrKey.String(m.addr(ap.Addr())), portKey.Int(int(ap.Port())))
}

func appendProcess(a []attribute.KeyValue, p conn.Process) []attribute.KeyValue {
	if p.PID == 0 {
		return a
	}
	a = append(a, semconv.ProcessPID(int(p.PID)))
	if p.Comm != "" {
		a = append(a, semconv.ProcessExecutableName(p.Comm))
	}
	return a
}

func closeInitiator(i conn.Initiator) attribute.KeyValue {
	switch i {
	case conn.InitiatorLocal:
		return tcpsemconv.TCPCloseInitiatorLocal
	case conn.InitiatorRemote:
		return tcpsemconv.TCPCloseInitiatorRemote
	}
	return tcpsemconv.TCPCloseInitiatorUnknown
}

func resetContext(c conn.Context) attribute.KeyValue {
	switch c {
	case conn.ContextProcess:
		return tcpsemconv.TCPResetContextProcess
	case conn.ContextKernel:
		return tcpsemconv.TCPResetContextKernel
	}
	return tcpsemconv.TCPResetContextUnknown
}

func eventContext(c conn.Context) attribute.KeyValue {
	switch c {
	case conn.ContextProcess:
		return tcpsemconv.TCPContextProcess
	case conn.ContextKernel:
		return tcpsemconv.TCPContextKernel
	}
	return tcpsemconv.TCPContextUnknown
}

// resetReason is the tcp.reset.reason value of a kernel reason.
func resetReason(r string) string {
	if r == "" {
		return conn.ReasonUnknown
	}
	return r
}
