package exporter

import (
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpspan/tcpspan/conn"
	tcpsemconv "github.com/tcpspan/tcpspan/semconv"
)

// Diagnose returns the status of the span of c. isError is true when a
// reset was sent or received, when the handshake was dropped (an orphan
// that overflowed the accept queue or lost a handshake packet) or refused,
// or when the application saw an error. errorType is then a low-cardinality
// error.type value (one of the semconv.ErrorType* constants, or an errno
// name such as "EPIPE"), and description a diagnosis a person can act on:
// what happened, who did it and why, as far as the kernel said. A reset
// sent in kernel context never names a process. For a clean connection
// Diagnose returns "", "", false.
//
// A storm (see [conn.Storm]) is diagnosed by its example, followed by the
// count, time and peers.
//
// The first cause in time wins, except that an orphan's accept-queue
// overflow outranks the reset that followed it: the overflow is the cause.
func Diagnose(c *conn.Connection) (errorType string, description string, isError bool) {
	errorType, description, isError = diagnose(c)
	if s := c.Storm; s != nil && isError {
		// The example's own peer is one of many: say so in the diagnosis.
		description += "; " + strconv.FormatUint(uint64(s.Count), 10) + " such in " +
			s.Last.Sub(s.First).Round(time.Millisecond).String() + " from " + plural(uint64(s.Peers), "peer")
	}
	return errorType, description, isError
}

func diagnose(c *conn.Connection) (errorType string, description string, isError bool) {
	if c.Orphan {
		if ov := firstOverflow(c); ov != nil {
			return tcpsemconv.ErrorTypeAcceptQueueOverflow, overflowDiagnosis(c, ov), true
		}
	}
	if rst := firstReset(c); rst != nil {
		if rst.Kind == conn.EventRSTSent {
			return tcpsemconv.ErrorTypeRSTSent, "RST sent (" + reasonText(rst.Reason) + "): " + rstSentCause(c, rst), true
		}
		return rstReceivedDiagnosis(c, rst)
	}
	if c.Orphan {
		if d := c.First(conn.EventDrop); d != nil {
			return tcpsemconv.ErrorTypeHandshakeDropped, dropDiagnosis(c, d), true
		}
		if n := synackRetransmits(c); n > 0 {
			return tcpsemconv.ErrorTypeHandshakeDropped, "handshake not completed: SYN-ACK to " +
				peer(c.Remote) + " retransmitted " + times(n) + " without an ACK", true
		}
	}
	if e := firstErrno(c); e != nil {
		return errnoDiagnosis(c, e)
	}
	if q := c.Unanswered(); q != nil {
		return tcpsemconv.ErrorTypeRequestUnanswered, unansweredDiagnosis(c), true
	}
	return "", "", false
}

// unansweredDiagnosis describes a connection that ended while it carried a
// request nothing answered: who closed it first.
func unansweredDiagnosis(c *conn.Connection) string {
	what := "request received"
	if c.Unanswered().Sent {
		what = "request sent"
	}
	switch c.CloseInitiator {
	case conn.InitiatorRemote:
		return what + ", unanswered: " + peer(c.Remote) + " closed the connection (FIN) first"
	case conn.InitiatorLocal:
		if cl := c.Closer; cl != nil && cl.Process.PID != 0 {
			return what + ", unanswered: " + cl.Process.String() + " closed the connection first"
		}
		return what + ", unanswered: this end closed the connection first"
	}
	return what + ", unanswered when the connection ended"
}

// overflowDiagnosis describes an orphan whose handshake the listener's full
// accept queue dropped, and what followed.
func overflowDiagnosis(c *conn.Connection, ov *conn.Event) string {
	var b strings.Builder
	b.WriteString("handshake dropped")
	if n := c.Count(conn.EventSYNOverflow) + c.Count(conn.EventACKOverflow); n > 1 {
		b.WriteString(" " + times(n))
	}
	b.WriteString(": accept queue of " + localPort(c.Local) + " full (")
	b.WriteString(strconv.FormatUint(uint64(ov.Backlog), 10) + "/" + strconv.FormatUint(uint64(ov.MaxBacklog), 10) + ")")
	rst := firstReset(c)
	switch {
	case rst == nil:
	case rst.Kind == conn.EventRSTReceived:
		b.WriteString(", then RST received from " + peer(c.Remote))
	case rst.Context != conn.ContextProcess && rst.Reason != "NO_SOCKET":
		b.WriteString(", then RST from listener (" + reasonText(rst.Reason) + ")")
	default:
		b.WriteString(", then RST sent (" + reasonText(rst.Reason) + "): " + rstSentCause(c, rst))
	}
	return b.String()
}

