package exporter

import (
	"crypto/sha256"
	"encoding/binary"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/tcpspan/tcpspan/conn"
	tcpsemconv "github.com/tcpspan/tcpspan/semconv"
)

// A connection's two ends are traced by two agents that never talk to each
// other, and often through NAT. Each derives the trace id alone from what
// both see of the handshake and what address and port translation leave
// alone: the initial sequence numbers (conn.ISN). semconv/README.md
// ("Correlation") specifies the derivation, so that anything else can
// compute it too, and what it costs in collisions.

// isnIDKey is the prefix of the hashed key: it versions the derivation.
const isnIDKey = "tcpspan-isn-v1"

// Forms of the key: how much of the handshake it holds.
const (
	isnFormClient = 1 // the client's ISN only: the SYN was never answered
	isnFormBoth   = 2 // the client's and the server's
)

// Roles of the spans in a connection's trace: one span id each, so that the
// spans of both ends, and the server's socket-less events beside a server
// socket of the same handshake, never share one.
const (
	roleClient       = "client"
	roleServer       = "server"
	roleServerOrphan = "server-orphan"
)

// isnKey is the hashed input: prefix, form, client ISN and server ISN (zero
// in the client-only form), big-endian, and a role for span ids.
type isnKey struct {
	b [len(isnIDKey) + 1 + 4 + 4 + len(roleServerOrphan)]byte
	n int
}

func newISNKey(isn conn.ISN) (isnKey, bool) {
	var k isnKey
	if !isn.HasClient {
		return k, false
	}
	n := copy(k.b[:], isnIDKey)
	k.b[n] = isnFormClient
	if isn.HasServer {
		k.b[n] = isnFormBoth
		binary.BigEndian.PutUint32(k.b[n+5:], isn.Server)
	}
	binary.BigEndian.PutUint32(k.b[n+1:], isn.Client)
	k.n = n + 9
	return k, true
}

// traceID is the first 16 bytes of SHA-256 of the key.
func (k *isnKey) traceID() traceID {
	sum := sha256.Sum256(k.b[:k.n])
	return nonZeroTrace(traceID(sum[:16]))
}

// spanID is the first 8 bytes of SHA-256 of the key followed by the role.
func (k *isnKey) spanID(role string) spanID {
	b := k.b
	n := k.n + copy(b[k.n:], role)
	sum := sha256.Sum256(b[:n])
	return nonZeroSpan(spanID(sum[:8]))
}

func nonZeroTrace(t traceID) traceID {
	if t == (traceID{}) {
		t[15] = 1
	}
	return t
}

func nonZeroSpan(s spanID) spanID {
	if s == (spanID{}) {
		s[7] = 1
	}
	return s
}

// connIDs returns the ids of c's span and, when they come from its
// handshake, a link to the span of the other end in the same trace (which
// may not exist: that end may not be traced). Connections whose handshake
// was not seen (observed mid-life, side unknown) and storms get random ids.
func connIDs(c *conn.Connection) (tid traceID, sid spanID, peer spanLink, derived bool) {
	if c.Storm != nil || c.Side == conn.SideUnknown {
		tid, sid = newIDs()
		return tid, sid, spanLink{}, false
	}
	k, ok := newISNKey(c.ISN)
	if !ok {
		tid, sid = newIDs()
		return tid, sid, spanLink{}, false
	}
	tid = k.traceID()
	own, other := roleClient, roleServer
	switch {
	case c.Side == conn.SideServer && c.Orphan:
		own, other = roleServerOrphan, roleClient
	case c.Side == conn.SideServer:
		own, other = roleServer, roleClient
	case !c.ISN.HasServer:
		// The SYN was never answered by a socket: what the server host
		// saw of it, if anything, is socket-less.
		other = roleServerOrphan
	}
	return tid, k.spanID(own), spanLink{trace: tid, span: k.spanID(other), attrs: peerLinkAttrs}, true
}

