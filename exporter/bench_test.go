package exporter

import (
	"context"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"

	"github.com/tcpspan/tcpspan/conn"
	"github.com/tcpspan/tcpspan/internal/otlpsink"
)

// benchExport exports b.N connections, cycling through conns, to a
// counting OTLP/gRPC receiver on loopback, and includes the final flush:
// ns/op is the whole per-connection cost of mapping, encoding and sending.
func benchExport(b *testing.B, conns ...*conn.Connection) {
	sink, err := otlpsink.Start("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Stop()
	ctx := context.Background()
	client := otlptracegrpc.NewClient(otlptracegrpc.WithEndpoint(sink.Addr()), otlptracegrpc.WithInsecure())
	base, err := BaseResource(ctx)
	if err != nil {
		b.Fatal(err)
	}
	// The loop is a burst far faster than any connection rate: a queue of
	// b.N spans keeps it from dropping, so that every span's cost counts.
	e, err := New(base, WithClient(client), WithBatchTimeout(100*time.Millisecond), WithMaxQueueSize(max(b.N, DefaultMaxQueueSize)),
		WithServiceResolver(func(p conn.Process) string { return p.Comm }))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for i := range b.N {
		e.Export(conns[i%len(conns)])
	}
	if err := e.Shutdown(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	// CPU time of the whole process (sender, gRPC and the counting
	// receiver), which on a loaded machine says more than wall time.
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
	st := e.Stats()
	b.ReportMetric(float64(sink.Spans())/float64(b.N), "received/op")
	b.ReportMetric(float64(st.Dropped())/float64(b.N), "dropped/op")
}

// A clean HTTP connection seen from both ends: 2 spans of 6-7 events.
func BenchmarkExportClean(b *testing.B) { benchExport(b, cleanClient(), cleanServer()) }

// rinetd resetting its client after its upstream connect was refused.
func BenchmarkExportReset(b *testing.B) { benchExport(b, refused(), rinetdAbort("TCP_ABORT_ON_CLOSE")) }

// A backend that takes nothing: every connection meets a full queue and is
// folded, the refused upstream connects and the resets alike. What Export
// costs the reader's goroutine in a storm the backend cannot keep up with.
func BenchmarkExportFolded(b *testing.B) {
	mem := &memClient{block: make(chan struct{})}
	e, err := New(nil, WithClient(mem), WithMaxBatchSize(1), WithMaxQueueSize(2), WithMaxConcurrentExports(1),
		WithBatchTimeout(time.Hour), WithServiceResolver(func(p conn.Process) string { return p.Comm }))
	if err != nil {
		b.Fatal(err)
	}
	conns := []*conn.Connection{refused(), rinetdAbort("TCP_ABORT_ON_CLOSE")}
	for i := range 8 {
		e.Export(conns[i%2]) // fill the queue
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		e.Export(conns[i%2])
	}
	b.StopTimer()
	b.ReportMetric(float64(e.Stats().Folded)/float64(b.N), "folded/op")
	close(mem.block)
	if err := e.Shutdown(context.Background()); err != nil {
		b.Fatal(err)
	}
}

// cpuTime is the process's user plus system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// The mapping and encoding alone, without sending: what Export costs the
// reader's goroutine per span.
func BenchmarkMapEncode(b *testing.B) {
	conns := []*conn.Connection{cleanClient(), cleanServer()}
	m := newCachingMapper()
	var enc spanEncoder
	var buf []byte
	b.ReportAllocs()
	for i := range b.N {
		c := conns[i%len(conns)]
		errType, desc, isErr := Diagnose(c)
		tid, sid := newIDs()
		buf = enc.appendConn(buf[:0], m, c, errType, desc, isErr, tid, sid, nil)
	}
	b.SetBytes(int64(len(buf)))
}
