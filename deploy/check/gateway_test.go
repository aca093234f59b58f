package check

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// gatewayObjects decodes deploy/gateway strictly, by key.
func gatewayObjects(t *testing.T) map[string]Object {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "deploy", "gateway", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/gateway (%v)", err)
	}
	objs := map[string]Object{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		decoded, err := DecodeStrict(data)
		if err != nil {
			t.Fatalf("%s: %v", filepath.Base(f), err)
		}
		for _, o := range decoded {
			if _, dup := objs[o.Key()]; dup {
				t.Fatalf("%s defined twice", o.Key())
			}
			objs[o.Key()] = o
		}
	}
	return objs
}

func get[T any](t *testing.T, objs map[string]Object, key string) *T {
	t.Helper()
	o, ok := objs[key]
	if !ok {
		t.Fatalf("no %s in deploy/gateway", key)
	}
	v, ok := o.Value.(*T)
	if !ok {
		t.Fatalf("%s is a %T", key, o.Value)
	}
	return v
}

var update = flag.Bool("update", false, "copy deploy/collector's configs into deploy/gateway's ConfigMaps")

// updateConfigMap rewrites the ConfigMap at the head of a deploy/gateway
// file: its config.yaml block becomes config, indented, up to the file's
// first document separator.
func updateConfigMap(t *testing.T, path string, config []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const key = "  config.yaml: |\n"
	head, rest, ok := strings.Cut(string(data), key)
	_, tail, ok2 := strings.Cut(rest, "\n---\n")
	if !ok || !ok2 {
		t.Fatalf("%s: no config.yaml block followed by ---", path)
	}
	var b strings.Builder
	b.WriteString(head + key)
	for line := range strings.Lines(string(config)) {
		if line != "\n" {
			b.WriteString("    ")
		}
		b.WriteString(line)
	}
	b.WriteString("---\n" + tail)
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// builderRelease is the Collector release of tools/otelcol-gateway, whose
// build validates the configs the gateway's pods run.
func builderRelease(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "tools", "otelcol-gateway", "builder-config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*version:\s*(\d+\.\d+\.\d+)`).FindSubmatch(data)
	if m == nil {
		t.Fatal("no dist version in tools/otelcol-gateway/builder-config.yaml")
	}
	return string(m[1])
}

// Each tier runs, word for word, the config that deploy/check validates,
// with the Collector release that validated it, and the tiers and the
// agents find each other by the names their configs use.
func TestGatewayManifests(t *testing.T) {
	objs := gatewayObjects(t)
	release := builderRelease(t)
	tiers := []struct{ deployment, configMap, config, service string }{
		{"tcpspan-gateway", "tcpspan-gateway-config", "loadbalancer.yaml", "tcpspan-gateway"},
		{"tcpspan-sampler", "tcpspan-sampler-config", "sampler.yaml", "tcpspan-sampler-headless"},
	}
	for _, tier := range tiers {
		t.Run(tier.deployment, func(t *testing.T) {
			cm := get[corev1.ConfigMap](t, objs, "ConfigMap tcpspan/"+tier.configMap)
			want, err := os.ReadFile(collectorFile(t, tier.config))
			if err != nil {
				t.Fatal(err)
			}
			if *update {
				updateConfigMap(t, filepath.Join(repoRoot(t), "deploy", "gateway", tier.config), want)
			} else if cm.Data["config.yaml"] != string(want) {
				t.Errorf("ConfigMap %s's config.yaml differs from deploy/collector/%s (go test -run Gateway -update copies it)", cm.Name, tier.config)
			}

			d := get[appsv1.Deployment](t, objs, "Deployment tcpspan/"+tier.deployment)
			spec := d.Spec.Template.Spec
			if len(spec.Containers) != 1 {
				t.Fatalf("%d containers", len(spec.Containers))
			}
			c := spec.Containers[0]
			if want := "otel/opentelemetry-collector-contrib:" + release; c.Image != want {
				t.Errorf("image %s, want %s (the release that validated the config)", c.Image, want)
			}
			if !slices.Equal(c.Args, []string{"--config=/conf/config.yaml"}) {
				t.Errorf("args %q", c.Args)
			}
			mounted := false
			for _, m := range c.VolumeMounts {
				for _, v := range spec.Volumes {
					if v.Name == m.Name && v.ConfigMap != nil && v.ConfigMap.Name == cm.Name && m.MountPath == "/conf" && m.ReadOnly {
						mounted = true
					}
				}
			}
			if !mounted {
				t.Errorf("ConfigMap %s is not mounted read-only at /conf", cm.Name)
			}
			for k, v := range d.Spec.Selector.MatchLabels {
				if d.Spec.Template.Labels[k] != v {
					t.Errorf("selector %s=%s does not match the pods", k, v)
				}
			}
			sc := c.SecurityContext
			if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
				t.Error("want non-root, read-only root, no privilege escalation, every capability dropped")
			}
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if _, ok := c.Resources.Limits[r]; !ok {
					t.Errorf("no %s limit (memory_limiter works from it)", r)
				}
				if _, ok := c.Resources.Requests[r]; !ok {
					t.Errorf("no %s request", r)
				}
			}
			if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Port.String() != "health" {
				t.Error("no liveness probe on the health_check port")
			}

			// The Service reaches the pods' OTLP port, which the config
			// listens on.
			svc := get[corev1.Service](t, objs, "Service tcpspan/"+tier.service)
			for k, v := range svc.Spec.Selector {
				if d.Spec.Template.Labels[k] != v {
					t.Errorf("Service %s selects %s=%s, which the pods lack", svc.Name, k, v)
				}
			}
			cfg := readConfig(t, collectorFile(t, tier.config))
			_, port, _ := strings.Cut(at(t, cfg, "receivers", "otlp", "protocols", "grpc", "endpoint").(string), ":")
			var ports []string
			for _, p := range c.Ports {
				ports = append(ports, p.Name+"="+itoa32(p.ContainerPort))
			}
			if !slices.Contains(ports, "otlp-grpc="+port) {
				t.Errorf("container ports %v lack otlp-grpc=%s, where the config listens", ports, port)
			}
			if len(svc.Spec.Ports) != 1 || itoa32(svc.Spec.Ports[0].Port) != port || svc.Spec.Ports[0].TargetPort.String() != "otlp-grpc" {
				t.Errorf("Service %s: want port %s to otlp-grpc", svc.Name, port)
			}
		})
	}

	// The agents export to the first tier's Service.
	agent := daemonSet(t, manifests(t)).Spec.Template.Spec.Containers[0]
	for _, e := range agent.Env {
		if e.Name == "OTEL_EXPORTER_OTLP_ENDPOINT" && e.Value != "http://tcpspan-gateway.tcpspan.svc.cluster.local:4317" {
			t.Errorf("agents export to %s, not to Service tcpspan-gateway", e.Value)
		}
	}
	// The first tier resolves the second by its headless Service.
	lb := readConfig(t, collectorFile(t, "loadbalancer.yaml"))
	if host := at(t, lb, "exporters", "loadbalancing", "resolver", "dns", "hostname"); host != "tcpspan-sampler-headless.tcpspan.svc.cluster.local" {
		t.Errorf("the dns resolver reads %v, not Service tcpspan-sampler-headless", host)
	}
	if svc := get[corev1.Service](t, objs, "Service tcpspan/tcpspan-sampler-headless"); svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Error("tcpspan-sampler-headless must be headless: the dns resolver needs every pod's address")
	}
}

