// Package container tells which container, and which Kubernetes pod, a
// process runs in, from its cgroup path alone: every common runtime names
// its containers and pods there. It does nothing else: it never asks a
// container runtime or the Kubernetes API (the Collector's k8sattributes
// processor adds names from these ids), and it has no kernel side.
package container

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
)

// Info is what a cgroup path says of a process. Both fields are empty for
// a process on the host.
type Info struct {
	// ID is the container's full id: 64 lowercase hex digits, as
	// `podman inspect` and `docker inspect` give it (container.id).
	ID string
	// PodUID is the Kubernetes pod's UID, with dashes (k8s.pod.uid).
	PodUID string
}

// FromPath reads a cgroup path. It knows:
//   - cgroupfs names: /docker/<id>, /libpod_parent/libpod-<id>,
//     /kubepods/burstable/pod<uid>/<id> (any runtime under Kubernetes);
//   - systemd names: docker-<id>.scope, libpod-<id>.scope (and its
//     "container" child), cri-containerd-<id>.scope, crio-<id>.scope, and
//     kubepods-burstable-pod<uid with _ for ->.slice.
//
// A runtime's monitor (crio-conmon-<id>.scope, libpod-conmon-<id>.scope)
// is not its container, and systemd's own scopes (session-1.scope) carry no
// id. The innermost id wins.
func FromPath(path string) Info {
	var info Info
	parts := strings.Split(strings.Trim(path, "/"), "/")
	kube := false
	for _, p := range parts {
		if strings.HasPrefix(p, "kubepods") {
			kube = true
		}
		if id := containerID(p); id != "" {
			info.ID = id
		}
		if kube {
			if uid := podUID(p); uid != "" {
				info.PodUID = uid
			}
		}
	}
	return info
}

// containerID returns the container id a path component names, or "".
func containerID(p string) string {
	if isHexID(p) {
		return p
	}
	name, ok := strings.CutSuffix(p, ".scope")
	if !ok {
		// cgroupfs with a runtime prefix: libpod-<id>.
		name = p
	}
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return ""
	}
	prefix, id := name[:i], name[i+1:]
	if !isHexID(id) || strings.HasSuffix(prefix, "conmon") {
		return ""
	}
	return id
}

// podUID returns the pod UID a path component names, or "": pod<uid> in
// the cgroupfs form, ...-pod<uid with underscores>.slice in the systemd
// form.
func podUID(p string) string {
	if name, ok := strings.CutSuffix(p, ".slice"); ok {
		i := strings.LastIndex(name, "-pod")
		if i < 0 {
			return ""
		}
		uid := strings.ReplaceAll(name[i+len("-pod"):], "_", "-")
		if isUID(uid) {
			return uid
		}
		return ""
	}
	if uid, ok := strings.CutPrefix(p, "pod"); ok && isUID(uid) {
		return uid
	}
	return ""
}

// isHexID reports whether s is a full container id: 64 lowercase hex
// digits.
func isHexID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
	}
	return true
}

// isUID reports whether s is a UUID in its canonical text form,
// 8-4-4-4-12 lowercase hex digits.
func isUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHex(s[i]) {
				return false
			}
		}
	}
	return true
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }

// FromProcCgroup reads the content of /proc/PID/cgroup: the cgroup v2 line
// ("0::/path") first, then, on hosts with cgroup v1 hierarchies (where a
// runtime may leave the v2 path at the root), each v1 line.
func FromProcCgroup(data []byte) Info {
	var v1 []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		// hierarchy-id:controllers:path; the path may hold colons.
		fields := strings.SplitN(sc.Text(), ":", 3)
		if len(fields) != 3 {
			continue
		}
		if fields[0] == "0" && fields[1] == "" {
			if info := FromPath(fields[2]); info != (Info{}) {
				return info
			}
			continue
		}
		v1 = append(v1, fields[2])
	}
	for _, p := range v1 {
		if info := FromPath(p); info != (Info{}) {
			return info
		}
	}
	return Info{}
}

// OfPID reads the container and pod of a running process from
// /proc/PID/cgroup. It fails when the process is gone.
func OfPID(pid uint32) (Info, error) {
	data, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/cgroup")
	if err != nil {
		return Info{}, err
	}
	return FromProcCgroup(data), nil
}

// Short returns the first 12 digits of a container id, as runtimes show
// it, or "" for none.
func (i Info) Short() string {
	if len(i.ID) < 12 {
		return i.ID
	}
	return i.ID[:12]
}
