package check

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// manifests decodes every file of deploy/kubernetes strictly.
func manifests(t *testing.T) []Object {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "deploy", "kubernetes", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no manifests in deploy/kubernetes")
	}
	var all []Object
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := DecodeStrict(data)
		if err != nil {
			t.Fatalf("%s: %v", filepath.Base(f), err)
		}
		all = append(all, objs...)
	}
	return all
}

func daemonSet(t *testing.T, objs []Object) *appsv1.DaemonSet {
	t.Helper()
	var found *appsv1.DaemonSet
	for _, o := range objs {
		if ds, ok := o.Value.(*appsv1.DaemonSet); ok {
			if found != nil {
				t.Fatalf("two DaemonSets: %s and %s", found.Name, ds.Name)
			}
			found = ds
		}
	}
	if found == nil {
		t.Fatal("no DaemonSet")
	}
	return found
}

// The strict decoder refuses what a lenient one would quietly drop.
func TestDecodeStrictRefuses(t *testing.T) {
	const head = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: a\n"
	tests := []struct{ name, doc, want string }{
		{"unknown field", head + "automountToken: false\n", `unknown field "automountToken"`},
		{"field in another case", head + "AutomountServiceAccountToken: false\n", `unknown field "AutomountServiceAccountToken"`},
		{"field twice", head + "automountServiceAccountToken: false\nautomountServiceAccountToken: true\n", "already set"},
		{"unknown kind", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n", `unexpected kind "Pod"`},
		{"no name", "apiVersion: v1\nkind: Namespace\nmetadata: {}\n", "no metadata.name"},
		{"wrong type", head + "automountServiceAccountToken: \"no\"\n", "automountServiceAccountToken"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeStrict([]byte(tt.doc))
			if err == nil {
				t.Fatalf("decoded:\n%s", tt.doc)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
	objs, err := DecodeStrict([]byte("# only a comment\n---\n" + head + "---\n"))
	if err != nil || len(objs) != 1 || objs[0].Key() != "ServiceAccount /a" {
		t.Fatalf("got %v, %v; want the one ServiceAccount", objs, err)
	}
}

// Every manifest decodes strictly, and the set is complete.
func TestManifests(t *testing.T) {
	objs := manifests(t)
	var keys []string
	for _, o := range objs {
		keys = append(keys, o.Key())
		if o.Kind != "Namespace" && o.Namespace != "tcpspan" {
			t.Errorf("%s: not in namespace tcpspan", o.Key())
		}
	}
	slices.Sort(keys)
	want := []string{"DaemonSet tcpspan/tcpspan", "Namespace /tcpspan", "Service tcpspan/tcpspan-metrics", "ServiceAccount tcpspan/tcpspan"}
	if !slices.Equal(keys, want) {
		t.Fatalf("objects %q, want %q", keys, want)
	}
}

// capLine is one line of tcpspan -capabilities: "CAP_BPF  required: why".
var capLine = regexp.MustCompile(`^CAP_([A-Z_]+)\s+(required|optional): (.+)$`)

// hostConditions are required capabilities that tcpspan -capabilities lists
// only on some hosts, each recognised by its reason, and how the DaemonSet
// covers it instead of granting it everywhere.
var hostConditions = []struct {
	capability, reason, covered string
}{
	{"SYS_RESOURCE", "before kernel 5.11", "chart value extraCapabilities=[SYS_RESOURCE]"},
}

// agentCapabilities runs tcpspan -capabilities: the required and the
// optional capabilities on this host, each with its reason.
func agentCapabilities(t *testing.T) (required, optional map[string]string) {
	t.Helper()
	out := run(t, tcpspan(t), "-capabilities")
	required, optional = map[string]string{}, map[string]string{}
	for line := range strings.Lines(string(out)) {
		m := capLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			t.Fatalf("tcpspan -capabilities: unexpected line %q", line)
		}
		if m[2] == "required" {
			required[m[1]] = m[3]
		} else {
			optional[m[1]] = m[3]
		}
	}
	if len(required) == 0 {
		t.Fatalf("tcpspan -capabilities named no required capability:\n%s", out)
	}
	return required, optional
}

// hostCondition tells whether a required capability is one of
// [hostConditions], and how the DaemonSet covers it.
func hostCondition(name, why string) (covered string, ok bool) {
	for _, hc := range hostConditions {
		if hc.capability == name && strings.Contains(why, hc.reason) {
			return hc.covered, true
		}
	}
	return "", false
}

// grantedOptional are the optional capabilities the DaemonSet grants, and
// why; any other optional one (CAP_SYS_ADMIN, for -netns) is not granted.
var grantedOptional = map[string]string{
	"DAC_READ_SEARCH": "service.name from other users' OTEL_SERVICE_NAME",
	"SYS_PTRACE":      "owners of sockets open at start",
}

// The DaemonSet asks for what tcpspan says it needs, and no more.
func TestDaemonSetLeastPrivilege(t *testing.T) {
	ds := daemonSet(t, manifests(t))
	spec := ds.Spec.Template.Spec
	if len(spec.Containers) != 1 || len(spec.InitContainers) != 0 {
		t.Fatalf("want one container and no init containers, got %d and %d", len(spec.Containers), len(spec.InitContainers))
	}
	c := spec.Containers[0]

	if !spec.HostPID {
		t.Error("hostPID must be true: the kernel names socket owners by host pid, and the agent reads their /proc/PID")
	}
	if spec.HostNetwork || spec.HostIPC {
		t.Error("hostNetwork and hostIPC must be off: BPF sees every network namespace without them")
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken must be false: the agent never calls the Kubernetes API")
	}

	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("no securityContext with capabilities")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("privileged: true")
	}
	if spec.SecurityContext != nil && spec.SecurityContext.RunAsNonRoot != nil && *spec.SecurityContext.RunAsNonRoot {
		t.Error("runAsNonRoot at pod level contradicts the container's uid 0")
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Error("runAsUser must be 0: Kubernetes makes added capabilities effective for uid 0 only")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation must be false")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem must be true")
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("seccompProfile must be RuntimeDefault")
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("capabilities.drop = %v, want [ALL]", sc.Capabilities.Drop)
	}

	// What the agent built from this tree says it needs on this host.
	required, optional := agentCapabilities(t)
	want := map[string]bool{}
	for name, why := range required {
		if hc, ok := hostCondition(name, why); ok {
			t.Logf("CAP_%s is required on this host (%s); the DaemonSet covers it by %s", name, why, hc)
			continue
		}
		want[name] = true
	}
	for name, why := range grantedOptional {
		if _, ok := optional[name]; !ok {
			t.Errorf("the DaemonSet grants CAP_%s (%s), which tcpspan -capabilities no longer names as optional", name, why)
		}
		want[name] = true
	}
	got := map[string]bool{}
	for _, c := range sc.Capabilities.Add {
		if strings.HasPrefix(string(c), "CAP_") {
			t.Errorf("capability %q: Kubernetes names them without CAP_", c)
		}
		if got[string(c)] {
			t.Errorf("capability %s added twice", c)
		}
		got[string(c)] = true
	}
	for name := range want {
		if !got[name] {
			t.Errorf("CAP_%s is missing from capabilities.add", name)
		}
	}
	for name := range got {
		if !want[name] {
			t.Errorf("CAP_%s is added but tcpspan does not need it here (-capabilities: %q)", name, optional[name])
		}
	}

	// Every host mount is read-only, from a fixed host path, and one the
	// agent reads.
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m
	}
	wantPaths := map[string]bool{"/sys/fs/cgroup": true, "/sys/kernel/tracing": true, "/sys/kernel/btf": true}
	for _, v := range spec.Volumes {
		if v.HostPath == nil {
			t.Errorf("volume %s is not a hostPath", v.Name)
			continue
		}
		if !wantPaths[v.HostPath.Path] {
			t.Errorf("volume %s mounts host path %s, which the agent does not read", v.Name, v.HostPath.Path)
		}
		delete(wantPaths, v.HostPath.Path)
		m, ok := mounts[v.Name]
		if !ok {
			t.Errorf("volume %s is not mounted", v.Name)
			continue
		}
		if !m.ReadOnly {
			t.Errorf("volume %s is mounted writable", v.Name)
		}
		if m.MountPath != v.HostPath.Path {
			t.Errorf("volume %s: host %s mounted at %s; the agent looks for it at the host's path", v.Name, v.HostPath.Path, m.MountPath)
		}
	}
	for p := range wantPaths {
		t.Errorf("host path %s is not mounted", p)
	}
}

