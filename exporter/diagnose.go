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
// The primary diagnosis is chosen by the rule in semconv/README.md
// ("Which diagnosis leads"): an orphan's accept-queue overflow; else the
// error the application got while it held the socket, explained by the
// reset that caused it; else the first reset; else a dropped handshake;
// else an error reported after the application let go; else a request left
// unanswered. What happened after the leading cause is added as context.
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
	if e := appErrno(c); e != nil {
		if rst := resetCausing(c, e); rst != nil {
			errorType, description, isError = rstReceivedDiagnosis(c, rst)
		} else {
			errorType, description, isError = errnoDiagnosis(c, e)
		}
		return errorType, description + laterResets(c, e), isError
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

// appErrno returns the first error the kernel reported to the application
// while the application held the socket: before any process released it,
// and on a socket a process connected or accepted. Errors after that (the
// ECONNRESET a linger-0 close or a listener's close reports to no one) are
// not the application's.
func appErrno(c *conn.Connection) *conn.Event {
	if c.Orphan || c.OwnerFromListener {
		return nil
	}
	for i := range c.Events {
		e := &c.Events[i]
		switch {
		case e.Kind == conn.EventClose && e.Context == conn.ContextProcess:
			return nil
		case errnoEvent(e):
			return e
		}
	}
	return nil
}

// resetCausing returns the reset received that caused the error e: the
// kernel turns a reset into ECONNREFUSED, ECONNRESET or EPIPE by the state
// it finds the socket in (tcp_reset).
func resetCausing(c *conn.Connection, e *conn.Event) *conn.Event {
	switch e.Errno {
	case syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.EPIPE:
	default:
		return nil
	}
	var rst *conn.Event
	for i := range c.Events {
		r := &c.Events[i]
		if r.Time.After(e.Time) {
			break
		}
		if r.Kind == conn.EventRSTReceived && rst == nil {
			rst = r
		}
	}
	return rst
}

// laterResets tells the resets that came after the error e, the
// application's: the kernel's answers to packets that found the socket gone,
// or a peer's reset that came too late to matter.
func laterResets(c *conn.Connection, e *conn.Event) string {
	var b strings.Builder
	for i := range c.Events {
		r := &c.Events[i]
		if !r.Time.After(e.Time) || r.Kind != conn.EventRSTSent && r.Kind != conn.EventRSTReceived {
			continue
		}
		b.WriteString("; then, " + r.Time.Sub(e.Time).Round(time.Millisecond).String() + " later, ")
		if r.Kind == conn.EventRSTSent {
			b.WriteString("RST sent (" + reasonText(r.Reason) + "): " + rstSentCause(c, r))
		} else {
			b.WriteString("RST received from " + peer(c.Remote))
		}
		break // one is enough; the events hold the rest
	}
	return b.String()
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
	case rst.Context != conn.ContextProcess && !rst.NoSocket():
		b.WriteString(", then RST from listener (" + reasonText(rst.Reason) + ")")
	default:
		b.WriteString(", then RST sent (" + reasonText(rst.Reason) + "): " + rstSentCause(c, rst))
	}
	return b.String()
}

// rstSentCause says who sent the reset rst and how.
func rstSentCause(c *conn.Connection, rst *conn.Event) string {
	if rst.NoSocket() {
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
		if rst.Answer {
			return "sent by the kernel while processing a packet from " + peer(c.Remote) + inState(" in ", rst.State)
		}
		if releaseReason(rst.Reason) {
			// A release the kernel side does not tell (io_uring's close).
			return "sent by the kernel as a process released the socket" + inState(" in ", rst.State) +
				", by other means than close(), close_range(), dup2(), execve() or exit (io_uring, for one)"
		}
		return "sent by the kernel on its own, not answering a packet" + inState(", in ", rst.State)
	}
	return "sent to " + peer(c.Remote) + inState(" in ", rst.State) + " (acting context not reported)"
}

// releaseReason reports whether a reset reason is one that only a
// release of the socket gives.
func releaseReason(r string) bool {
	switch r {
	case "TCP_ABORT_ON_CLOSE", "TCP_ABORT_ON_LINGER", "TCP_DISCONNECT_WITH_DATA":
		return true
	}
	return false
}

// processCause names the process that caused the reset rst and how: the
// release (close(), exit, ...), the file descriptor and the bytes it left
// unread, or the listener it closed.
func processCause(c *conn.Connection, rst *conn.Event) string {
	who := actorName(c, rst.Process)
	release := rst.Release
	if release == conn.ReleaseNone {
		b := "sent by " + who
		if rst.Syscall != "" {
			b += " in " + rst.Syscall + "()"
		}
		return b
	}
	var cl *conn.Close
	if c.Closer != nil && c.Closer.Process.PID == rst.Process.PID {
		cl = c.Closer
	}
	if rst.ViaListener {
		what := "its listener " + localPort(c.Local)
		if rst.Queued > 0 {
			what += " with " + plural(uint64(rst.Queued), "connection") + " still queued"
		} else {
			what += " while this connection was still queued"
		}
		return releaseText(who, release, cl, "closed "+what, "closing "+what)
	}
	fd := rst.FD
	var unread uint32
	if cl != nil {
		unread = cl.UnreadBytes
		if fd < 0 {
			fd = cl.FD
		}
	}
	if fd < 0 {
		fd = closeFD(c, rst)
	}
	var b strings.Builder
	fdText := "the socket"
	if fd >= 0 {
		fdText = "fd " + strconv.Itoa(int(fd))
	}
	b.WriteString(releaseText(who, release, cl, "closed "+fdText, "closing "+fdText))
	if unread > 0 {
		b.WriteString(" with " + plural(uint64(unread), "byte") + " unread")
	}
	return b.String()
}

