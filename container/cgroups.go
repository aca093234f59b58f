package container

import (
	"io/fs"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Cgroups finds a cgroup v2 path by its id (the id the kernel gives
// bpf_get_current_cgroup_id, which is the inode of its directory), for a
// process that is gone by the time its connection is exported. It walks
// the cgroup v2 mount and caches what it found; a miss walks again, at most
// once a second.
type Cgroups struct {
	root string

	mu      sync.Mutex
	paths   map[uint64]string
	scanned time.Time
}

// rescanEvery bounds how often a miss walks the cgroup tree again.
const rescanEvery = time.Second

// NewCgroups resolves ids below root, the cgroup v2 mount point (such as
// /sys/fs/cgroup). An empty root resolves nothing.
func NewCgroups(root string) *Cgroups {
	return &Cgroups{root: root, paths: map[uint64]string{}}
}

// Path returns the path of cgroup id relative to the mount ("/" for the
// root), or false.
func (c *Cgroups) Path(id uint64) (string, bool) {
	if c == nil || c.root == "" || id == 0 {
		return "", false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.paths[id]; ok {
		return p, true
	}
	if time.Since(c.scanned) < rescanEvery {
		return "", false
	}
	c.scanned = time.Now()
	clear(c.paths)
	filepath.WalkDir(c.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			rel, _ := filepath.Rel(c.root, path)
			c.paths[st.Ino] = filepath.Clean("/" + rel)
		}
		return nil
	})
	p, ok := c.paths[id]
	return p, ok
}

// Of returns the container and pod of cgroup id, if it still exists.
func (c *Cgroups) Of(id uint64) Info {
	if p, ok := c.Path(id); ok {
		return FromPath(p)
	}
	return Info{}
}