// The container runs the agent with flags it has, reachable probes and a
// bounded share of the node.
func TestDaemonSetContainer(t *testing.T) {
	ds := daemonSet(t, manifests(t))
	c := ds.Spec.Template.Spec.Containers[0]

	if len(c.Command) != 0 {
		t.Errorf("command %q: the image's entrypoint is /tcpspan", c.Command)
	}
	help := string(run(t, tcpspan(t), "-h"))
	flags := map[string]string{}
	for _, a := range c.Args {
		name, value, ok := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || !ok {
			t.Errorf("argument %q: want -flag=value", a)
			continue
		}
		if !regexp.MustCompile(`(?m)^\s+-` + regexp.QuoteMeta(name) + `\b`).MatchString(help) {
			t.Errorf("argument %q: tcpspan has no flag -%s", a, name)
		}
		flags[name] = value
	}
	if _, ok := flags["netns"]; ok {
		t.Error("-netns would limit the agent to one network namespace (and needs CAP_SYS_ADMIN)")
	}

	// /healthz and /metrics on the pod's address, at the named port that
	// the probes and the Service use.
	var metrics *corev1.ContainerPort
	for i, p := range c.Ports {
		if p.Name == "metrics" {
			metrics = &c.Ports[i]
		}
	}
	if metrics == nil {
		t.Fatal("no container port named metrics")
	}
	host, port, ok := strings.Cut(flags["health-addr"], ":")
	if !ok || host != "0.0.0.0" || port != strconv.Itoa(int(metrics.ContainerPort)) {
		t.Errorf("-health-addr=%q, want 0.0.0.0:%d (a bare port binds 127.0.0.1, out of the kubelet's reach)", flags["health-addr"], metrics.ContainerPort)
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("no HTTP %s probe", name)
			continue
		}
		if p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port != intstr.FromString("metrics") {
			t.Errorf("%s probe on %s port %s, want /healthz on port metrics", name, p.HTTPGet.Path, p.HTTPGet.Port.String())
		}
	}

	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, ok1 := c.Resources.Requests[r]
		lim, ok2 := c.Resources.Limits[r]
		if !ok1 || !ok2 {
			t.Errorf("%s: want both a request and a limit", r)
			continue
		}
		if req.Cmp(lim) > 0 {
			t.Errorf("%s: request %s above limit %s", r, req.String(), lim.String())
		}
	}
	// Go's soft limit must leave room for the ring buffer and the kernel
	// maps, which the pod's memory cgroup is charged for too.
	goMiB, err := strconv.Atoi(flags["memory-limit"])
	if err != nil {
		t.Fatalf("-memory-limit=%q: %v", flags["memory-limit"], err)
	}
	ring := int64(16 << 20)
	if v, ok := flags["ring-buffer-bytes"]; ok {
		if ring, err = strconv.ParseInt(v, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	lim := c.Resources.Limits[corev1.ResourceMemory]
	if need := int64(goMiB)<<20 + ring + 40<<20; lim.Value() < 2*need {
		t.Errorf("memory limit %s is under twice Go's limit, ring buffer and connection map (%d MiB)", lim.String(), need>>20)
	}

	env := map[string]int{}
	for i, e := range c.Env {
		env[e.Name] = i
	}
	node, ok := env["K8S_NODE_NAME"]
	if !ok || c.Env[node].ValueFrom == nil || c.Env[node].ValueFrom.FieldRef == nil || c.Env[node].ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Error("K8S_NODE_NAME must come from the downward API (spec.nodeName)")
	}
	attrs, ok := env["OTEL_RESOURCE_ATTRIBUTES"]
	if !ok || !strings.Contains(c.Env[attrs].Value, "k8s.node.name=$(K8S_NODE_NAME)") {
		t.Error("OTEL_RESOURCE_ATTRIBUTES must carry k8s.node.name=$(K8S_NODE_NAME)")
	} else if attrs < node {
		t.Error("OTEL_RESOURCE_ATTRIBUTES comes before K8S_NODE_NAME: Kubernetes expands $(VAR) only from variables defined earlier")
	}
	endpoint, ok := env["OTEL_EXPORTER_OTLP_ENDPOINT"]
	if !ok || !strings.HasPrefix(c.Env[endpoint].Value, "http") {
		t.Error("OTEL_EXPORTER_OTLP_ENDPOINT must name the gateway Collector")
	}
}

// The metrics Service selects the agents and reaches their named port.
func TestMetricsService(t *testing.T) {
	objs := manifests(t)
	ds := daemonSet(t, objs)
	for _, o := range objs {
		svc, ok := o.Value.(*corev1.Service)
		if !ok {
			continue
		}
		for k, v := range svc.Spec.Selector {
			if ds.Spec.Template.Labels[k] != v {
				t.Errorf("Service %s selects %s=%s, which the agent's pods do not carry", svc.Name, k, v)
			}
		}
		if len(svc.Spec.Selector) == 0 {
			t.Errorf("Service %s selects nothing", svc.Name)
		}
		if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "metrics" || svc.Spec.Ports[0].TargetPort != intstr.FromString("metrics") {
			t.Errorf("Service %s: want one port named metrics, to the pods' port metrics", svc.Name)
		}
	}
	for k, v := range ds.Spec.Selector.MatchLabels {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("the DaemonSet's selector %s=%s does not match its pods", k, v)
		}
	}
}