// k8sattributes runs under an identity that may read what it watches, and
// nothing more; the sampling tier has no token at all.
func TestGatewayRBAC(t *testing.T) {
	objs := gatewayObjects(t)
	lb := get[appsv1.Deployment](t, objs, "Deployment tcpspan/tcpspan-gateway").Spec.Template.Spec
	get[corev1.ServiceAccount](t, objs, "ServiceAccount tcpspan/"+lb.ServiceAccountName)
	binding := get[rbacv1.ClusterRoleBinding](t, objs, "ClusterRoleBinding /tcpspan-gateway")
	if len(binding.Subjects) != 1 || binding.Subjects[0].Name != lb.ServiceAccountName || binding.Subjects[0].Namespace != "tcpspan" {
		t.Errorf("binding subjects %v, want the gateway's ServiceAccount", binding.Subjects)
	}
	role := get[rbacv1.ClusterRole](t, objs, "ClusterRole /"+binding.RoleRef.Name)
	granted := map[string]bool{}
	for _, r := range role.Rules {
		if !slices.Equal(r.Verbs, []string{"get", "list", "watch"}) {
			t.Errorf("rule %v: want only get, list, watch", r)
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				granted[g+"/"+res] = true
			}
		}
	}
	for _, want := range []string{"/pods", "/namespaces", "apps/replicasets", "batch/jobs"} {
		if !granted[want] {
			t.Errorf("k8sattributes cannot watch %s", want)
		}
		delete(granted, want)
	}
	for extra := range granted {
		t.Errorf("%s is granted but not watched", extra)
	}
	sampler := get[appsv1.Deployment](t, objs, "Deployment tcpspan/tcpspan-sampler").Spec.Template.Spec
	if sampler.AutomountServiceAccountToken == nil || *sampler.AutomountServiceAccountToken {
		t.Error("the sampling tier calls no API: no token")
	}
}

func itoa32(i int32) string { return strconv.Itoa(int(i)) }
