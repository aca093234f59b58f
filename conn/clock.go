//go:build linux || darwin

package conn

import (
	"time"

	"golang.org/x/sys/unix"
)

// BootClock returns the conversion from kernel boot-clock nanoseconds
// (bpf_ktime_get_boot_ns, which keeps counting through suspend) to wall
// time. The offset is measured once, as the tightest of several paired
// readings of CLOCK_REALTIME and the boot clock (see bootClockID).
func BootClock() func(ns uint64) time.Time {
	var best time.Duration
	var bestOffset int64
	for i := 0; i < 25; i++ {
		var r1, b, r2 unix.Timespec
		unix.ClockGettime(unix.CLOCK_REALTIME, &r1)
		unix.ClockGettime(bootClockID, &b)
		unix.ClockGettime(unix.CLOCK_REALTIME, &r2)
		spread := time.Duration(r2.Nano() - r1.Nano())
		if i == 0 || spread < best {
			best = spread
			bestOffset = (r1.Nano()+r2.Nano())/2 - b.Nano()
		}
	}
	return func(ns uint64) time.Time {
		if ns == 0 {
			return time.Time{}
		}
		return time.Unix(0, bestOffset+int64(ns))
	}
}
