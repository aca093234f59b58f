package container

import (
	"os"
	"syscall"
	"testing"
)

const (
	id  = "3f4e1b0c9a7d2e6f8b5a4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f"
	uid = "8dbc5577-d0e2-4706-8787-57d52c03ddf2"
	// The systemd driver writes the pod UID with underscores.
	uidSystemd = "8dbc5577_d0e2_4706_8787_57d52c03ddf2"
)

func TestFromPath(t *testing.T) {
	tests := []struct {
		name, path string
		want       Info
	}{
		{"host process", "/user.slice/user-0.slice/session-1.scope", Info{}},
		{"host service", "/system.slice/nginx.service", Info{}},
		{"root", "/", Info{}},
		{"podman, cgroupfs", "/libpod_parent/libpod-" + id, Info{ID: id}},
		{"seen from another cgroup namespace (a pod's)", "/../../kubepods/burstable/pod" + uid + "/" + id, Info{ID: id, PodUID: uid}},
		{"podman, systemd", "/machine.slice/libpod-" + id + ".scope", Info{ID: id}},
		{"podman, systemd, inner cgroup", "/machine.slice/libpod-" + id + ".scope/container", Info{ID: id}},
		{"podman's monitor is not the container", "/machine.slice/libpod-conmon-" + id + ".scope", Info{}},
		{"docker, cgroupfs", "/docker/" + id, Info{ID: id}},
		{"docker, systemd", "/system.slice/docker-" + id + ".scope", Info{ID: id}},
		{"containerd, plain", "/default/" + id, Info{ID: id}},
		{"kubernetes, cgroupfs, burstable", "/kubepods/burstable/pod" + uid + "/" + id, Info{ID: id, PodUID: uid}},
		{"kubernetes, cgroupfs, guaranteed", "/kubepods/pod" + uid + "/" + id, Info{ID: id, PodUID: uid}},
		{"kubernetes, systemd, cri-containerd",
			"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidSystemd + ".slice/cri-containerd-" + id + ".scope",
			Info{ID: id, PodUID: uid}},
		{"kubernetes, systemd, cri-o",
			"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidSystemd + ".slice/crio-" + id + ".scope",
			Info{ID: id, PodUID: uid}},
		{"kubernetes, systemd, guaranteed, docker",
			"/kubepods.slice/kubepods-pod" + uidSystemd + ".slice/docker-" + id + ".scope",
			Info{ID: id, PodUID: uid}},
		{"cri-o's monitor", "/kubepods.slice/kubepods-pod" + uidSystemd + ".slice/crio-conmon-" + id + ".scope",
			Info{PodUID: uid}},
		{"the pod's own cgroup", "/kubepods/besteffort/pod" + uid, Info{PodUID: uid}},
		{"a pod-like name outside kubepods", "/pod" + uid + "/" + id, Info{ID: id}},
		{"a short id", "/docker/3f4e1b0c9a7d", Info{}},
		{"upper-case hex is not an id", "/docker/3F4E1B0C9A7D2E6F8B5A4C3D2E1F0A9B8C7D6E5F4A3B2C1D0E9F8A7B6C5D4E3F", Info{}},
		{"a malformed pod uid", "/kubepods/burstable/pod8dbc5577d0e2/" + id, Info{ID: id}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FromPath(tt.path); got != tt.want {
				t.Errorf("FromPath(%q) = %+v, want %+v", tt.path, got, tt.want)
			}
		})
	}
}

func TestFromProcCgroup(t *testing.T) {
	tests := []struct {
		name, data string
		want       Info
	}{
		{"cgroup v2", "0::/libpod_parent/libpod-" + id + "\n", Info{ID: id}},
		{"hybrid: v2 at the root, the container in v1",
			"12:pids:/docker/" + id + "\n4:memory:/docker/" + id + "\n1:name=systemd:/docker/" + id + "\n0::/\n",
			Info{ID: id}},
		{"v2 wins", "4:memory:/docker/" + id + "\n0::/kubepods/pod" + uid + "/" + id + "\n", Info{ID: id, PodUID: uid}},
		{"host", "0::/user.slice/user-0.slice/session-1.scope\n", Info{}},
		{"a path with a colon", "0::/weird:name/docker-" + id + ".scope\n", Info{ID: id}},
		{"garbage", "not a cgroup file", Info{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FromProcCgroup([]byte(tt.data)); got != tt.want {
				t.Errorf("FromProcCgroup = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestShort(t *testing.T) {
	if got := (Info{ID: id}).Short(); got != id[:12] {
		t.Errorf("Short() = %q", got)
	}
	if got := (Info{}).Short(); got != "" {
		t.Errorf("Short() of none = %q", got)
	}
}

func FuzzFromPath(f *testing.F) {
	f.Add("/kubepods/burstable/pod" + uid + "/" + id)
	f.Add("/machine.slice/libpod-" + id + ".scope/container")
	f.Fuzz(func(t *testing.T, path string) {
		info := FromPath(path)
		if info.ID != "" && !isHexID(info.ID) {
			t.Errorf("id %q is not 64 hex digits", info.ID)
		}
		if info.PodUID != "" && !isUID(info.PodUID) {
			t.Errorf("pod uid %q is not a UUID", info.PodUID)
		}
	})
}

func TestCgroupsByID(t *testing.T) {
	root := t.TempDir()
	dir := root + "/kubepods/besteffort/pod" + uid + "/" + id
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	c := NewCgroups(root)
	if got := c.Of(st.Ino); got != (Info{ID: id, PodUID: uid}) {
		t.Errorf("Of(%d) = %+v", st.Ino, got)
	}
	if p, ok := c.Path(st.Ino + 1_000_000); ok {
		t.Errorf("an unknown id resolved to %q", p)
	}
	if _, ok := NewCgroups("").Path(st.Ino); ok {
		t.Error("no root resolved an id")
	}
}
