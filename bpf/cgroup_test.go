//go:build linux

package bpf

import (
	"os"
	"path/filepath"
	"testing"
)

// TestFindCgroup2 checks that the mount point found is a cgroup v2
// hierarchy: its root has cgroup.controllers, which v1 hierarchies lack.
func TestFindCgroup2(t *testing.T) {
	dir, err := FindCgroup2()
	if err != nil {
		t.Skipf("no cgroup v2 here: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cgroup.controllers")); err != nil {
		t.Errorf("FindCgroup2() = %s, not a cgroup v2 root: %v", dir, err)
	}
}
