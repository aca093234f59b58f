package e2e

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tcpspan/tcpspan/internal/jaegerapi"
)

// connectionSpanName is every shape of a connection span's name: the kind
// of connection and, for the server side, the local (listening) port.
var connectionSpanName = regexp.MustCompile(`^TCP( connect| (accept|reset|handshake) :\d+)?$`)

// addressLike matches an IPv4 address, or two colon-separated hex groups
// as in any IPv6 address.
var addressLike = regexp.MustCompile(`\d+\.\d+\.\d+\.\d+|[0-9a-fA-F]*:[0-9a-fA-F]*:`)

// checkSpanNames fails the test for any span whose name holds an address,
// one of its own addresses, or its peer's port, or whose name is not of a
// connection span's shape (diagnosis spans, tcpspan.diagnosis.of, have names
// of their own). Span names are low-cardinality: Jaeger lists each as an
// operation.
func checkSpanNames(t *testing.T, spans []jaegerapi.Span) {
	t.Helper()
	bad := 0
	for i := range spans {
		sp := &spans[i]
		problem := ""
		switch {
		case addressLike.MatchString(sp.Name):
			problem = "holds an address"
		case sp.Attributes["tcpspan.diagnosis.of"] == nil && !connectionSpanName.MatchString(sp.Name):
			problem = "is not of a connection span's shape"
		}
		for _, key := range []string{"network.peer.address", "network.local.address", "server.address", "client.address"} {
			if a, ok := sp.Attributes[key].(string); ok && a != "" && strings.Contains(sp.Name, a) {
				problem = "holds " + key + " " + a
			}
		}
		if peer, ok := sp.Attributes["network.peer.port"].(int64); ok && sp.Attributes["network.local.port"] != peer &&
			strings.HasSuffix(sp.Name, ":"+strconv.FormatInt(peer, 10)) {
			problem = "holds the peer's port"
		}
		if problem != "" {
			if bad++; bad <= 10 {
				t.Errorf("span name %q (%s, service %s) %s", sp.Name, sp.Kind, sp.Service, problem)
			}
		}
	}
	if bad > 10 {
		t.Errorf("... %d span names in all are wrong", bad)
	}
}
