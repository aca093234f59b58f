package selfmetrics

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/tcpspan/tcpspan/agent"
	"github.com/tcpspan/tcpspan/bpf"
	"github.com/tcpspan/tcpspan/conn"
	"github.com/tcpspan/tcpspan/exporter"
	"github.com/tcpspan/tcpspan/internal/testutil"
	"github.com/tcpspan/tcpspan/internal/version"
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
	s, err := Serve("127.0.0.1:0", nil, sample)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	if code, _, body := get(t, s, "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, _, _ := get(t, s, "/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("unexpected page served: %d", code)
	}
}

func get(t *testing.T, s *Server, path string) (int, string, string) {
	t.Helper()
	resp, err := http.Get("http://" + s.Addr() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

// /metrics is the Prometheus text format, read by Prometheus's own parser
// with the classic name rules (no dots), named by OpenTelemetry's mapping.
func TestPrometheusPage(t *testing.T) {
	res := resource.NewSchemaless(attribute.String("service.name", "tcpspan-test"))
	s, err := Serve("127.0.0.1:0", res, sample)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	code, ctype, body := get(t, s, "/metrics")
	if code != 200 || !strings.HasPrefix(ctype, "text/plain; version=0.0.4") {
		t.Fatalf("/metrics: %d, Content-Type %q", code, ctype)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("not Prometheus text: %v\n%s", err, body)
	}

	// The mapping: dots to underscores, _total on counters, an annotation
	// unit ({record}) adds no suffix.
	for name, typ := range map[string]dto.MetricType{
		"tcpspan_records_lost_total":   dto.MetricType_COUNTER,
		"tcpspan_connections_total":    dto.MetricType_COUNTER,
		"tcpspan_kernel_missed_total":  dto.MetricType_COUNTER,
		"tcpspan_spans_unsent":         dto.MetricType_GAUGE,
		"tcpspan_connections_capacity": dto.MetricType_GAUGE,
		"target_info":                  dto.MetricType_GAUGE,
	} {
		f, ok := families[name]
		if !ok || f.GetType() != typ {
			t.Errorf("%s: present %v, type %v, want %v", name, ok, f.GetType(), typ)
		}
	}
	if len(families) != len(Definitions)+1 {
		t.Errorf("%d families, want one per definition and target_info", len(families))
	}
	for _, d := range Definitions {
		name, err := PrometheusName(d)
		if err != nil {
			t.Fatal(err)
		}
		f, ok := families[name]
		if !ok {
			t.Errorf("%s: no %s on the page", d.Name, name)
			continue
		}
		if f.GetHelp() != d.Description {
			t.Errorf("%s: help %q", name, f.GetHelp())
		}
	}

	// Each series names the scope, with the agent's version.
	for _, l := range families["tcpspan_spans_unsent"].GetMetric()[0].GetLabel() {
		if l.GetName() == "otel_scope_version" && l.GetValue() != version.Version() ||
			l.GetName() == "otel_scope_name" && l.GetValue() != ScopeName {
			t.Errorf("label %s=%q", l.GetName(), l.GetValue())
		}
	}

	// Every series of the health snapshot, with its value and labels.
	got := map[string]float64{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				if !strings.HasPrefix(l.GetName(), "otel_scope_") {
					labels = append(labels, l.GetName()+"="+l.GetValue())
				}
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			got[name+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	for key, want := range map[string]float64{
		"tcpspan_records_lost_total{cause=map_full}":                         2,
		"tcpspan_records_lost_total{cause=ring_buffer_full,kind=connection}": 4,
		"tcpspan_kernel_missed_total{hook=kfree_skb}":                        9,
		"tcpspan_connections_total{kind=orphan}":                             2,
		"tcpspan_spans_unsent{}":                                             3,
		"tcpspan_export_services{}":                                          2,
		"target_info{service_name=tcpspan-test}":                             1,
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", key, v, ok, want)
		}
	}
	var series int
	for _, d := range Definitions {
		series += len(d.Points(sample()))
	}
	if len(got) != series+1 {
		t.Errorf("%d series, want %d and target_info", len(got), series)
	}
}

// Prometheus's own linter accepts a live scrape without a warning.
func TestPromtool(t *testing.T) {
	promtool := testutil.RequireCommand(t, "promtool", "prometheus")
	s, err := Serve("127.0.0.1:0", nil, sample)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	_, _, body := get(t, s, "/metrics")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
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
		prom, err := PrometheusName(d)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(doc), "| `"+d.Name+"` | `"+prom+"` |") {
			t.Errorf("%s (%s on /metrics) is not in the metrics table of docs/operations.md", d.Name, prom)
		}
	}
}
