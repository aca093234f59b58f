package main

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpspan/tcpspan/internal/jaegerapi"
)

func TestReportGroupsByDiagnosis(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 7, 0, 0, 0, time.UTC)
	abort := func(pid, fd int) jaegerapi.Span {
		return jaegerapi.Span{Name: "TCP accept :92", Kind: jaegerapi.SpanKindServer, Service: "rinetd", Scope: tcpspanScope,
			Start: t0, End: t0.Add(time.Millisecond),
			Status:     jaegerapi.Status{Code: jaegerapi.StatusError, Message: "RST sent (TCP_ABORT_ON_CLOSE): rinetd[" + itoa(pid) + "] closed fd " + itoa(fd) + " with 18 bytes unread"},
			Attributes: map[string]any{"error.type": "tcp.rst_sent", "tcpspan.reset.reason": "TCP_ABORT_ON_CLOSE"},
			Events: []jaegerapi.Event{{Name: "tcp.close", Time: t0}, {Name: "tcp.rst_sent", Time: t0.Add(time.Microsecond),
				Attributes: map[string]any{"tcpspan.reset.reason": "TCP_ABORT_ON_CLOSE"}}}}
	}
	noSocket := func(storm int64) jaegerapi.Span {
		sp := jaegerapi.Span{Name: "TCP reset :9", Kind: jaegerapi.SpanKindServer, Service: "tcpspan", Scope: tcpspanScope, Start: t0, End: t0,
			Status:     jaegerapi.Status{Code: jaegerapi.StatusError, Message: "RST sent (NO_SOCKET): no socket on :9 for 127.0.0.1:4000"},
			Attributes: map[string]any{"error.type": "tcp.rst_sent", "tcpspan.reset.reason": "NO_SOCKET"},
			Events:     []jaegerapi.Event{{Name: "tcp.rst_sent", Time: t0, Attributes: map[string]any{"tcpspan.reset.reason": "NO_SOCKET"}}}}
		if storm > 0 {
			sp.Status.Message += "; " + itoa(int(storm)) + " such in 998ms from 1 peer"
			sp.Attributes["tcpspan.storm.count"] = storm
			sp.Attributes["tcpspan.storm.events.rst_sent"] = storm
		}
		return sp
	}
	spans := []jaegerapi.Span{abort(812, 7), abort(812, 9), abort(901, 5),
		{Name: "TCP connect", Kind: jaegerapi.SpanKindClient, Service: "curl", Scope: tcpspanScope, Start: t0, End: t0},
		noSocket(0), noSocket(4211),
		// An application's failed request, in a scope below tcpspan's.
		{Name: "client request", Kind: jaegerapi.SpanKindInternal, Service: "shop", Scope: tcpspanScope + "/tools/otelapp",
			Start: t0, End: t0, Status: jaegerapi.Status{Code: jaegerapi.StatusError, Message: "EOF"}}}
	var out bytes.Buffer
	report(&out, jaegerapi.Client{BaseURL: "http://127.0.0.1:16686"}, spans, t0, t0.Add(time.Minute),
		[]string{"tcp.rst_sent:TCP_ABORT_ON_CLOSE", "tcp.accept_queue_overflow"})
	text := out.String()
	for _, want := range []string{
		"7 spans, 5 with status Error (1 of them storms of alike connections)",
		"   4212  tcpspan  server  RST sent (NO_SOCKET): no socket on :N for N.N.N.N:N\n",
		"   4212  tcp.rst_sent NO_SOCKET",
		"      3  rinetd   server  RST sent (TCP_ABORT_ON_CLOSE): rinetd[N] closed fd N with N bytes unread",
		"      3  tcp.rst_sent TCP_ABORT_ON_CLOSE",
		"status ERROR: RST sent (TCP_ABORT_ON_CLOSE): rinetd[812] closed fd 7 with 18 bytes unread",
		"query.service_name=rinetd",
		"== example: error.type=tcp.accept_queue_overflow\n  (none in this window)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "shop") {
		t.Errorf("an application's span is counted as a connection:\n%s", text)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

const tcpspanScope = "github.com/tcpspan/tcpspan"

// Every bad input is one line and a non-zero exit.
func TestBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"-since", "0s"}, 2},
		{[]string{"-nope"}, 2},
		{[]string{"stray"}, 2},
		{[]string{"-html", "/nonexistent/dir/report.html"}, 2},
		{[]string{"-jaeger", "http://127.0.0.1:1", "-since", "1s"}, 1}, // nothing listens on port 1
	} {
		var out, errOut bytes.Buffer
		if code := run(c.args, &out, &errOut); code != c.code {
			t.Errorf("%v: exit %d, want %d", c.args, code, c.code)
		}
		if msg := errOut.String(); strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "tcpspan-report: ") || out.Len() != 0 {
			t.Errorf("%v: want one line on stderr and nothing on stdout, got %q and %q", c.args, msg, out.String())
		}
	}
}