// isnLink returns a link to the client span of the connection whose
// handshake is isn, for storm spans' samples.
func isnLink(isn conn.ISN) (spanLink, bool) {
	k, ok := newISNKey(isn)
	if !ok {
		return spanLink{}, false
	}
	return spanLink{trace: k.traceID(), span: k.spanID(roleClient), attrs: stormSampleAttrs}, true
}

var (
	peerLinkAttrs    = []attribute.KeyValue{tcpsemconv.TCPLinkReasonPeer}
	stormSampleAttrs = []attribute.KeyValue{tcpsemconv.TCPLinkReasonStormSample}
)

// appendStormSample appends, for a storm span, a link to each connection of
// its sample (conn.Storm.Sample).
func appendStormSample(links []spanLink, st *conn.Storm) []spanLink {
	if st == nil {
		return links
	}
	for _, isn := range st.Sample[:st.Samples] {
		if l, ok := isnLink(isn); ok {
			links = append(links, l)
		}
	}
	return links
}

// appendRequestLinks appends a link to the application span of each request
// c carried with a traceparent header (the latest conn.MaxRequests).
func appendRequestLinks(links []spanLink, c *conn.Connection) []spanLink {
	for i := range c.Requests {
		q := &c.Requests[i]
		links = append(links, spanLink{trace: q.TraceID, span: q.SpanID, attrs: traceparentLinkAttrs})
	}
	return links
}

// diagnosisNames names diagnosis spans by error.type: low-cardinality.
var diagnosisNames = map[string]string{
	tcpsemconv.ErrorTypeRSTSent:             "TCP reset sent",
	tcpsemconv.ErrorTypeRSTReceived:         "TCP reset received",
	tcpsemconv.ErrorTypeRefused:             "TCP connection refused",
	tcpsemconv.ErrorTypeTimeout:             "TCP timeout",
	tcpsemconv.ErrorTypeAcceptQueueOverflow: "TCP accept queue overflow",
	tcpsemconv.ErrorTypeHandshakeDropped:    "TCP handshake dropped",
	tcpsemconv.ErrorTypeRequestUnanswered:   "TCP request unanswered",
}

func diagnosisName(errType string) string {
	if n, ok := diagnosisNames[errType]; ok {
		return n
	}
	return "TCP connection error"
}

// diagnosisSpan fills sd with the span that puts c's diagnosis into the
// trace of q, the request c failed while carrying: a child of the span that
// sent the request, from the request to the failure, named by errType and
// described by desc. It links to c's span (tid, sid).
func (m *mapper) diagnosisSpan(sd *SpanData, c *conn.Connection, q *conn.Request, errType, desc string) {
	end := c.End
	if end.Before(q.Time) {
		end = q.Time
	}
	attrs := append(sd.Attributes[:0], tcpsemconv.TCPDiagnosisOf(c.Side.String()), semconv.ErrorTypeKey.String(errType))
	if c.Remote.IsValid() {
		attrs = append(attrs, semconv.NetworkPeerAddress(m.addr(c.Remote.Addr())), semconv.NetworkPeerPort(int(c.Remote.Port())))
	}
	if c.Local.IsValid() {
		attrs = append(attrs, semconv.NetworkLocalAddress(m.addr(c.Local.Addr())), semconv.NetworkLocalPort(int(c.Local.Port())))
	}
	if c.Owner.PID != 0 {
		attrs = append(attrs, semconv.ProcessPID(int(c.Owner.PID)))
	}
	*sd = SpanData{Name: diagnosisName(errType), Kind: trace.SpanKindInternal, Start: q.Time, End: end,
		Attributes: attrs, Events: sd.Events[:0], StatusCode: codes.Error, StatusDescription: desc}
}

var traceparentLinkAttrs = []attribute.KeyValue{tcpsemconv.TCPLinkReasonTraceparent}
var connectionLinkAttrs = []attribute.KeyValue{tcpsemconv.TCPLinkReasonConnection}
