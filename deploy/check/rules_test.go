package check

import (
	"strings"
	"testing"
)

// Everything this repository deploys, plain or rendered by the chart with
// its documented values, passes the API's naming and reference rules.
func TestAPIRules(t *testing.T) {
	sets := map[string][]Object{"deploy/kubernetes": manifests(t), "helm template": render(t), "helm template sysAdmin=true": render(t, "sysAdmin=true")}
	var gateway []Object
	for _, o := range gatewayObjects(t) {
		gateway = append(gateway, o)
	}
	sets["deploy/gateway"] = gateway
	for name, objs := range sets {
		for _, o := range objs {
			for _, e := range APIRules(o) {
				t.Errorf("%s: %s", name, e)
			}
		}
	}
}

// The rules find what they are for.
func TestAPIRulesRefuse(t *testing.T) {
	const ds = `apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: a
  labels: {app: "x y"}
spec:
  selector: {matchLabels: {app: a}}
  template:
    metadata: {labels: {app: a}}
    spec:
      containers:
        - name: Agent
          image: i
          env: [{name: "1X", value: v}]
          ports: [{name: metrics-port-too-long, containerPort: 9464}]
          livenessProbe: {httpGet: {path: /, port: health}}
          volumeMounts: [{name: gone, mountPath: /x}]
          securityContext:
            allowPrivilegeEscalation: false
            capabilities: {add: [SYS_ADMIN]}
`
	objs, err := DecodeStrict([]byte(ds))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(APIRules(objs[0]), "\n")
	for _, want := range []string{"label value x y", "container: ", "env: ", "container port name: ", `probe on no port named "health"`, `mount of no volume "gone"`, "allowPrivilegeEscalation: false with"} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in:\n%s", want, got)
		}
	}
}
