package main

import (
	"bytes"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tcpspan/tcpspan/conn"
)

var t0 = time.Date(2026, 12, 4, 18, 0, 0, 0, time.UTC)

// refusedAt is a connect() to 127.0.0.1:port refused, from client port
// from, ending at t0 plus ms milliseconds.
func refusedAt(ms int, from, port uint16) *conn.Connection {
	end := t0.Add(time.Duration(ms) * time.Millisecond)
	owner := conn.Process{PID: 1838, Comm: "rstorm"}
	return &conn.Connection{
		Side: conn.SideClient, Network: "ipv4",
		Local:  netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), from),
		Remote: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port),
		Start:  end.Add(-50 * time.Microsecond), End: end, Owner: owner,
		Events: []conn.Event{
			{Time: end, Kind: conn.EventRSTReceived, State: conn.StateSynSent},
			{Time: end, Kind: conn.EventError, Errno: syscall.ECONNREFUSED, State: conn.StateSynSent},
		},
		FinalState: conn.StateClose,
	}
}

// cleanAt is a clean client connection to 127.0.0.1:80 from port from.
func cleanAt(ms int, from uint16) *conn.Connection {
	end := t0.Add(time.Duration(ms) * time.Millisecond)
	return &conn.Connection{
		Side: conn.SideClient, Network: "ipv4",
		Local:  netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), from),
		Remote: netip.MustParseAddrPort("127.0.0.1:80"),
		Start:  end.Add(-time.Millisecond), End: end, Owner: conn.Process{PID: 7, Comm: "curl"},
		FinalState: conn.StateClose, BytesSent: 78, BytesReceived: 512,
	}
}

func lines(out string) []string {
	var ls []string
	for _, l := range strings.Split(out, "\n") {
		if l != "" && !strings.HasPrefix(l, " ") && !strings.Contains(l, " connections") {
			ls = append(ls, l) // connection lines, not the summary's
		}
	}
	return ls
}

// A storm of refused connects prints its first line as it comes and one
// line for the rest, not a line each.
func TestTerminalFoldsAStorm(t *testing.T) {
	var out bytes.Buffer
	view := newTerminal(&out, false, 0, 0)
	for i := range 1000 {
		view.print(refusedAt(i/2, uint16(20000+i), 9))
	}
	if got := lines(out.String()); len(got) != 1 || !strings.Contains(got[0], "connection refused") ||
		!strings.Contains(got[0], "127.0.0.1:20000 -> 127.0.0.1:9") {
		t.Fatalf("before the window closed: %q, want the first line alone", got)
	}
	view.summary(0, nil)
	got := lines(out.String())
	want := "18:00:00.499  … 999 more in 499ms from 1 peer: connection refused: RST received (ECONNREFUSED) from 127.0.0.1:9  |  client 127.0.0.1 -> 127.0.0.1:9  rstorm[1838]"
	if len(got) != 2 || got[1] != want {
		t.Fatalf("lines:\n%s\nwant the first, then\n%s", strings.Join(got, "\n"), want)
	}
	if !strings.Contains(out.String(), "1000 connections, 1000 tcp.refused") {
		t.Errorf("the summary does not count every connection:\n%s", out.String())
	}
}

