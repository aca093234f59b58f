//go:build linux

package caps

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestEffectiveMatchesProc checks capget against the kernel's other
// account of the same set, CapEff in /proc/self/status.
func TestEffectiveMatchesProc(t *testing.T) {
	s, err := Effective()
	if err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	var want uint64
	found := false
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			want, err = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatalf("CapEff %q: %v", v, err)
			}
			found = true
		}
	}
	if !found {
		t.Fatal("no CapEff line in /proc/self/status")
	}
	for c := uint(0); c < 64; c++ {
		if got := s.Has(c); got != (want&(1<<c) != 0) {
			t.Errorf("capability %d: Has = %v, CapEff %#x", c, got, want)
		}
	}
}

func TestHas(t *testing.T) {
	var s Set
	s[unix.CAP_SYS_ADMIN/32] |= 1 << (unix.CAP_SYS_ADMIN % 32) // 21: first word
	s[unix.CAP_BPF/32] |= 1 << (unix.CAP_BPF % 32)             // 39: second word
	for _, tt := range []struct {
		c    uint
		want bool
	}{
		{unix.CAP_SYS_ADMIN, true},
		{unix.CAP_BPF, true},
		{unix.CAP_PERFMON, false},
		{unix.CAP_NET_ADMIN, false},
		{64, false},
		{1000, false},
	} {
		if got := s.Has(tt.c); got != tt.want {
			t.Errorf("Has(%d) = %v, want %v", tt.c, got, tt.want)
		}
	}
}

func TestReleaseBefore511(t *testing.T) {
	for release, want := range map[string]bool{
		"5.10.0-28-amd64":  true,
		"5.11.0":           false,
		"6.1.0-18-amd64":   false,
		"6.18.44-fc-v1272": false,
		"4.19.0-26-amd64":  true,
		"not-a-release":    true,
		"":                 true,
		"10.0.1":           false,
	} {
		if got := releaseBefore511(release); got != want {
			t.Errorf("releaseBefore511(%q) = %v, want %v", release, got, want)
		}
	}
}
