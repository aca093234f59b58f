package bpf

import (
	"fmt"
	"unsafe"
)

// Record layouts, as the kernel writes them (bpf/records.h). bpf2go
// generates the Go mirrors; these names are the package's public face.
type (
	// ConnRecord is one finished connection (struct conn).
	ConnRecord = tcpspanConn
	// OrphanRecord is one event without a tracked socket (struct orphan).
	OrphanRecord = tcpspanOrphan
	// TraceparentRecord is the traceparent header of a request a tracked
	// connection carried (struct traceparent).
	TraceparentRecord = tcpspanTraceparent
	// Tuple is a connection's endpoints seen from this host (struct tuple).
	Tuple = tcpspanTuple
	// EventType says what a kernel event is (enum event_type).
	EventType = tcpspanEventType
	// ExecCtx says who acted (enum exec_ctx).
	ExecCtx = tcpspanExecCtx
)

// Event types.
const (
	EventState         = tcpspanEventTypeEVENT_STATE
	EventSYN           = tcpspanEventTypeEVENT_SYN
	EventAccept        = tcpspanEventTypeEVENT_ACCEPT
	EventClose         = tcpspanEventTypeEVENT_CLOSE
	EventRSTSent       = tcpspanEventTypeEVENT_RST_SENT
	EventRSTReceived   = tcpspanEventTypeEVENT_RST_RECV
	EventError         = tcpspanEventTypeEVENT_ERROR
	EventRetransmit    = tcpspanEventTypeEVENT_RETRANS
	EventSYNACKRetrans = tcpspanEventTypeEVENT_SYNACK_RETRANS
	EventDrop          = tcpspanEventTypeEVENT_DROP
	EventSYNOverflow   = tcpspanEventTypeEVENT_SYN_OVERFLOW
	EventACKOverflow   = tcpspanEventTypeEVENT_ACK_OVERFLOW
)

// Execution contexts.
const (
	CtxUnknown = tcpspanExecCtxCTX_UNKNOWN
	CtxProcess = tcpspanExecCtxCTX_PROCESS
	CtxKernel  = tcpspanExecCtxCTX_KERNEL
)

// How a process released a socket: the low bits of an event's How
// (enum release_how).
const (
	ReleaseMask       = uint8(tcpspanEventHowHOW_RELEASE_MASK)
	ReleaseNone       = uint8(tcpspanReleaseHowRELEASE_NONE)
	ReleaseClose      = uint8(tcpspanReleaseHowRELEASE_CLOSE)
	ReleaseCloseRange = uint8(tcpspanReleaseHowRELEASE_CLOSE_RANGE)
	ReleaseDup        = uint8(tcpspanReleaseHowRELEASE_DUP)
	ReleaseExec       = uint8(tcpspanReleaseHowRELEASE_EXEC)
	ReleaseExit       = uint8(tcpspanReleaseHowRELEASE_EXIT)
)

// Flags in an event's How (enum event_how).
const (
	// HowViaListener: the release was of the listener a never-accepted
	// child was queued on; an EventRSTSent's Arg2 is then that listener's
	// accept queue length when it closed (0 if unknown).
	HowViaListener = uint8(tcpspanEventHowHOW_VIA_LISTENER)
	// HowAnswer: the reset answers a packet received.
	HowAnswer = uint8(tcpspanEventHowHOW_ANSWER)
)

// Connection flags (ConnRecord.Flags).
const (
	FlagMidlife           = uint8(tcpspanConnFlagsCONN_MIDLIFE)
	FlagOwnerFromListener = uint8(tcpspanConnFlagsCONN_OWNER_FROM_LISTENER)
	FlagEndUnseen         = uint8(tcpspanConnFlagsCONN_END_UNSEEN)
	// FlagISNLocal and FlagISNRemote: IsnLocal and IsnRemote are known.
	FlagISNLocal  = uint8(tcpspanConnFlagsCONN_ISN_LOCAL)
	FlagISNRemote = uint8(tcpspanConnFlagsCONN_ISN_REMOTE)
)

// What an orphan knows of its handshake (OrphanRecord.IsnKnown).
const (
	ISNClient = uint8(tcpspanIsnKnownISN_CLIENT)
	ISNServer = uint8(tcpspanIsnKnownISN_SERVER)
)

// Sides (ConnRecord.Side).
const (
	SideUnknown = 0
	SideClient  = 1
	SideServer  = 2
)

// Sentinels in event arguments (bpf/records.h).
const (
	ResetReasonUnknown = 0xffffffff
	SyscallNone        = 0xffffffff
	// SynEstimated is EventSYN's argument when the SYN was not seen but
	// placed by the handshake's RTT (SYN_ESTIMATED).
	SynEstimated = 1
)

// MaxConnEvents is how many events a ConnRecord holds (MAX_CONN_EVENTS).
const MaxConnEvents = len(ConnRecord{}.Events)

