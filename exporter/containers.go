package exporter

import (
	"sync"

	"github.com/tcpspan/tcpspan/conn"
	"github.com/tcpspan/tcpspan/container"
)

// maxContainerEntries bounds the cache of resolved owners' containers.
const maxContainerEntries = 8192

// containers finds the container and Kubernetes pod of owning processes
// (see package container): from /proc/PID/cgroup while the process lives,
// else from the cgroup id the kernel side read when it connected, accepted
// or listened, through the cgroup tree. Results are cached per pid and
// checked against the comm, since pids are reused.
type containers struct {
	cgroups *container.Cgroups

	mu    sync.Mutex
	cache map[uint32]containerEntry
}

type containerEntry struct {
	comm string
	info container.Info
}

func newContainers(cgroupRoot string) *containers {
	return &containers{cgroups: container.NewCgroups(cgroupRoot), cache: map[uint32]containerEntry{}}
}

// resolve returns the container and pod of p, whose cgroup id was cgroup
// (0 if unknown).
func (c *containers) resolve(p conn.Process, cgroup uint64) container.Info {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.cache[p.PID]; ok && e.comm == p.Comm {
		return e.info
	}
	info, err := container.OfPID(p.PID)
	if err != nil {
		// Gone: its cgroup may still be there. Not cached: the pid is
		// free for another process.
		return c.cgroups.Of(cgroup)
	}
	if len(c.cache) >= maxContainerEntries {
		clear(c.cache)
	}
	c.cache[p.PID] = containerEntry{comm: p.Comm, info: info}
	return info
}
