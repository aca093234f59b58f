package main

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestParseConfig(t *testing.T) {
	for _, tt := range []struct {
		name  string
		args  []string
		env   map[string]string
		check func(config) bool
	}{
		{"defaults: terminal only, no port, no metrics", nil, nil, func(c config) bool {
			return c.endpoint == "" && c.healthAddr == "" && !c.metrics && c.protocol == "grpc"
		}},
		{"flag endpoint turns on metrics", []string{"-otlp-endpoint", "http://127.0.0.1:4317"}, nil, func(c config) bool {
			return c.endpoint == "http://127.0.0.1:4317" && c.metrics && c.metricsProtocol == "grpc"
		}},
		{"traces variable outranks the flag", []string{"-otlp-endpoint", "http://a:1"}, map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:2"}, func(c config) bool {
			return c.endpoint == "http://b:2"
		}},
		{"traces-only endpoint says nothing of metrics", nil, map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:2"}, func(c config) bool {
			return c.endpoint == "http://b:2" && !c.metrics
		}},
		{"metrics off", nil, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://b:2", "OTEL_METRICS_EXPORTER": "none"}, func(c config) bool {
			return c.endpoint == "http://b:2" && !c.metrics
		}},
		{"protocols per signal", nil, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://b:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc"}, func(c config) bool {
			return c.protocol == "http/protobuf" && c.metricsProtocol == "grpc"
		}},
		{"a bare port binds loopback", []string{"-health-addr", "9464"}, nil, func(c config) bool { return c.healthAddr == "127.0.0.1:9464" }},
		{"so does :port", []string{"-health-addr", ":0"}, nil, func(c config) bool { return c.healthAddr == "127.0.0.1:0" }},
		{"an explicit host stays", []string{"-health-addr", "[::1]:9464"}, nil, func(c config) bool { return c.healthAddr == "[::1]:9464" }},
		{"ports", []string{"-port", "80,443", "-port", "92"}, nil, func(c config) bool { return reflect.DeepEqual(c.ports, portList{80, 443, 92}) }},
		{"a bare host:port is a gRPC endpoint, with TLS", nil, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"}, func(c config) bool {
			return c.endpoint == "https://collector:4317" && c.metrics &&
				reflect.DeepEqual(c.sdkEnv, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4317"})
		}},
		{"insecure: plaintext", []string{"-otlp-endpoint", "127.0.0.1:4317"}, map[string]string{"OTEL_EXPORTER_OTLP_INSECURE": "TRUE"}, func(c config) bool {
			return c.endpoint == "http://127.0.0.1:4317" && c.sdkEnv["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4317"
		}},
		{"per signal", nil, map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "[::1]:4317", "OTEL_EXPORTER_OTLP_TRACES_INSECURE": "true",
			"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "[::1]:4317"}, func(c config) bool {
			return c.endpoint == "http://[::1]:4317" && c.metrics && c.sdkEnv["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"] == "https://[::1]:4317"
		}},
		{"a URL is left to the SDK as it is", nil, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://b:2"}, func(c config) bool {
			return len(c.sdkEnv) == 0
		}},
		{"OTEL_TRACES_EXPORTER=none: terminal only, metrics still go", nil, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://b:2", "OTEL_TRACES_EXPORTER": "none"}, func(c config) bool {
			return c.endpoint == "" && c.metrics
		}},
		{"console is the terminal view", nil, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://b:2", "OTEL_TRACES_EXPORTER": "console"}, func(c config) bool {
			return c.endpoint == "" && c.terminal
		}},
		{"otlp and console: export and print", nil, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://b:2", "OTEL_TRACES_EXPORTER": "otlp, console"}, func(c config) bool {
			return c.endpoint == "http://b:2" && c.terminal
		}},
		{"OTEL_SDK_DISABLED: nothing leaves", []string{"-otlp-endpoint", "http://a:1"}, map[string]string{"OTEL_SDK_DISABLED": "True"}, func(c config) bool {
			return c.endpoint == "" && !c.metrics && len(c.warnings) == 0
		}},
		{"OTEL_SDK_DISABLED neither true nor false: a warning", nil, map[string]string{"OTEL_SDK_DISABLED": "yes", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://b:2"}, func(c config) bool {
			return c.endpoint == "http://b:2" && len(c.warnings) == 1 && strings.Contains(c.warnings[0], "OTEL_SDK_DISABLED")
		}},
		{"batch span processor variables", nil, map[string]string{"OTEL_BSP_MAX_QUEUE_SIZE": "100", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "10",
			"OTEL_BSP_SCHEDULE_DELAY": "250", "OTEL_BSP_EXPORT_TIMEOUT": "30000"}, func(c config) bool {
			return c.exportQueue == 100 && c.maxBatch == 10 && c.batchDelay == 250*time.Millisecond && c.exportTimeout == 30*time.Second
		}},
		{"-export-queue outranks OTEL_BSP_MAX_QUEUE_SIZE", []string{"-export-queue", "8192"}, map[string]string{"OTEL_BSP_MAX_QUEUE_SIZE": "100"}, func(c config) bool {
			return c.exportQueue == 8192
		}},
		{"the sampler is the clean ratio", nil, map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"}, func(c config) bool {
			return c.cleanRatio == 0.25 && len(c.warnings) == 0
		}},
		{"always_off: problems only", nil, map[string]string{"OTEL_TRACES_SAMPLER": "always_off"}, func(c config) bool { return c.cleanRatio == 0 }},
		{"-clean-ratio outranks the sampler", []string{"-clean-ratio", "0.5"}, map[string]string{"OTEL_TRACES_SAMPLER": "always_off"}, func(c config) bool {
			return c.cleanRatio == 0.5
		}},
		{"a sampler that cannot be the tail decision: a warning", nil, map[string]string{"OTEL_TRACES_SAMPLER": "jaeger_remote"}, func(c config) bool {
			return c.cleanRatio == 1 && len(c.warnings) == 1 && strings.Contains(c.warnings[0], "jaeger_remote")
		}},
		{"the agent's service", nil, map[string]string{"OTEL_SERVICE_NAME": " edge-agent "}, func(c config) bool { return c.agentService == "edge-agent" }},
		{"its default", nil, nil, func(c config) bool { return c.agentService == "tcpspan" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(tt.args, envOf(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("%+v", c)
			}
		})
	}
}

