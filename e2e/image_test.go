package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcpspan/tcpspan/internal/testutil"
)

// podmanGlobal are the flags podman needs on this kind of machine: runc
// (crun refuses the hybrid cgroup layout) and cgroupfs (no systemd).
var podmanGlobal = []string{"--runtime", "runc", "--cgroup-manager", "cgroupfs"}

// podmanRunBase are the flags every container here needs: runc cannot set
// the default rlimits otherwise.
var podmanRunBase = []string{"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}

// agentPrivileges are the privileges and mounts the DaemonSet gives the
// agent (deploy/kubernetes/daemonset.yaml), as podman flags, in the chart's
// sysAdmin variant: podman's default seccomp profile, like the runtime
// default of the clusters that use it, lets bpf() through only with
// CAP_SYS_ADMIN (docs/kubernetes.md). Its capabilities only, the runtime's
// default seccomp profile, the host's PID namespace (owners' /proc
// entries), a cgroup namespace of its own (as a pod has), the host's
// cgroup tree, tracefs and BTF read-only, a read-only root.
var agentPrivileges = []string{
	"--cap-drop", "all", "--cap-add", "BPF,PERFMON,NET_ADMIN,DAC_READ_SEARCH,SYS_PTRACE,SYS_ADMIN",
	"--pid", "host", "--cgroupns", "private", "--read-only",
	"-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro",
	"-v", "/sys/kernel/tracing:/sys/kernel/tracing:ro",
	"-v", "/sys/kernel/btf:/sys/kernel/btf:ro",
}

// podman runs podman with the machine's global flags.
func podman(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("podman", append(podmanGlobal, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// requirePodman fails (skips, when not required) unless podman and runc
// are installed: scripts/deps.sh installs them.
func requirePodman(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"podman", "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			msg := tool + " is not installed (sudo make deps): the container tests need it"
			if os.Getenv(testutil.RequiredEnv) == "1" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
}

// startContainer runs a detached container and removes it when the test
// ends. It returns the container's full id.
func startContainer(t *testing.T, args ...string) string {
	t.Helper()
	id := podman(t, append(append([]string{"run", "-d"}, podmanRunBase...), args...)...)
	t.Cleanup(func() {
		exec.Command("podman", append(podmanGlobal, "rm", "-f", "-t", "2", id)...).Run()
	})
	return id
}

// waitLogs waits until a container's output holds want.
func waitLogs(t *testing.T, id, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		out, _ := exec.Command("podman", append(podmanGlobal, "logs", id)...).CombinedOutput()
		if strings.Contains(string(out), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %.12s never printed %q:\n%s", id, want, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// serverImage imports an image holding this test binary, built static, to
// run the abort server (TestMain) in a container.
func serverImage(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	build := exec.Command("go", "test", "-c", "-o", filepath.Join(dir, "e2e.test"), ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build a static e2e.test: %v\n%s", err, out)
	}
	if out, err := exec.Command("tar", "-C", dir, "-cf", filepath.Join(dir, "image.tar"), "e2e.test").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	image := "localhost/tcpspan-e2e-server:test"
	podman(t, "import", filepath.Join(dir, "image.tar"), image)
	t.Cleanup(func() { exec.Command("podman", append(podmanGlobal, "rmi", "-f", image)...).Run() })
	return image
}

// The agent's own image (Containerfile), run by podman with the
// DaemonSet's privileges, traces a server in a container beside it and a
// client on the host: the server's spans, in a real Jaeger, name the
// container by the id podman gives it, and the diagnosis; the host's name
// none.
func TestImageTracesContainers(t *testing.T) {
	testutil.RequireBPF(t)
	requirePodman(t)
	jaeger := testutil.StartJaeger(t)

	build := exec.Command("../scripts/image.sh")
	build.Env = append(os.Environ(), "IMAGE=localhost/tcpspan:e2e")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("scripts/image.sh: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("podman", append(podmanGlobal, "rmi", "-f", "localhost/tcpspan:e2e")...).Run() })
	server := serverImage(t)

	ns := testutil.NewNetNS(t)
	start := time.Now()
	agent := startContainer(t, append(append([]string{"--network", "host",
		"-v", "/var/run/netns:/var/run/netns:ro",
		"-e", "OTEL_EXPORTER_OTLP_ENDPOINT=http://" + jaeger.OTLPGRPC,
		"-e", "OTEL_SERVICE_NAME=tcpspan-image"}, agentPrivileges...),
		"localhost/tcpspan:e2e", "-netns", ns.Name, "-terminal", "-v")...)
	waitLogs(t, agent, "msg=tracing", 30*time.Second)

	port := ns.FreePort(t)
	srv := startContainer(t, "--network", "ns:"+ns.Path,
		"-e", "E2E_ROLE=abort-server", "-e", "OTEL_SERVICE_NAME=image-server",
		"-e", fmt.Sprintf("E2E_ADDR=127.0.0.1:%d", port), server, "/e2e.test")
	waitLogs(t, srv, "listening", 30*time.Second)
	var c net.Conn
	ns.Do(t, func() {
		var err error
		if c, err = net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
			t.Fatal(err)
		}
	})
	c.Write(make([]byte, 18))
	if _, err := c.Read(make([]byte, 1)); err == nil || !strings.Contains(err.Error(), "reset") {
		t.Errorf("client read: %v, want connection reset by peer", err)
	}
	c.Close()
	time.Sleep(time.Second) // the batch
	podman(t, "stop", "-t", "10", agent)
	logs, _ := exec.Command("podman", append(podmanGlobal, "logs", agent)...).CombinedOutput()
	t.Logf("agent container:\n%s", logs)

	spans := spansOf(t, jaeger, "image-server", start)
	sp := find(spans, func(sp *testutil.Span) bool { return sp.Kind == testutil.SpanKindServer && isError(sp) })
	if sp == nil {
		t.Fatalf("no server span with an error under image-server (%d spans)", len(spans))
	}
	if got := fmt.Sprint(sp.Resource["container.id"]); got != srv {
		t.Errorf("container.id %s, want the server container's %s", got, srv)
	}
	// The terminal view names it too, by its short id, beside the process.
	if !strings.Contains(string(logs), "e2e.test[") || !strings.Contains(string(logs), "] container "+srv[:12]) {
		t.Errorf("the agent's terminal view does not name container %.12s beside its process", srv)
	}
	if !strings.HasPrefix(sp.Status.Message, "RST sent (TCP_ABORT_ON_CLOSE): e2e.test[") ||
		!strings.Contains(sp.Status.Message, "with 18 bytes unread") {
		t.Errorf("diagnosis %q", sp.Status.Message)
	}
	self := strings.TrimSpace(readFile("/proc/self/comm"))
	client := find(spansOf(t, jaeger, self, start), func(sp *testutil.Span) bool {
		return sp.Kind == testutil.SpanKindClient && attr(sp, "network.peer.port") == fmt.Sprint(port)
	})
	if client == nil || !isError(client) {
		t.Fatalf("the host client's span: %+v", client)
	}
	if id, ok := client.Resource["container.id"]; ok {
		t.Errorf("the host client's span names container %v", id)
	}
}
