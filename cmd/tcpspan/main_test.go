package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestBadInvocationsExit2WithOneLine(t *testing.T) {
	for _, args := range [][]string{
		{"-port", "abc"},
		{"-port", "0"},
		{"-port", "1,2,3,4,5,6,7,8,9"},
		{"-ring-buffer-bytes", "1000"},
		{"-max-connections", "0"},
		{"-no-such-flag"},
		{"stray"},
		{"-clean-ratio", "1.5"},
		{"-otlp-endpoint", "udp://127.0.0.1:4317"},
		{"-netns", "doesnotexist"},
		{"-netns", "/proc/self/cmdline"}, // a file, not a namespace
		{"-netns", "4294967295"},         // an inode no namespace has
		{"-stats-file", "/nonexistent/dir/stats.json"},
	} {
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
		msg := errOut.String()
		if strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "tcpspan: ") {
			t.Errorf("%v: want one line starting 'tcpspan: ', got %q", args, msg)
		}
	}
}

func TestHelpDocumentsEveryFlag(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"-h"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, flag := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_RESOURCE_ATTRIBUTES",
		"OTEL_SERVICE_NAME", "-otlp-endpoint", "-terminal", "-clean-ratio", "-single-service", "-shutdown-timeout", "-netns", "-port", "-v", "-wide", "-clean-events", "-features", "-ring-buffer-bytes", "-max-connections", "-orphan-idle", "-health-interval", "-health-addr", "-stats-file", "-export-queue", "-capabilities", "-version", "OTEL_METRICS_EXPORTER",
		"OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED", "OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_EXPORT_TIMEOUT"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("help lacks %s", flag)
		}
	}
}

// -version prints the version the binary was built as, and exits: the one
// given at link time here.
func TestVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command")
	}
	bin := filepath.Join(t.TempDir(), "tcpspan")
	build := exec.Command("go", "build", "-o", bin,
		"-ldflags", "-X github.com/tcpspan/tcpspan/internal/version.version=v9.8.7", ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "-version").CombinedOutput()
	if want := "tcpspan v9.8.7 " + runtime.Version() + "\n"; err != nil || string(out) != want {
		t.Errorf("tcpspan -version: %v %q, want %q", err, out, want)
	}
}
