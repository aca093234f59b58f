// Package e2e holds tcpspan's end-to-end tests: the built binary run as
// root on this kernel, each scenario in its own network namespace, against
// a real Jaeger, directly and through the OpenTelemetry Collector, with
// assertions on what a user querying the trace store sees.
//
// Files are scenario families (rinetd, correlation, containers, the
// report, operations: outage, overload, restart, privileges, self-metrics);
// e2e_test.go and ops_helpers_test.go hold the shared helpers.
//
// It is tests only: no other package imports it, and it must not depend on
// the host's own traffic or leave anything running.
package e2e
