package check

import (
	"fmt"
	"path"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/validate/content"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// APIRules checks what the API server would refuse beyond the schema that
// [DecodeStrict] enforces: the form of names, labels, port and variable
// names, references inside a pod (volume mounts, probe ports), and the
// securityContext combinations the API forbids. It returns every problem.
func APIRules(o Object) []string {
	var errs []string
	add := func(where string, msgs []string) {
		for _, m := range msgs {
			errs = append(errs, fmt.Sprintf("%s %s: %s", o.Key(), where, m))
		}
	}
	meta := o.Value.(metav1.Object)
	switch o.Kind {
	case "Service", "Namespace":
		add("name", validation.IsDNS1123Label(meta.GetName()))
		if o.Kind == "Service" {
			add("name", validation.IsDNS1035Label(meta.GetName()))
		}
	default:
		add("name", validation.IsDNS1123Subdomain(meta.GetName()))
	}
	if ns := meta.GetNamespace(); ns != "" {
		add("namespace", validation.IsDNS1123Label(ns))
	}
	labels := func(where string, m map[string]string) {
		for k, v := range m {
			add(where+" key "+k, content.IsLabelKey(k))
			add(where+" value "+v, content.IsLabelValue(v))
		}
	}
	labels("label", meta.GetLabels())

	var pod *corev1.PodTemplateSpec
	switch v := o.Value.(type) {
	case *appsv1.DaemonSet:
		pod = &v.Spec.Template
	case *appsv1.Deployment:
		pod = &v.Spec.Template
	case *corev1.Service:
		for _, p := range v.Spec.Ports {
			add("port name", validation.IsValidPortName(p.Name))
			add("port", validation.IsValidPortNum(int(p.Port)))
		}
	case *corev1.ConfigMap:
		for k := range v.Data {
			add("data key", validation.IsConfigMapKey(k))
		}
	}
	if pod == nil {
		return errs
	}
	labels("pod label", pod.Labels)
	volumes := map[string]bool{}
	for _, v := range pod.Spec.Volumes {
		add("volume", validation.IsDNS1123Label(v.Name))
		volumes[v.Name] = true
		if v.HostPath != nil && !path.IsAbs(v.HostPath.Path) {
			errs = append(errs, fmt.Sprintf("%s volume %s: host path %q is not absolute", o.Key(), v.Name, v.HostPath.Path))
		}
	}
	for _, c := range pod.Spec.Containers {
		add("container", validation.IsDNS1123Label(c.Name))
		ports := map[string]bool{}
		for _, p := range c.Ports {
			add("container port name", validation.IsValidPortName(p.Name))
			add("container port", validation.IsValidPortNum(int(p.ContainerPort)))
			ports[p.Name] = true
		}
		for _, e := range c.Env {
			add("env", validation.IsEnvVarName(e.Name))
		}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				errs = append(errs, fmt.Sprintf("%s container %s: mount of no volume %q", o.Key(), c.Name, m.Name))
			}
		}
		for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
			if p != nil && p.HTTPGet != nil && p.HTTPGet.Port.StrVal != "" && !ports[p.HTTPGet.Port.StrVal] {
				errs = append(errs, fmt.Sprintf("%s container %s: probe on no port named %q", o.Key(), c.Name, p.HTTPGet.Port.StrVal))
			}
		}
		// The API refuses allowPrivilegeEscalation: false together with
		// privileged: true or CAP_SYS_ADMIN.
		if sc := c.SecurityContext; sc != nil && sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
			if (sc.Privileged != nil && *sc.Privileged) || (sc.Capabilities != nil && slices.Contains(sc.Capabilities.Add, "SYS_ADMIN")) {
				errs = append(errs, fmt.Sprintf("%s container %s: allowPrivilegeEscalation: false with privileged or SYS_ADMIN", o.Key(), c.Name))
			}
		}
	}
	return errs
}
