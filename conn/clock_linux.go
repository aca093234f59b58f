package conn

import "golang.org/x/sys/unix"

// bootClockID is the clock of bpf_ktime_get_boot_ns: monotonic, counting
// through suspend.
const bootClockID = unix.CLOCK_BOOTTIME
