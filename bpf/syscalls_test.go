//go:build linux && amd64

package bpf

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestSyscallNumbersAreLinuxAMD64s(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"close", SyscallClose, unix.SYS_CLOSE},
		{"accept", SyscallAccept, unix.SYS_ACCEPT},
		{"accept4", SyscallAccept4, unix.SYS_ACCEPT4},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, the kernel's is %d", c.name, c.got, c.want)
		}
	}
}
