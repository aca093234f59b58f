package exporter

import (
	"bytes"
	"context"
	"encoding/hex"
	"testing"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/tcpspan/tcpspan/conn"
)

// The derivation is a contract with every other agent, and with anyone who
// computes a trace id from a capture (semconv/README.md, "Correlation"):
// these vectors were computed apart from this code, with Python's hashlib.
func TestHandshakeIDVectors(t *testing.T) {
	for _, tc := range []struct {
		isn               conn.ISN
		trace, own, other string
		side              conn.Side
		orphan            bool
	}{
		{conn.ISN{Client: 0x01020304, Server: 0xa0b0c0d0, HasClient: true, HasServer: true},
			"0e42c7a712d625d30dd3e137e0f48ec7", "fd921fdfcddff3c9", "a2584459b3382ad1", conn.SideClient, false},
		{conn.ISN{Client: 0x01020304, Server: 0xa0b0c0d0, HasClient: true, HasServer: true},
			"0e42c7a712d625d30dd3e137e0f48ec7", "a2584459b3382ad1", "fd921fdfcddff3c9", conn.SideServer, false},
		{conn.ISN{Client: 0x01020304, HasClient: true},
			"a3aab7deb61279f5efc32902bd8cd1e3", "4f38383f5434747f", "0454b7dae9715eea", conn.SideClient, false},
		{conn.ISN{Client: 0x01020304, HasClient: true},
			"a3aab7deb61279f5efc32902bd8cd1e3", "0454b7dae9715eea", "4f38383f5434747f", conn.SideServer, true},
	} {
		c := &conn.Connection{Side: tc.side, Orphan: tc.orphan, ISN: tc.isn}
		tid, sid, peer, derived := connIDs(c)
		if !derived {
			t.Fatalf("%+v: ids not derived", tc.isn)
		}
		if got := hex.EncodeToString(tid[:]); got != tc.trace {
			t.Errorf("%s %+v: trace id %s, want %s", tc.side, tc.isn, got, tc.trace)
		}
		if got := hex.EncodeToString(sid[:]); got != tc.own {
			t.Errorf("%s %+v: span id %s, want %s", tc.side, tc.isn, got, tc.own)
		}
		if peer.trace != tid || hex.EncodeToString(peer.span[:]) != tc.other {
			t.Errorf("%s %+v: peer link %x/%x, want %s/%s", tc.side, tc.isn, peer.trace, peer.span, tc.trace, tc.other)
		}
	}
}

// A client-only handshake never shares a trace with a full one whose
// server number happens to be zero, nor does an orphan share a span id
// with a server socket of the same handshake.
func TestHandshakeIDForms(t *testing.T) {
	half := conn.ISN{Client: 7, HasClient: true}
	full := conn.ISN{Client: 7, Server: 0, HasClient: true, HasServer: true}
	th, _, _, _ := connIDs(&conn.Connection{Side: conn.SideClient, ISN: half})
	tf, _, _, _ := connIDs(&conn.Connection{Side: conn.SideClient, ISN: full})
	if th == tf {
		t.Error("client-only and full forms share a trace id")
	}
	_, server, _, _ := connIDs(&conn.Connection{Side: conn.SideServer, ISN: full})
	_, orphan, _, _ := connIDs(&conn.Connection{Side: conn.SideServer, Orphan: true, ISN: full})
	if server == orphan {
		t.Error("a server socket and an orphan of one handshake share a span id")
	}
	for _, c := range []*conn.Connection{
		{Side: conn.SideUnknown, ISN: full, Midlife: true},                  // side unknown
		{Side: conn.SideClient, Midlife: true},                              // handshake unseen
		{Side: conn.SideServer, Orphan: true, Storm: &conn.Storm{Count: 9}}, // stands for many
	} {
		t1, _, _, d := connIDs(c)
		t2, _, _, _ := connIDs(c)
		if d || t1 == t2 {
			t.Errorf("%+v: ids derived (%v) or repeated; want random ones", c, d)
		}
	}
}

// A storm links to its sample, at most conn.StormSample connections.
func TestStormLinksSample(t *testing.T) {
	var tally conn.StormTally
	for i := range 20 {
		tally.Add(nil, at(0), at(1), noSocket().Remote.Addr(), conn.ISN{Client: uint32(i), HasClient: i%2 == 0})
	}
	links := appendStormSample(nil, &tally.Storm)
	if len(links) != conn.StormSample {
		t.Fatalf("%d links, want %d", len(links), conn.StormSample)
	}
	want := conn.ISN{Client: 2, HasClient: true}
	if l, _ := isnLink(want); links[1].trace != l.trace || links[1].span != l.span {
		t.Errorf("second link %x, want the client span of %+v", links[1].trace, want)
	}
}

