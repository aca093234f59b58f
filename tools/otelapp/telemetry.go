package main

import (
	"cmp"
	"context"
	"fmt"
	"net/url"
	"os"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// OTLP protocols, as OTEL_EXPORTER_OTLP_PROTOCOL spells them.
const (
	protocolGRPC = "grpc"
	protocolHTTP = "http/protobuf"
)

// flushTimeout bounds the final flush, so that a missing collector costs a
// few seconds at exit rather than the exporters' minute of retries.
const flushTimeout = 5 * time.Second

// propagator is the W3C TraceContext propagator, used by both ends.
var propagator = propagation.TraceContext{}

// newTracerProvider builds a tracer provider that exports over OTLP as the
// standard environment variables say (see [newExporter]), and makes it and
// the W3C TraceContext propagator the global ones. defaultService names the service when OTEL_SERVICE_NAME (or
// service.name in OTEL_RESOURCE_ATTRIBUTES) does not.
func newTracerProvider(ctx context.Context, defaultService string) (*sdktrace.TracerProvider, error) {
	for _, name := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		if v := os.Getenv(name); v != "" {
			if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return nil, fmt.Errorf("%s=%q: want a URL such as http://127.0.0.1:4317", name, v)
			}
		}
	}
	exp, err := newExporter(ctx)
	if err != nil {
		return nil, err
	}
	// Later options win: the environment overrides the default name.
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(defaultService)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if exp != nil {
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagator)
	return tp, nil
}

// newExporter returns the OTLP exporter that the environment asks for, or
// nil for OTEL_TRACES_EXPORTER=none: spans are then still made, sampled and
// propagated, only not sent anywhere. OTEL_EXPORTER_OTLP_TRACES_PROTOCOL
// outranks OTEL_EXPORTER_OTLP_PROTOCOL, and grpc is the default. The
// exporters themselves read the endpoint, headers, timeout and TLS
// variables.
func newExporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	switch v := os.Getenv("OTEL_TRACES_EXPORTER"); v {
	case "", "otlp":
	case "none":
		return nil, nil
	default:
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: otelapp supports \"otlp\" and \"none\"", v)
	}
	protocol, name := protocolGRPC, ""
	for _, n := range []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"} {
		if v := os.Getenv(n); v != "" {
			protocol, name = v, n
		}
	}
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch protocol {
	case protocolGRPC:
		exp, err = otlptracegrpc.New(ctx)
	case protocolHTTP:
		exp, err = otlptracehttp.New(ctx)
	default:
		return nil, fmt.Errorf("%s=%q: otelapp supports %q and %q", name, protocol, protocolGRPC, protocolHTTP)
	}
	if err != nil {
		return nil, fmt.Errorf("otlp exporter: %w", err)
	}
	return exp, nil
}

// shutdownTracing flushes every span still queued and shuts tp down, within
// flushTimeout.
func shutdownTracing(tp *sdktrace.TracerProvider) error {
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	// One error is enough: once the flush has timed out, so has the shutdown.
	err := tp.ForceFlush(ctx)
	if serr := tp.Shutdown(ctx); err == nil {
		err = serr
	}
	if err != nil {
		endpoint := cmp.Or(os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"), "the SDK's default endpoint")
		return fmt.Errorf("spans not delivered to %s within %v: %w", endpoint, flushTimeout, err)
	}
	return nil
}
