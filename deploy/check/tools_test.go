package check

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// repoRoot is the repository's top folder, two levels up from here.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "tcpspan")); err != nil {
		t.Fatalf("repository root not found from %s: %v", root, err)
	}
	return root
}

// tool builds one of the programs of scripts/tools.sh (Helm, the gateway
// Collector) and returns its path. A failed build fails the test: these
// checks do not skip.
func tool(t testing.TB, name string) string {
	t.Helper()
	cmd := exec.Command("bash", filepath.Join(repoRoot(t), "scripts", "tools.sh"), name)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/tools.sh %s: %v\n%s", name, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

var (
	tcpspanOnce sync.Once
	tcpspanBin  string
	tcpspanErr  error
	tcpspanLog  []byte
)

// tcpspan builds the agent from this repository, once, and returns the
// binary's path. Its flags and its -capabilities are what the manifests
// are checked against.
func tcpspan(t testing.TB) string {
	t.Helper()
	tcpspanOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tcpspan-check")
		if err != nil {
			tcpspanErr = err
			return
		}
		tcpspanBin = filepath.Join(dir, "tcpspan")
		cmd := exec.Command("go", "build", "-o", tcpspanBin, "./cmd/tcpspan")
		cmd.Dir = repoRoot(t)
		cmd.Env = append(os.Environ(), "GOWORK=off")
		tcpspanLog, tcpspanErr = cmd.CombinedOutput()
	})
	if tcpspanErr != nil {
		t.Fatalf("build tcpspan: %v\n%s", tcpspanErr, tcpspanLog)
	}
	return tcpspanBin
}

// run runs a program and returns its standard output; a failure fails the
// test with its standard error.
func run(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, stderr.String())
	}
	return out
}
