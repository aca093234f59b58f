package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpspan/tcpspan/internal/testutil"
)

// otlpJSONMetrics is the part of the collector's file exporter output
// (OTLP/JSON, one request per line) that the test reads.
type otlpJSONMetrics struct {
	ResourceMetrics []struct {
		Resource struct {
			Attributes []otlpJSONAttr `json:"attributes"`
		} `json:"resource"`
		ScopeMetrics []struct {
			Metrics []struct {
				Name string `json:"name"`
				Sum  *struct {
					DataPoints []otlpJSONPoint `json:"dataPoints"`
				} `json:"sum"`
				Gauge *struct {
					DataPoints []otlpJSONPoint `json:"dataPoints"`
				} `json:"gauge"`
			} `json:"metrics"`
		} `json:"scopeMetrics"`
	} `json:"resourceMetrics"`
}

type otlpJSONAttr struct {
	Key   string `json:"key"`
	Value struct {
		StringValue string `json:"stringValue"`
	} `json:"value"`
}

type otlpJSONPoint struct {
	Attributes []otlpJSONAttr `json:"attributes"`
	AsInt      string         `json:"asInt"`
}

// lastMetricValues reads the file exporter's output: the last value of
// every series, keyed like the stats file, and the service names seen.
func lastMetricValues(t *testing.T, path string) (map[string]uint64, map[string]bool) {
	t.Helper()
	values, services := map[string]uint64{}, map[string]bool{}
	for _, line := range strings.Split(readFile(path), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var req otlpJSONMetrics
		if err := json.Unmarshal([]byte(line), &req); err != nil {
			t.Fatalf("collector output: %v", err)
		}
		for _, rm := range req.ResourceMetrics {
			for _, a := range rm.Resource.Attributes {
				if a.Key == "service.name" {
					services[a.Value.StringValue] = true
				}
			}
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					var points []otlpJSONPoint
					if m.Sum != nil {
						points = m.Sum.DataPoints
					}
					if m.Gauge != nil {
						points = m.Gauge.DataPoints
					}
					for _, p := range points {
						var kvs []string
						for _, a := range p.Attributes {
							kvs = append(kvs, a.Key+"="+a.Value.StringValue)
						}
						key := m.Name
						if len(kvs) > 0 {
							sort.Strings(kvs)
							key += "{" + strings.Join(kvs, ",") + "}"
						}
						v, _ := strconv.ParseUint(p.AsInt, 10, 64)
						values[key] = v
					}
				}
			}
		}
	}
	return values, services
}

// The agent's own metrics go over OTLP to a real collector, whose file
// exporter writes what it received; their last values are the agent's
// final counts. The opt-in health endpoint serves the same values to
// Prometheus.
func TestSelfMetricsThroughCollector(t *testing.T) {
	testutil.RequireBPF(t)
	bin := buildAgent(t)
	dir := t.TempDir()
	grpc := freeHostPort(t)
	out := filepath.Join(dir, "metrics.jsonl")
	config := fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
exporters:
  file:
    path: %s
    flush_interval: 100ms
  debug: {}
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [file]
    traces:
      receivers: [otlp]
      exporters: [debug]
`, grpc, out)
	runCollector(t, config, grpc)

	ns := testutil.NewNetNS(t)
	stats := filepath.Join(dir, "stats.json")
	a := startAgentWith(t, bin, []string{"-netns", ns.Path, "-orphan-idle", "100ms", "-health-interval", "0",
		"-otlp-endpoint", "http://" + grpc, "-health-addr", "0", "-stats-file", stats},
		"OTEL_METRIC_EXPORT_INTERVAL=300", "OTEL_SERVICE_NAME=tcpspan-selfmetrics")
	m := regexp.MustCompile(`health_addr=(127\.0\.0\.1:\d+)`).FindStringSubmatch(readFile(a.logPath))
	if m == nil {
		t.Fatalf("a bare -health-addr port must bind loopback:\n%s", readFile(a.logPath))
	}
	srv := startServer(t, ns)
	srv.connect(t, ns, 5)
	refuse(t, ns, 2)
	time.Sleep(500 * time.Millisecond)
	resp, err := http.Get("http://" + m[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !regexp.MustCompile(`(?m)^tcpspan_records_emitted_total\{kind="connection",[^}]*\} [1-9]`).Match(page) ||
		!regexp.MustCompile(`(?m)^target_info\{[^}]*service_name="tcpspan-selfmetrics"`).Match(page) {
		t.Errorf("/metrics while tracing:\n%s", page)
	}
	// A live scrape passes Prometheus's own linter.
	promtool := exec.Command(testutil.RequireCommand(t, "promtool", "prometheus"), "check", "metrics")
	promtool.Stdin = strings.NewReader(string(page))
	if out, err := promtool.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("promtool check metrics on the agent's /metrics: %v\n%s", err, out)
	}
	a.stopWith(t, syscall.SIGTERM)
	final := readStats(t, stats)
	if final["tcpspan.records.emitted{kind=connection}"] != sockets(t, ns) {
		t.Errorf("stats file: %d records for %d sockets", final["tcpspan.records.emitted{kind=connection}"], sockets(t, ns))
	}

	// The last export, at shutdown, carries the final counts.
	var got map[string]uint64
	var services map[string]bool
	for deadline := time.Now().Add(10 * time.Second); ; {
		got, services = lastMetricValues(t, out)
		if got["tcpspan.connections{kind=connection}"] == final["tcpspan.connections{kind=connection}"] || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !services["tcpspan-selfmetrics"] {
		t.Errorf("metrics under services %v, want the agent's", services)
	}
	for key, want := range final {
		if key == "tcpspan.export.errors" {
			continue // the last export's own outcome is not in it
		}
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s: collector got %d (present %v), the agent's final count is %d", key, v, ok, want)
		}
	}
}

// Jaeger takes traces but no metrics: with the agent's own metrics left on,
// its first metrics export is answered Unimplemented, which the agent says
// in one line and then stops exporting metrics, while its spans go on.
func TestMetricsToJaegerStopAfterOneLine(t *testing.T) {
	testutil.RequireBPF(t)
	jaeger := testutil.StartJaeger(t)
	bin := buildAgent(t)
	ns := testutil.NewNetNS(t)
	stats := filepath.Join(t.TempDir(), "stats.json")
	a := startAgentWith(t, bin, []string{"-netns", ns.Path, "-health-interval", "0", "-stats-file", stats},
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://"+jaeger.OTLPGRPC, "OTEL_METRIC_EXPORT_INTERVAL=100",
		"OTEL_SERVICE_NAME=tcpspan-nometrics")
	srv := startServer(t, ns)
	for range 5 {
		srv.connect(t, ns, 1)
		time.Sleep(200 * time.Millisecond) // two metric intervals each
	}
	a.stop(t)
	log := readFile(a.logPath)
	if n := strings.Count(log, "takes no metrics"); n != 1 || !strings.Contains(log, "Unimplemented") {
		t.Errorf("%d lines say the endpoint takes no metrics, want one naming Unimplemented:\n%s", n, log)
	}
	if strings.Contains(log, "msg=export") {
		t.Errorf("export errors logged:\n%s", log)
	}
	st := readStats(t, stats)
	if st["tcpspan.export.errors"] != 0 || st["tcpspan.spans.exported"] == 0 {
		t.Errorf("export errors %d, spans exported %d: want 0 and some", st["tcpspan.export.errors"], st["tcpspan.spans.exported"])
	}
}
