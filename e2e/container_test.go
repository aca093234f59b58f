package e2e

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcpspan/tcpspan/bpf"
	"github.com/tcpspan/tcpspan/internal/testutil"
)

// randomHex returns n random bytes as lowercase hex.
func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// cgroupDir creates dir (a path below the cgroup v2 mount) and removes it,
// leaf first, when the test ends.
func cgroupDir(t *testing.T, root, dir string) string {
	t.Helper()
	full := filepath.Join(root, dir)
	if err := os.MkdirAll(full, 0o755); err != nil {
		t.Fatalf("create cgroup %s: %v", full, err)
	}
	t.Cleanup(func() {
		for d := full; d != root && strings.HasPrefix(d, root); d = filepath.Dir(d) {
			os.Remove(d)
		}
	})
	return full
}

// abortInCgroup runs the abort server (TestMain) inside ns, placed in
// cgroup before it starts, as service; connects to it and gets reset.
func abortInCgroup(t *testing.T, ns *testutil.NetNS, cgroup, service string) {
	t.Helper()
	port := ns.FreePort(t)
	self, _ := os.Executable()
	server := exec.Command("sh", "-c", `echo $$ > "$0/cgroup.procs" && exec ip netns exec "$1" "$2"`, cgroup, ns.Name, self)
	server.Env = append(os.Environ(), "E2E_ROLE=abort-server", "OTEL_SERVICE_NAME="+service,
		fmt.Sprintf("E2E_ADDR=127.0.0.1:%d", port))
	server.Stderr = os.Stderr
	stdout, _ := server.StdoutPipe()
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	defer server.Wait()
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "listening\n" {
		t.Fatalf("abort server in %s: %q", cgroup, line)
	}
	var c net.Conn
	ns.Do(t, func() {
		var err error
		if c, err = net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
			t.Fatal(err)
		}
	})
	defer c.Close()
	c.Write(make([]byte, 18))
	if _, err := c.Read(make([]byte, 1)); err == nil || !strings.Contains(err.Error(), "reset") {
		t.Errorf("client read: %v, want connection reset by peer", err)
	}
}

// A server process in a cgroup shaped as the kubelet makes them, in both
// cgroup driver forms: its spans carry the container id and the pod UID
// the path names. The test process, on the host, carries neither.
func TestKubernetesCgroups(t *testing.T) {
	testutil.RequireBPF(t)
	root, err := bpf.FindCgroup2()
	if err != nil {
		t.Fatalf("cgroup v2: %v", err)
	}
	jaeger := testutil.StartJaeger(t)
	bin := buildAgent(t)
	ns := testutil.NewNetNS(t)
	start := time.Now()
	a := startAgent(t, bin, ns, "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+jaeger.OTLPGRPC, "OTEL_SERVICE_NAME=tcpspan-e2e-k8s")

	type form struct{ name, dir, id, uid string }
	var forms []form
	for _, driver := range []string{"cgroupfs", "systemd"} {
		id := randomHex(t, 32)
		u := randomHex(t, 16)
		uid := u[:8] + "-" + u[8:12] + "-" + u[12:16] + "-" + u[16:20] + "-" + u[20:]
		dir := "kubepods/burstable/pod" + uid + "/" + id
		if driver == "systemd" {
			dir = "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + strings.ReplaceAll(uid, "-", "_") +
				".slice/cri-containerd-" + id + ".scope"
		}
		forms = append(forms, form{driver, dir, id, uid})
	}
	for _, f := range forms {
		abortInCgroup(t, ns, cgroupDir(t, root, f.dir), "k8s-"+f.name)
	}
	time.Sleep(time.Second) // the batch
	a.stop(t)

	for _, f := range forms {
		spans := spansOf(t, jaeger, "k8s-"+f.name, start)
		server := find(spans, func(sp *testutil.Span) bool { return sp.Kind == testutil.SpanKindServer && isError(sp) })
		if server == nil {
			t.Errorf("%s: no server span with an error among %d", f.name, len(spans))
			continue
		}
		if got, want := fmt.Sprint(server.Resource["container.id"]), f.id; got != want {
			t.Errorf("%s: container.id %s, want %s (from %s)", f.name, got, want, f.dir)
		}
		if got, want := fmt.Sprint(server.Resource["k8s.pod.uid"]), f.uid; got != want {
			t.Errorf("%s: k8s.pod.uid %s, want %s", f.name, got, want)
		}
		if !strings.HasPrefix(server.Status.Message, "RST sent (") {
			t.Errorf("%s: diagnosis %q", f.name, server.Status.Message)
		}
	}
	self := strings.TrimSpace(readFile("/proc/self/comm"))
	for _, sp := range spansOf(t, jaeger, self, start) {
		if _, ok := sp.Resource["container.id"]; ok {
			t.Errorf("a span of the test process, on the host, names container %v", sp.Resource["container.id"])
		}
	}
}
