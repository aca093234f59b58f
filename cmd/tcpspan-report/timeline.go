package main

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tcpspan/tcpspan/internal/jaegerapi"
)

// A timeline draws the spans of one example connection on one time axis:
// a lane per span (this end, the other end, linked connections and the
// application's spans), a bar from its start to its end, and a marker per
// event at its true time. It is laid out here and drawn as inline SVG by
// the page's template.
type timeline struct {
	Width, Height int
	Lanes         []laneBox
	Ticks         []tick
	Events        []eventRow // every event of every lane, in time order
}

// lane is one span of an example, and why it is there.
type lane struct {
	span *jaegerapi.Span
	role string // "this end", "the other end", ...
}

type laneBox struct {
	SpanID, TraceID, Role, Title, Subtitle string
	Error                                  bool
	Y, BarX, BarW, BarY                    int
	Markers                                []marker
	Labels                                 []label
}

type marker struct {
	X, Y           int
	Event, Class   string
	Tooltip, Short string
}

type label struct {
	X, Y int
	Text string
}

type tick struct {
	X, Y1, Y2 int
	Text      string
}

type eventRow struct {
	Offset, Lane, Event, Class, Details string
	t                                   time.Time
}

const (
	tlWidth    = 1040
	tlLabelW   = 250 // the lanes' titles, left of the plot
	tlPlotX0   = tlLabelW + 14
	tlPlotX1   = tlWidth - 24
	tlBarH     = 14
	tlLabelRow = 14
	tlCharW    = 6.2 // an estimate of one character at the labels' size
)

// eventClass sorts events into a few colours: the handshake and state
// changes, the process acting (accept, close), resets sent and received,
// drops and overflows, retransmits, errors.
func eventClass(name string) string {
	switch name {
	case "tcp.syn", "tcp.state":
		return "ev-state"
	case "tcp.accept", "tcp.close":
		return "ev-process"
	case "tcp.rst_sent":
		return "ev-rst-sent"
	case "tcp.rst_received":
		return "ev-rst-received"
	case "tcp.syn_overflow", "tcp.ack_overflow", "tcp.drop":
		return "ev-drop"
	case "tcp.retransmit", "tcp.synack_retransmit":
		return "ev-retransmit"
	case "tcp.error":
		return "ev-error"
	}
	return "ev-other"
}

// shortEvent is an event's label on the timeline: its name without the
// tcp. prefix, and the one attribute that says most about it.
func shortEvent(e jaegerapi.Event) string {
	name := strings.TrimPrefix(e.Name, "tcp.")
	a := func(k string) string {
		if v, ok := e.Attributes[k]; ok {
			return fmt.Sprint(v)
		}
		return ""
	}
	switch e.Name {
	case "tcp.state":
		if s := a("network.connection.state"); s != "" {
			return s
		}
	case "tcp.rst_sent", "tcp.rst_received":
		if r := a("tcpspan.reset.reason"); r != "" {
			return name + " " + r
		}
	case "tcp.close", "tcp.accept":
		if p := a("process.pid"); p != "" {
			return name + " pid " + p
		}
	case "tcp.syn_overflow", "tcp.ack_overflow":
		if b := a("tcpspan.listener.backlog"); b != "" {
			return name + " " + b + "/" + a("tcpspan.listener.backlog_max")
		}
	case "tcp.error":
		if n := a("tcpspan.errno"); n != "" {
			return n
		}
	case "tcp.drop":
		if r := a("tcpspan.drop.reason"); r != "" {
			return "drop " + r
		}
	}
	return name
}

func eventDetails(e jaegerapi.Event) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(e.Attributes)) {
		parts = append(parts, fmt.Sprintf("%s=%v", k, e.Attributes[k]))
	}
	return strings.Join(parts, " ")
}

// laneTitle names a lane's span by its attributes, not its name (names
// are low-cardinality and may not hold addresses).
func laneTitle(sp *jaegerapi.Span) (title, subtitle string) {
	kind := strings.ToLower(sp.Kind.String())
	if !isTCPSpan(sp) {
		return sp.Service + " · " + sp.Name, "application span · " + kind
	}
	if isDiagnosis(sp) {
		return sp.Service + " · diagnosis", sp.Name
	}
	title = sp.Service + " · " + kind
	if pid := attr(sp, "process.pid"); pid == "" {
		// The resource's process is the owner's, but for a socket-less
		// span with no owner it may be the agent's own: not shown.
		if rp, ok := sp.Resource["process.pid"]; ok && attr(sp, "tcpspan.orphan") != "true" {
			title += fmt.Sprintf("[%v]", rp)
		}
	} else {
		title += "[" + pid + "]"
	}
	local := attr(sp, "network.local.address") + ":" + attr(sp, "network.local.port")
	peer := attr(sp, "network.peer.address") + ":" + attr(sp, "network.peer.port")
	if sp.Kind == jaegerapi.SpanKindClient {
		subtitle = local + " → " + peer
	} else {
		subtitle = local + " ← " + peer
	}
	if n := sp.Connections(); n > 1 {
		subtitle += fmt.Sprintf(" · storm of %d", n)
	}
	return title, subtitle
}

