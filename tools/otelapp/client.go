package main

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// result is one request, as the client prints it: one JSON line.
type result struct {
	TraceID string `json:"trace_id"`
	// SpanID is the otelhttp client span's, read back from the traceparent
	// header that went out (its parent-id field).
	SpanID     string `json:"span_id"`
	RootSpanID string `json:"root_span_id"`
	Status     int    `json:"status"`
	Error      string `json:"error"`
	// LocalAddr is the local end of the TCP connection used, from
	// [httptrace.ClientTrace.GotConn]; empty when no connection was had.
	LocalAddr string `json:"local_addr"`
}

type resultKey struct{}

// recorder sits below otelhttp's transport and notes, in the request's
// [result], the span context that the traceparent header carries.
type recorder struct{ base http.RoundTripper }

func (t recorder) RoundTrip(r *http.Request) (*http.Response, error) {
	if res, ok := r.Context().Value(resultKey{}).(*result); ok {
		sc := trace.SpanContextFromContext(propagator.Extract(context.Background(), propagation.HeaderCarrier(r.Header)))
		if sc.IsValid() {
			res.SpanID = sc.SpanID().String()
		}
	}
	return t.base.RoundTrip(r)
}

// runClient makes n sequential GET requests, each in a trace of its own,
// prints one [result] line for each, and flushes the spans. Failed requests
// are results, not errors.
func runClient(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	rawURL := fs.String("url", "", "`URL` to GET")
	n := fs.Int("n", 1, "number of requests")
	keepalive := fs.Bool("keepalive", false, "reuse one connection (default: a new connection per request)")
	timeout := fs.Duration("timeout", 2*time.Second, "timeout of each request")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *rawURL == "" {
		return usageErrorf("client: -url is required; %s", usage)
	}
	if u, err := url.Parse(*rawURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageErrorf("client: -url %q: want a URL such as http://127.0.0.1:8080/; %s", *rawURL, usage)
	}
	if *n < 1 {
		return usageErrorf("client: -n %d: want at least 1; %s", *n, usage)
	}
	if *timeout <= 0 {
		return usageErrorf("client: -timeout %v: want a positive duration; %s", *timeout, usage)
	}

	ctx := context.Background()
	tp, err := newTracerProvider(ctx, "otelapp-client")
	if err != nil {
		return err
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.Proxy = nil // straight to the server: the connection is what tcpspan sees
	base.DisableKeepAlives = !*keepalive
	client := &http.Client{
		Transport: otelhttp.NewTransport(recorder{base},
			otelhttp.WithTracerProvider(tp),
			otelhttp.WithPropagators(propagator)),
		Timeout: *timeout,
	}
	tracer := tp.Tracer("github.com/tcpspan/tcpspan/tools/otelapp")
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false) // keep "->" in error messages readable
	for range *n {
		res := get(ctx, client, tracer, *rawURL)
		if err := enc.Encode(res); err != nil {
			return err
		}
	}
	client.CloseIdleConnections()
	return shutdownTracing(tp)
}

// get makes one request inside a new root span.
func get(ctx context.Context, client *http.Client, tracer trace.Tracer, rawURL string) *result {
	ctx, span := tracer.Start(ctx, "client request",
		trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindInternal))
	defer span.End()
	res := &result{
		TraceID:    span.SpanContext().TraceID().String(),
		RootSpanID: span.SpanContext().SpanID().String(),
	}
	ctx = context.WithValue(ctx, resultKey{}, res)
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			res.LocalAddr = info.Conn.LocalAddr().String()
		},
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err == nil {
		var resp *http.Response
		resp, err = client.Do(req)
		if err == nil {
			res.Status = resp.StatusCode
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	if err != nil {
		res.Error = err.Error()
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	return res
}
