package main

import (
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestREADMECommands: the README's shell blocks run as written. Every make
// target exists; every ./bin/tcpspan line parses, flags and variables; an
// OTLP endpoint is one that make jaeger or make collector listens on, with
// the protocol it takes there; curl queries a port Jaeger serves; go run
// names a command of this module. A line of any other kind fails the test,
// so that a new example is checked too.
func TestREADMECommands(t *testing.T) {
	root := filepath.Join("..", "..")
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	readme, makefile := read("README.md"), read("Makefile")
	// Listening endpoints, host:port, and what speaks there: the key
	// (grpc or http) above each endpoint line.
	listens := map[string]string{}
	for _, cfg := range []string{"tools/jaeger/jaeger.yaml", "otel-collector.yaml"} {
		proto := ""
		for _, line := range strings.Split(read(cfg), "\n") {
			line = strings.TrimSpace(line)
			switch {
			case line == "grpc:" || line == "http:":
				proto = strings.TrimSuffix(line, ":")
			case strings.HasPrefix(line, "endpoint: ") && proto != "":
				listens[strings.TrimPrefix(line, "endpoint: ")] = proto
				proto = ""
			}
		}
	}
	if listens["127.0.0.1:14317"] != "grpc" || listens["127.0.0.1:16686"] != "http" {
		t.Fatalf("listeners read from the configurations: %v", listens)
	}

	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(readme, -1)
	if len(blocks) < 3 {
		t.Fatalf("%d shell blocks in README.md", len(blocks))
	}
	checked := 0
	for _, b := range blocks {
		for _, line := range strings.Split(b[1], "\n") {
			if i := strings.Index(line, " #"); i >= 0 {
				line = line[:i]
			}
			line = strings.TrimSpace(line)
			fields := strings.Fields(line)
			if len(fields) == 0 {
				continue
			}
			checked++
			switch {
			case fields[0] == "make":
				for _, target := range fields[1:] {
					if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(target) + `:`).MatchString(makefile) {
						t.Errorf("README: %q: the Makefile has no target %s", line, target)
					}
				}
			case fields[0] == "curl":
				u := regexp.MustCompile(`'(http://[^']+)'|(http://\S+)`).FindStringSubmatch(line)
				if u == nil {
					t.Errorf("README: %q: no URL", line)
					continue
				}
				parsed, err := url.Parse(u[1] + u[2])
				if err != nil || listens[parsed.Host] != "http" {
					t.Errorf("README: %q: nothing in the configurations serves HTTP on %s", line, parsed.Host)
				}
			case fields[0] == "go" && len(fields) > 2 && fields[1] == "run":
				if _, err := os.Stat(filepath.Join(root, fields[2], "main.go")); err != nil {
					t.Errorf("README: %q: %v", line, err)
				}
			case slices.Index(fields, "./bin/tcpspan") >= 0:
				checkAgentLine(t, line, fields, listens)
			default:
				t.Errorf("README: %q: a command this test does not check", line)
			}
		}
	}
	t.Logf("%d README commands checked", checked)
}

// checkAgentLine parses VAR=value ... ./bin/tcpspan args as the agent
// would, and checks its OTLP endpoint against what listens.
func checkAgentLine(t *testing.T, line string, fields []string, listens map[string]string) {
	t.Helper()
	bin := slices.Index(fields, "./bin/tcpspan")
	env := map[string]string{}
	for _, kv := range fields[:bin] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			t.Errorf("README: %q: %q before the command is not VAR=value", line, kv)
			return
		}
		env[k] = v
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if _, err := parseConfig(fields[bin+1:], lookup); err != nil && !errors.Is(err, errHelp) {
		t.Errorf("README: %q: %v", line, err)
		return
	}
	endpoint, ok := env["OTEL_EXPORTER_OTLP_ENDPOINT"]
	if !ok {
		return
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Errorf("README: %q: %v", line, err)
		return
	}
	want := "grpc"
	if env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf" {
		want = "http"
	}
	if got := listens[u.Host]; got != want {
		t.Errorf("README: %q: sends OTLP/%s to %s, where make jaeger and make collector have %q", line, want, u.Host, got)
	}
}