func TestParseConfigRejects(t *testing.T) {
	for _, tt := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"-health-addr", "nonsense"}, nil, "-health-addr"},
		{[]string{"-health-addr", "127.0.0.1:99999"}, nil, "-health-addr"},
		{[]string{"-export-queue", "0"}, nil, "-export-queue"},
		{[]string{"-clean-ratio", "NaN"}, nil, "-clean-ratio"},
		{[]string{"-health-interval", "-1s"}, nil, "-health-interval"},
		{nil, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost"}, "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{nil, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "only for gRPC"},
		{nil, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4317", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf"}, "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{nil, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:0"}, "port"},
		{nil, map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"},
		{nil, map[string]string{"OTEL_TRACES_EXPORTER": "none,otlp"}, "alone"},
		{nil, map[string]string{"OTEL_BSP_MAX_QUEUE_SIZE": "0"}, "OTEL_BSP_MAX_QUEUE_SIZE"},
		{nil, map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, "OTEL_TRACES_SAMPLER_ARG"},
		{nil, map[string]string{"OTEL_BSP_EXPORT_TIMEOUT": "30s"}, "OTEL_BSP_EXPORT_TIMEOUT"},
		{nil, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:0"}, "port"},
		{nil, map[string]string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "udp://x"}, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"},
		{nil, map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "http/json"},
		{nil, map[string]string{"OTEL_METRICS_EXPORTER": "prometheus"}, "OTEL_METRICS_EXPORTER"},
		{[]string{"-\nport"}, nil, "not defined"},
	} {
		_, err := parseConfig(tt.args, envOf(tt.env))
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.ContainsAny(err.Error(), "\r\n") {
			t.Errorf("%q %v: error %v, want one line naming %s", tt.args, tt.env, err, tt.want)
		}
	}
}

// The command exits 2 with one line for a bad variable too, and does not
// start anything.
func TestBadVariableExits2(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift")
	var out, errOut strings.Builder
	if code := run(nil, &out, &errOut); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if msg := errOut.String(); strings.Count(msg, "\n") != 1 || !strings.Contains(msg, "OTEL_EXPORTER_OTLP_PROTOCOL") {
		t.Errorf("stderr %q", msg)
	}
}

