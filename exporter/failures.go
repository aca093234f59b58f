package exporter

import (
	"go.opentelemetry.io/otel/attribute"

	"github.com/tcpspan/tcpspan/conn"
	tcpsemconv "github.com/tcpspan/tcpspan/semconv"
)

// maxRecentFailures bounds the processes whose failed connections are
// remembered, failureHistory of each: 4096 × 520 bytes, about 2 MB, if that
// many processes fail connections within DefaultLinkWindow of one another.
const maxRecentFailures = 4096

// failureHistory is how many of a process's latest failed connections are
// remembered. The connection a process closes after a failure arrives when
// its socket is destroyed, which can be well after the close() (a FIN
// exchange, a late RST): a busy forwarder fails more connections in
// between, and its cause is not the last of them. In the rinetd storm of
// e2e/rinetd_test.go, 97% of such connections came within 8 failures of
// their cause and 98-99.6% within 16 (a few after more than 100); a reset
// inside close() always came right after its cause.
const failureHistory = 16

type failure struct {
	trace traceID
	span  spanID
	end   int64 // UnixNano; 0 for an empty slot
}

// failureRing holds one process's latest failed connections, in the order
// they were exported.
type failureRing struct {
	f    [failureHistory]failure
	next int // the slot the next failure takes
}

var closedAfterFailure = []attribute.KeyValue{tcpsemconv.TCPLinkReasonClosedAfterFailure}

// causeOf links a connection that its process closed with an error (say,
// a forwarder resetting its client) to the connection of the same process
// that failed just before its close() (its refused upstream connect): the
// cause of the cause. That is the latest of the process's failed
// connections that ended at or before the close(), and no more than
// [DefaultLinkWindow] before it. Connections arrive in the order the kernel
// finished them (the tracker keeps the ring buffer's order), so that failed
// connection is already known; those that ended after the close() are
// passed over.
func (e *Exporter) causeOf(c *conn.Connection, isErr bool) (failure, bool) {
	if !isErr || c.Side == conn.SideClient || c.Closer == nil || c.Closer.Time.IsZero() {
		return failure{}, false
	}
	h := e.failures[c.Closer.Process.PID]
	if h == nil {
		return failure{}, false
	}
	closed := c.Closer.Time.UnixNano()
	var best failure
	for _, f := range h.f {
		if f.end != 0 && f.end <= closed && f.end > best.end {
			best = f
		}
	}
	if best.end == 0 || closed-best.end > int64(DefaultLinkWindow) {
		return failure{}, false
	}
	return best, true
}

// rememberFailure records a failed connection of process pid, in place of
// its oldest one remembered.
func (e *Exporter) rememberFailure(pid uint32, f failure) {
	e.lastFailure = max(e.lastFailure, f.end)
	h := e.failures[pid]
	if h == nil {
		if len(e.failures) >= maxRecentFailures {
			e.forgetFailures()
		}
		if n := len(e.spareFailures); n > 0 {
			h = e.spareFailures[n-1]
			e.spareFailures[n-1] = nil
			e.spareFailures = e.spareFailures[:n-1]
			*h = failureRing{}
		} else {
			h = new(failureRing)
		}
		e.failures[pid] = h
	}
	h.f[h.next] = f
	h.next = (h.next + 1) % failureHistory
}

// forgetFailures makes room for processes: it forgets those whose latest
// failure is too old to be linked, or, if that frees less than a quarter
// of the room, all of them.
func (e *Exporter) forgetFailures() {
	for pid, h := range e.failures {
		latest := h.f[(h.next+failureHistory-1)%failureHistory].end
		if e.lastFailure-latest > int64(DefaultLinkWindow) {
			delete(e.failures, pid)
			e.spareFailures = append(e.spareFailures, h)
		}
	}
	if len(e.failures) > maxRecentFailures*3/4 {
		for pid, h := range e.failures {
			delete(e.failures, pid)
			e.spareFailures = append(e.spareFailures, h)
		}
	}
}
