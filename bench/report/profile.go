package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// profile is PROFILE=1: after the rounds, one more run of export-sink,
// errors-only, keepalive-agent, storm-errors and loop-errors each with the
// kernel's BPF run-time statistics on (kernel.bpf_stats_enabled, restored
// afterwards), export-sink and errors-only also under `perf record -g -p
// AGENT`; into profile.txt. Keep-alive's figures are per request, the
// others' per connection. loop-errors' are the steadiest: one connection at
// a time, nothing else on its CPU.
func (b *bench) profile() error {
	c := b.cfg
	fmt.Println("bench: profile: one more run of export-sink and errors-only (under perf record -g), keepalive-agent, storm-errors and loop-errors, with BPF run-time stats")
	old, err := os.ReadFile("/proc/sys/kernel/bpf_stats_enabled")
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.bpfStatsOld = strings.TrimSpace(string(old))
	b.mu.Unlock()
	if err := os.WriteFile("/proc/sys/kernel/bpf_stats_enabled", []byte("1"), 0o644); err != nil {
		return err
	}
	out := filepath.Join(c.Out, "profile.txt")
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(f, "# make bench PROFILE=1, %s: wrk -t1 -c%d -d%ds -H 'Connection: close' (keepalive-agent: without it); rstorm -workers %d\n",
		time.Now().UTC().Format(time.RFC3339), c.Connections, c.Duration, c.StormWorkers)
	fmt.Fprintln(f, "# (runs/conn: runs per TCP connection made, TcpActiveOpens; runs/req: per request wrk made; ns/run from the kernel's own bpf_stats)")
	fmt.Fprintln(f)
	perfModes := []string{"export-sink", "errors-only"}
	for _, name := range append(perfModes, "keepalive-agent", "storm-errors", "loop-errors") {
		if err := b.profileRun(name, f); err != nil {
			return err
		}
	}
	os.WriteFile("/proc/sys/kernel/bpf_stats_enabled", []byte(b.bpfStatsOld), 0o644)
	b.mu.Lock()
	b.bpfStatsOld = ""
	b.mu.Unlock()
	for _, name := range perfModes {
		data := filepath.Join(b.work, "profile", name, "perf.data")
		for _, s := range []struct{ title, args string }{
			{"user side: perf record -F 999 -g -p (agent), by shared object", "--no-children --sort dso -g none --percent-limit 0.5"},
			{"user side: by symbol (self), 0.7% and above", "--no-children --sort sym -g none --percent-limit 0.7"},
			{"user side: by symbol including callees (children), 4% and above", "--children --sort sym -g none --percent-limit 4"},
		} {
			fmt.Fprintf(f, "# %s, %s\n", name, s.title)
			rep, _ := exec.Command("perf", append([]string{"report", "-i", data, "--stdio"}, strings.Fields(s.args)...)...).Output()
			for _, line := range strings.Split(string(rep), "\n") {
				if strings.Contains(line, "%") {
					fmt.Fprintln(f, line)
				}
			}
			fmt.Fprintln(f)
		}
	}
	fmt.Printf("bench: wrote %s\n", out)
	return nil
}

// profileRun is one run of a mode with BPF statistics, and perf record
// unless it is the storm.
func (b *bench) profileRun(name string, f *os.File) error {
	m, _ := specOf(name)
	dir := filepath.Join(b.work, "profile", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	progs := func(file string) {
		out, _ := exec.Command("bpftool", "prog", "show", "-j").Output()
		os.WriteFile(filepath.Join(dir, file), out, 0o644)
	}
	progs("progs.pre.json")
	if m.Sink {
		if err := b.startSink(dir); err != nil {
			return err
		}
	}
	if err := b.startAgent(m, dir); err != nil {
		return err
	}
	progs("progs.before.json")
	if err := b.counters(filepath.Join(dir, "counters.before")); err != nil {
		return err
	}
	var perf *proc
	if m.Kind == kindHTTP {
		var err error
		perf, err = start([]string{"perf", "record", "-F", "999", "-g", "-p", fmt.Sprint(b.agent.pid()), "-o", filepath.Join(dir, "perf.data"),
			"--", "sleep", fmt.Sprint(b.cfg.Duration)}, "", filepath.Join(dir, "perf.log"))
		if err != nil {
			return err
		}
	}
	load := filepath.Join(dir, "load.out")
	if err := b.runLoad(b.loadArgv(m), load, load); err != nil {
		return err
	}
	if perf != nil {
		<-perf.done
	}
	progs("progs.after.json")
	if err := b.counters(filepath.Join(dir, "counters.after")); err != nil {
		return err
	}
	before, _ := readCounters(filepath.Join(dir, "counters.before"))
	after, _ := readCounters(filepath.Join(dir, "counters.after"))
	conns := after["TcpActiveOpens"] - before["TcpActiveOpens"]
	time.Sleep(time.Second)
	if err := b.stopAgent(dir); err != nil {
		return err
	}
	if err := b.stopSink(dir); err != nil {
		return err
	}
	loadOut, _ := os.ReadFile(load)
	per, unit := float64(conns), "connection"
	if m.Kind == kindKeepalive {
		per, unit = 0, "request"
		if sm := reRequests.FindStringSubmatch(string(loadOut)); sm != nil {
			per = f64(sm[1])
		}
	}
	var said []string
	for _, line := range strings.Split(string(loadOut), "\n") {
		if strings.Contains(line, "requests in") || strings.Contains(line, "attempts=") || strings.Contains(line, "unit=") {
			said = append(said, strings.TrimSpace(line))
		}
	}
	fmt.Fprintf(f, "## %s: %s\n", name, strings.Join(said, " "))
	if log, err := os.ReadFile(filepath.Join(dir, "agent.log")); err == nil {
		for _, line := range strings.Split(string(log), "\n") {
			if i := strings.Index(line, "msg=stopped"); i >= 0 {
				fmt.Fprintln(f, line[i:])
			}
		}
	}
	fmt.Fprintln(f)
	fmt.Fprintln(f, "# kernel side: the agent's BPF programs during the load (kernel.bpf_stats_enabled)")
	if err := bpfStats(f, filepath.Join(dir, "progs.pre.json"), filepath.Join(dir, "progs.before.json"), filepath.Join(dir, "progs.after.json"), per, unit); err != nil {
		return err
	}
	fmt.Fprintln(f)
	return nil
}
