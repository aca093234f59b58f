package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// config is make bench's environment: the knobs scripts/bench.sh has always
// honoured, read once.
type config struct {
	Rounds       int      // ROUNDS=3
	Duration     int      // DURATION=5: seconds of load per run
	Connections  int      // CONNECTIONS=32: wrk -c
	StormWorkers int      // STORM_WORKERS=nproc: rstorm -workers
	SyscallCalls int      // SYSCALL_CALLS=5000000: getpid calls per syscall run
	LoopConns    int      // LOOP_CONNS=2000: connections per batch of a loop run (loopBatches batches)
	Verify       string   // VERIFY=last: Jaeger read back for the last round (all, 0)
	Profile      bool     // PROFILE=0
	Keep         bool     // KEEP=0: keep the work directory
	Out          string   // OUT=bench: where results go
	Modes        []string // MODES="none export-sink ..."
	AgentFlags   []string // AGENT_FLAGS=: more tcpspan flags for every tcpspan mode
	BinB         string   // BIN_B=: the second tcpspan of the *-b modes
	WrkHeader    string   // WRK_HEADER=: one more header on every request

	// Not from the environment: the agent and the bench's own programs.
	Agent string // bin/tcpspan
	Bin   string // directory of rstorm, otlpsink, getpid, connloop
}

// loopBatches is how many batches a loop run times; its figure is the
// fastest one's.
const loopBatches = 15

// defaultModes is what make bench runs when MODES is not set.
const defaultModes = "none export-sink export-all errors-only bpftrace keepalive-none keepalive-agent syscall-none syscall-agent storm-none storm-errors loop-none loop-export loop-errors"

func configFromEnv(bin string) (*config, error) {
	c := &config{
		Rounds: 3, Duration: 5, Connections: 32, StormWorkers: runtime.NumCPU(), SyscallCalls: 5_000_000, LoopConns: 2000,
		Verify: "last", Out: "bench", Agent: "bin/tcpspan", Bin: bin,
	}
	ints := []struct {
		env string
		v   *int
	}{{"ROUNDS", &c.Rounds}, {"DURATION", &c.Duration}, {"CONNECTIONS", &c.Connections}, {"STORM_WORKERS", &c.StormWorkers}, {"SYSCALL_CALLS", &c.SyscallCalls}, {"LOOP_CONNS", &c.LoopConns}}
	for _, k := range ints {
		if s := os.Getenv(k.env); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("%s=%q: want a positive integer", k.env, s)
			}
			*k.v = n
		}
	}
	if s := os.Getenv("VERIFY"); s != "" {
		if s != "last" && s != "all" && s != "0" {
			return nil, fmt.Errorf("VERIFY=%q: want last, all or 0", s)
		}
		c.Verify = s
	}
	c.Profile = os.Getenv("PROFILE") == "1"
	c.Keep = os.Getenv("KEEP") == "1"
	if s := os.Getenv("OUT"); s != "" {
		c.Out = s
	}
	c.Modes = strings.Fields(os.Getenv("MODES"))
	if len(c.Modes) == 0 {
		c.Modes = strings.Fields(defaultModes)
	}
	c.AgentFlags = strings.Fields(os.Getenv("AGENT_FLAGS"))
	c.WrkHeader = os.Getenv("WRK_HEADER")
	var needB []string
	for _, name := range c.Modes {
		m, ok := specOf(name)
		if !ok {
			var all []string
			for _, m := range modes {
				all = append(all, m.Name)
			}
			return nil, fmt.Errorf("MODES: unknown mode %q (modes: %s)", name, strings.Join(all, " "))
		}
		if m.BinB {
			needB = append(needB, name)
		}
	}
	if len(needB) > 0 {
		b := os.Getenv("BIN_B")
		if b == "" {
			return nil, fmt.Errorf("modes %s need BIN_B, a tcpspan binary", strings.Join(needB, ", "))
		}
		abs, err := filepath.Abs(b)
		if err != nil {
			return nil, err
		}
		if _, err := exec.LookPath(abs); err != nil {
			return nil, fmt.Errorf("BIN_B=%s: %v", b, err)
		}
		c.BinB = abs
	}
	return c, nil
}

// needsJaeger says whether a mode run (or PROFILE's errors-only) sends
// spans to Jaeger rather than to the counting receiver.
func (c *config) needsJaeger() bool {
	if c.Profile {
		return true
	}
	for _, name := range c.Modes {
		if m, _ := specOf(name); m.Agent == "tcpspan" && !m.Sink {
			return true
		}
	}
	return false
}

// wrkArgs is the wrk command line of an http or keepalive run.
func (c *config) wrkArgs(kind string, port int) []string {
	args := []string{"wrk", "-t1", fmt.Sprintf("-c%d", c.Connections), fmt.Sprintf("-d%ds", c.Duration)}
	if kind == kindHTTP {
		args = append(args, "-H", "Connection: close")
	}
	if c.WrkHeader != "" {
		args = append(args, "-H", c.WrkHeader)
	}
	return append(args, fmt.Sprintf("http://127.0.0.1:%d/", port))
}

// loadWords is the load, in words, for the table's header.
func (c *config) loadWords() string {
	kinds := map[string]bool{}
	for _, name := range c.Modes {
		if m, ok := specOf(name); ok {
			kinds[m.Kind] = true
		}
	}
	var parts []string
	if kinds[kindHTTP] {
		parts = append(parts, fmt.Sprintf("wrk -t1 -c%d -d%ds -H 'Connection: close' against nginx (2 workers)", c.Connections, c.Duration))
	}
	if kinds[kindKeepalive] {
		parts = append(parts, fmt.Sprintf("keepalive: wrk -t1 -c%d -d%ds against nginx, connections kept", c.Connections, c.Duration))
	}
	if kinds[kindStorm] {
		parts = append(parts, fmt.Sprintf("rstorm -workers %d -d%ds", c.StormWorkers, c.Duration))
	}
	if kinds[kindSyscall] {
		parts = append(parts, fmt.Sprintf("syscall: %d getpid calls on one CPU", c.SyscallCalls))
	}
	if kinds[kindLoop] {
		parts = append(parts, fmt.Sprintf("loop: connloop, %d batches of %d connections on one CPU", loopBatches, c.LoopConns))
	}
	if c.WrkHeader != "" && (kinds[kindHTTP] || kinds[kindKeepalive]) {
		parts = append(parts, fmt.Sprintf("every request with -H %q", c.WrkHeader))
	}
	return strings.Join(parts, "; ")
}