// rstSentCause says who sent the reset rst and how.
func rstSentCause(c *conn.Connection, rst *conn.Event) string {
	if rst.Reason == "NO_SOCKET" {
		return "no socket on " + localPort(c.Local) + " for " + peer(c.Remote)
	}
	switch rst.Context {
	case conn.ContextProcess:
		return processCause(c, rst)
	case conn.ContextKernel:
		switch rst.Reason {
		case "TCP_KEEPALIVE_TIMEOUT":
			return "sent by the kernel: keepalive probes to " + peer(c.Remote) + " went unanswered"
		case "TCP_ABORT_ON_MEMORY":
			return "sent by the kernel under memory pressure (too many orphaned sockets or out of memory)"
		}
		return "sent by the kernel while processing a packet from " + peer(c.Remote) + inState(" in ", rst.State)
	}
	return "sent to " + peer(c.Remote) + inState(" in ", rst.State) + " (acting context not reported)"
}

// processCause names the process that caused the reset rst, its syscall and
// file descriptor, and for a close() the bytes it left unread.
func processCause(c *conn.Connection, rst *conn.Event) string {
	who := actorName(c, rst.Process)
	closing := rst.Syscall == "close" ||
		rst.Syscall == "" && (rst.Reason == "TCP_ABORT_ON_CLOSE" || rst.Reason == "TCP_ABORT_ON_LINGER")
	fd := rst.FD
	var unread uint32
	if closing {
		if cl := c.Closer; cl != nil && cl.Process.PID == rst.Process.PID {
			unread = cl.UnreadBytes
			if fd < 0 {
				fd = cl.FD
			}
		}
		if fd < 0 {
			fd = closeFD(c, rst)
		}
	}
	var b strings.Builder
	if closing {
		b.WriteString(who + " closed ")
		if fd >= 0 {
			b.WriteString("fd " + strconv.Itoa(int(fd)))
		} else {
			b.WriteString("the socket")
		}
		if unread > 0 {
			b.WriteString(" with " + plural(uint64(unread), "byte") + " unread")
		}
		return b.String()
	}
	b.WriteString("sent by " + who)
	if rst.Syscall != "" {
		b.WriteString(" in " + rst.Syscall + "()")
	}
	if fd >= 0 {
		b.WriteString(" on fd " + strconv.Itoa(int(fd)))
	}
	return b.String()
}

// closeFD returns the fd of the last close() by the actor of rst before it,
// or -1.
func closeFD(c *conn.Connection, rst *conn.Event) int32 {
	fd := int32(-1)
	for i := range c.Events {
		e := &c.Events[i]
		if e == rst || e.Time.After(rst.Time) {
			break
		}
		if e.Kind == conn.EventClose && e.Context == conn.ContextProcess && e.Process.PID == rst.Process.PID {
			fd = e.FD
		}
	}
	return fd
}

// rstReceivedDiagnosis tells a refused connect from a reset of a
// connection that was under way.
func rstReceivedDiagnosis(c *conn.Connection, rst *conn.Event) (string, string, bool) {
	errno, refused := "", rst.State == conn.StateSynSent
	if e := firstErrno(c); e != nil {
		errno = " (" + errnoName(e.Errno) + ")"
		refused = refused || e.Errno == syscall.ECONNREFUSED
	}
	if refused {
		return tcpsemconv.ErrorTypeRefused, "connection refused: RST received" + errno + " from " + peer(c.Remote), true
	}
	return tcpsemconv.ErrorTypeRSTReceived, "RST received" + errno + " from " + peer(c.Remote) + inState(" while ", rst.State), true
}

// dropDiagnosis describes an orphan that lost handshake packets.
func dropDiagnosis(c *conn.Connection, d *conn.Event) string {
	what := "packet"
	if n := c.Count(conn.EventDrop); n > 1 {
		what = strconv.Itoa(n) + " packets"
	}
	return "handshake dropped: " + what + " from " + peer(c.Remote) + " to " + localPort(c.Local) +
		" dropped (" + dropReasonText(d.Reason) + ")"
}

