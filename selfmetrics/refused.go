package selfmetrics

import (
	"context"
	"strings"
	"sync/atomic"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// stopWhenRefused wraps the OTLP metric exporter. When the backend answers
// that it takes no metrics at all, as a trace store such as Jaeger does
// (gRPC Unimplemented, or HTTP 404 Not Found), it calls refused once and
// exports nothing more: a backend that has no metrics service will not
// grow one, and retrying every interval only repeats the warning and
// counts export errors forever. Other errors (the backend down, a
// timeout) go on as export errors, for the next export to retry.
type stopWhenRefused struct {
	sdkmetric.Exporter
	stopped atomic.Bool
	refused func(error)
}

func (e *stopWhenRefused) Export(ctx context.Context, rm *metricdata.ResourceMetrics) error {
	if e.stopped.Load() {
		return nil
	}
	err := e.Exporter.Export(ctx, rm)
	if err != nil && takesNoMetrics(err) {
		if e.stopped.CompareAndSwap(false, true) && e.refused != nil {
			e.refused(err)
		}
		return nil
	}
	return err
}

// takesNoMetrics reports whether err says the backend has no metrics
// service: gRPC's Unimplemented, or the OTLP/HTTP client's error for a 404.
func takesNoMetrics(err error) bool {
	if s, ok := status.FromError(err); ok && s.Code() == codes.Unimplemented {
		return true
	}
	return strings.Contains(err.Error(), ": 404 Not Found (")
}
