package exporter

import (
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tcpspan/tcpspan/conn"
	"github.com/tcpspan/tcpspan/internal/otlpwire"
	tcpsemconv "github.com/tcpspan/tcpspan/semconv"
)

// attrWriter receives the attributes of a span or an event, in order. The
// mapping is written once against it: kvList collects them as
// attribute.KeyValue for SpanData ([Map]), wireAttrs writes them straight
// into the OTLP wire format for the exporter, with every key and constant
// attribute encoded once. Building fifty attribute.KeyValue values per span
// and then encoding each was most of the exporter's cost per span.
type attrWriter interface {
	constant(a *constAttr)
	str(k *attrKey, v string)
	int(k *attrKey, v int64)
}

// attrKey is an attribute key with its KeyValue.key field encoded.
type attrKey struct {
	key  attribute.Key
	wire []byte // tag, length, key
}

func newKey(k attribute.Key) *attrKey {
	b := appendTag(nil, otlpwire.KeyValueKey, protowire.BytesType)
	return &attrKey{key: k, wire: appendString(b, string(k))}
}

// constAttr is an attribute whose value never changes, with its KeyValue
// message encoded.
type constAttr struct {
	kv   attribute.KeyValue
	wire []byte // the KeyValue message, without tag or length
}

func newConst(kv attribute.KeyValue) *constAttr {
	// appendKeyValue writes a tag and a length, then the message.
	b := appendKeyValue(nil, otlpwire.KeyValueKey, &kv)
	_, _, n := protowire.ConsumeTag(b)
	_, m := protowire.ConsumeVarint(b[n:])
	return &constAttr{kv: kv, wire: b[n+m:]}
}

// kvList collects attributes as attribute.KeyValue values.
type kvList struct{ a []attribute.KeyValue }

func (l *kvList) constant(a *constAttr)    { l.a = append(l.a, a.kv) }
func (l *kvList) str(k *attrKey, v string) { l.a = append(l.a, k.key.String(v)) }
func (l *kvList) int(k *attrKey, v int64)  { l.a = append(l.a, k.key.Int64(v)) }

// wireAttrs appends attributes to b in the wire format, each as field tag
// of its parent (Span.attributes, Span.Event.attributes).
type wireAttrs struct {
	b   []byte
	tag byte
}

func (w *wireAttrs) constant(a *constAttr) {
	b := append(w.b, w.tag)
	b = appendVarint(b, uint64(len(a.wire)))
	w.b = append(b, a.wire...)
}

func (w *wireAttrs) str(k *attrKey, v string) {
	anySize := 1 + sizeVarint(uint64(len(v))) + len(v)
	b := append(w.b, w.tag)
	b = appendVarint(b, uint64(len(k.wire)+1+sizeVarint(uint64(anySize))+anySize))
	b = append(b, k.wire...)
	b = append(b, byte(otlpwire.KeyValueValue)<<3|byte(protowire.BytesType))
	b = appendVarint(b, uint64(anySize))
	b = append(b, byte(otlpwire.AnyValueString)<<3|byte(protowire.BytesType))
	w.b = appendString(b, v)
}

func (w *wireAttrs) int(k *attrKey, v int64) {
	anySize := 1 + sizeVarint(uint64(v))
	b := append(w.b, w.tag)
	b = appendVarint(b, uint64(len(k.wire)+1+sizeVarint(uint64(anySize))+anySize))
	b = append(b, k.wire...)
	b = append(b, byte(otlpwire.KeyValueValue)<<3|byte(protowire.BytesType))
	b = appendVarint(b, uint64(anySize))
	b = append(b, byte(otlpwire.AnyValueInt)<<3|byte(protowire.VarintType))
	w.b = appendVarint(b, uint64(v))
}