// errnoDiagnosis describes an error the application saw with no reset to
// explain it.
func errnoDiagnosis(c *conn.Connection, e *conn.Event) (string, string, bool) {
	name := errnoName(e.Errno)
	switch e.Errno {
	case syscall.ECONNREFUSED:
		return tcpsemconv.ErrorTypeRefused, "connection refused (ECONNREFUSED) by " + peer(c.Remote), true
	case syscall.ETIMEDOUT:
		d := "connection timed out (ETIMEDOUT) waiting for " + peer(c.Remote) + inState(" in ", e.State)
		if n := retransmits(c); n > 0 {
			d += " after " + plural(uint64(n), "retransmit")
		}
		return tcpsemconv.ErrorTypeTimeout, d, true
	}
	return name, "error " + name + " (" + e.Errno.Error() + ") with " + peer(c.Remote) + inState(" in ", e.State), true
}

func firstOverflow(c *conn.Connection) *conn.Event {
	for i := range c.Events {
		if k := c.Events[i].Kind; k == conn.EventSYNOverflow || k == conn.EventACKOverflow {
			return &c.Events[i]
		}
	}
	return nil
}

func firstReset(c *conn.Connection) *conn.Event {
	for i := range c.Events {
		if k := c.Events[i].Kind; k == conn.EventRSTSent || k == conn.EventRSTReceived {
			return &c.Events[i]
		}
	}
	return nil
}

func firstErrno(c *conn.Connection) *conn.Event {
	for i := range c.Events {
		if e := &c.Events[i]; e.Kind == conn.EventError && e.Errno != 0 {
			return e
		}
	}
	return nil
}

// synackRetransmits returns the SYN-ACK retransmits of c: the highest count
// reported, or the number of events if none carries a count.
func synackRetransmits(c *conn.Connection) int {
	n, events := 0, 0
	for i := range c.Events {
		if e := &c.Events[i]; e.Kind == conn.EventSYNACKRetransmit {
			events++
			n = max(n, int(e.Count))
		}
	}
	return max(n, events)
}

// retransmits returns the socket's retransmit count, or the number of
// retransmit events if the count is missing.
func retransmits(c *conn.Connection) int {
	return max(int(c.Retransmits), c.Count(conn.EventRetransmit))
}

// reasonText renders a kernel reset reason, naming the kernel's limit when
// there is none: tcp_send_reset carries a reason from Linux 6.10.
func reasonText(r string) string {
	if r == "" || r == conn.ReasonUnknown {
		return "reason not reported: kernels before 6.10 give none"
	}
	return r
}

// dropReasonText renders a kernel drop reason (kfree_skb has them from
// Linux 5.17; before, no drop is reported at all).
func dropReasonText(r string) string {
	if r == "" || r == conn.ReasonUnknown {
		return "reason not reported by this kernel"
	}
	return r
}

// errnoName returns the symbolic name of e, such as "ECONNRESET".
func errnoName(e syscall.Errno) string {
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return "errno " + strconv.Itoa(int(e))
}

// actorName names a process as comm[pid], taking the comm from the owner or
// the closer of c when the event lacks it.
func actorName(c *conn.Connection, p conn.Process) string {
	if p.PID == 0 {
		return "a process"
	}
	if p.Comm == "" {
		switch {
		case c.Closer != nil && c.Closer.Process.PID == p.PID:
			p.Comm = c.Closer.Process.Comm
		case c.Owner.PID == p.PID:
			p.Comm = c.Owner.Comm
		}
	}
	if p.Comm == "" {
		return "pid " + strconv.FormatUint(uint64(p.PID), 10)
	}
	return p.Comm + "[" + strconv.FormatUint(uint64(p.PID), 10) + "]"
}

func peer(ap netip.AddrPort) string {
	if !ap.IsValid() {
		return "an unknown peer"
	}
	return ap.String()
}

func localPort(ap netip.AddrPort) string {
	return ":" + strconv.Itoa(int(ap.Port()))
}

func inState(prep string, s conn.State) string {
	if s == 0 {
		return ""
	}
	return prep + s.String()
}

func plural(n uint64, unit string) string {
	s := strconv.FormatUint(n, 10) + " " + unit
	if n != 1 {
		s += "s"
	}
	return s
}

func times(n int) string {
	if n == 1 {
		return "once"
	}
	return strconv.Itoa(n) + " times"
}