// releaseText says how who released a file: closed says what it did in
// the past tense ("closed fd 7"), closing the same as a participle, for a
// release that did it on the way ("killed by SIGKILL, closing fd 7").
func releaseText(who string, r conn.Release, cl *conn.Close, closed, closing string) string {
	switch r {
	case conn.ReleaseCloseRange:
		return who + " " + closed + " (close_range())"
	case conn.ReleaseDup:
		return who + " " + closed + " by dup2() onto its number"
	case conn.ReleaseExec:
		return who + " " + closed + " as close-on-exec in execve()"
	case conn.ReleaseExit:
		if cl != nil {
			if sig := cl.ExitSignal(); sig != 0 {
				return who + " was killed by " + signalName(sig) + ", " + closing
			}
			return who + " exited (status " + strconv.Itoa(cl.ExitStatus()) + "), " + closing
		}
		return who + " exited, " + closing
	}
	return who + " " + closed
}

// signalName returns a signal's name, such as "SIGKILL".
func signalName(s syscall.Signal) string {
	if n := unix.SignalName(s); n != "" {
		return n
	}
	return "signal " + strconv.Itoa(int(s))
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
		d := "connection timed out (ETIMEDOUT) waiting for " + peer(c.Remote) + inState(" in ", stateAt(c, e))
		if rst := keepaliveReset(c, e); rst != nil {
			d += ": keepalive probes went unanswered, and the kernel sent RST (" + reasonText(rst.Reason) + ")"
		} else if zeroWindow(c, e) {
			d += ": its receive window stayed closed (zero window), as if its application stopped reading"
		} else if n := retransmits(c); n > 0 {
			d += " after " + plural(uint64(n), "retransmit")
		}
		return tcpsemconv.ErrorTypeTimeout, d, true
	}
	return name, "error " + name + " (" + e.Errno.Error() + ") with " + peer(c.Remote) + inState(" in ", stateAt(c, e)), true
}

// stateAt returns the state the connection was in when the error e ended
// it. Since Linux 6.10 the kernel reports an error after it has moved the
// socket to CLOSE (tcp_done_with_error): the state it left is the one that
// timed out.
func stateAt(c *conn.Connection, e *conn.Event) conn.State {
	if e.State != conn.StateClose {
		return e.State
	}
	s := e.State
	for i := range c.Events {
		x := &c.Events[i]
		if x.Time.After(e.Time) {
			break
		}
		if x.Kind == conn.EventState && x.State == conn.StateClose && x.OldState != 0 {
			s = x.OldState
		}
	}
	return s
}

// zeroWindow reports whether the timeout e came while the peer's receive
// window was closed, in a connection that had carried data: the window
// probes were answered, with a window of zero, until the user timeout ran
// out.
func zeroWindow(c *conn.Connection, e *conn.Event) bool {
	switch stateAt(c, e) {
	case conn.StateEstablished, conn.StateCloseWait:
	default:
		return false
	}
	// The window is on the report of the error (not on the state change).
	for i := range c.Events {
		if r := &c.Events[i]; r.Kind == conn.EventError && r.Errno == e.Errno {
			return r.PeerWindow == 0
		}
	}
	return false
}

// keepaliveReset returns the reset the kernel sent on its own just before
// the timeout e, in an established connection with nothing to retransmit:
// the keepalive timer's (TCP_KEEPALIVE_TIMEOUT from Linux 6.10; before, the
// reason is not given, and the shape tells it).
func keepaliveReset(c *conn.Connection, e *conn.Event) *conn.Event {
	for i := range c.Events {
		r := &c.Events[i]
		if r.Time.After(e.Time) {
			break
		}
		if r.Kind != conn.EventRSTSent || r.Context != conn.ContextKernel || r.Answer {
			continue
		}
		if r.Reason == "TCP_KEEPALIVE_TIMEOUT" || (r.Reason == conn.ReasonUnknown && retransmits(c) == 0) {
			return r
		}
	}
	return nil
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
		if e := &c.Events[i]; errnoEvent(e) {
			return e
		}
	}
	return nil
}

// errnoEvent reports whether e carries an error of the socket: an error
// reported to the application, or the one it closed with.
func errnoEvent(e *conn.Event) bool {
	return e.Errno != 0 && (e.Kind == conn.EventError || e.Kind == conn.EventState && e.State == conn.StateClose)
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