// MaxRetransEvents is how many retransmits of a connection the kernel keeps
// as events; ConnRecord.RetransSeen counts them all (MAX_RETRANS_EVENTS).
const MaxRetransEvents = int(tcpspanRetransLimitMAX_RETRANS_EVENTS)

// Directions of a request (TraceparentRecord.Dir).
const (
	RequestSent     = uint8(tcpspanRequestDirREQUEST_SENT)
	RequestReceived = uint8(tcpspanRequestDirREQUEST_RECEIVED)
)

const kindTraceparent = uint32(tcpspanRecordKindRECORD_TRACEPARENT)

// decodeTraceparent reads a traceparent record, or returns nil if b is
// another kind of record.
func decodeTraceparent(b []byte) *TraceparentRecord {
	if len(b) < int(unsafe.Sizeof(TraceparentRecord{})) || *(*uint32)(unsafe.Pointer(&b[0])) != kindTraceparent {
		return nil
	}
	return (*TraceparentRecord)(unsafe.Pointer(&b[0]))
}

// Record kinds (the first 4 bytes of every record).
const (
	kindConn   = uint32(tcpspanRecordKindRECORD_CONN)
	kindOrphan = uint32(tcpspanRecordKindRECORD_ORPHAN)
)

// Sizes of a connection record: the kernel sends the fixed part and then
// only the events it holds (conn_emit in bpf/conn.h).
const (
	connRecordBytes = int(unsafe.Sizeof(ConnRecord{}))
	connFixedBytes  = int(unsafe.Offsetof(ConnRecord{}.Events))
	connEventBytes  = int(unsafe.Sizeof(ConnRecord{}.Events[0]))
)

// RecordBufferBytes is the capacity a buffer passed to [Decode] needs for a
// connection record that carries fewer than [MaxConnEvents] events.
const RecordBufferBytes = connRecordBytes

// Decode interprets a raw ring-buffer sample. Exactly one of the results is
// non-nil on success. They alias b: copy what must outlive b.
//
// A connection record holds only the events the kernel kept. Decode
// zero-fills the unused event slots within b's capacity, which must be at
// least [RecordBufferBytes] for such a record.
func Decode(b []byte) (*ConnRecord, *OrphanRecord, error) {
	if len(b) < 4 {
		return nil, nil, fmt.Errorf("record of %d bytes is too short for its kind", len(b))
	}
	// Records start 8-byte aligned in the ring buffer, so the casts are safe.
	switch kind := *(*uint32)(unsafe.Pointer(&b[0])); kind {
	case kindConn:
		if len(b) < connFixedBytes {
			return nil, nil, fmt.Errorf("record size %d too small for connection record size %d", len(b), connFixedBytes)
		}
		if len(b) < connRecordBytes {
			n := int((*ConnRecord)(unsafe.Pointer(&b[0])).EventsSeen)
			n = min(n, MaxConnEvents)
			if len(b) < connFixedBytes+n*connEventBytes {
				return nil, nil, fmt.Errorf("connection record of %d bytes too short for its %d events", len(b), n)
			}
			if cap(b) < connRecordBytes {
				return nil, nil, fmt.Errorf("buffer capacity %d too small to decode a connection record (%d)", cap(b), connRecordBytes)
			}
			short := len(b)
			b = b[:connRecordBytes]
			clear(b[short:])
		}
		return (*ConnRecord)(unsafe.Pointer(&b[0])), nil, nil
	case kindOrphan:
		if len(b) < int(unsafe.Sizeof(OrphanRecord{})) {
			return nil, nil, fmt.Errorf("record size %d too small for orphan record size %d", len(b), unsafe.Sizeof(OrphanRecord{}))
		}
		return nil, (*OrphanRecord)(unsafe.Pointer(&b[0])), nil
	default:
		return nil, nil, fmt.Errorf("unknown record kind %d", kind)
	}
}

// FoldedResets counts resets the kernel sent for no socket at all (a
// closed port) and counted instead of sending a record each: those of one
// kind, from one local address and port to one peer address, for one
// reason, within one window (see [WithResetFolding]). The first of each
// window was sent as an orphan record, with its 4-tuple; these are the
// rest.
type FoldedResets struct {
	// Tuple names the kind: the local end, the peer's address, the
	// network namespace. Its Dport is 0: the peer's ports vary.
	Tuple Tuple
	// Reason is the kernel's reset reason (ResetReasonUnknown before 6.10).
	Reason uint32
	// Count is how many were folded; FirstNs and LastNs are the boot-clock
	// times of the first and the last of them.
	Count           uint64
	FirstNs, LastNs uint64
}

// FoldedConns counts refused connects the kernel counted instead of
// sending a record each: those of one kind (one process, from one local
// address to one remote address and port, with the same kinds and number
// of events), within one window (see [WithResetFolding]). The first of
// each window was sent as a connection record; of the rest, First is the
// first as it ended, and Count says how many there were, First included.
type FoldedConns struct {
	Count  uint32
	LastNs uint64 // when the last of them ended, boot clock
	First  ConnRecord
}
