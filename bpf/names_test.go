package bpf

import (
	"testing"
)

// The tracefs fallback, for kernels whose BTF lacks the reason enums. The
// file is this machine's /sys/kernel/tracing/events/tcp/tcp_send_reset/format.
func TestFormatSymbols(t *testing.T) {
	names, err := formatSymbols("testdata/tcp_send_reset.format", "reason")
	if err != nil {
		t.Fatal(err)
	}
	for v, want := range map[uint32]string{0: "NOT_SPECIFIED", 1: "NO_SOCKET", 6: "TCP_FLAGS", 11: "TCP_ABORT_ON_CLOSE", 14: "TCP_STATE"} {
		if names[v] != want {
			t.Errorf("reason %d = %q, want %q", v, names[v], want)
		}
	}
	// The state table of the same file must not leak in.
	if len(names) != 26 {
		t.Errorf("%d names, want the 26 reasons", len(names))
	}
	kn := &KernelNames{resetReasons: names}
	if got := kn.ResetReason(99); got != "UNKNOWN(99)" {
		t.Errorf("unknown value: %q", got)
	}
}
