package check

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func collectorFile(t *testing.T, name string) string {
	return filepath.Join(repoRoot(t), "deploy", "collector", name)
}

// readConfig reads a Collector config as plain maps.
func readConfig(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		t.Fatalf("%s: %v", filepath.Base(path), err)
	}
	return cfg
}

// at walks a config along keys; it fails the test where a key is missing.
func at(t *testing.T, v any, keys ...string) any {
	t.Helper()
	for i, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%s is not a map", strings.Join(keys[:i], "."))
		}
		if v, ok = m[k]; !ok {
			t.Fatalf("no %s", strings.Join(keys[:i+1], "."))
		}
	}
	return v
}

// validate runs `validate` of the gateway Collector build on a config
// file and returns its error and output.
func validate(t *testing.T, path string) (string, error) {
	t.Helper()
	out, err := exec.Command(tool(t, "otelcol-gateway"), "validate", "--config", path).CombinedOutput()
	return string(out), err
}

// The sampling tier keeps every trace with an error and a share of the
// rest, and the Collector with its components accepts the config.
func TestSamplerConfig(t *testing.T) {
	path := collectorFile(t, "sampler.yaml")
	if out, err := validate(t, path); err != nil {
		t.Fatalf("validate sampler.yaml: %v\n%s", err, out)
	}
	cfg := readConfig(t, path)
	pipeline := at(t, cfg, "service", "pipelines", "traces", "processors").([]any)
	if !slices.Contains(pipeline, any("tail_sampling")) {
		t.Fatalf("traces pipeline %v has no tail_sampling", pipeline)
	}
	var keepsErrors, keepsShare bool
	for _, p := range at(t, cfg, "processors", "tail_sampling", "policies").([]any) {
		switch at(t, p, "type") {
		case "status_code":
			codes := at(t, p, "status_code", "status_codes").([]any)
			keepsErrors = slices.Contains(codes, any("ERROR"))
		case "probabilistic":
			pct, _ := at(t, p, "probabilistic", "sampling_percentage").(float64)
			keepsShare = pct > 0 && pct < 100
		default:
			// Policies are OR-ed: any other one would keep more than
			// errors and a share.
			t.Errorf("unexpected policy %v", p)
		}
	}
	if !keepsErrors || !keepsShare {
		t.Errorf("policies keep errors: %v, keep a share of the rest: %v; want both", keepsErrors, keepsShare)
	}
}

// The load-balancing tier enriches by pod uid and container id, and
// routes by trace id to the sampling tier. This Collector build has no
// k8sattributes processor (its module at the builder's release is not
// served here): the config is validated without that one processor, whose
// settings are checked here by shape instead.
func TestLoadBalancerConfig(t *testing.T) {
	cfg := readConfig(t, collectorFile(t, "loadbalancer.yaml"))

	if key := at(t, cfg, "exporters", "loadbalancing", "routing_key"); key != "traceID" {
		t.Errorf("routing_key %v, want traceID: both ends of a connection share a trace id", key)
	}
	exporters := at(t, cfg, "service", "pipelines", "traces", "exporters").([]any)
	if !slices.Equal(exporters, []any{"loadbalancing"}) {
		t.Errorf("traces exporters %v, want [loadbalancing]", exporters)
	}
	host := at(t, cfg, "exporters", "loadbalancing", "resolver", "dns", "hostname").(string)
	if !strings.HasPrefix(host, "tcpspan-sampler-headless.") {
		t.Errorf("resolver hostname %s: want the sampling tier's headless Service, which lists each pod", host)
	}

	k8s := at(t, cfg, "processors", "k8sattributes")
	var sources []string
	for _, a := range at(t, k8s, "pod_association").([]any) {
		for _, s := range at(t, a, "sources").([]any) {
			if at(t, s, "from") != "resource_attribute" {
				t.Errorf("pod association from %v: the connection's address is the agent's, not the pod's", at(t, s, "from"))
			}
			sources = append(sources, at(t, s, "name").(string))
		}
	}
	if !slices.Equal(sources, []string{"k8s.pod.uid", "container.id"}) {
		t.Errorf("pod association by %v, want k8s.pod.uid then container.id", sources)
	}
	metadata := at(t, k8s, "extract", "metadata").([]any)
	for _, want := range []string{"k8s.pod.name", "k8s.namespace.name", "k8s.node.name"} {
		if !slices.Contains(metadata, any(want)) {
			t.Errorf("k8sattributes does not extract %s", want)
		}
	}
	processors := at(t, cfg, "service", "pipelines", "traces", "processors").([]any)
	if !slices.Contains(processors, any("k8sattributes")) {
		t.Fatalf("traces pipeline %v has no k8sattributes", processors)
	}
	// Tail sampling would decide on a part of each trace here.
	if slices.Contains(processors, any("tail_sampling")) {
		t.Error("tail_sampling in the load-balancing tier")
	}

	// Everything else, validated by the Collector.
	delete(at(t, cfg, "processors").(map[string]any), "k8sattributes")
	at(t, cfg, "service", "pipelines", "traces").(map[string]any)["processors"] = slices.DeleteFunc(processors, func(p any) bool { return p == "k8sattributes" })
	data, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "loadbalancer-without-k8sattributes.yaml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := validate(t, path); err != nil {
		t.Fatalf("validate loadbalancer.yaml (without k8sattributes): %v\n%s", err, out)
	}
}

// The agents' endpoint reaches the load-balancing tier's OTLP/gRPC port.
func TestAgentEndpointMatchesGateway(t *testing.T) {
	cfg := readConfig(t, collectorFile(t, "loadbalancer.yaml"))
	listen := at(t, cfg, "receivers", "otlp", "protocols", "grpc", "endpoint").(string)
	_, port, _ := strings.Cut(listen, ":")
	c := daemonSet(t, manifests(t)).Spec.Template.Spec.Containers[0]
	for _, e := range c.Env {
		if e.Name == "OTEL_EXPORTER_OTLP_ENDPOINT" && !strings.HasSuffix(e.Value, ":"+port) {
			t.Errorf("agents export to %s; the gateway listens on port %s", e.Value, port)
		}
	}
}

// validate is a real check: a misspelt setting fails it.
func TestValidateRefuses(t *testing.T) {
	data, err := os.ReadFile(collectorFile(t, "sampler.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(data), "decision_wait:", "decision_wiat:", 1)
	if bad == string(data) {
		t.Fatal("sampler.yaml has no decision_wait to misspell")
	}
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := validate(t, path)
	if err == nil {
		t.Fatalf("validate accepted decision_wiat:\n%s", out)
	}
	if !strings.Contains(out, "decision_wiat") {
		t.Errorf("validate failed without naming the bad key:\n%s", out)
	}
}
