package exporter

import (
	"os"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"

	"github.com/tcpspan/tcpspan/conn"
	tcpsemconv "github.com/tcpspan/tcpspan/semconv"
)

type resourceKey struct {
	service string
	pid     uint32
	exe     string // basename of its executable; "" if unknown
	comm    string // the kernel's name for it
	// The owner's container and pod (container.id, k8s.pod.uid).
	container, pod string
}

// resourceEntry is the OTLP resource of one owning process, built once.
type resourceEntry struct {
	pb        *resourcepb.Resource
	schemaURL string
	used      uint64
}

// resourceKeyOf names the service, process and container c's span goes
// under.
func (e *Exporter) resourceKeyOf(c *conn.Connection) resourceKey {
	owner := c.Owner
	if e.cfg.singleService {
		return resourceKey{service: e.cfg.agentService, pid: uint32(os.Getpid()), exe: "tcpspan"}
	}
	if owner.PID == 0 {
		// No process owns it (a reset for no socket, a connection seen
		// mid-life): the agent's service, but never the agent's process,
		// which did not act.
		return resourceKey{service: e.cfg.agentService}
	}
	// One look at /proc per process (cached): its service and executable.
	var name, exe string
	if e.names != nil {
		n := e.names.lookup(owner)
		name, exe = n.name, n.exe
	} else {
		name = e.cfg.serviceOf(owner)
	}
	if name == "" {
		name = e.cfg.agentService
	}
	info := e.containers.Of(owner.PID, owner.Comm, c.OwnerCgroup)
	return resourceKey{service: name, pid: owner.PID, exe: exe, comm: owner.Comm, container: info.ID, pod: info.PodUID}
}

// resourceLocked returns the resource of key, building it on first use.
func (e *Exporter) resourceLocked(key resourceKey) *resourceEntry {
	e.clock++
	if r, ok := e.resources[key]; ok {
		r.used = e.clock
		return r
	}
	if len(e.resources) >= e.cfg.maxServices {
		// Forget the least recently used. Batches that hold it keep it
		// until they are sent.
		var oldest resourceKey
		var at uint64
		for k, r := range e.resources {
			if at == 0 || r.used < at {
				oldest, at = k, r.used
			}
		}
		delete(e.resources, oldest)
	}
	res := e.resourceFor(key)
	r := &resourceEntry{pb: resourceProto(res.Attributes()), schemaURL: res.SchemaURL(), used: e.clock}
	e.resources[key] = r
	return r
}

func (e *Exporter) resourceFor(k resourceKey) *resource.Resource {
	attrs := []attribute.KeyValue{semconv.ServiceName(k.service)}
	if k.pid != 0 {
		attrs = append(attrs, semconv.ProcessPID(int(k.pid)))
		switch {
		case k.exe == "":
			attrs = append(attrs, semconv.ProcessExecutableName(k.comm))
		case k.exe == k.comm || k.comm == "":
			attrs = append(attrs, semconv.ProcessExecutableName(k.exe))
		default:
			attrs = append(attrs, semconv.ProcessExecutableName(k.exe), tcpsemconv.TCPProcessCommKey.String(k.comm))
		}
	}
	if k.container != "" {
		attrs = append(attrs, semconv.ContainerID(k.container))
	}
	if k.pod != "" {
		attrs = append(attrs, semconv.K8SPodUID(k.pod))
	}
	own := resource.NewSchemaless(attrs...)
	if e.cfg.base == nil {
		return own
	}
	merged, err := resource.Merge(e.cfg.base, own)
	if err != nil {
		return own
	}
	return merged
}
