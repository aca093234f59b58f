package selfmetrics

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/tcpspan/tcpspan/agent"
	"github.com/tcpspan/tcpspan/bpf"
	"github.com/tcpspan/tcpspan/conn"
	"github.com/tcpspan/tcpspan/exporter"
)

func sample() agent.Health {
	return agent.Health{
		Kernel: bpf.Counters{ConnsEmitted: 10, OrphansEmitted: 3, RingbufLostConn: 4, RingbufLostOrphan: 1,
			ConnMapFull: 2, ConnMidlife: 5, DestroyedUntracked: 6, ConnStale: 7, ConnEventsLost: 8,
			Missed: map[string]uint64{"kfree_skb": 9}, Malformed: 1},
		Tracker: conn.Stats{Connections: 10, Orphans: 2, OrphansForced: 1},
		Export: agent.ExportHealth{On: true, Errors: 3,
			Spans: exporter.Stats{Recorded: 12, Exported: 7, ExportFailed: 2, SampledOut: 0, Services: 2}},
	}
}

func TestValuesNameEveryCause(t *testing.T) {
	v := Values(sample())
	for key, want := range map[string]uint64{
		"tcpspan.records.emitted{kind=connection}":                     10,
		"tcpspan.records.lost{cause=ring_buffer_full,kind=connection}": 4,
		"tcpspan.records.lost{cause=ring_buffer_full,kind=orphan}":     1,
		"tcpspan.records.lost{cause=map_full}":                         2,
		"tcpspan.records.lost{cause=malformed}":                        1,
		"tcpspan.kernel.missed{hook=kfree_skb}":                        9,
		"tcpspan.connections.midlife":                                  5,
		"tcpspan.connections.untracked":                                6,
		"tcpspan.connections{kind=orphan}":                             2,
		"tcpspan.spans.exported":                                       7,
		"tcpspan.spans.failed":                                         2,
		"tcpspan.spans.unsent":                                         3,
		"tcpspan.export.errors":                                        3,
	} {
		if got, ok := v[key]; !ok || got != want {
			t.Errorf("%s = %d (present %v), want %d", key, got, ok, want)
		}
	}
}

// The instruments report what the health says, through the real SDK.
func TestInstruments(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	if err := register(mp.Meter("test"), sample); err != nil {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				if !d.IsMonotonic {
					t.Errorf("%s: counter not monotonic", m.Name)
				}
				for _, p := range d.DataPoints {
					got[m.Name] += p.Value
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					got[m.Name] += p.Value
				}
			}
		}
	}
	if len(got) != len(Definitions) {
		t.Errorf("%d metrics reported, want %d: %v", len(got), len(Definitions), got)
	}
	if got["tcpspan.records.lost"] != 8 || got["tcpspan.spans.unsent"] != 3 || got["tcpspan.export.services"] != 2 {
		t.Errorf("values: %v", got)
	}
}

func TestHealthEndpoint(t *testing.T) {
	s, err := Serve("127.0.0.1:0", sample)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + s.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	code, body := get("/metrics")
	if code != 200 || !strings.Contains(body, "\ntcpspan.records.lost{cause=map_full} 2\n") {
		t.Errorf("/metrics: %d\n%s", code, body)
	}
	if code, _ := get("/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("unexpected page served: %d", code)
	}
}

func TestWriteFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stats.json")
	if err := WriteFile(path, Values(sample())); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]uint64
	if err := json.Unmarshal(b, &back); err != nil || back["tcpspan.spans.recorded"] != 12 {
		t.Errorf("%v %v", err, back)
	}
}

// Every metric is documented where operators look.
func TestEveryMetricDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range Definitions {
		if !strings.Contains(string(doc), "| `"+d.Name+"` |") {
			t.Errorf("%s is not in the metrics table of docs/operations.md", d.Name)
		}
	}
}
