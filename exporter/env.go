package exporter

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/tcpspan/tcpspan/internal/otlpwire"
)

// BaseResource is what every span's resource shares: host.name, the
// OTEL_RESOURCE_ATTRIBUTES of the agent's environment, and the SDK's
// identity. service.name and process.* are set per owning process.
func BaseResource(ctx context.Context) (*resource.Resource, error) {
	res, err := resource.New(ctx, resource.WithHost(), resource.WithTelemetrySDK(),
		resource.WithAttributes(attribute.String("telemetry.distro.name", "tcpspan")))
	if err != nil {
		return nil, fmt.Errorf("detect resource: %w", err)
	}
	// OTEL_RESOURCE_ATTRIBUTES, without its service.name, which is per process.
	env, err := resource.New(ctx, resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	var kept []attribute.KeyValue
	for _, kv := range env.Attributes() {
		if kv.Key != semconv.ServiceNameKey {
			kept = append(kept, kv)
		}
	}
	return resource.Merge(res, resource.NewSchemaless(kept...))
}

// OTLP is an OTLP trace exporter whose client the [Exporter] drives
// directly, with spans it has already encoded. It is also an ordinary SDK
// span exporter.
type OTLP struct {
	*otlptrace.Exporter
	client otlptrace.Client
}

// NewOTLP returns an OTLP span exporter ([*OTLP]) over protocol
// ([otlpwire.ProtocolGRPC] or [otlpwire.ProtocolHTTP]), configured, as the OpenTelemetry SDK
// does it, by the standard OTEL_EXPORTER_OTLP_* variables (endpoint,
// headers, timeout, TLS, compression), which the command has checked. It
// does not connect: an unreachable collector shows up as export errors,
// retried by the client.
func NewOTLP(ctx context.Context, protocol string) (sdktrace.SpanExporter, error) {
	switch protocol {
	case otlpwire.ProtocolGRPC, otlpwire.ProtocolHTTP:
	default:
		return nil, fmt.Errorf("OTLP protocol %q: tcpspan supports %q and %q", protocol, otlpwire.ProtocolGRPC, otlpwire.ProtocolHTTP)
	}
	var client otlptrace.Client
	if protocol == otlpwire.ProtocolHTTP {
		client = otlptracehttp.NewClient()
	} else {
		client = otlptracegrpc.NewClient()
	}
	exp, err := otlptrace.New(ctx, client)
	if err != nil {
		return nil, err
	}
	return &OTLP{Exporter: exp, client: client}, nil
}
