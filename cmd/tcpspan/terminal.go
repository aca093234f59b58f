package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/tcpspan/tcpspan/conn"
	"github.com/tcpspan/tcpspan/exporter"
)

// terminal prints finished connections, one line each, diagnosis first,
// and a summary of what it saw when the agent stops.
type terminal struct {
	w       io.Writer
	verbose bool
	printed uint64

	connections uint64
	errorTypes  map[string]uint64 // connections by error.type
	events      map[string]uint64 // kernel events by kind and reason
}

func newTerminal(w io.Writer, verbose bool) *terminal {
	return &terminal{w: w, verbose: verbose, errorTypes: map[string]uint64{}, events: map[string]uint64{}}
}

func (t *terminal) print(c *conn.Connection) {
	errorType, diagnosis, isError := exporter.Diagnose(c)
	t.connections++
	if isError {
		t.errorTypes[errorType]++
	}
	for _, e := range c.Events {
		switch e.Kind {
		case conn.EventRSTSent, conn.EventDrop:
			t.events[e.Kind.String()+" "+e.Reason]++
		case conn.EventRSTReceived, conn.EventSYNOverflow, conn.EventACKOverflow, conn.EventRetransmit:
			t.events[e.Kind.String()]++
		}
	}
	if !isError && !c.Problem() && !t.verbose {
		return
	}
	t.printed++
	fmt.Fprintln(t.w, line(c, diagnosis))
}

// line renders one connection: time, diagnosis (or "ok"), then who and where.
func line(c *conn.Connection, diagnosis string) string {
	var b strings.Builder
	b.WriteString(c.End.Format("15:04:05.000"))
	b.WriteString("  ")
	switch {
	case diagnosis != "":
		b.WriteString(diagnosis)
	case c.Retransmits > 0:
		fmt.Fprintf(&b, "%d retransmits", c.Retransmits)
	default:
		b.WriteString("ok")
	}
	b.WriteString("  |  ")
	arrow := "->"
	if c.Side != conn.SideClient {
		arrow = "<-"
	}
	fmt.Fprintf(&b, "%s %s %s %s", c.Side, c.Local, arrow, c.Remote)
	if c.Owner.PID != 0 {
		fmt.Fprintf(&b, "  %s", c.Owner)
	}
	fmt.Fprintf(&b, "  %s", c.End.Sub(c.Start).Round(10e3))
	if c.BytesSent+c.BytesReceived > 0 {
		fmt.Fprintf(&b, "  tx %dB rx %dB", c.BytesSent, c.BytesReceived)
	}
	if c.Midlife {
		b.WriteString("  (seen mid-life)")
	}
	return b.String()
}

// summary prints what the terminal saw, for comparison with the kernel's
// own counters (nstat). cleanInKernel is the clean connections the kernel
// side counted without sending them.
func (t *terminal) summary(cleanInKernel uint64) {
	fmt.Fprintf(t.w, "\n%d connections", t.connections+cleanInKernel)
	if cleanInKernel > 0 {
		fmt.Fprintf(t.w, " (%d clean, counted in the kernel)", cleanInKernel)
	}
	for _, k := range slices.Sorted(maps.Keys(t.errorTypes)) {
		fmt.Fprintf(t.w, ", %d %s", t.errorTypes[k], k)
	}
	fmt.Fprintln(t.w)
	for _, k := range slices.Sorted(maps.Keys(t.events)) {
		fmt.Fprintf(t.w, "  %8d %s\n", t.events[k], k)
	}
}
