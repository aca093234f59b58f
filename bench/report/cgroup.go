package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cpuGroups are the CPU accounting cgroups of a bench: the load (nginx, wrk,
// rstorm, getpid), the agent and the trace backend (Jaeger or the counting
// receiver) each in one of their own, so that their CPU time is the
// scheduler's, not 1/CLK_TCK samples. cgroup v1's cpuacct where it is
// mounted (it leaves the cgroup v2 tree, where the agent attaches, alone),
// else a cgroup v2 directory. A nil *cpuGroups measures nothing: the
// runs then have CPU from clock ticks only.
type cpuGroups struct {
	base string
	v1   bool
}

var groupNames = []string{"load", "agent", "backend"}

// newCPUGroups makes the three groups under a directory named for this
// process, or returns nil and says why not.
func newCPUGroups() *cpuGroups {
	name := fmt.Sprintf("tcpspan-bench-%d", os.Getpid())
	var g *cpuGroups
	if _, err := os.Stat("/sys/fs/cgroup/cpuacct/cpuacct.usage"); err == nil {
		g = &cpuGroups{base: filepath.Join("/sys/fs/cgroup/cpuacct", name), v1: true}
	} else if mnt := cgroup2Mount(); mnt != "" {
		g = &cpuGroups{base: filepath.Join(mnt, name)}
	} else {
		fmt.Fprintln(os.Stderr, "bench: no cgroup to account CPU in: CPU from clock ticks only")
		return nil
	}
	for _, n := range groupNames {
		if err := os.MkdirAll(filepath.Join(g.base, n), 0o755); err != nil {
			fmt.Fprintf(os.Stderr, "bench: no CPU accounting cgroup (%v): CPU from clock ticks only\n", err)
			g.remove()
			return nil
		}
	}
	return g
}

// cgroup2Mount is where the cgroup v2 hierarchy is mounted, from
// /proc/self/mounts, or "".
func cgroup2Mount() string {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 3 && f[2] == "cgroup2" {
			return f[1]
		}
	}
	return ""
}

// procs is the cgroup.procs file of a group, for a command to move itself
// into (see command); "" without groups.
func (g *cpuGroups) procs(group string) string {
	if g == nil {
		return ""
	}
	return filepath.Join(g.base, group, "cgroup.procs")
}

// usageNS is the CPU time the group's tasks used so far, in ns (0 without
// groups).
func (g *cpuGroups) usageNS(group string) int64 {
	if g == nil {
		return 0
	}
	if g.v1 {
		b, _ := os.ReadFile(filepath.Join(g.base, group, "cpuacct.usage"))
		n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return n
	}
	kv, _ := readFields(filepath.Join(g.base, group, "cpu.stat"))
	n, _ := strconv.ParseInt(kv["usage_usec"], 10, 64)
	return n * 1000
}

// remove deletes the groups; their tasks must be gone.
func (g *cpuGroups) remove() {
	if g == nil {
		return
	}
	for _, n := range groupNames {
		os.Remove(filepath.Join(g.base, n))
	}
	os.Remove(g.base)
}

// readFields reads "key value" lines.
func readFields(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 {
			m[f[0]] = f[1]
		}
	}
	return m, nil
}
