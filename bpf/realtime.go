//go:build linux

package bpf

import (
	"os"
	"strings"
)

// realtimeKernel says whether the running kernel is a PREEMPT_RT one, which
// runs softirqs in task context: such kernels have /sys/kernel/realtime,
// holding 1.
func realtimeKernel() bool {
	b, err := os.ReadFile("/sys/kernel/realtime")
	return err == nil && strings.TrimSpace(string(b)) == "1"
}
