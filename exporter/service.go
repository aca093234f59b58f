package exporter

import (
	"bytes"
	"os"
	"strconv"
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
}

func newServiceNames() *serviceNames {
	return &serviceNames{cache: make(map[uint32]serviceName)}
}

func (s *serviceNames) resolve(p conn.Process) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.cache[p.PID]; ok && n.comm == p.Comm {
		return n.name
	}
	name := p.Comm
	if env, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(p.PID), 10) + "/environ"); err == nil {
		if v, ok := envValue(env, "OTEL_SERVICE_NAME"); ok && v != "" {
			name = v
		}
	}
	if len(s.cache) >= maxServiceNames {
		clear(s.cache)
	}
	s.cache[p.PID] = serviceName{comm: p.Comm, name: name}
	return name
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
