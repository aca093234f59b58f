package semconv

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	upstream "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// names returns the quoted strings that match re in a source file.
func names(t *testing.T, file string, re *regexp.Regexp) []string {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range re.FindAllStringSubmatch(string(src), -1) {
		out = append(out, m[1])
	}
	if len(out) == 0 {
		t.Fatalf("%s: nothing matches %s", file, re)
	}
	return out
}

// TestNamesDocumented checks that every key, event name and error.type
// value is under tcp., unique, and listed in README.md.
func TestNamesDocumented(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	keys := names(t, "attributes.go", regexp.MustCompile(`attribute\.Key\("([^"]+)"\)`))
	events := names(t, "events.go", regexp.MustCompile(`(?m)^\tEvent\w+ = "([^"]+)"`))
	errorTypes := names(t, "errortype.go", regexp.MustCompile(`(?m)^\tErrorType\w+ = "([^"]+)"`))
	for _, group := range []struct {
		name  string
		names []string
	}{{"key", keys}, {"event", events}, {"error.type", errorTypes}} {
		t.Run(group.name, func(t *testing.T) {
			seen := map[string]bool{}
			for _, n := range group.names {
				if !strings.HasPrefix(n, "tcp.") {
					t.Errorf("%s %q is not under tcp.", group.name, n)
				}
				if seen[n] {
					t.Errorf("%s %q defined twice", group.name, n)
				}
				seen[n] = true
				if !strings.Contains(string(readme), "| `"+n+"` |") {
					t.Errorf("%s %q has no row in README.md", group.name, n)
				}
			}
		})
	}
}

func TestSchemaURL(t *testing.T) {
	const want = "https://opentelemetry.io/schemas/1.43.0"
	if got := SchemaURL; got != upstream.SchemaURL {
		t.Errorf("SchemaURL = %q, upstream %q", got, upstream.SchemaURL)
	}
	if got := SchemaURL; got != want {
		t.Errorf("SchemaURL = %q, want %q", got, want)
	}
}

func TestConstructors(t *testing.T) {
	tests := []struct {
		got  attribute.KeyValue
		want attribute.KeyValue
	}{
		{TCPCloseFD(7), attribute.Int("tcp.close.fd", 7)},
		{TCPStormCount(4211), attribute.Int("tcp.storm.count", 4211)},
		{TCPStormEvents("rst_sent", 4211), attribute.Int("tcp.storm.events.rst_sent", 4211)},
		{TCPCloseUnreadBytes(18), attribute.Int("tcp.close.unread_bytes", 18)},
		{TCPStateFinal("CLOSE"), attribute.String("tcp.state.final", "CLOSE")},
		{TCPResetReason("NO_SOCKET"), attribute.String("tcp.reset.reason", "NO_SOCKET")},
		{TCPListenerBacklog(6), attribute.Int("tcp.listener.backlog", 6)},
		{TCPListenerBacklogMax(5), attribute.Int("tcp.listener.backlog_max", 5)},
		{TCPBytesSent(1 << 40), attribute.Int64("tcp.bytes.sent", 1<<40)},
		{TCPBytesReceived(512), attribute.Int64("tcp.bytes.received", 512)},
		{TCPSegmentsSent(6), attribute.Int("tcp.segments.sent", 6)},
		{TCPSegmentsReceived(5), attribute.Int("tcp.segments.received", 5)},
		{TCPRetransmits(3), attribute.Int("tcp.retransmits", 3)},
		{TCPSYNACKRetransmits(2), attribute.Int("tcp.synack.retransmits", 2)},
		{TCPRTT(35), attribute.Int("tcp.rtt", 35)},
		{TCPObservedMidlife(true), attribute.Bool("tcp.observed_midlife", true)},
		{TCPSYNEstimated(true), attribute.Bool("tcp.syn.estimated", true)},
		{TCPOrphan(true), attribute.Bool("tcp.orphan", true)},
		{TCPEndUnseen(true), attribute.Bool("tcp.end_unseen", true)},
		{TCPLinkReasonClosedAfterFailure, attribute.String("tcp.link.reason", "closed_after_failure")},
		{TCPNetns(4026531840), attribute.Int("tcp.netns", 4026531840)},
		{TCPOwnerFromListener(true), attribute.Bool("tcp.owner.from_listener", true)},
		{TCPEventsDropped(12), attribute.Int("tcp.events.dropped", 12)},
		{TCPState("ESTABLISHED"), attribute.String("tcp.state", "ESTABLISHED")},
		{TCPStateOld("SYN_SENT"), attribute.String("tcp.state.old", "SYN_SENT")},
		{TCPFD(7), attribute.Int("tcp.fd", 7)},
		{TCPSyscall("close"), attribute.String("tcp.syscall", "close")},
		{TCPErrno("ECONNRESET"), attribute.String("tcp.errno", "ECONNRESET")},
		{TCPDropReason("TCP_LISTEN_OVERFLOW"), attribute.String("tcp.drop.reason", "TCP_LISTEN_OVERFLOW")},
		{TCPCloseInitiatorLocal, attribute.String("tcp.close.initiator", "local")},
		{TCPCloseInitiatorRemote, attribute.String("tcp.close.initiator", "remote")},
		{TCPCloseInitiatorUnknown, attribute.String("tcp.close.initiator", "unknown")},
		{TCPResetDirectionSent, attribute.String("tcp.reset.direction", "sent")},
		{TCPResetDirectionReceived, attribute.String("tcp.reset.direction", "received")},
		{TCPResetReasonUnknown, attribute.String("tcp.reset.reason", "UNKNOWN")},
		{TCPResetContextProcess, attribute.String("tcp.reset.context", "process")},
		{TCPResetContextKernel, attribute.String("tcp.reset.context", "kernel")},
		{TCPResetContextUnknown, attribute.String("tcp.reset.context", "unknown")},
		{TCPContextProcess, attribute.String("tcp.context", "process")},
		{TCPContextKernel, attribute.String("tcp.context", "kernel")},
		{TCPContextUnknown, attribute.String("tcp.context", "unknown")},
	}
	for _, tt := range tests {
		t.Run(string(tt.want.Key), func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %s=%s (%s), want %s=%s (%s)", tt.got.Key, tt.got.Value.String(), tt.got.Value.Type(),
					tt.want.Key, tt.want.Value.String(), tt.want.Value.Type())
			}
		})
	}
}