// FuzzParseConfig feeds arbitrary command lines and variables to the
// parser. It must never panic; an error is one line; a config it accepts
// holds sane values and renders back to a command line that parses to the
// same config.
func FuzzParseConfig(f *testing.F) {
	f.Add("-netns\x00ns1\x00-port\x0080,443", "http://127.0.0.1:4317", "grpc", "")
	f.Add("-health-addr=9464\x00-stats-file=/tmp/s.json", "", "", "none")
	f.Add("-ring-buffer-bytes\x004096\x00-max-connections\x0016\x00-export-queue\x008", "https://[::1]:4318/", "http/protobuf", "otlp")
	f.Add("-clean-ratio=0.25\x00-orphan-idle=1ms\x00-health-interval=0\x00-v\x00-terminal", "http://h", "", "")
	f.Add("-otlp-endpoint\x00http://x:1\x00stray", "", "", "")
	f.Add("-h", "", "", "")
	f.Fuzz(func(t *testing.T, argv, endpoint, protocol, metrics string) {
		var args []string
		if argv != "" {
			args = strings.Split(argv, "\x00")
		}
		env := envOf(map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
			"OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
			"OTEL_METRICS_EXPORTER":       metrics,
		})
		c, err := parseConfig(args, env)
		if errors.Is(err, errHelp) {
			return
		}
		if err != nil {
			if msg := err.Error(); msg == "" || strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("error not one line: %q", msg)
			}
			return
		}
		checkSane(t, c)
		again, err := parseConfig(c.args(), env)
		if err != nil {
			t.Fatalf("rendered %q: %v", c.args(), err)
		}
		// Where the endpoint came from (flag or variable) is not rendered.
		again.otlpEndpoint, c.otlpEndpoint = "", ""
		again.sdkEnv, c.sdkEnv = nil, nil
		if !reflect.DeepEqual(again, c) {
			t.Fatalf("round trip through %q:\n got %+v\nwant %+v", c.args(), again, c)
		}
	})
}

func checkSane(t *testing.T, c config) {
	t.Helper()
	page := os.Getpagesize()
	switch {
	case c.ringBytes < page || c.ringBytes&(c.ringBytes-1) != 0:
		t.Fatalf("ring buffer %d", c.ringBytes)
	case c.maxConns < 1, c.exportQueue < 1:
		t.Fatalf("max connections %d, export queue %d", c.maxConns, c.exportQueue)
	case !(c.cleanRatio >= 0 && c.cleanRatio <= 1):
		t.Fatalf("clean ratio %v", c.cleanRatio)
	case len(c.ports) > 8:
		t.Fatalf("%d ports", len(c.ports))
	case c.health < 0, c.orphanIdle < 0, c.shutdownTimeout < 0:
		t.Fatalf("negative duration: %+v", c)
	case c.protocol != "grpc" && c.protocol != "http/protobuf":
		t.Fatalf("protocol %q", c.protocol)
	// URL schemes are case-insensitive (RFC 3986): "HTTP://h" is http.
	case c.endpoint != "" && !strings.HasPrefix(strings.ToLower(c.endpoint), "http://") &&
		!strings.HasPrefix(strings.ToLower(c.endpoint), "https://"):
		t.Fatalf("endpoint %q", c.endpoint)
	case c.healthAddr != "" && !strings.Contains(c.healthAddr, ":"):
		t.Fatalf("health address %q", c.healthAddr)
	}
	for _, p := range c.ports {
		if p == 0 {
			t.Fatal("port 0")
		}
	}
}

func TestRequiredCapabilities(t *testing.T) {
	names := func(f hostFacts) string {
		var n []string
		for _, c := range requiredCapabilities(f) {
			n = append(n, c.name)
		}
		return strings.Join(n, " ")
	}
	base := "CAP_BPF CAP_PERFMON CAP_NET_ADMIN"
	for _, tt := range []struct {
		f    hostFacts
		want string
	}{
		{hostFacts{perfParanoid: 2}, base},
		// Above 2, perf events need CAP_SYS_ADMIN, and only the fallbacks
		// attach through them: it is optional (TestOptionalCapabilities).
		{hostFacts{perfParanoid: 3}, base},
		// tracefs is for fallbacks only: not mounted, or not root, needs
		// nothing more.
		{hostFacts{euid: 1000, perfParanoid: 2}, base},
		{hostFacts{perfParanoid: 2, kernelBefore511: true}, base + " CAP_SYS_RESOURCE"},
	} {
		if got := names(tt.f); got != tt.want {
			t.Errorf("%+v: %s, want %s", tt.f, got, tt.want)
		}
	}
}

func TestOptionalCapabilities(t *testing.T) {
	for _, p := range []int{2, 3, 4} {
		var b strings.Builder
		printCapabilities(&b, hostFacts{perfParanoid: p})
		perf := strings.Contains(b.String(), fmt.Sprintf("kernel.perf_event_paranoid is %d", p))
		if perf != (p > 2) {
			t.Errorf("paranoid %d: the perf event line is there: %v, want %v\n%s", p, perf, p > 2, b.String())
		}
		if strings.Contains(b.String(), "CAP_SYS_ADMIN       required") {
			t.Errorf("paranoid %d: CAP_SYS_ADMIN required\n%s", p, b.String())
		}
	}
}
