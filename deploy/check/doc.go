// Package check tests tcpspan's deployment files offline: the Kubernetes
// manifests in deploy/kubernetes, the Helm chart in deploy/helm/tcpspan and
// the gateway Collector configs in deploy/collector.
//
// It is its own module so that the agent's go.mod never takes in
// k8s.io/api. Run it from this folder: go test ./...
//
// Manifests are decoded strictly into the Kubernetes API types (an unknown,
// duplicated or miscased field fails). The DaemonSet is held to least
// privilege against what the agent itself says it needs (tcpspan
// -capabilities) and to the flags it really has (tcpspan -h). The chart,
// rendered by a real Helm (scripts/tools.sh helm), must equal the
// manifests. The Collector configs are checked by `validate` of a Collector
// built with the gateway's components (scripts/tools.sh otelcol-gateway).
package check
