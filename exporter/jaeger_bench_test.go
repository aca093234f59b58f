//go:build linux

package exporter_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"

	"github.com/tcpspan/tcpspan/conn"
	"github.com/tcpspan/tcpspan/exporter"
	"github.com/tcpspan/tcpspan/internal/testutil"
)

// BenchmarkExportToJaeger sends b.N spans to a real Jaeger (in-memory) on
// loopback, with 1, 2 and 4 requests in flight: ns/op is wall time per span
// until Jaeger has accepted them all, which is Jaeger's ingestion rate more
// than the exporter's.
func BenchmarkExportToJaeger(b *testing.B) {
	j := testutil.StartJaeger(b)
	t0 := time.Date(2026, 11, 25, 7, 0, 0, 0, time.UTC)
	nginx := conn.Process{PID: 200, Comm: "nginx"}
	c := &conn.Connection{
		Side: conn.SideServer, Network: "ipv4", Owner: nginx,
		Local: netip.MustParseAddrPort("10.0.0.2:80"), Remote: netip.MustParseAddrPort("10.0.0.1:41234"),
		Start: t0, End: t0.Add(30 * time.Millisecond), FinalState: conn.StateClose,
	}
	for i := range 7 {
		c.Events = append(c.Events, conn.Event{Time: t0.Add(time.Duration(i) * time.Millisecond), Kind: conn.EventState,
			OldState: conn.StateEstablished, State: conn.StateCloseWait, Context: conn.ContextKernel, FD: -1})
	}
	for _, inFlight := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("in-flight-%d", inFlight), func(b *testing.B) {
			client := otlptracegrpc.NewClient(otlptracegrpc.WithEndpoint(j.OTLPGRPC), otlptracegrpc.WithInsecure())
			e, err := exporter.New(nil, exporter.WithClient(client), exporter.WithMaxConcurrentExports(inFlight),
				exporter.WithMaxQueueSize(max(b.N, exporter.DefaultMaxQueueSize)), exporter.WithBatchTimeout(100*time.Millisecond),
				exporter.WithServiceResolver(func(p conn.Process) string { return p.Comm }))
			if err != nil {
				b.Fatal(err)
			}
			for range b.N {
				e.Export(c)
			}
			if err := e.Shutdown(context.Background()); err != nil {
				b.Fatal(err)
			}
			st := e.Stats()
			b.ReportMetric(float64(st.Exported)/float64(b.N), "exported/op")
		})
	}
}
