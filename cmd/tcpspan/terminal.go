package main

import (
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/tcpspan/tcpspan/conn"
	"github.com/tcpspan/tcpspan/container"
	"github.com/tcpspan/tcpspan/exporter"
)

// terminal prints finished connections, one line each, diagnosis first,
// and a summary of what it saw when the agent stops.
//
// A storm prints one line per kind a second, not one per connection,
// which no one could read: the first of a kind as it comes, then one line
// for the others of its kind that ended within lineFoldWindow of it (or
// that other itself, if it was the only one).
type terminal struct {
	mu      sync.Mutex
	w       io.Writer
	verbose bool
	width   int // wrap lines at this many columns; 0: never
	// containers names owners' containers; nil names none.
	containers *container.Owners
	printed    uint64

	// order is how long lines wait to be printed in the order of their
	// time stamps (a connection's end); 0 prints them as they come.
	order   time.Duration
	pending []pendingLine

	connections uint64
	errorTypes  map[string]uint64 // connections by error.type
	events      map[string]uint64 // kernel events by kind and reason
	folds       map[lineKey]*lineFold
	nextDue     time.Time // the earliest window end among folds
}

// lineFoldWindow is how long the lines of one kind are folded after the
// first is printed: the tracker's window for orphans.
const lineFoldWindow = conn.DefaultStormWindow

// maxLineFolds bounds the kinds folded at once; past it lines print as
// they come.
const maxLineFolds = 1024

// lineKey says which lines read alike: the same verdict (error type, the
// first reset's and drop's reasons), side and owner, and the same ends but
// for the port that changes from one connection to the next (a client's
// own, a server's peer's).
type lineKey struct {
	errorType  string
	problem    bool
	rstReason  string
	dropReason string
	side       conn.Side
	owner      uint32
	local      netip.AddrPort
	remote     netip.AddrPort
}

func lineKeyOf(c *conn.Connection, errorType string, problem bool) lineKey {
	k := lineKey{errorType: errorType, problem: problem, side: c.Side, owner: c.Owner.PID, local: c.Local, remote: c.Remote}
	switch c.Side {
	case conn.SideClient:
		k.local = netip.AddrPortFrom(c.Local.Addr(), 0)
	case conn.SideServer:
		k.remote = netip.AddrPort{}
	}
	if e := c.First(conn.EventRSTSent); e != nil {
		k.rstReason = e.Reason
	}
	if e := c.First(conn.EventDrop); e != nil {
		k.dropReason = e.Reason
	}
	return k
}

// lineFold is a kind whose first line was printed, and what followed it.
type lineFold struct {
	first  time.Time       // the printed first's end
	until  time.Time       // first plus lineFoldWindow
	kind   string          // what the kind's lines say, for the summary line
	one    string          // the line of the only one folded, printed if no other comes
	folded conn.StormTally // the ones folded since: count, last end, peers
}

// defaultWidth is the terminal view's width unless -wide.
const defaultWidth = 100

// defaultOrder is how long the view holds lines to print them in time
// order: connections' records come within milliseconds of their end.
const defaultOrder = time.Second

// pendingLine is a line waiting for the ones stamped before it.
type pendingLine struct {
	at   time.Time
	text string
}

// newTerminal returns a view that wraps its lines at width columns (0:
// one line per connection, however long) and holds them for order to
// print them in time order (0: as they come).
func newTerminal(w io.Writer, verbose bool, width int, order time.Duration) *terminal {
	return &terminal{w: w, verbose: verbose, width: width, order: order, errorTypes: map[string]uint64{}, events: map[string]uint64{},
		folds: map[lineKey]*lineFold{}}
}

// header says what the lines are, and when they come: a connection is
// printed when it ends, so a long one follows shorter ones that began
// after it, and a socket-less one comes after orphanIdle without events.
func (t *terminal) header(orphanIdle time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	what := "connection with a problem"
	if t.verbose {
		what = "connection"
	}
	if t.order > 0 {
		fmt.Fprintf(t.w, "# one %s per line when it ends, stamped with its end, in time order within %s;\n", what, t.order)
		fmt.Fprintf(t.w, "# one without a socket comes %s after its last event, out of order\n", orphanIdle)
		return
	}
	fmt.Fprintf(t.w, "# one %s per line, printed when it ends, stamped with its end:\n", what)
	fmt.Fprintf(t.w, "# a long one follows shorter, later ones; one without a socket comes %s after its last event\n", orphanIdle)
}

// emit writes one line stamped at, wrapped at t.width: the diagnosis
// first, then side, ends and owner, continued under the diagnosis; with
// t.order, once the lines stamped before it had time to come. t.mu is
// held.
func (t *terminal) emit(at time.Time, line string) {
	if t.order <= 0 {
		fmt.Fprintln(t.w, wrap(line, t.width))
		return
	}
	t.pending = append(t.pending, pendingLine{at: at, text: line})
}

