package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tcpspan/tcpspan/internal/jaegerapi"
)

// An example's lanes: this end, the other end by its peer link, the
// connection it was closed after, the application's request (read from
// Jaeger as its own trace) and the diagnosis in that trace; and what a
// process name may hold is escaped.
func TestPageLanesAndEscaping(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 7, 0, 0, 0, time.UTC)
	link := func(trace, span, reason string) jaegerapi.Link {
		return jaegerapi.Link{TraceID: trace, SpanID: span, Attributes: map[string]any{"tcpspan.link.reason": reason}}
	}
	errStatus := func(msg string) jaegerapi.Status { return jaegerapi.Status{Code: jaegerapi.StatusError, Message: msg} }
	server := jaegerapi.Span{TraceID: "t1", SpanID: "s1", Kind: jaegerapi.SpanKindServer, Service: "<b>rinetd</b>", Scope: tcpspanScope,
		Start: t0, End: t0.Add(time.Millisecond), Status: errStatus("RST sent (TCP_ABORT_ON_CLOSE): <script>x</script>[812] closed fd 5"),
		Attributes: map[string]any{"error.type": "tcp.rst_sent", "tcpspan.reset.reason": "TCP_ABORT_ON_CLOSE"},
		Events: []jaegerapi.Event{
			{Name: "tcp.close", Time: t0.Add(500 * time.Microsecond)},
			{Name: "tcp.syn", Time: t0},
			{Name: "tcp.rst_sent", Time: t0.Add(500 * time.Microsecond), Attributes: map[string]any{"tcpspan.reset.reason": "TCP_ABORT_ON_CLOSE"}},
		},
		Links: []jaegerapi.Link{link("t1", "c1", "peer"), link("t2", "u1", "closed_after_failure"), link("app", "req", "traceparent")}}
	client := jaegerapi.Span{TraceID: "t1", SpanID: "c1", Kind: jaegerapi.SpanKindClient, Service: "wrk", Scope: tcpspanScope,
		Start: t0, End: t0.Add(2 * time.Millisecond), Status: errStatus("RST received (ECONNRESET) from 127.0.0.1:92 while ESTABLISHED"),
		Attributes: map[string]any{"error.type": "tcp.rst_received"}, Events: []jaegerapi.Event{{Name: "tcp.rst_received", Time: t0.Add(time.Millisecond)}}}
	upstream := jaegerapi.Span{TraceID: "t2", SpanID: "u1", Kind: jaegerapi.SpanKindClient, Service: "<b>rinetd</b>", Scope: tcpspanScope,
		Start: t0.Add(100 * time.Microsecond), End: t0.Add(200 * time.Microsecond), Status: errStatus("connection refused"),
		Attributes: map[string]any{"error.type": "tcp.refused"}}
	spans := []jaegerapi.Span{server, client, upstream}
	// The application's trace is not among the spans fetched: the page
	// asks Jaeger for it.
	appTrace := []jaegerapi.Span{
		{TraceID: "app", SpanID: "req", Service: "shop", Scope: "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp", Name: "HTTP GET",
			Start: t0, End: t0.Add(3 * time.Millisecond)},
		{TraceID: "app", SpanID: "diag", ParentSpanID: "req", Service: "<b>rinetd</b>", Scope: tcpspanScope, Name: "TCP reset sent",
			Start: t0, End: t0.Add(time.Millisecond), Attributes: map[string]any{"tcpspan.diagnosis.of": "server"},
			Links: []jaegerapi.Link{link("t1", "s1", "connection")}},
	}
	asked := map[string]int{}
	trace := func(id string) ([]jaegerapi.Span, error) {
		asked[id]++
		if id == "app" {
			return appTrace, nil
		}
		return nil, errors.New("no such trace")
	}
	s := summarize(spans, t0, t0.Add(time.Minute))
	p := buildPage(jaegerapi.Client{BaseURL: "http://127.0.0.1:16686"}, s, trace)
	var ex *htmlExample
	for i := range p.Examples {
		if p.Examples[i].SpanID == "s1" {
			ex = &p.Examples[i]
		}
	}
	if ex == nil || !ex.SideBySide {
		t.Fatalf("no side-by-side example of the reset: %+v", p.Examples)
	}
	var roles []string
	for _, l := range ex.Timeline.Lanes {
		roles = append(roles, l.SpanID+":"+l.Role)
	}
	want := "s1:this end c1:the other end u1:closed after this failure req:the application's request diag:diagnosis in the application's trace"
	if strings.Join(roles, " ") != want {
		t.Errorf("lanes %q, want %q", strings.Join(roles, " "), want)
	}
	if asked["app"] != 1 {
		t.Errorf("the application's trace was read %d times, want once", asked["app"])
	}
	var drawn []string
	for _, m := range ex.Timeline.Lanes[0].Markers {
		drawn = append(drawn, m.Event)
	}
	if strings.Join(drawn, " ") != "tcp.syn tcp.close tcp.rst_sent" {
		t.Errorf("markers %v, want the events in time order", drawn)
	}
	var out bytes.Buffer
	if err := writeHTML(&out, p); err != nil {
		t.Fatal(err)
	}
	page := out.String()
	for _, bad := range []string{"<script>", "<b>rinetd"} {
		if strings.Contains(page, bad) {
			t.Errorf("the page holds %q unescaped", bad)
		}
	}
	for _, need := range []string{"&lt;script&gt;", `data-span-id="c1"`, `class="event ev-rst-sent"`, "http://", "</html>"} {
		if !strings.Contains(page, need) {
			t.Errorf("the page lacks %q", need)
		}
	}
	// Self-contained: nothing is fetched (the only URL is the trace's link).
	for _, ref := range []string{"<script", "<link", "src=", "@import", "url("} {
		if strings.Contains(page, ref) {
			t.Errorf("the page refers to something outside it: %q", ref)
		}
	}
}
