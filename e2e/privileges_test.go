package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpspan/tcpspan/internal/testutil"
)

// capNames maps every capability bit of this kernel to its name, from
// capsh itself.
func capNames(t *testing.T) []string {
	t.Helper()
	last, err := strconv.Atoi(strings.TrimSpace(readFile("/proc/sys/kernel/cap_last_cap")))
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, last+1)
	for bit := range names {
		out, err := exec.Command("capsh", fmt.Sprintf("--decode=%x", uint64(1)<<bit)).Output()
		if err != nil {
			t.Fatal(err)
		}
		_, name, _ := strings.Cut(strings.TrimSpace(string(out)), "=")
		names[bit] = strings.ToUpper(name)
	}
	return names
}

// withCaps returns a command that runs bin with exactly the capabilities
// caps: as root with every other one dropped from the bounding set, or as
// nobody with caps as ambient capabilities.
func withCaps(all []string, user string, caps []string, bin string, args ...string) *exec.Cmd {
	lower := func(cs []string) string { return strings.ToLower(strings.Join(cs, ",")) }
	var capsh []string
	if user == "root" {
		var drop []string
		for _, c := range all {
			if !slicesContains(caps, c) {
				drop = append(drop, c)
			}
		}
		capsh = []string{"--drop=" + lower(drop)}
	} else {
		capsh = []string{"--caps=" + lower(append([]string{"cap_setpcap", "cap_setuid", "cap_setgid"}, caps...)) + "+ep",
			"--keep=1", "--user=" + user, "--inh=" + lower(caps), "--addamb=" + lower(caps)}
		if len(caps) == 0 {
			capsh = capsh[:3]
		}
	}
	capsh = append(capsh, "--", "-c", `exec "$@"`, "sh", bin)
	return exec.Command("capsh", append(capsh, args...)...)
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// The agent traces with exactly the capabilities it documents for this
// host (tcpspan -capabilities), as root in a restricted container would,
// and as an ordinary user given them; without any one of them it exits
// naming it.
func TestLeastPrivilege(t *testing.T) {
	testutil.RequireBPF(t)
	if _, err := exec.LookPath("capsh"); err != nil {
		if os.Getenv(testutil.RequiredEnv) == "1" {
			t.Fatal("capsh not installed (libcap2-bin; scripts/deps.sh)")
		}
		t.Skip("capsh not installed (libcap2-bin)")
	}
	all := capNames(t)
	// A copy of the agent, and a place for its stats, that nobody can reach.
	dir, err := os.MkdirTemp("", "tcpspan-caps-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)
	bin := filepath.Join(dir, "tcpspan")
	if b, err := os.ReadFile(buildAgent(t)); err != nil || os.WriteFile(bin, b, 0o755) != nil {
		t.Fatalf("copy agent: %v", err)
	}

	for _, user := range []string{"root", "nobody"} {
		t.Run(user, func(t *testing.T) {
			out, err := withCaps(all, user, nil, bin, "-capabilities").CombinedOutput()
			if err != nil {
				t.Fatalf("tcpspan -capabilities: %v\n%s", err, out)
			}
			var required []string
			for _, line := range strings.Split(string(out), "\n") {
				if f := strings.Fields(line); len(f) > 1 && f[1] == "required:" {
					required = append(required, f[0])
				}
			}
			t.Logf("required here as %s: %v", user, required)
			for _, c := range []string{"CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"} {
				if !slicesContains(required, c) {
					t.Errorf("%s not among the required %v", c, required)
				}
			}

			ns := testutil.NewNetNS(t)
			stats := filepath.Join(dir, "stats-"+user+".json")
			logPath := filepath.Join(t.TempDir(), "tcpspan.log")
			logFile, _ := os.Create(logPath)
			defer logFile.Close()
			cmd := withCaps(all, user, required, bin, "-netns", ns.Path, "-health-interval", "0", "-stats-file", stats)
			cmd.Stdout, cmd.Stderr = logFile, logFile
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			a := &agent{cmd: cmd, stderr: logFile, logPath: logPath}
			t.Cleanup(func() { a.stop(t) })
			deadline := time.Now().Add(10 * time.Second)
			for !strings.Contains(readFile(logPath), "msg=tracing") {
				if time.Now().After(deadline) || strings.Contains(readFile(logPath), "tcpspan: ") {
					t.Fatalf("the agent did not start with %v:\n%s", required, readFile(logPath))
				}
				time.Sleep(50 * time.Millisecond)
			}
			status := readFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
			var want uint64
			for _, c := range required {
				want |= 1 << uint64(slicesIndex(all, c))
			}
			if !strings.Contains(status, fmt.Sprintf("CapEff:\t%016x\n", want)) || !strings.Contains(status, "Name:\ttcpspan\n") {
				t.Fatalf("the agent does not run with exactly %v (mask %016x):\n%s", required, want, status)
			}
			srv := startServer(t, ns)
			srv.connect(t, ns, 3)
			time.Sleep(200 * time.Millisecond)
			a.stopWith(t, syscall.SIGTERM)
			st := readStats(t, stats)
			// Terminal only, without -v: clean connections are counted in
			// the kernel, the others sent.
			emitted := st["tcpspan.records.emitted{kind=connection}"] + st["tcpspan.connections.clean_in_kernel"]
			if n := sockets(t, ns); emitted != n || n != 6 {
				t.Errorf("with only %v: %d connections recorded or counted for %d sockets", required, emitted, n)
			}
			for _, line := range strings.Split(readFile(logPath), "\n") {
				if strings.Contains(line, "level=WARN") {
					t.Logf("warning with the required set only: %s", line)
				}
			}

			for _, c := range required {
				var fewer []string
				for _, r := range required {
					if r != c {
						fewer = append(fewer, r)
					}
				}
				out, err := withCaps(all, user, fewer, bin, "-netns", ns.Path).CombinedOutput()
				msg := strings.TrimSpace(string(out))
				var exit *exec.ExitError
				if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(msg, c) || strings.Count(msg, "\n") > 0 {
					t.Errorf("without %s: %v, want exit 1 with one line naming it:\n%s", c, err, msg)
				}
			}
		})
	}
}

func slicesIndex(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// TestTracefsLeftAlone: where no fallback needs tracefs, as on this kernel,
// the agent loads and attaches everything without mounting it. It runs in
// a mount namespace of its own, where tracefs is unmounted first, so the
// host's mounts are not touched.
func TestTracefsLeftAlone(t *testing.T) {
	testutil.RequireBPF(t)
	bin := buildAgent(t)
	// -features loads and attaches every hook, then exits; the mount table
	// it leaves is read in the same namespace.
	script := `umount /sys/kernel/tracing 2>/dev/null; umount /sys/kernel/debug/tracing 2>/dev/null
if grep -q ' - tracefs ' /proc/self/mountinfo; then echo "tracefs still mounted before the agent"; exit 2; fi
"$0" -features || exit 3
echo ---
grep ' - tracefs ' /proc/self/mountinfo || true`
	out, err := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, bin).CombinedOutput()
	if err != nil {
		t.Fatalf("tcpspan -features in a mount namespace without tracefs: %v\n%s", err, out)
	}
	features, mounts, _ := strings.Cut(string(out), "---\n")
	if strings.Contains(features, "syscalls/sys_exit_accept") {
		t.Skipf("this kernel uses accept()'s syscall tracepoints, which need tracefs:\n%s", features)
	}
	if strings.TrimSpace(mounts) != "" {
		t.Errorf("the agent mounted tracefs, which no hook it uses here needs:\n%s\nfeatures:\n%s", mounts, features)
	}
}
