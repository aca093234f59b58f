package check

import (
	"bytes"
	"fmt"
	"regexp"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Object is one Kubernetes object decoded from a manifest.
type Object struct {
	Kind, Namespace, Name string
	// Value is a pointer to the typed API object (*appsv1.DaemonSet, …).
	Value any
}

// Key names the object uniquely in a set of manifests.
func (o Object) Key() string { return o.Kind + " " + o.Namespace + "/" + o.Name }

// newTyped returns an empty API object for an apiVersion and kind, or nil
// for a kind these manifests are not expected to hold.
func newTyped(apiVersion, kind string) any {
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		return &corev1.Namespace{}
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}
	case "v1 Service":
		return &corev1.Service{}
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}
	case "apps/v1 DaemonSet":
		return &appsv1.DaemonSet{}
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}
	case "rbac.authorization.k8s.io/v1 ClusterRole":
		return &rbacv1.ClusterRole{}
	case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
		return &rbacv1.ClusterRoleBinding{}
	}
	return nil
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// yamlComment matches a document with nothing but comments and blanks.
var onlyComments = regexp.MustCompile(`^(\s*(#[^\n]*)?\n?)*$`)

// DecodeStrict decodes every YAML document in data into its Kubernetes API
// type. It fails on an unknown kind, and on any field the type does not
// have, a field given twice, or a field spelled in another case: what
// `kubectl apply --validate=strict` refuses.
func DecodeStrict(data []byte) ([]Object, error) {
	var out []Object
	for i, doc := range docSeparator.Split(string(data), -1) {
		if onlyComments.MatchString(doc) {
			continue
		}
		j, err := yaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		var tm metav1.TypeMeta
		if err := kjson.UnmarshalCaseSensitivePreserveInts(j, &tm); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		v := newTyped(tm.APIVersion, tm.Kind)
		if v == nil {
			return nil, fmt.Errorf("document %d: unexpected kind %q of apiVersion %q", i, tm.Kind, tm.APIVersion)
		}
		strict, err := kjson.UnmarshalStrict(j, v, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
		if err != nil {
			return nil, fmt.Errorf("document %d (%s): %w", i, tm.Kind, err)
		}
		if len(strict) > 0 {
			return nil, fmt.Errorf("document %d (%s): %v", i, tm.Kind, errorsText(strict))
		}
		meta, ok := v.(metav1.Object)
		if !ok {
			return nil, fmt.Errorf("document %d (%s): no object metadata", i, tm.Kind)
		}
		if meta.GetName() == "" {
			return nil, fmt.Errorf("document %d (%s): no metadata.name", i, tm.Kind)
		}
		out = append(out, Object{Kind: tm.Kind, Namespace: meta.GetNamespace(), Name: meta.GetName(), Value: v})
	}
	return out, nil
}

func errorsText(errs []error) string {
	var b bytes.Buffer
	for i, e := range errs {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(e.Error())
	}
	return b.String()
}
