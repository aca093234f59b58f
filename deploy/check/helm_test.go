package check

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// helm runs the Helm built from tools/helm, with its config, cache and
// data in a temporary folder.
func helm(t *testing.T, args ...string) []byte {
	t.Helper()
	bin := tool(t, "helm")
	home := t.TempDir()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func chartDir(t *testing.T) string {
	return filepath.Join(repoRoot(t), "deploy", "helm", "tcpspan")
}

// render is `helm template` of the chart into namespace tcpspan, decoded
// strictly.
func render(t *testing.T, set ...string) []Object {
	t.Helper()
	args := []string{"template", "tcpspan", chartDir(t), "--namespace", "tcpspan"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	objs, err := DecodeStrict(helm(t, args...))
	if err != nil {
		t.Fatalf("helm template %s: %v", strings.Join(set, " "), err)
	}
	return objs
}

// With its default values the chart renders the manifests of
// deploy/kubernetes, object for object and field for field.
func TestHelmTemplateEqualsManifests(t *testing.T) {
	want := map[string]any{}
	for _, o := range manifests(t) {
		want[o.Key()] = o.Value
	}
	got := map[string]any{}
	for _, o := range render(t) {
		if _, dup := got[o.Key()]; dup {
			t.Errorf("the chart renders %s twice", o.Key())
		}
		got[o.Key()] = o.Value
	}
	for key, w := range want {
		g, ok := got[key]
		if !ok {
			t.Errorf("the chart does not render %s", key)
			continue
		}
		wj, err := json.MarshalIndent(w, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		gj, err := json.MarshalIndent(g, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if string(wj) != string(gj) {
			t.Errorf("%s differs:\n%s", key, lineDiff(string(wj), string(gj)))
		}
	}
	for key := range got {
		if _, ok := want[key]; !ok {
			t.Errorf("the chart renders %s, which deploy/kubernetes lacks", key)
		}
	}
}

// lineDiff lists the lines of a (manifest) and b (chart) that the other
// lacks, enough to find a difference between two JSON renderings.
func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for i, l := range al {
		if !slices.Contains(bl, l) {
			out = append(out, "manifest:"+strconv.Itoa(i+1)+": "+l)
		}
	}
	for i, l := range bl {
		if !slices.Contains(al, l) {
			out = append(out, "chart:   "+strconv.Itoa(i+1)+": "+l)
		}
	}
	if len(out) == 0 {
		return "(the same lines, in another order)"
	}
	return strings.Join(out, "\n")
}

func TestHelmLint(t *testing.T) {
	helm(t, "lint", "--strict", chartDir(t))
}

// The values that docs/kubernetes.md tells people to set do what it says.
func TestHelmValues(t *testing.T) {
	find := func(t *testing.T, objs []Object) *corev1.Container {
		t.Helper()
		for _, o := range objs {
			if ds, ok := o.Value.(*appsv1.DaemonSet); ok {
				return &ds.Spec.Template.Spec.Containers[0]
			}
		}
		t.Fatal("no DaemonSet rendered")
		return nil
	}
	t.Run("sysAdmin", func(t *testing.T) {
		c := find(t, render(t, "sysAdmin=true"))
		if !slices.Contains(c.SecurityContext.Capabilities.Add, "SYS_ADMIN") {
			t.Errorf("capabilities %v lack SYS_ADMIN", c.SecurityContext.Capabilities.Add)
		}
		// The API refuses allowPrivilegeEscalation: false with SYS_ADMIN.
		if c.SecurityContext.AllowPrivilegeEscalation != nil {
			t.Error("allowPrivilegeEscalation is set along with SYS_ADMIN")
		}
	})
	t.Run("extraCapabilities", func(t *testing.T) {
		c := find(t, render(t, "extraCapabilities={SYS_RESOURCE}"))
		if !slices.Contains(c.SecurityContext.Capabilities.Add, "SYS_RESOURCE") {
			t.Errorf("capabilities %v lack SYS_RESOURCE", c.SecurityContext.Capabilities.Add)
		}
	})
	t.Run("image", func(t *testing.T) {
		c := find(t, render(t, "image.repository=registry.example/tcpspan", "image.tag=v1.2.3"))
		if c.Image != "registry.example/tcpspan:v1.2.3" {
			t.Errorf("image %q", c.Image)
		}
	})
	t.Run("endpoint and port", func(t *testing.T) {
		c := find(t, render(t, "otlpEndpoint=http://otelcol.observability:4317", "metricsPort=9100", "extraArgs={-clean-ratio=0.1}"))
		if !slices.Contains(c.Args, "-health-addr=0.0.0.0:9100") || !slices.Contains(c.Args, "-clean-ratio=0.1") {
			t.Errorf("args %q", c.Args)
		}
		if c.Ports[0].ContainerPort != 9100 {
			t.Errorf("port %d", c.Ports[0].ContainerPort)
		}
		for _, e := range c.Env {
			if e.Name == "OTEL_EXPORTER_OTLP_ENDPOINT" && e.Value != "http://otelcol.observability:4317" {
				t.Errorf("endpoint %q", e.Value)
			}
		}
	})
	t.Run("existing namespace", func(t *testing.T) {
		for _, o := range render(t, "createNamespace=false") {
			if o.Kind == "Namespace" {
				t.Error("a Namespace rendered with createNamespace=false")
			}
		}
	})
}