// Kinds fold apart; a kind's window closes at the first connection after
// it, whose line follows the kind's; a lone fellow is printed in full.
func TestTerminalFoldWindows(t *testing.T) {
	var out bytes.Buffer
	view := newTerminal(&out, false, 0, 0)
	view.print(refusedAt(0, 30001, 9))
	view.print(refusedAt(10, 30002, 9))  // folded: the only one
	view.print(refusedAt(20, 30003, 10)) // another port: another kind
	view.print(refusedAt(30, 30004, 10))
	view.print(refusedAt(40, 30005, 10))
	view.print(refusedAt(1500, 30006, 9)) // after both windows
	got := lines(out.String())
	want := []string{
		"18:00:00.000  connection refused: RST received (ECONNREFUSED) from 127.0.0.1:9  |  client 127.0.0.1:30001 -> 127.0.0.1:9  rstorm[1838]  50µs",
		"18:00:00.020  connection refused: RST received (ECONNREFUSED) from 127.0.0.1:10  |  client 127.0.0.1:30003 -> 127.0.0.1:10  rstorm[1838]  50µs",
		"18:00:00.010  connection refused: RST received (ECONNREFUSED) from 127.0.0.1:9  |  client 127.0.0.1:30002 -> 127.0.0.1:9  rstorm[1838]  50µs",
		"18:00:00.040  … 2 more in 20ms from 1 peer: connection refused: RST received (ECONNREFUSED) from 127.0.0.1:10  |  client 127.0.0.1 -> 127.0.0.1:10  rstorm[1838]",
		"18:00:01.500  connection refused: RST received (ECONNREFUSED) from 127.0.0.1:9  |  client 127.0.0.1:30006 -> 127.0.0.1:9  rstorm[1838]  50µs",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("lines:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The agent's ticker ends a window with no connection after it.
	view.print(refusedAt(1600, 30007, 9))
	view.print(refusedAt(1700, 30008, 9))
	view.print(refusedAt(1800, 30009, 9))
	view.flush(t0.Add(2 * time.Second)) // the window runs to 2.5 s
	if l := lines(out.String()); len(l) != 5 {
		t.Errorf("before the window closed: %q", l[len(l)-1])
	}
	view.flush(t0.Add(2500 * time.Millisecond))
	if l := lines(out.String()); len(l) != 6 || !strings.HasPrefix(l[5], "18:00:01.800  … 3 more in 300ms") {
		t.Errorf("after the ticker: %q", l[len(l)-1])
	}
}

// Clean connections print only with -v, and fold there too.
func TestTerminalCleanLines(t *testing.T) {
	for _, verbose := range []bool{false, true} {
		var out bytes.Buffer
		view := newTerminal(&out, verbose, 0, 0)
		for i := range 50 {
			view.print(cleanAt(i, uint16(40000+i)))
		}
		view.summary(0, nil)
		got := lines(out.String())
		switch {
		case !verbose && len(got) != 0:
			t.Errorf("without -v: %q", got)
		case verbose && (len(got) != 2 || !strings.Contains(got[0], "ok  |  client 127.0.0.1:40000 -> 127.0.0.1:80  curl[7]") ||
			!strings.Contains(got[1], "… 49 more in 49ms from 1 peer: ok  |  client 127.0.0.1 -> 127.0.0.1:80  curl[7]")):
			t.Errorf("with -v: %q", got)
		}
	}
}

// The summary counts what a storm of orphans stands for, not one each, so
// that it compares with the kernel's counters (nstat's TcpOutRsts).
func TestTerminalSummaryCountsStorms(t *testing.T) {
	var out bytes.Buffer
	view := newTerminal(&out, false, 0, 0)
	end := t0.Add(time.Second)
	storm := &conn.Connection{
		Side: conn.SideServer, Network: "ipv4", Orphan: true,
		Local: netip.MustParseAddrPort("127.0.0.1:9"), Remote: netip.MustParseAddrPort("127.0.0.1:50000"),
		Start: t0, End: end,
		Events: []conn.Event{{Time: t0, Kind: conn.EventRSTSent, Reason: "NO_SOCKET", State: conn.StateClose}},
		Storm:  &conn.Storm{Count: 4211, Peers: 1, First: t0, Last: end},
	}
	storm.Storm.Events[conn.EventRSTSent] = 4211
	view.print(storm)
	view.print(refusedAt(0, 20000, 9))
	view.summary(0, nil)
	for _, want := range []string{"4212 connections, 1 tcp.refused, 4211 tcp.rst_sent", "      4211 rst_sent NO_SOCKET", "         1 rst_received"} {
		if !strings.Contains(out.String(), want+"\n") {
			t.Errorf("summary without %q:\n%s", want, out.String())
		}
	}
	if l := lines(out.String()); len(l) != 2 || !strings.Contains(l[0], "4211 such in 1s from 1 peer") {
		t.Errorf("lines: %q", l)
	}
}

// By default the view fits 100 columns: a long line goes on under its
// time stamp, with the same words as the one line -wide prints.
func TestTerminalFits100Columns(t *testing.T) {
	overflow := &conn.Connection{
		Side: conn.SideServer, Network: "ipv4", Orphan: true,
		Local:  netip.MustParseAddrPort("127.0.0.1:92"),
		Remote: netip.MustParseAddrPort("127.0.0.1:51234"),
		Start:  t0, End: t0.Add(7 * time.Second), Owner: conn.Process{PID: 812, Comm: "rinetd"},
		Events: []conn.Event{
			{Time: t0, Kind: conn.EventACKOverflow, State: conn.StateListen, Backlog: 6, MaxBacklog: 5},
			{Time: t0.Add(time.Second), Kind: conn.EventACKOverflow, State: conn.StateListen, Backlog: 6, MaxBacklog: 5},
			{Time: t0.Add(7 * time.Second), Kind: conn.EventRSTSent, Reason: "TCP_FLAGS", State: conn.StateListen},
		},
	}
	conns := []*conn.Connection{refusedAt(0, 30001, 9), overflow, cleanAt(10, 40000)}
	render := func(width int) string {
		var out bytes.Buffer
		view := newTerminal(&out, true, width, 0)
		view.header(5 * time.Second)
		for _, c := range conns {
			view.print(c)
		}
		// A summary line as long as a storm's.
		view.summary(18005, &conn.Stats{Connections: 13524, Orphans: 86, Storms: 21, OrphansFolded: 13601})
		return out.String()
	}
	wide, narrow := render(0), render(defaultWidth)
	longest := 0
	for _, l := range strings.Split(wide, "\n") {
		longest = max(longest, utf8.RuneCountInString(l))
	}
	if longest <= defaultWidth {
		t.Fatalf("no line of the wide view is longer than %d columns: nothing to wrap\n%s", defaultWidth, wide)
	}
	for _, l := range strings.Split(narrow, "\n") {
		if n := utf8.RuneCountInString(l); n > defaultWidth {
			t.Errorf("%d columns: %q", n, l)
		}
		if strings.HasPrefix(l, "  ") && !strings.HasPrefix(l, "              ") && !strings.HasPrefix(l, "  =") &&
			!strings.HasPrefix(l, "    ") {
			t.Errorf("a continuation not under the text: %q", l)
		}
	}
	// The same words; a wrapped line's second line replaces the "|".
	words := func(s string) string { return strings.Join(strings.Fields(strings.ReplaceAll(s, "  |  ", " ")), " ") }
	if words(narrow) != words(wide) {
		t.Errorf("wrapped:\n%s\nwide:\n%s", narrow, wide)
	}
	t.Logf("\n%s", narrow)
}

// Lines wait for the order window, then come in the order of their time
// stamps, whatever the order their connections were printed in; the
// summary prints what still waits.
func TestTerminalKeepsTimeOrder(t *testing.T) {
	var out bytes.Buffer
	view := newTerminal(&out, false, 0, time.Second)
	for i, ms := range []int{500, 100, 300, 1400} {
		view.print(refusedAt(ms, uint16(30001+i), uint16(9+i))) // each its own kind: no folding
	}
	if got := lines(out.String()); len(got) != 0 {
		t.Fatalf("printed before the order window: %q", got)
	}
	view.flush(t0.Add(1300 * time.Millisecond)) // stamped up to 0.3 s
	got := lines(out.String())
	if len(got) != 2 || !strings.HasPrefix(got[0], "18:00:00.100") || !strings.HasPrefix(got[1], "18:00:00.300") {
		t.Fatalf("after 1.3 s: %q, want the lines of 0.1 s and 0.3 s, in order", got)
	}
	view.summary(0, nil)
	got = lines(out.String())
	var stamps []string
	for _, l := range got {
		stamps = append(stamps, l[:12])
	}
	if strings.Join(stamps, " ") != "18:00:00.100 18:00:00.300 18:00:00.500 18:00:01.400" {
		t.Errorf("lines stamped %v, want time order", stamps)
	}
}
