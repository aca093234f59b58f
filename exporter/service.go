package exporter

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/tcpspan/tcpspan/conn"
)

// maxServiceNames bounds the cache of resolved process names.
const maxServiceNames = 8192

// serviceNames names owning processes as services: by the process's own
// OTEL_SERVICE_NAME, so that tcpspan's spans sit beside the application's,
// else by its executable name. Results are cached per pid and checked
// against the comm, since pids are reused.
type serviceNames struct {
	mu    sync.Mutex
	cache map[uint32]serviceName
}

type serviceName struct {
	comm, name string
	exe        string // basename of /proc/PID/exe; "" if unreadable
}

func newServiceNames() *serviceNames {
	return &serviceNames{cache: make(map[uint32]serviceName)}
}

func (s *serviceNames) resolve(p conn.Process) string {
	return s.lookup(p).name
}

// executable returns the basename of p's executable (/proc/PID/exe), as
// process.executable.name wants it, or "" when it cannot be read (the
// process is gone, or another user's without CAP_SYS_PTRACE).
func (s *serviceNames) executable(p conn.Process) string {
	return s.lookup(p).exe
}

// lookup returns what is known of p, reading /proc on a miss.
func (s *serviceNames) lookup(p conn.Process) serviceName {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.cache[p.PID]; ok && n.comm == p.Comm {
		return n
	}
	proc := "/proc/" + strconv.FormatUint(uint64(p.PID), 10)
	n := serviceName{comm: p.Comm, name: p.Comm}
	if env, err := os.ReadFile(proc + "/environ"); err == nil {
		if v, ok := envValue(env, "OTEL_SERVICE_NAME"); ok && v != "" {
			n.name = v
		}
	}
	if exe, err := os.Readlink(proc + "/exe"); err == nil {
		// A deleted executable reads "/path/name (deleted)".
		n.exe = filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
	}
	if len(s.cache) >= maxServiceNames {
		clear(s.cache)
	}
	s.cache[p.PID] = n
	return n
}

// envValue finds key in a NUL-separated environment block.
func envValue(env []byte, key string) (string, bool) {
	prefix := []byte(key + "=")
	for _, kv := range bytes.Split(env, []byte{0}) {
		if bytes.HasPrefix(kv, prefix) {
			return string(kv[len(prefix):]), true
		}
	}
	return "", false
}