// release prints, in time order, the pending lines stamped order before
// now or earlier (all of them if all is set). t.mu is held.
func (t *terminal) release(now time.Time, all bool) {
	slices.SortStableFunc(t.pending, func(a, b pendingLine) int { return a.at.Compare(b.at) })
	n := 0
	for n < len(t.pending) && (all || !t.pending[n].at.After(now.Add(-t.order))) {
		fmt.Fprintln(t.w, wrap(t.pending[n].text, t.width))
		n++
	}
	t.pending = append(t.pending[:0], t.pending[n:]...)
}

// indent lines a wrapped line's continuation up under the text after the
// time stamp ("15:04:05.000  ").
const indent = "              "

// wrap breaks a line longer than width columns: at the "  |  " between
// the diagnosis and the connection's ends first, then at spaces, each
// continuation indented. Width 0 leaves it whole.
func wrap(line string, width int) string {
	if width <= 0 || utf8.RuneCountInString(line) <= width {
		return line
	}
	head, tail, split := strings.Cut(line, "  |  ")
	out := wrapWords(head, width, indent+"  ")
	if split {
		out = append(out, wrapWords(indent+tail, width, indent+"  ")...)
	}
	return strings.Join(out, "\n")
}

// wrapWords breaks s at spaces into lines of at most width columns (a
// word longer than that stays whole), continuations prefixed by cont.
func wrapWords(s string, width int, cont string) []string {
	var out []string
	for utf8.RuneCountInString(s) > width {
		cut := -1
		for i, r := range s {
			if utf8.RuneCountInString(s[:i]) > width {
				break
			}
			if r == ' ' && strings.TrimSpace(s[:i]) != "" && utf8.RuneCountInString(s[:i]) > len(cont) {
				cut = i
			}
		}
		if cut < 0 {
			break
		}
		out = append(out, strings.TrimRight(s[:cut], " "))
		s = cont + strings.TrimLeft(s[cut:], " ")
	}
	return append(out, s)
}

func (t *terminal) print(c *conn.Connection) {
	errorType, diagnosis, isError := exporter.Diagnose(c)
	t.mu.Lock()
	defer t.mu.Unlock()
	n := uint64(1)
	if c.Storm != nil {
		n = uint64(c.Storm.Count) // the tracker's storm of alike orphans or refused connects
	}
	t.connections += n
	if isError {
		t.errorTypes[errorType] += n
	}
	for i := range c.Events {
		e := &c.Events[i]
		key := e.Kind.String()
		switch e.Kind {
		case conn.EventRSTSent, conn.EventDrop:
			key += " " + e.Reason
		case conn.EventRSTReceived, conn.EventSYNOverflow, conn.EventACKOverflow, conn.EventRetransmit:
		default:
			continue
		}
		if c.Storm == nil {
			t.events[key]++
		} else if c.First(e.Kind) == e {
			// A storm's totals, under its example's reasons: the
			// orphans of a storm share their first reset's and drop's.
			t.events[key] += uint64(c.Storm.EventCount(e.Kind))
		}
	}
	problem := isError || c.Problem()
	if !problem && !t.verbose {
		return
	}
	t.flushLocked(c.End, false)
	if c.Storm != nil {
		// The tracker's storm of orphans: already one line a second.
		t.printed++
		t.emit(c.End, t.line(c, diagnosis))
		return
	}
	k := lineKeyOf(c, errorType, problem)
	f, ok := t.folds[k]
	if !ok {
		t.printed++
		t.emit(c.End, t.line(c, diagnosis))
		if len(t.folds) < maxLineFolds {
			until := c.End.Add(lineFoldWindow)
			t.folds[k] = &lineFold{first: c.End, until: until, kind: t.kindText(c, diagnosis, k)}
			if len(t.folds) == 1 || until.Before(t.nextDue) {
				t.nextDue = until
			}
		}
		return
	}
	if f.folded.Storm.Count == 0 {
		f.one = t.line(c, diagnosis)
	}
	f.folded.Add(c.Events, c.Start, c.End, c.Remote.Addr(), c.ISN)
}

// flush prints the folds whose window has passed by now. The agent calls
// it every second, so that the end of a storm shows without waiting for
// the next connection.
func (t *terminal) flush(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.flushLocked(now, false)
	t.release(now, false)
}

// flushLocked prints the folds whose window passed by now (all of them if
// all is set), in the order their windows close, and forgets them: the
// next connection of such a kind opens a new window. t.mu is held.
func (t *terminal) flushLocked(now time.Time, all bool) {
	if len(t.folds) == 0 || !all && now.Before(t.nextDue) {
		return
	}
	var due []lineKey
	t.nextDue = time.Time{}
	for k, f := range t.folds {
		switch {
		case all || !now.Before(f.until):
			due = append(due, k)
		case t.nextDue.IsZero() || f.until.Before(t.nextDue):
			t.nextDue = f.until
		}
	}
	slices.SortFunc(due, func(a, b lineKey) int { return t.folds[a].until.Compare(t.folds[b].until) })
	for _, k := range due {
		f := t.folds[k]
		delete(t.folds, k)
		switch st := &f.folded.Storm; st.Count {
		case 0:
		case 1:
			t.printed++
			t.emit(st.Last, f.one)
		default:
			t.printed++
			t.emit(st.Last, fmt.Sprintf("%s  … %d more in %s from %s: %s", st.Last.Format("15:04:05.000"), st.Count,
				st.Last.Sub(f.first).Round(time.Millisecond), plural(int(st.Peers), "peer"), f.kind))
		}
	}
}