// The keys and constant attributes of the mapping.
var (
	keyNetworkLocalAddress = newKey(semconv.NetworkLocalAddressKey)
	keyNetworkLocalPort    = newKey(semconv.NetworkLocalPortKey)
	keyNetworkPeerAddress  = newKey(semconv.NetworkPeerAddressKey)
	keyNetworkPeerPort     = newKey(semconv.NetworkPeerPortKey)
	keyServerAddress       = newKey(semconv.ServerAddressKey)
	keyServerPort          = newKey(semconv.ServerPortKey)
	keyClientAddress       = newKey(semconv.ClientAddressKey)
	keyClientPort          = newKey(semconv.ClientPortKey)
	keyProcessPID          = newKey(semconv.ProcessPIDKey)
	keyProcessExecutable   = newKey(semconv.ProcessExecutableNameKey)
	keyProcessComm         = newKey(tcpsemconv.TCPProcessCommKey)
	keyThreadID            = newKey(semconv.ThreadIDKey)
	keyErrorType           = newKey(semconv.ErrorTypeKey)

	keyNetns               = newKey(tcpsemconv.TCPNetnsKey)
	keyCloseFD             = newKey(tcpsemconv.TCPCloseFDKey)
	keyCloseUnreadBytes    = newKey(tcpsemconv.TCPCloseUnreadBytesKey)
	keyBytesSent           = newKey(tcpsemconv.TCPBytesSentKey)
	keyBytesReceived       = newKey(tcpsemconv.TCPBytesReceivedKey)
	keySegmentsSent        = newKey(tcpsemconv.TCPSegmentsSentKey)
	keySegmentsReceived    = newKey(tcpsemconv.TCPSegmentsReceivedKey)
	keyRetransmits         = newKey(tcpsemconv.TCPRetransmitsKey)
	keyRTT                 = newKey(tcpsemconv.TCPRTTKey)
	keySYNACKRetransmits   = newKey(tcpsemconv.TCPSYNACKRetransmitsKey)
	keyListenerBacklog     = newKey(tcpsemconv.TCPListenerBacklogKey)
	keyListenerBacklogMax  = newKey(tcpsemconv.TCPListenerBacklogMaxKey)
	keyResetReason         = newKey(tcpsemconv.TCPResetReasonKey)
	keyErrno               = newKey(tcpsemconv.TCPErrnoKey)
	keyEventsDropped       = newKey(tcpsemconv.TCPEventsDroppedKey)
	keyTraceparents        = newKey(tcpsemconv.TCPTraceparentCountKey)
	keyTraceparentsBad     = newKey(tcpsemconv.TCPTraceparentMalformedKey)
	keyStormCount          = newKey(tcpsemconv.TCPStormCountKey)
	keyStormPeerAddresses  = newKey(tcpsemconv.TCPStormPeerAddressesKey)
	keyState               = newKey(semconv.NetworkConnectionStateKey)
	keyStatePrevious       = newKey(tcpsemconv.TCPStatePreviousKey)
	keySyscall             = newKey(tcpsemconv.TCPSyscallKey)
	keyFD                  = newKey(tcpsemconv.TCPFDKey)
	keyDropReason          = newKey(tcpsemconv.TCPDropReasonKey)
	keyCloseRelease        = newKey(tcpsemconv.TCPCloseReleaseKey)
	keyHandshakeDuration   = newKey(tcpsemconv.TCPHandshakeDurationKey)
	keyAcceptDelay         = newKey(tcpsemconv.TCPAcceptDelayKey)
	keyCloseDuration       = newKey(tcpsemconv.TCPCloseDurationKey)
	keyCloseExitSignal     = newKey(tcpsemconv.TCPCloseExitSignalKey)
	keyCloseExitStatus     = newKey(tcpsemconv.TCPCloseExitStatusKey)
	keyListenerQueued      = newKey(tcpsemconv.TCPListenerQueuedKey)
	keyRetransmitsDropped  = newKey(tcpsemconv.TCPEventsRetransmitsDroppedKey)
	keyTraceparentsDropped = newKey(tcpsemconv.TCPTraceparentDroppedKey)
	keyStormEventsByKind   = func() (k [conn.EventACKOverflow + 1]*attrKey) {
		for kind := conn.EventSYN; kind <= conn.EventACKOverflow; kind++ {
			k[kind] = newKey(attribute.Key(tcpsemconv.TCPStormEventsPrefix + kind.String()))
		}
		return k
	}()

	attrTransportTCP      = newConst(semconv.NetworkTransportTCP)
	attrTypeIPv4          = newConst(semconv.NetworkTypeIPv4)
	attrTypeIPv6          = newConst(semconv.NetworkTypeIPv6)
	attrOwnerFromListener = newConst(tcpsemconv.TCPOwnerFromListener(true))
	attrObservedMidlife   = newConst(tcpsemconv.TCPObservedMidlife(true))
	attrSYNEstimated      = newConst(tcpsemconv.TCPSYNEstimated(true))
	attrOrphan            = newConst(tcpsemconv.TCPOrphan(true))
	attrEndUnseen         = newConst(tcpsemconv.TCPEndUnseen(true))
	attrInitiatorLocal    = newConst(tcpsemconv.TCPCloseInitiatorLocal)
	attrInitiatorRemote   = newConst(tcpsemconv.TCPCloseInitiatorRemote)
	attrInitiatorUnknown  = newConst(tcpsemconv.TCPCloseInitiatorUnknown)
	attrResetSent         = newConst(tcpsemconv.TCPResetDirectionSent)
	attrResetReceived     = newConst(tcpsemconv.TCPResetDirectionReceived)
	attrResetCtxProcess   = newConst(tcpsemconv.TCPResetContextProcess)
	attrResetCtxKernel    = newConst(tcpsemconv.TCPResetContextKernel)
	attrResetCtxUnknown   = newConst(tcpsemconv.TCPResetContextUnknown)
	attrResetAnswer       = newConst(tcpsemconv.TCPResetAnswer(true))
	attrResetOwn          = newConst(tcpsemconv.TCPResetAnswer(false))
	attrContextProcess    = newConst(tcpsemconv.TCPContextProcess)
	attrContextKernel     = newConst(tcpsemconv.TCPContextKernel)
	attrContextUnknown    = newConst(tcpsemconv.TCPContextUnknown)
	// The states as network.connection.state and tcpspan.state.previous
	// values, RFC 9293's names (tcpsemconv.ConnectionState).
	attrStates, attrPreviousStates = func() (now, previous [conn.StateNewSynRecv + 1]*constAttr) {
		for s := conn.StateEstablished; s <= conn.StateNewSynRecv; s++ {
			v := tcpsemconv.ConnectionState(s.String())
			now[s] = newConst(semconv.NetworkConnectionStateKey.String(v))
			previous[s] = newConst(tcpsemconv.TCPStatePrevious(v))
		}
		return now, previous
	}()
)

// writeState writes a socket state as attribute k, from a table for the states
// the kernel has; one it does not know keeps its kernel name.
func writeState(w attrWriter, table *[conn.StateNewSynRecv + 1]*constAttr, k *attrKey, s conn.State) {
	if int(s) < len(table) && table[s] != nil {
		w.constant(table[s])
		return
	}
	w.str(k, s.String())
}
