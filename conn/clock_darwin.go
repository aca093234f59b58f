package conn

import "golang.org/x/sys/unix"

// bootClockID is macOS's monotonic clock, which counts through sleep as
// Linux's CLOCK_BOOTTIME does. No kernel side runs there: the tracker is
// built on macOS for development, and its records come from tests.
const bootClockID = unix.CLOCK_MONOTONIC
