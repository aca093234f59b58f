package check

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// requireRoot skips a test that needs root, unless privileged tests are
// required (scripts/test.sh as root sets TCPSPAN_BPF_TESTS_REQUIRED): then
// a skip is a failure, as everywhere in this repository.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("TCPSPAN_BPF_TESTS_REQUIRED") != "" {
		t.Fatal("not root, and TCPSPAN_BPF_TESTS_REQUIRED is set")
	}
	t.Skip("not root: cannot load BPF programs (run as root)")
}

// boundedBy returns the setpriv arguments that run a program as uid 0 with
// exactly the DaemonSet's capabilities: what Kubernetes gives the container
// (capabilities dropped from the bounding set are gone for good, even for
// root).
func boundedBy(t *testing.T) []string {
	t.Helper()
	sc := daemonSet(t, manifests(t)).Spec.Template.Spec.Containers[0].SecurityContext
	set := "-all"
	for _, c := range sc.Capabilities.Add {
		set += ",+" + strings.ToLower(string(c))
	}
	// What this host alone requires is added as docs/kubernetes.md tells
	// (sysAdmin=true, extraCapabilities): the test is of the manifest,
	// not of the host.
	required, _ := agentCapabilities(t)
	for name, why := range required {
		if covered, ok := hostCondition(name, why); ok && !slices.Contains(sc.Capabilities.Add, corev1.Capability(name)) {
			t.Logf("this host also requires CAP_%s (%s): added, as %s", name, why, covered)
			set += ",+" + strings.ToLower(name)
		}
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatalf("setpriv (util-linux) is needed: %v", err)
	}
	return []string{"--bounding-set=" + set, "--inh-caps=-all"}
}

// With only the DaemonSet's capabilities the agent loads every feature that
// it loads as root on this kernel: the capability set loses nothing.
func TestDaemonSetCapabilitiesLoadEverything(t *testing.T) {
	requireRoot(t)
	bin := tcpspan(t)
	full := run(t, bin, "-features")
	bounded := run(t, "setpriv", append(boundedBy(t), bin, "-features")...)
	if !bytes.Equal(full, bounded) {
		t.Fatalf("features as root:\n%s\nwith the DaemonSet's capabilities:\n%s", full, bounded)
	}
	if !bytes.Contains(bounded, []byte("on   syn-overflow")) {
		t.Errorf("cgroup_skb did not attach (CAP_NET_ADMIN):\n%s", bounded)
	}
}

// With only the DaemonSet's capabilities and its arguments, the agent
// starts, traces, and answers the liveness probe's /healthz.
func TestDaemonSetCapabilitiesRun(t *testing.T) {
	requireRoot(t)
	c := daemonSet(t, manifests(t)).Spec.Template.Spec.Containers[0]

	// The DaemonSet's arguments, with /healthz on a free loopback port
	// instead of the pod's 0.0.0.0:9464.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	args := append(boundedBy(t), tcpspan(t))
	for _, a := range c.Args {
		if strings.HasPrefix(a, "-health-addr=") {
			a = "-health-addr=" + addr
		}
		args = append(args, a)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "setpriv", args...)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	healthy := false
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline) && !healthy; {
		select {
		case err := <-done:
			t.Fatalf("the agent exited: %v\n%s", err, log.String())
		case <-time.After(500 * time.Millisecond):
		}
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		healthy = resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "ok"
	}
	var page []byte
	if healthy {
		// What the ServiceMonitor of docs/kubernetes.md scrapes.
		resp, err := http.Get("http://" + addr + "/metrics")
		if err == nil {
			page, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
	}
	cancel()
	err = <-done
	if !healthy {
		t.Fatalf("no /healthz answer in 90 s\n%s", log.String())
	}
	if !strings.Contains(string(page), "# TYPE tcpspan_records_emitted_total counter\n") {
		t.Errorf("/metrics:\n%s", page)
	}
	if !strings.Contains(log.String(), "msg=tracing") {
		t.Errorf("the agent never said it was tracing:\n%s", log.String())
	}
	// tcpspan exits 0 on SIGINT after flushing (Wait reports the
	// cancellation that sent it, so read the status itself).
	if st := cmd.ProcessState; st == nil || !st.Success() {
		t.Errorf("the agent's exit on SIGINT: %v (%v)\n%s", st, err, log.String())
	}
}