// A connection that fails while carrying a request puts its diagnosis into
// the request's trace, under the span that sent it, and links to it from
// its own span; a request that was answered gets nothing extra.
func TestDiagnosisInTheRequestsTrace(t *testing.T) {
	e, mem := newTestExporter(t)
	failed := rinetdAbort("TCP_ABORT_ON_CLOSE")
	failed.ISN = conn.ISN{Client: 1, Server: 2, HasClient: true, HasServer: true}
	answered := conn.Request{Time: at(1), TraceID: [16]byte{1}, SpanID: [8]byte{1}}
	inFlight := conn.Request{Time: at(2), TraceID: [16]byte{2}, SpanID: [8]byte{2}, InFlight: true}
	failed.Requests, failed.RequestsSeen = []conn.Request{answered, inFlight}, 2
	clean := cleanServer()
	clean.Requests, clean.RequestsSeen = []conn.Request{{Time: at(1), TraceID: [16]byte{3}, SpanID: [8]byte{3}}}, 1
	e.Export(failed)
	e.Export(clean)
	e.Shutdown(context.Background())

	spans := mem.spans()
	if len(spans) != 3 {
		t.Fatalf("%d spans, want the two connections' and one diagnosis", len(spans))
	}
	var connSpan, diag gotSpan
	for _, s := range spans {
		switch {
		case bytes.Equal(s.TraceId, inFlight.TraceID[:]):
			diag = s
		case s.Status.GetCode() == tracepb.Status_STATUS_CODE_ERROR:
			connSpan = s
		}
	}
	if diag.Span == nil || connSpan.Span == nil {
		t.Fatalf("no diagnosis span in the request's trace, or no error span: %v", spans)
	}
	if !bytes.Equal(diag.ParentSpanId, inFlight.SpanID[:]) || diag.Name != "TCP reset sent" ||
		diag.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || diag.Status.GetMessage() != connSpan.Status.GetMessage() {
		t.Errorf("diagnosis span %q parent %x status %v, want a child of %x, named TCP reset sent, with the connection's diagnosis %q",
			diag.Name, diag.ParentSpanId, diag.Status, inFlight.SpanID, connSpan.Status.GetMessage())
	}
	if !nanos(diag.StartTimeUnixNano).Equal(at(2)) || diag.EndTimeUnixNano != connSpan.EndTimeUnixNano {
		t.Errorf("diagnosis from %v to %d, want from the request (%v) to the connection's end", nanos(diag.StartTimeUnixNano), diag.EndTimeUnixNano, at(2))
	}
	if len(diag.Links) != 1 || !bytes.Equal(diag.Links[0].SpanId, connSpan.SpanId) || !bytes.Equal(diag.Links[0].TraceId, connSpan.TraceId) {
		t.Errorf("diagnosis links %v, want one to the connection span", diag.Links)
	}
	if resourceValue(diag, "service.name") != resourceValue(connSpan, "service.name") {
		t.Errorf("diagnosis under service %q, want the connection's %q", resourceValue(diag, "service.name"), resourceValue(connSpan, "service.name"))
	}
	// The connection span: a root, linked to its peer and both requests.
	if len(connSpan.ParentSpanId) != 0 {
		t.Errorf("connection span has a parent %x: it must never be under a request", connSpan.ParentSpanId)
	}
	var toRequests int
	for _, l := range connSpan.Links {
		if anyText(l.Attributes[0].Value) == "traceparent" {
			toRequests++
		}
	}
	if toRequests != 2 {
		t.Errorf("%d links to requests, want 2: %v", toRequests, connSpan.Links)
	}
}

// A connection that ends cleanly while its last request got no answer is a
// failure the application saw (EOF): the peer closed it first.
func TestUnansweredRequest(t *testing.T) {
	c := cleanClient()
	c.CloseInitiator = conn.InitiatorRemote
	c.Requests = []conn.Request{{Time: at(1), Sent: true, TraceID: [16]byte{1}, SpanID: [8]byte{1}, InFlight: true}}
	errType, desc, isErr := Diagnose(c)
	if !isErr || errType != "tcp.request_unanswered" || desc != "request sent, unanswered: "+c.Remote.String()+" closed the connection (FIN) first" {
		t.Errorf("Diagnose: %q %q %v", errType, desc, isErr)
	}
	if !c.Problem() {
		t.Error("an unanswered request is no problem: it would be sampled out")
	}
	c.Requests[0].InFlight = false
	if _, _, isErr := Diagnose(c); isErr || c.Problem() {
		t.Error("an answered request made the connection an error")
	}
}
