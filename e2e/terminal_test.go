package e2e

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/tcpspan/tcpspan/internal/testutil"
)

// TestTerminalSummaryAddsUp: the terminal view's count of connections at
// exit is the sum of the stopped log line's counts, which its second line
// names, and the connections with a socket are the namespace's opens.
func TestTerminalSummaryAddsUp(t *testing.T) {
	testutil.RequireBPF(t)
	bin := buildAgent(t)
	ns := testutil.NewNetNS(t)
	a := startAgentWith(t, bin, []string{"-netns", ns.Path, "-orphan-idle", "500ms", "-health-interval", "0"},
		"OTEL_METRICS_EXPORTER=none")
	before := sockets(t, ns)
	runScenarios(t, ns)
	refuse(t, ns, 30)
	opens := sockets(t, ns) - before
	time.Sleep(time.Second)
	a.stop(t)
	out := readFile(a.logPath)

	total := regexp.MustCompile(`(?m)^(\d+) connections`).FindStringSubmatch(out)
	// The view fits 100 columns: the sum may be wrapped.
	sum := regexp.MustCompile(`=\s+(\d+)\s+with\s+a\s+socket\s+\+\s+(\d+)\s+without\s+\+\s+(\d+)\s+folded\s+into\s+\d+\s+storms?\s+\+\s+(\d+)\s+clean`).FindStringSubmatch(out)
	if total == nil || sum == nil {
		t.Fatalf("no summary with its sum in the terminal view:\n%s", out)
	}
	n := func(s string) uint64 { v, _ := strconv.ParseUint(s, 10, 64); return v }
	if n(total[1]) != n(sum[1])+n(sum[2])+n(sum[3])+n(sum[4]) {
		t.Errorf("%s connections, but %s", total[1], sum[0])
	}
	stopped := a.stopped()
	logged := map[string]uint64{}
	for _, key := range []string{"connections", "conn_storms", "conns_folded", "orphans", "storms", "orphans_folded", "clean_in_kernel"} {
		m := regexp.MustCompile(` ` + key + `=(\d+)`).FindStringSubmatch(stopped)
		if m == nil {
			t.Fatalf("no %s= in the log line %q", key, stopped)
		}
		logged[key] = n(m[1])
	}
	// A storm span is one of the orphans, standing for orphans_folded, or
	// one of the connections, standing for conns_folded.
	if want := logged["connections"] - logged["conn_storms"] + logged["conns_folded"] + logged["orphans"] - logged["storms"] +
		logged["orphans_folded"] + logged["clean_in_kernel"]; n(total[1]) != want {
		t.Errorf("%s connections in the terminal view, the log line adds up to %d: %q", total[1], want, stopped)
	}
	if logged["storms"] == 0 {
		t.Errorf("no storm of the 30 refused connects: %q", stopped)
	}
	if withSocket := n(sum[1]) + n(sum[4]); withSocket != opens {
		t.Errorf("%d connections with a socket, the namespace opened %d", withSocket, opens)
	}
	t.Logf("%s (%s); the namespace opened %d", total[0], sum[0], opens)
}
