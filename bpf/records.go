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

// Connection flags (ConnRecord.Flags).
const (
	FlagMidlife           = uint8(tcpspanConnFlagsCONN_MIDLIFE)
	FlagOwnerFromListener = uint8(tcpspanConnFlagsCONN_OWNER_FROM_LISTENER)
	FlagEndUnseen         = uint8(tcpspanConnFlagsCONN_END_UNSEEN)
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
)

// MaxConnEvents is how many events a ConnRecord holds (MAX_CONN_EVENTS).
const MaxConnEvents = len(ConnRecord{}.Events)

// Record kinds (the first 4 bytes of every record).
const (
	kindConn   = uint32(tcpspanRecordKindRECORD_CONN)
	kindOrphan = uint32(tcpspanRecordKindRECORD_ORPHAN)
)

// Decode interprets a raw ring-buffer sample. Exactly one of the results is
// non-nil on success. They alias b: copy what must outlive b.
func Decode(b []byte) (*ConnRecord, *OrphanRecord, error) {
	if len(b) < 4 {
		return nil, nil, fmt.Errorf("record of %d bytes is too short for its kind", len(b))
	}
	// Records start 8-byte aligned in the ring buffer, so the casts are safe.
	switch kind := *(*uint32)(unsafe.Pointer(&b[0])); kind {
	case kindConn:
		if len(b) < int(unsafe.Sizeof(ConnRecord{})) {
			return nil, nil, fmt.Errorf("record size %d too small for connection record size %d", len(b), unsafe.Sizeof(ConnRecord{}))
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
