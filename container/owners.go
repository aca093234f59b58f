package container

import (
	"sync"
)

// maxOwners bounds the cache of resolved processes.
const maxOwners = 8192

// Owners finds the container and Kubernetes pod of the processes that own
// sockets: from /proc/PID/cgroup while a process lives, else from the
// cgroup id the kernel side read when it connected, accepted or listened,
// through the cgroup tree (Cgroups). Results are cached per pid and checked
// against the process's comm, since pids are reused. Safe for concurrent
// use.
type Owners struct {
	cgroups *Cgroups

	mu    sync.Mutex
	cache map[uint32]owner
}

type owner struct {
	comm string
	info Info
}

// NewOwners resolves owners, with cgroupRoot (the cgroup v2 mount point)
// for those that are gone; "" resolves only live ones.
func NewOwners(cgroupRoot string) *Owners {
	return &Owners{cgroups: NewCgroups(cgroupRoot), cache: map[uint32]owner{}}
}

// Of returns the container and pod of process pid, named comm, whose
// cgroup id the kernel side read as cgroup (0 if unknown).
func (o *Owners) Of(pid uint32, comm string, cgroup uint64) Info {
	if pid == 0 {
		return Info{}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if e, ok := o.cache[pid]; ok && e.comm == comm {
		return e.info
	}
	info, err := OfPID(pid)
	if err != nil {
		// Gone: its cgroup may still be there. Not cached: the pid is
		// free for another process.
		return o.cgroups.Of(cgroup)
	}
	if len(o.cache) >= maxOwners {
		clear(o.cache)
	}
	o.cache[pid] = owner{comm: comm, info: info}
	return info
}