// niceStep returns a round tick interval (1, 2 or 5 times a power of ten)
// that cuts d into at most about n parts.
func niceStep(d time.Duration, n int) time.Duration {
	raw := float64(d) / float64(n)
	if raw < 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if p*m >= raw {
			return time.Duration(p * m)
		}
	}
	return time.Duration(10 * p)
}

// fmtOffset writes a time offset compactly: +0, +850µs, +1.25ms, +2s.
func fmtOffset(d time.Duration) string {
	switch {
	case d == 0:
		return "+0"
	case d < time.Microsecond:
		return fmt.Sprintf("+%dns", d.Nanoseconds())
	case d < time.Millisecond:
		return "+" + trimFloat(float64(d)/float64(time.Microsecond)) + "µs"
	case d < time.Second:
		return "+" + trimFloat(float64(d)/float64(time.Millisecond)) + "ms"
	}
	return "+" + trimFloat(float64(d)/float64(time.Second)) + "s"
}

func trimFloat(f float64) string {
	s := fmt.Sprintf("%.3f", f)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// tlMarkerGap is the least distance between two markers' centres.
const tlMarkerGap = 11

// markerXs places the markers of events in time order: at their time,
// except that markers closer than tlMarkerGap move apart (right, then left
// at the plot's end), so that events of one instant are all seen, in order.
func markerXs(evs []jaegerapi.Event, x func(time.Time) int) []int {
	xs := make([]int, len(evs))
	for i, e := range evs {
		xs[i] = x(e.Time)
		if i > 0 && xs[i] < xs[i-1]+tlMarkerGap {
			xs[i] = xs[i-1] + tlMarkerGap
		}
	}
	limit := tlPlotX1 + 6
	for i := len(xs) - 1; i >= 0; i-- {
		if xs[i] > limit {
			xs[i] = limit
		}
		limit = xs[i] - tlMarkerGap
	}
	return xs
}

// layout places the lanes on one time axis. Event labels that would
// overlap move to the next row down.
func layout(lanes []lane) timeline {
	var t0, t1 time.Time
	see := func(t time.Time) {
		if t.IsZero() {
			return
		}
		if t0.IsZero() || t.Before(t0) {
			t0 = t
		}
		if t1.IsZero() || t.After(t1) {
			t1 = t
		}
	}
	for _, l := range lanes {
		see(l.span.Start)
		see(l.span.End)
		for _, e := range l.span.Events {
			see(e.Time)
		}
	}
	total := t1.Sub(t0)
	if total <= 0 {
		total = time.Microsecond
	}
	plotW := float64(tlPlotX1 - tlPlotX0)
	x := func(t time.Time) int {
		return tlPlotX0 + int(math.Round(float64(t.Sub(t0))/float64(total)*plotW))
	}

	tl := timeline{Width: tlWidth}
	y := 34 // below the axis labels
	step := niceStep(total, 8)
	for d := time.Duration(0); d <= total; d += step {
		tl.Ticks = append(tl.Ticks, tick{X: x(t0.Add(d)), Y1: 20, Text: fmtOffset(d)})
	}
	for _, l := range lanes {
		sp := l.span
		title, sub := laneTitle(sp)
		box := laneBox{SpanID: sp.SpanID, TraceID: sp.TraceID, Role: l.role, Title: title, Subtitle: sub,
			Error: sp.Status.Code == jaegerapi.StatusError, Y: y, BarY: y + 10}
		box.BarX = x(sp.Start)
		box.BarW = max(x(sp.End)-box.BarX, 2)
		evs := slices.Clone(sp.Events)
		sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time.Before(evs[j].Time) })
		xs := markerXs(evs, x)
		var rowEnd []int // per label row, where its last label ends
		for i, e := range evs {
			mx := xs[i]
			short := shortEvent(e)
			box.Markers = append(box.Markers, marker{X: mx, Y: box.BarY + tlBarH/2, Event: e.Name, Class: eventClass(e.Name),
				Short: short, Tooltip: fmt.Sprintf("%s %s  %s", fmtOffset(e.Time.Sub(t0)), e.Name, eventDetails(e))})
			w := int(float64(len([]rune(short)))*tlCharW) + 10
			lx := mx - 4
			if lx+w > tlWidth {
				lx = tlWidth - w
			}
			row := 0
			for row < len(rowEnd) && rowEnd[row] > lx {
				row++
			}
			if row == len(rowEnd) {
				rowEnd = append(rowEnd, 0)
			}
			rowEnd[row] = lx + w
			box.Labels = append(box.Labels, label{X: lx, Y: box.BarY + tlBarH + 13 + row*tlLabelRow, Text: short})
			tl.Events = append(tl.Events, eventRow{Offset: fmtOffset(e.Time.Sub(t0)), Lane: title, Event: e.Name,
				Class: eventClass(e.Name), Details: eventDetails(e), t: e.Time})
		}
		tl.Lanes = append(tl.Lanes, box)
		y = box.BarY + tlBarH + 10 + max(len(rowEnd), 1)*tlLabelRow + 12
	}
	tl.Height = y
	for i := range tl.Ticks {
		tl.Ticks[i].Y2 = y
	}
	sort.SliceStable(tl.Events, func(i, j int) bool { return tl.Events[i].t.Before(tl.Events[j].t) })
	return tl
}
