package exporter

import (
	"net/netip"
	"syscall"
	"time"

	"github.com/tcpspan/tcpspan/conn"
)

// Folding under back-pressure. When the export queue is full, a span would
// be dropped. In the storms this agent exists to explain (a forwarder's
// refused upstream connects, tens of thousands a second) the spans that do
// not fit are alike: the same process, the same peer, the same diagnosis.
// So instead of dropping one, the exporter folds it into a storm span of
// its kind (tcpspan.storm.count, as the tracker does for orphans), sent once
// the kind's window has passed and the queue has room. Nothing changes
// while the backend keeps up; when it does not, what it cannot take is
// still accounted for, by kind, in a few spans.

// foldWindow is how long connections of one kind are folded into one span
// before it is sent: the tracker's window for orphans.
const foldWindow = conn.DefaultStormWindow

// maxFolds bounds the kinds folded at once; beyond it spans are dropped
// (and counted) as before. Each holds a copy of its first connection and
// up to 1024 peer addresses (conn.StormTally): about 40 KB at most.
const maxFolds = 256

// foldKey says which connections are "of the same kind" for folding: the
// same process and service, side, local and remote ends (without the
// ephemeral port: a client's local port, a server's peer), and the same
// kinds of event and what Diagnose's verdict depends on besides (the first
// reset's kind and state, the first errno, the first reasons), so that
// the diagnosis is the same without being written for each.
type foldKey struct {
	res        resourceKey
	owner      uint32
	netns      uint32
	side       conn.Side
	orphan     bool
	local      netip.AddrPort
	remote     netip.AddrPort
	kinds      uint32
	reset      conn.EventKind
	resetState conn.State
	errno      syscall.Errno
	rstReason  string
	dropReason string
}

func foldKeyOf(c *conn.Connection, res resourceKey) foldKey {
	k := foldKey{res: res, owner: c.Owner.PID, netns: c.Netns, side: c.Side, orphan: c.Orphan,
		local: c.Local, remote: c.Remote}
	switch {
	case c.Orphan || c.Side == conn.SideServer:
		// Many peers, one local end: a listener's port, or the port
		// that orphans of one kind share.
		k.remote = netip.AddrPort{}
	case c.Side == conn.SideClient:
		// One peer, from many ephemeral ports.
		k.local = netip.AddrPortFrom(c.Local.Addr(), 0)
	}
	for i := range c.Events {
		e := &c.Events[i]
		k.kinds |= 1 << e.Kind
		if (e.Kind == conn.EventRSTSent || e.Kind == conn.EventRSTReceived) && k.reset == 0 {
			k.reset, k.resetState = e.Kind, e.State
		}
		switch {
		case e.Kind == conn.EventRSTSent && k.rstReason == "":
			k.rstReason = e.Reason
		case e.Kind == conn.EventDrop && k.dropReason == "":
			k.dropReason = e.Reason
		case e.Kind == conn.EventError && k.errno == 0:
			k.errno = e.Errno
		}
	}
	return k
}

// fold is one kind of connection being folded: the first one, kept as the
// example, and the totals. Its span's ids are chosen when it opens, so
// that a later connection its process closes after one of these failures
// can link to it (causeOf) before it is sent.
type fold struct {
	c        conn.Connection // the first, copied: the tracker reuses its memory
	closer   conn.Close
	tally    conn.StormTally
	res      resourceKey
	isErr    bool // Diagnose's verdict, the same for all of them
	tid      traceID
	sid      spanID
	cause    spanLink // the link to its cause, if hasCause
	hasCause bool
	until    time.Time // when the window closes (wall clock)
}

// foldLocked folds c, which the full queue cannot take, into the fold of
// its kind, opening one if there is room. It reports whether c was
// folded; if not, the caller drops it. e.mu is held.
func (e *Exporter) foldLocked(c *conn.Connection, res resourceKey) bool {
	k := foldKeyOf(c, res)
	f, ok := e.folds[k]
	if !ok {
		if len(e.folds) >= maxFolds {
			return false
		}
		_, _, isErr := Diagnose(c)
		f = &fold{c: *c, res: res, isErr: isErr, until: time.Now().Add(foldWindow)}
		f.c.Events = append([]conn.Event(nil), c.Events...)
		f.c.Requests = append([]conn.Request(nil), c.Requests...)
		if c.Closer != nil {
			f.closer = *c.Closer
			f.c.Closer = &f.closer
		}
		f.c.Storm = nil
		f.tid, f.sid = newIDs()
		if l, ok := e.causeOf(c, isErr); ok {
			f.cause = spanLink{trace: l.trace, span: l.span, attrs: closedAfterFailure}
			f.hasCause = true
		}
		e.folds[k] = f
		// The first is the example of the fold's span: it is recorded
		// as that span, the others as folded (Stats.Folded).
		e.recorded.Add(1)
	} else {
		e.folded.Add(1)
	}
	if s := c.Storm; s != nil {
		f.tally.Merge(s) // a tracker storm the queue could not take either
	} else {
		f.tally.Add(c.Events, c.Start, c.End, c.Remote.Addr(), c.ISN)
	}
	if f.isErr && c.Side == conn.SideClient && c.Owner.PID != 0 {
		// The fold's span stands for this failure: link to it.
		e.rememberFailure(c.Owner.PID, failure{trace: f.tid, span: f.sid, end: c.End.UnixNano()})
	}
	return true
}

// flushFoldsLocked sends the folds whose window closed by now (all of
// them if all is set) as storm spans, as far as the batch takes them: up
// to maxStormOverflow past its size, or without limit if all is set (at
// Shutdown). Folds that do not fit stay, and go on folding. e.mu is held.
func (e *Exporter) flushFoldsLocked(now time.Time, all bool) {
	for k, f := range e.folds {
		if !all && now.Before(f.until) {
			continue
		}
		if !all && e.cur.spans >= e.cfg.maxBatch && !e.pushLocked() && e.cur.spans >= e.cfg.maxBatch+maxStormOverflow {
			return
		}
		delete(e.folds, k)
		c := &f.c
		if st := &f.tally.Storm; st.Count > 1 {
			c.Storm = st
			c.Start, c.End = st.First, st.Last
		}
		errType, desc, isErr := Diagnose(c)
		links := e.links[:0]
		if f.hasCause {
			links = append(links, f.cause)
		}
		links = appendStormSample(links, c.Storm)
		e.appendLocked(c, errType, desc, isErr, f.res, f.tid, f.sid, links)
		e.links = links[:0]
	}
}

// appendLocked encodes c's span, under the resource of res, into the
// batch being filled, and hands the batch over once full. e.mu is held.
func (e *Exporter) appendLocked(c *conn.Connection, errType, desc string, isErr bool, res resourceKey,
	tid traceID, sid spanID, links []spanLink) {
	g := e.cur.group(e.resourceLocked(res))
	g.spans = e.enc.appendConn(g.spans, e.mapper, c, errType, desc, isErr, tid, sid, links)
	e.appendedLocked(g)
}

// appendedLocked counts a span just encoded into g, in the batch being
// filled, and hands the batch over once full. e.mu is held.
func (e *Exporter) appendedLocked(g *group) {
	g.n++
	if e.cur.spans == 0 {
		e.cur.started = time.Now()
	}
	e.cur.spans++
	if e.cur.spans >= e.cfg.maxBatch {
		e.pushLocked() // if the queue is full, the next span retries
	}
}
