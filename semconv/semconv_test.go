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

// TestNamesDocumented checks that every key is under tcpspan. (a namespace
// upstream will not claim), every event name and error.type value under
// tcp., each unique and listed in README.md, and that no key is also the
// namespace of another.
func TestNamesDocumented(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	keys := names(t, "attributes.go", regexp.MustCompile(`attribute\.Key\("([^"]+)"\)`))
	events := names(t, "events.go", regexp.MustCompile(`(?m)^\tEvent\w+ = "([^"]+)"`))
	errorTypes := names(t, "errortype.go", regexp.MustCompile(`(?m)^\tErrorType\w+ = "([^"]+)"`))
	for _, group := range []struct {
		name, prefix string
		names        []string
	}{{"key", "tcpspan.", keys}, {"event", "tcp.", events}, {"error.type", "tcp.", errorTypes}} {
		t.Run(group.name, func(t *testing.T) {
			seen := map[string]bool{}
			for _, n := range group.names {
				if !strings.HasPrefix(n, group.prefix) {
					t.Errorf("%s %q is not under %s", group.name, n, group.prefix)
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
	for _, k := range keys {
		for _, other := range append(keys, TCPStormEventsPrefix) {
			if strings.HasPrefix(other, k+".") {
				t.Errorf("key %q is also the namespace of %q", k, other)
			}
		}
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
		{TCPCloseFD(7), attribute.Int("tcpspan.close.fd", 7)},
		{TCPStormCount(4211), attribute.Int("tcpspan.storm.count", 4211)},
		{TCPStormEvents("rst_sent", 4211), attribute.Int("tcpspan.storm.events.rst_sent", 4211)},
		{TCPCloseUnreadBytes(18), attribute.Int("tcpspan.close.unread_bytes", 18)},
		{TCPResetReason("NO_SOCKET"), attribute.String("tcpspan.reset.reason", "NO_SOCKET")},
		{TCPListenerBacklog(6), attribute.Int("tcpspan.listener.backlog", 6)},
		{TCPListenerBacklogMax(5), attribute.Int("tcpspan.listener.backlog_max", 5)},
		{TCPBytesSent(1 << 40), attribute.Int64("tcpspan.bytes.sent", 1<<40)},
		{TCPBytesReceived(512), attribute.Int64("tcpspan.bytes.received", 512)},
		{TCPSegmentsSent(6), attribute.Int("tcpspan.segments.sent", 6)},
		{TCPSegmentsReceived(5), attribute.Int("tcpspan.segments.received", 5)},
		{TCPRetransmits(3), attribute.Int("tcpspan.retransmits", 3)},
		{TCPSYNACKRetransmits(2), attribute.Int("tcpspan.synack.retransmits", 2)},
		{TCPRTT(35), attribute.Int("tcpspan.rtt", 35)},
		{TCPObservedMidlife(true), attribute.Bool("tcpspan.observed_midlife", true)},
		{TCPSYNEstimated(true), attribute.Bool("tcpspan.syn.estimated", true)},
		{TCPOrphan(true), attribute.Bool("tcpspan.orphan", true)},
		{TCPEndUnseen(true), attribute.Bool("tcpspan.end_unseen", true)},
		{TCPLinkReasonClosedAfterFailure, attribute.String("tcpspan.link.reason", "closed_after_failure")},
		{TCPNetns(4026531840), attribute.Int("tcpspan.netns", 4026531840)},
		{TCPOwnerFromListener(true), attribute.Bool("tcpspan.owner.from_listener", true)},
		{TCPEventsDropped(12), attribute.Int("tcpspan.events.dropped", 12)},
		{TCPStatePrevious("syn_sent"), attribute.String("tcpspan.state.previous", "syn_sent")},
		{TCPFD(7), attribute.Int("tcpspan.fd", 7)},
		{TCPSyscall("close"), attribute.String("tcpspan.syscall", "close")},
		{TCPErrno("ECONNRESET"), attribute.String("tcpspan.errno", "ECONNRESET")},
		{TCPDropReason("TCP_LISTEN_OVERFLOW"), attribute.String("tcpspan.drop.reason", "TCP_LISTEN_OVERFLOW")},
		{TCPCloseInitiatorLocal, attribute.String("tcpspan.close.initiator", "local")},
		{TCPCloseInitiatorRemote, attribute.String("tcpspan.close.initiator", "remote")},
		{TCPCloseInitiatorUnknown, attribute.String("tcpspan.close.initiator", "unknown")},
		{TCPResetDirectionSent, attribute.String("tcpspan.reset.direction", "sent")},
		{TCPResetDirectionReceived, attribute.String("tcpspan.reset.direction", "received")},
		{TCPResetReasonUnknown, attribute.String("tcpspan.reset.reason", "UNKNOWN")},
		{TCPResetContextProcess, attribute.String("tcpspan.reset.context", "process")},
		{TCPResetContextKernel, attribute.String("tcpspan.reset.context", "kernel")},
		{TCPResetContextUnknown, attribute.String("tcpspan.reset.context", "unknown")},
		{TCPContextProcess, attribute.String("tcpspan.context", "process")},
		{TCPContextKernel, attribute.String("tcpspan.context", "kernel")},
		{TCPContextUnknown, attribute.String("tcpspan.context", "unknown")},
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

// Every kernel TCP state maps to one of upstream's network.connection.state
// values.
func TestConnectionState(t *testing.T) {
	valid := map[string]bool{}
	for _, kv := range []attribute.KeyValue{upstream.NetworkConnectionStateClosed, upstream.NetworkConnectionStateCloseWait,
		upstream.NetworkConnectionStateClosing, upstream.NetworkConnectionStateEstablished, upstream.NetworkConnectionStateFinWait1,
		upstream.NetworkConnectionStateFinWait2, upstream.NetworkConnectionStateLastAck, upstream.NetworkConnectionStateListen,
		upstream.NetworkConnectionStateSynReceived, upstream.NetworkConnectionStateSynSent, upstream.NetworkConnectionStateTimeWait} {
		valid[kv.Value.AsString()] = true
	}
	for _, kernel := range []string{"ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE",
		"CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV"} {
		if v := ConnectionState(kernel); !valid[v] {
			t.Errorf("ConnectionState(%q) = %q, not an upstream value", kernel, v)
		}
	}
	if v := ConnectionState("STATE(42)"); v != "" {
		t.Errorf("an unknown state maps to %q", v)
	}
}
