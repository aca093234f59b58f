package selfmetrics

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tcpspan/tcpspan/internal/otlpwire"
)

// backend counts the metric exports it is sent and answers each with code.
func grpcBackend(t *testing.T, code codes.Code) (endpoint string, calls *atomic.Int32) {
	t.Helper()
	calls = new(atomic.Int32)
	srv := grpc.NewServer(grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
		calls.Add(1)
		return status.Error(code, "no such service here")
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return "http://" + ln.Addr().String(), calls
}

// startAgainst starts the metrics export to endpoint every 50 ms, counting
// what reaches the error handler and the refused callback.
func startAgainst(t *testing.T, endpoint, protocol string) (m *Metrics, errs, refusals *atomic.Int32) {
	t.Helper()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
	t.Setenv("OTEL_METRIC_EXPORT_INTERVAL", "50")
	errs, refusals = new(atomic.Int32), new(atomic.Int32)
	prev := otel.GetErrorHandler()
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(error) { errs.Add(1) }))
	t.Cleanup(func() { otel.SetErrorHandler(prev) })
	m, err := Start(context.Background(), nil, protocol, sample, func(error) { refusals.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	return m, errs, refusals
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// Jaeger answers OTLP metrics with Unimplemented: one refusal, no error
// counted, and no export after it.
func TestBackendWithoutMetricsStopsTheExport(t *testing.T) {
	endpoint, calls := grpcBackend(t, codes.Unimplemented)
	m, errs, refusals := startAgainst(t, endpoint, otlpwire.ProtocolGRPC)
	waitFor(t, "the refusal", func() bool { return refusals.Load() > 0 })
	time.Sleep(300 * time.Millisecond) // six more intervals
	if n := calls.Load(); n != 1 {
		t.Errorf("%d exports reached the backend, want 1", n)
	}
	if refusals.Load() != 1 || errs.Load() != 0 {
		t.Errorf("%d refusals and %d export errors, want 1 and 0", refusals.Load(), errs.Load())
	}
	if err := m.Shutdown(context.Background()); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

func TestHTTPBackendWithoutMetricsStopsTheExport(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.NotFound(w, r)
	}))
	defer srv.Close()
	m, errs, refusals := startAgainst(t, srv.URL, otlpwire.ProtocolHTTP)
	waitFor(t, "the refusal", func() bool { return refusals.Load() > 0 })
	time.Sleep(300 * time.Millisecond)
	if n := calls.Load(); n != 1 || refusals.Load() != 1 || errs.Load() != 0 {
		t.Errorf("%d exports, %d refusals, %d export errors; want 1, 1, 0", n, refusals.Load(), errs.Load())
	}
	m.Shutdown(context.Background())
}

// Any other failure is an export error, and the next export tries again.
func TestOtherFailuresKeepExporting(t *testing.T) {
	endpoint, calls := grpcBackend(t, codes.InvalidArgument)
	m, errs, refusals := startAgainst(t, endpoint, otlpwire.ProtocolGRPC)
	waitFor(t, "three exports", func() bool { return calls.Load() >= 3 })
	waitFor(t, "their errors", func() bool { return errs.Load() >= 2 })
	if refusals.Load() != 0 {
		t.Errorf("refused after %v", codes.InvalidArgument)
	}
	m.Shutdown(context.Background())
}