// kindText is what a fold's summary line says of its kind: the first's
// diagnosis (or what a clean line says), side, owner and the ends the kind
// shares (a changing port left out).
func (t *terminal) kindText(c *conn.Connection, diagnosis string, k lineKey) string {
	var b strings.Builder
	writeWhat(&b, c, diagnosis, endText(k.local), endText(k.remote), t.containerOf(c))
	return b.String()
}

// endText is an end of a kind: address and port, the address alone when
// the port changes, or "*" when both do.
func endText(ap netip.AddrPort) string {
	switch {
	case !ap.IsValid():
		return "*"
	case ap.Port() == 0:
		return ap.Addr().String()
	}
	return ap.String()
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

// containerOf returns the short id of the container of c's owner, or "".
func (t *terminal) containerOf(c *conn.Connection) string {
	if t.containers == nil {
		return ""
	}
	return t.containers.Of(c.Owner.PID, c.Owner.Comm, c.OwnerCgroup).Short()
}

// line renders one connection: time, diagnosis (or "ok"), then who and where.
func (t *terminal) line(c *conn.Connection, diagnosis string) string {
	var b strings.Builder
	b.WriteString(c.End.Format("15:04:05.000"))
	b.WriteString("  ")
	writeWhat(&b, c, diagnosis, c.Local.String(), c.Remote.String(), t.containerOf(c))
	fmt.Fprintf(&b, "  %s", c.End.Sub(c.Start).Round(10e3))
	if c.BytesSent+c.BytesReceived > 0 {
		fmt.Fprintf(&b, "  tx %dB rx %dB", c.BytesSent, c.BytesReceived)
	}
	if c.Midlife {
		b.WriteString("  (seen mid-life)")
	}
	return b.String()
}

// writeWhat writes a line's diagnosis (or "ok"), side, ends and owner, with
// the owner's container (ctr, a short id) if it has one.
func writeWhat(b *strings.Builder, c *conn.Connection, diagnosis, local, remote, ctr string) {
	switch {
	case diagnosis != "":
		b.WriteString(diagnosis)
	case c.Retransmits > 0:
		fmt.Fprintf(b, "%d retransmits", c.Retransmits)
	default:
		b.WriteString("ok")
	}
	b.WriteString("  |  ")
	arrow := "->"
	if c.Side != conn.SideClient {
		arrow = "<-"
	}
	fmt.Fprintf(b, "%s %s %s %s", c.Side, local, arrow, remote)
	if c.Owner.PID != 0 {
		fmt.Fprintf(b, "  %s", c.Owner)
	}
	if ctr != "" {
		fmt.Fprintf(b, " container %s", ctr)
	}
}

// summary prints what the terminal saw, for comparison with the kernel's
// own counters (nstat). cleanInKernel is the clean connections the kernel
// side counted without sending them. With the tracker's counts, a second
// line adds the total up from the agent's stopped log line, whose
// "connections" are those with a socket only.
func (t *terminal) summary(cleanInKernel uint64, tracker *conn.Stats) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.flushLocked(time.Time{}, true)
	t.release(time.Time{}, true)
	// Long lines wrap at the view's width, continued with an indent.
	put := func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		if t.width > 0 {
			line = strings.Join(wrapWords(line, t.width, "      "), "\n")
		}
		fmt.Fprintln(t.w, line)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d connections", t.connections+cleanInKernel)
	for _, k := range slices.Sorted(maps.Keys(t.errorTypes)) {
		fmt.Fprintf(&b, ", %d %s", t.errorTypes[k], k)
	}
	fmt.Fprintln(t.w)
	put("%s", b.String())
	if tracker != nil {
		// A storm span is one orphan emitted for the orphans_folded, or
		// one connection for the conns_folded.
		put("  = %d with a socket + %d without + %d folded into %s + %d clean, kernel-counted",
			tracker.Connections-tracker.ConnStorms+tracker.ConnsFolded, tracker.Orphans-tracker.Storms,
			tracker.OrphansFolded, plural(int(tracker.Storms), "storm"), cleanInKernel)
		put("    (log: connections=%d with conn_storms=%d, conns_folded=%d, orphans=%d with storms=%d, orphans_folded=%d, clean_in_kernel=%d)",
			tracker.Connections, tracker.ConnStorms, tracker.ConnsFolded, tracker.Orphans, tracker.Storms, tracker.OrphansFolded, cleanInKernel)
	} else if cleanInKernel > 0 {
		put("  of which %d clean, counted in the kernel", cleanInKernel)
	}
	for _, k := range slices.Sorted(maps.Keys(t.events)) {
		put("  %8d %s", t.events[k], k)
	}
}
