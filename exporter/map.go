package exporter

import (
	"net/netip"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcpspan/tcpspan/conn"
	tcpsemconv "github.com/tcpspan/tcpspan/semconv"
)

// SpanData is the span of one connection, ready to be recorded with a
// tracer: start it with trace.WithTimestamp(Start), trace.WithSpanKind(Kind)
// and Attributes, add Events with their own timestamps, set the status, and
// end it with trace.WithTimestamp(End).
type SpanData struct {
	// Name is low-cardinality, as OpenTelemetry asks: "TCP connect"
	// (client), "TCP accept :80" (server, by listening port), "TCP reset
	// :80" (orphan with a reset), "TCP handshake :80" (any other orphan: a
	// handshake that never made a socket), "TCP" (side unknown). It never holds an address or an ephemeral
	// port: the peer is in the attributes.
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
// caches the strings that repeat, addresses and span names, and writes the
// attributes straight into the wire format through it (appendConn); one
// made by newCachingMapper also reuses its slices from span to span.
type mapper struct {
	// exeOf names a process's executable (the basename of /proc/PID/exe),
	// "" if unknown; nil: its comm stands in.
	exeOf func(conn.Process) string
	// cleanEvents: clean connections' spans keep their events too
	// (WithCleanEvents). Otherwise they carry their timings as attributes
	// and no events: half the bytes.
	cleanEvents bool
	evAttrs     []attribute.KeyValue // backing array of all events' attributes
	kv          kvList               // collects attributes for SpanData
	addrs       map[netip.Addr]string
	names       map[nameKey]string
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
		End:         spanEnd(c.Start, c.End),
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

// Span names, without the port of the names that carry one.
const (
	nameClient    = "TCP connect"
	nameServer    = "TCP accept "
	nameReset     = "TCP reset "
	nameHandshake = "TCP handshake "
	nameOther     = "TCP"
)

// spanName caches the names that carry a local port.
func (m *mapper) spanName(c *conn.Connection) string {
	prefix, port := spanNameParts(c)
	if port == 0 || m.names == nil {
		return spanName(c)
	}
	k := nameKey{prefix: prefix, port: port}
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

type nameKey struct {
	prefix string
	port   uint16
}

// spanNameParts returns the name's prefix and, for names that carry
// one, the local port (0 for none).
func spanNameParts(c *conn.Connection) (string, uint16) {
	switch {
	case c.Orphan && (c.Has(conn.EventRSTSent) || c.Has(conn.EventRSTReceived)):
		return nameReset, c.Local.Port()
	case c.Orphan:
		return nameHandshake, c.Local.Port()
	case c.Side == conn.SideClient:
		return nameClient, 0
	case c.Side == conn.SideServer:
		return nameServer, c.Local.Port()
	}
	return nameOther, 0
}

func spanName(c *conn.Connection) string {
	prefix, port := spanNameParts(c)
	if prefix == nameClient || prefix == nameOther {
		return prefix
	}
	return prefix + ":" + strconv.Itoa(int(port))
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
	m.kv.a = a
	m.writeSpanAttributes(&m.kv, c, errType, isErr)
	a, m.kv.a = m.kv.a, nil
	return a
}

// writeSpanAttributes writes the attributes of c's span to w.
func (m *mapper) writeSpanAttributes(w attrWriter, c *conn.Connection, errType string, isErr bool) {
	w.constant(attrTransportTCP)
	w.constant(networkType(c))
	// Each address is looked up once, though written twice.
	var local, remote string
	if c.Local.IsValid() {
		local = m.addr(c.Local.Addr())
		w.str(keyNetworkLocalAddress, local)
		w.int(keyNetworkLocalPort, int64(c.Local.Port()))
	}
	if c.Remote.IsValid() {
		remote = m.addr(c.Remote.Addr())
		w.str(keyNetworkPeerAddress, remote)
		// Port 0: a storm the kernel counted, whose peers' ports vary.
		if c.Remote.Port() != 0 {
			w.int(keyNetworkPeerPort, int64(c.Remote.Port()))
		}
	}
	switch {
	case c.Orphan || c.Side == conn.SideServer:
		writeEndpoint(w, keyServerAddress, keyServerPort, c.Local, local)
		writeEndpoint(w, keyClientAddress, keyClientPort, c.Remote, remote)
	case c.Side == conn.SideClient:
		writeEndpoint(w, keyServerAddress, keyServerPort, c.Remote, remote)
	}
	m.writeProcess(w, c.Owner)
	if c.OwnerFromListener {
		w.constant(attrOwnerFromListener)
	}
	if c.Netns != 0 {
		w.int(keyNetns, int64(c.Netns))
	}
	if c.Midlife {
		w.constant(attrObservedMidlife)
	}
	if c.Orphan {
		w.constant(attrOrphan)
	}
	if c.EndUnseen {
		w.constant(attrEndUnseen)
	}
	if c.FinalState != 0 {
		writeState(w, &attrStates, keyState, c.FinalState)
	}
	w.constant(closeInitiator(c.CloseInitiator))
	if cl := c.Closer; cl != nil {
		if cl.FD >= 0 {
			w.int(keyCloseFD, int64(cl.FD))
		}
		w.int(keyCloseUnreadBytes, int64(cl.UnreadBytes))
		if cl.Release != conn.ReleaseNone {
			w.str(keyCloseRelease, cl.Release.String())
		}
		if cl.Release == conn.ReleaseExit {
			if sig := cl.ExitSignal(); sig != 0 {
				w.str(keyCloseExitSignal, signalName(sig))
			} else {
				w.int(keyCloseExitStatus, int64(cl.ExitStatus()))
			}
		}
	}
	if !c.Orphan {
		w.int(keyBytesSent, int64(c.BytesSent))
		w.int(keyBytesReceived, int64(c.BytesReceived))
		w.int(keySegmentsSent, int64(c.SegsOut))
		w.int(keySegmentsReceived, int64(c.SegsIn))
		w.int(keyRetransmits, int64(c.Retransmits))
		if c.SRTT > 0 {
			w.int(keyRTT, int64(c.SRTT/time.Microsecond))
		}
	}
	handshake, queued, closing := timings(c)
	if handshake >= 0 {
		w.int(keyHandshakeDuration, handshake.Microseconds())
	}
	if queued >= 0 {
		w.int(keyAcceptDelay, queued.Microseconds())
	}
	if closing >= 0 {
		w.int(keyCloseDuration, closing.Microseconds())
	}
	if c.RequestsSeen > 0 {
		w.int(keyTraceparents, int64(c.RequestsSeen))
	}
	if c.RequestsMalformed > 0 {
		w.int(keyTraceparentsBad, int64(c.RequestsMalformed))
	}
	if n := int(c.RequestsSeen) - len(c.Requests); n > 0 {
		w.int(keyTraceparentsDropped, int64(n))
	}
	if c.Has(conn.EventSYNACKRetransmit) {
		w.int(keySYNACKRetransmits, int64(synackRetransmits(c)))
	}
	if ov := firstOverflow(c); ov != nil {
		w.int(keyListenerBacklog, int64(ov.Backlog))
		w.int(keyListenerBacklogMax, int64(ov.MaxBacklog))
	}
	if rst := firstReset(c); rst != nil {
		if rst.Kind == conn.EventRSTSent {
			w.constant(attrResetSent)
			w.str(keyResetReason, resetReason(rst.Reason))
			w.constant(resetContext(rst.Context))
			writeResetSent(w, rst)
		} else {
			w.constant(attrResetReceived)
		}
	}
	if e := firstErrno(c); e != nil {
		w.str(keyErrno, errnoName(e.Errno))
	}
	if c.EventsDropped > 0 {
		w.int(keyEventsDropped, int64(c.EventsDropped))
	}
	if c.RetransmitEventsDropped > 0 {
		w.int(keyRetransmitsDropped, int64(c.RetransmitEventsDropped))
	}
	if s := c.Storm; s != nil {
		w.int(keyStormCount, int64(s.Count))
		w.int(keyStormPeerAddresses, int64(s.Peers))
		for k := conn.EventSYN; k <= conn.EventACKOverflow; k++ {
			if n := s.EventCount(k); n > 0 {
				w.int(keyStormEventsByKind[k], int64(n))
			}
		}
	}
	if isErr {
		w.str(keyErrorType, errType)
	}
}

// timings returns, from c's events, how long its handshake took (from the
// SYN, or connect(), to ESTABLISHED), how long an accepted connection
// waited in the accept queue (ESTABLISHED to accept()), and how long its
// close took (the first FIN sent or received to the socket's end). Each is
// -1 when the events do not tell it.
func timings(c *conn.Connection) (handshake, queued, closing time.Duration) {
	handshake, queued, closing = -1, -1, -1
	var established, fin time.Time
	for i := range c.Events {
		e := &c.Events[i]
		switch {
		case e.Kind == conn.EventState && e.State == conn.StateEstablished && established.IsZero():
			established = e.Time
		case e.Kind == conn.EventAccept && !established.IsZero() && queued < 0:
			queued = e.Time.Sub(established)
		case e.Kind == conn.EventState && fin.IsZero() && (e.State == conn.StateFinWait1 || e.State == conn.StateCloseWait):
			fin = e.Time
		}
	}
	if !established.IsZero() && !c.Midlife && !c.Orphan {
		handshake = established.Sub(c.Start)
	}
	if !fin.IsZero() && !c.EndUnseen {
		closing = c.End.Sub(fin)
	}
	return handshake, queued, closing
}

// eventAttributeCap is the room reserved per event on average: kernel
// events need two to four attributes, a close() in process context seven.
const eventAttributeCap = 5

// withEvents reports whether c's span carries its events: when it had a
// problem, or when clean ones keep them too.
func (m *mapper) withEvents(c *conn.Connection) bool {
	return m.cleanEvents || c.Problem()
}

func (m *mapper) spanEvents(evs []EventData, c *conn.Connection) []EventData {
	if len(c.Events) == 0 || !m.withEvents(c) {
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
		m.kv.a = buf
		m.writeEventAttributes(&m.kv, e)
		buf, m.kv.a = m.kv.a, nil
		evs = append(evs, EventData{Name: eventName(e.Kind), Time: e.Time, Attributes: buf[start:len(buf):len(buf)]})
	}
	if m.addrs != nil { // reusing: keep the (possibly grown) array for the next span
		m.evAttrs = buf
	}
	return evs
}

// writeEventAttributes writes the attributes of the span event of e to w.
func (m *mapper) writeEventAttributes(w attrWriter, e *conn.Event) {
	if e.State != 0 {
		writeState(w, &attrStates, keyState, e.State)
	}
	if e.Kind == conn.EventState && e.OldState != 0 {
		writeState(w, &attrPreviousStates, keyStatePrevious, e.OldState)
	}
	if e.Kind == conn.EventState && e.Errno != 0 {
		w.str(keyErrno, errnoName(e.Errno))
	}
	w.constant(eventContext(e.Context))
	if e.Context == conn.ContextProcess {
		m.writeProcess(w, e.Process)
		if e.TID != 0 {
			w.int(keyThreadID, int64(e.TID))
		}
		if e.Syscall != "" {
			w.str(keySyscall, e.Syscall)
		}
		if e.Release != conn.ReleaseNone {
			w.str(keyCloseRelease, e.Release.String())
		}
	}
	if e.FD >= 0 && (e.Kind == conn.EventAccept || e.Kind == conn.EventClose) {
		w.int(keyFD, int64(e.FD))
	}
	switch e.Kind {
	case conn.EventRSTSent:
		w.str(keyResetReason, resetReason(e.Reason))
		writeResetSent(w, e)
	case conn.EventDrop:
		if e.Reason != "" {
			w.str(keyDropReason, e.Reason)
		}
	case conn.EventError:
		if e.Errno != 0 {
			w.str(keyErrno, errnoName(e.Errno))
		}
	case conn.EventSYN:
		if e.Estimated {
			w.constant(attrSYNEstimated)
		}
	case conn.EventSYNACKRetransmit:
		if e.Count > 0 {
			w.int(keySYNACKRetransmits, int64(e.Count))
		}
	case conn.EventSYNOverflow, conn.EventACKOverflow:
		w.int(keyListenerBacklog, int64(e.Backlog))
		w.int(keyListenerBacklogMax, int64(e.MaxBacklog))
	}
}

// writeResetSent writes what is known of how a reset sent came about:
// whether it answered a packet, and the queue of a listener whose close
// reset it.
func writeResetSent(w attrWriter, rst *conn.Event) {
	if rst.Answer {
		w.constant(attrResetAnswer)
	} else {
		w.constant(attrResetOwn)
	}
	if rst.ViaListener && rst.Queued > 0 {
		w.int(keyListenerQueued, int64(rst.Queued))
	}
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

func networkType(c *conn.Connection) *constAttr {
	switch {
	case c.Network == "ipv6":
		return attrTypeIPv6
	case c.Network == "ipv4":
		return attrTypeIPv4
	case c.Local.Addr().Is6() && !c.Local.Addr().Is4In6():
		return attrTypeIPv6
	}
	return attrTypeIPv4
}

// writeEndpoint writes the address (as addr) and port of ap, if valid.
func writeEndpoint(w attrWriter, addrKey, portKey *attrKey, ap netip.AddrPort, addr string) {
	if !ap.IsValid() {
		return
	}
	w.str(addrKey, addr)
	if ap.Port() != 0 {
		w.int(portKey, int64(ap.Port()))
	}
}

func (m *mapper) writeProcess(w attrWriter, p conn.Process) {
	if p.PID == 0 {
		return
	}
	w.int(keyProcessPID, int64(p.PID))
	exe := ""
	if m.exeOf != nil {
		exe = m.exeOf(p)
	}
	switch exe {
	case "":
		// Unknown (the process is gone): the kernel's name for it.
		if p.Comm != "" {
			w.str(keyProcessExecutable, p.Comm)
		}
	case p.Comm:
		w.str(keyProcessExecutable, exe)
	default:
		w.str(keyProcessExecutable, exe)
		if p.Comm != "" {
			w.str(keyProcessComm, p.Comm)
		}
	}
}

func closeInitiator(i conn.Initiator) *constAttr {
	switch i {
	case conn.InitiatorLocal:
		return attrInitiatorLocal
	case conn.InitiatorRemote:
		return attrInitiatorRemote
	}
	return attrInitiatorUnknown
}

func resetContext(c conn.Context) *constAttr {
	switch c {
	case conn.ContextProcess:
		return attrResetCtxProcess
	case conn.ContextKernel:
		return attrResetCtxKernel
	}
	return attrResetCtxUnknown
}

func eventContext(c conn.Context) *constAttr {
	switch c {
	case conn.ContextProcess:
		return attrContextProcess
	case conn.ContextKernel:
		return attrContextKernel
	}
	return attrContextUnknown
}

// resetReason is the tcpspan.reset.reason value of a kernel reason.
func resetReason(r string) string {
	if r == "" {
		return conn.ReasonUnknown
	}
	return r
}
