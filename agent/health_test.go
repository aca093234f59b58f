package agent_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/tcpspan/tcpspan/agent"
	"github.com/tcpspan/tcpspan/bpf"
	"github.com/tcpspan/tcpspan/exporter"
)

// The health line carries the export counts when there is an exporter, and
// stays one line of key=value pairs whatever the values hold.
func TestHealthLineIsOneLineWithExportCounts(t *testing.T) {
	h := agent.Health{
		Kernel: bpf.Counters{RingbufLostConn: 3, Missed: map[string]uint64{"kfree_skb\nx": 1}},
		Export: agent.ExportHealth{On: true, Errors: 2, Spans: exporter.Stats{Recorded: 10, Exported: 6, ExportFailed: 1}},
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("health", h.LogAttrs()...)
	line := buf.String()
	if strings.Count(line, "\n") != 1 {
		t.Fatalf("not one line: %q", line)
	}
	for _, kv := range []string{"lost_ringbuf=3", "spans_recorded=10", "spans_exported=6", "spans_failed=1", "spans_dropped=3", "export_errors=2", "missed=1"} {
		if !strings.Contains(line, " "+kv) {
			t.Errorf("no %s in %q", kv, line)
		}
	}
	h.Export = agent.ExportHealth{}
	buf.Reset()
	slog.New(slog.NewTextHandler(&buf, nil)).Info("health", h.LogAttrs()...)
	if strings.Contains(buf.String(), "spans_") {
		t.Errorf("export counts without an exporter: %q", buf.String())
	}
}
