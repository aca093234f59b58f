package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	httpPort   = 8080
	closedPort = 9
)

// bench is one make bench: what it started, so that cleanup can stop it.
type bench struct {
	cfg  *config
	work string
	ns   string
	cg   *cpuGroups

	otlpPort, queryPort, sinkPort int

	mu          sync.Mutex
	nsMade      bool
	jaeger      *proc
	nginx       *proc
	sink        *proc
	agent       *proc
	load        *proc
	bpfStatsOld string
	cleaned     bool
	seq         int
	runsDir     string
	jaegerOTLP  string // OTEL_EXPORTER_OTLP_ENDPOINT for Jaeger
}

// cmdBench runs make bench: see scripts/bench.sh for what and
// docs/performance.md (Method) for how.
func cmdBench(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	bin := fs.String("bin", "", "directory holding rstorm, otlpsink, getpid and connloop (built from bench/)")
	fs.Parse(args)
	if *bin == "" || fs.NArg() != 0 {
		usage()
	}
	cfg, err := configFromEnv(*bin)
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("run it as root (it loads BPF programs and creates a network namespace; from another account: sudo make bench)")
	}
	work, err := os.MkdirTemp("", "tcpspan-bench.")
	if err != nil {
		return err
	}
	b := &bench{cfg: cfg, work: work, ns: fmt.Sprintf("tcpspan-bench-%d", os.Getpid()), runsDir: filepath.Join(work, "runs")}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Fprintln(os.Stderr, "bench: interrupted; cleaning up")
		b.cleanup()
		os.Exit(130)
	}()
	defer b.cleanup()
	return b.run()
}

func (b *bench) run() error {
	c := b.cfg
	if err := os.MkdirAll(c.Out, 0o755); err != nil {
		return err
	}
	b.cg = newCPUGroups()
	commit := gitCommit()
	if c.needsJaeger() {
		if err := b.startJaeger(); err != nil {
			return err
		}
	}
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	b.sinkPort = ports[0]
	if err := b.startNginx(); err != nil {
		return err
	}

	fmt.Printf("bench: %d rounds of %s; %ds of load each; namespace %s", c.Rounds, strings.Join(c.Modes, " "), c.Duration, b.ns)
	if b.jaeger != nil {
		fmt.Printf(", Jaeger OTLP on 127.0.0.1:%d", b.otlpPort)
	}
	fmt.Printf(" (work directory %s)\n", b.work)
	for round := 1; round <= c.Rounds; round++ {
		for _, name := range c.Modes {
			spec, _ := specOf(name)
			dir, err := b.runOne(spec, round)
			if err != nil {
				return err
			}
			r, err := loadRun(dir)
			if err != nil {
				return err
			}
			fmt.Print(progressLine(r))
		}
	}
	if err := b.verify(); err != nil {
		return err
	}
	if c.Profile {
		if err := b.profile(); err != nil {
			return err
		}
	}
	return summarizeTo(b.runsDir, filepath.Join(c.Out, "results.json"), filepath.Join(c.Out, "results.png"), commit, c.loadWords())
}

// gitCommit is the commit measured, "+dirty" when tracked files differ from it.
func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	commit := strings.TrimSpace(string(out))
	if exec.Command("git", "diff", "--quiet", "HEAD", "--").Run() != nil {
		commit += "+dirty"
	}
	return commit
}

// cleanup removes everything the bench started, also on Ctrl-C or an
// error: the agent (SIGINT, then SIGKILL after 5 s), the receiver, nginx,
// Jaeger, the namespace, the cgroups; and restores kernel.bpf_stats_enabled.
func (b *bench) cleanup() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cleaned {
		return
	}
	b.cleaned = true
	b.load.stop(syscall.SIGTERM, 2*time.Second)
	b.agent.stop(syscall.SIGINT, 5*time.Second)
	for _, p := range []*proc{b.sink, b.nginx, b.jaeger} {
		p.stop(syscall.SIGTERM, 5*time.Second)
	}
	if b.nsMade {
		exec.Command("ip", "netns", "del", b.ns).Run()
	}
	b.cg.remove()
	if b.bpfStatsOld != "" {
		os.WriteFile("/proc/sys/kernel/bpf_stats_enabled", []byte(b.bpfStatsOld), 0o644)
	}
	if b.cfg.Keep {
		fmt.Printf("bench: kept %s\n", b.work)
	} else {
		os.RemoveAll(b.work)
	}
}

// startJaeger starts Jaeger v2 (in memory, max_traces 5,000,000) on four
// free loopback ports, its CPU in the backend group.
func (b *bench) startJaeger() error {
	out, err := exec.Command("./scripts/tools.sh", "jaeger").Output()
	if err != nil {
		return fmt.Errorf("building Jaeger (scripts/tools.sh jaeger): %w", err)
	}
	bin := strings.TrimSpace(string(out))
	if i := strings.LastIndexByte(bin, '\n'); i >= 0 {
		bin = bin[i+1:]
	}
	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	b.otlpPort, b.queryPort = ports[0], ports[2]
	conf, err := os.ReadFile("tools/jaeger/jaeger.yaml")
	if err != nil {
		return err
	}
	s := string(conf)
	for _, r := range [][2]string{
		{"max_traces: 100000\n", "max_traces: 5000000\n"},
		{"127.0.0.1:14317", fmt.Sprintf("127.0.0.1:%d", ports[0])},
		{"127.0.0.1:14318", fmt.Sprintf("127.0.0.1:%d", ports[1])},
		{"127.0.0.1:16686", fmt.Sprintf("127.0.0.1:%d", ports[2])},
		{"127.0.0.1:16685", fmt.Sprintf("127.0.0.1:%d", ports[3])},
	} {
		if !strings.Contains(s, r[0]) {
			return fmt.Errorf("tools/jaeger/jaeger.yaml has no %q to change", strings.TrimSpace(r[0]))
		}
		s = strings.ReplaceAll(s, r[0], r[1])
	}
	path := filepath.Join(b.work, "jaeger.yaml")
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		return err
	}
	log := filepath.Join(b.work, "jaeger.log")
	b.mu.Lock()
	b.jaeger, err = start(inGroup(b.cg.procs("backend"), bin, "--config="+path), log, log, "JAEGER_LISTEN_HOST=127.0.0.1")
	b.mu.Unlock()
	if err != nil {
		return err
	}
	for range 300 {
		if dialable(b.otlpPort) && dialable(b.queryPort) {
			b.jaegerOTLP = fmt.Sprintf("http://127.0.0.1:%d", b.otlpPort)
			return nil
		}
		if !b.jaeger.alive() {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	l, _ := os.ReadFile(log)
	return fmt.Errorf("jaeger did not open its ports in 30s:\n%s", l)
}

// nginxConf is nginx's configuration: 2 workers, a tiny static answer, and
// no limit on the requests of a kept-alive connection (nginx closes one
// after 1000 by default, which would make the keepalive modes open some 50
// connections a second).
const nginxConf = `worker_processes 2;
daemon off;
pid {{dir}}/nginx.pid;
error_log {{dir}}/error.log;
events {
	worker_connections 4096;
}
http {
	access_log off;
	keepalive_requests 1000000000;
	client_body_temp_path {{dir}}/body;
	proxy_temp_path {{dir}}/proxy;
	fastcgi_temp_path {{dir}}/fastcgi;
	uwsgi_temp_path {{dir}}/uwsgi;
	scgi_temp_path {{dir}}/scgi;
	server {
		listen 127.0.0.1:{{port}} backlog=4096;
		location / {
			return 200 "ok\n";
		}
	}
}
`

// startNginx creates the namespace, with lo up, and starts nginx in it.
func (b *bench) startNginx() error {
	if out, err := exec.Command("ip", "netns", "add", b.ns).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add: %v: %s", err, out)
	}
	b.mu.Lock()
	b.nsMade = true
	b.mu.Unlock()
	if out, err := exec.Command("ip", "-n", b.ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		return fmt.Errorf("ip link set lo up: %v: %s", err, out)
	}
	dir := filepath.Join(b.work, "nginx")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	conf := strings.NewReplacer("{{dir}}", dir, "{{port}}", fmt.Sprint(httpPort)).Replace(nginxConf)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		return err
	}
	errLog := filepath.Join(dir, "error.log")
	p, err := start(inGroup(b.cg.procs("load"), "ip", "netns", "exec", b.ns, "nginx", "-e", errLog, "-p", dir, "-c", filepath.Join(dir, "nginx.conf")), "", "")
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.nginx = p
	b.mu.Unlock()
	for range 100 {
		if b.nsDialable(httpPort) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	l, _ := os.ReadFile(errLog)
	return fmt.Errorf("nginx did not start:\n%s", l)
}

// nsDialable says whether something listens on a loopback port of the
// bench's namespace.
func (b *bench) nsDialable(port int) bool {
	return exec.Command("ip", "netns", "exec", b.ns, "bash", "-c", fmt.Sprintf("(exec 3<>/dev/tcp/127.0.0.1/%d)", port)).Run() == nil
}

// counters writes the namespace's absolute TCP counters to a file, without
// touching nstat's shared history.
func (b *bench) counters(path string) error {
	cmd := exec.Command("ip", "netns", "exec", b.ns, "nstat", "-asz",
		"TcpActiveOpens", "TcpPassiveOpens", "TcpOutRsts", "TcpAttemptFails", "TcpEstabResets", "TcpExtListenOverflows")
	cmd.Env = append(os.Environ(), "NSTAT_HISTORY="+filepath.Join(b.work, "nstat.history"))
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("nstat: %w", err)
	}
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for n := 0; sc.Scan(); n++ {
		if f := strings.Fields(sc.Text()); n > 0 && len(f) >= 2 {
			lines = append(lines, f[0]+" "+f[1])
		}
	}
	return os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

// startSink starts the counting receiver for a run.
func (b *bench) startSink(dir string) error {
	p, err := start(inGroup(b.cg.procs("backend"), filepath.Join(b.cfg.Bin, "otlpsink"), "-addr", fmt.Sprintf("127.0.0.1:%d", b.sinkPort)),
		filepath.Join(dir, "sink.out"), filepath.Join(dir, "sink.log"))
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.sink = p
	b.mu.Unlock()
	for range 100 {
		if dialable(b.sinkPort) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	l, _ := os.ReadFile(filepath.Join(dir, "sink.log"))
	return fmt.Errorf("otlpsink did not start:\n%s", l)
}

// stopSink stops the receiver and appends its counts to the run's vals.
func (b *bench) stopSink(dir string) error {
	if b.sink == nil {
		return nil
	}
	b.sink.stop(syscall.SIGINT, 10*time.Second)
	b.mu.Lock()
	b.sink = nil
	b.mu.Unlock()
	out, err := os.ReadFile(filepath.Join(dir, "sink.out"))
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, "vals"), os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	f.Write(out)
	return f.Close()
}

// startAgent starts the agent of a mode, if it has one, and waits until it
// is attached.
func (b *bench) startAgent(m modeSpec, dir string) error {
	var argv []string
	var env []string
	switch m.Agent {
	case "":
		return nil
	case "bpftrace":
		argv = []string{"bpftrace", "-e", `tracepoint:sock:inet_sock_set_state { printf("%d %d %d\n", args->oldstate, args->newstate, args->sport); }`}
	default:
		bin := b.cfg.Agent
		if m.BinB {
			bin = b.cfg.BinB
		}
		argv = []string{bin, "-netns", b.ns}
		if m.CleanRatio != "" {
			argv = append(argv, "-clean-ratio", m.CleanRatio)
		}
		argv = append(argv, "-health-interval", "0")
		argv = append(argv, b.cfg.AgentFlags...)
		env = append(env, "OTEL_SERVICE_NAME=tcpspan-bench")
		if m.Sink {
			env = append(env, fmt.Sprintf("OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:%d", b.sinkPort))
		} else {
			env = append(env, "OTEL_EXPORTER_OTLP_ENDPOINT="+b.jaegerOTLP)
		}
	}
	logPath := filepath.Join(dir, "agent.log")
	p, err := start(inGroup(b.cg.procs("agent"), argv...), "", logPath, env...)
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.agent = p
	b.mu.Unlock()
	for range 300 {
		if !p.alive() {
			l, _ := os.ReadFile(logPath)
			b.mu.Lock()
			b.agent = nil
			b.mu.Unlock()
			return fmt.Errorf("%s agent exited:\n%s", m.Name, l)
		}
		if m.Agent == "bpftrace" {
			// Its "Attaching" line goes to stdout with the events; the
			// kernel's list of attached programs says when it is attached.
			out, _ := exec.Command("bpftool", "perf", "show").Output()
			for _, line := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(line, fmt.Sprintf("pid %d ", p.pid())) && strings.Contains(line, "inet_sock_set_state") {
					return nil
				}
			}
		} else if l, _ := os.ReadFile(logPath); strings.Contains(string(l), "msg=tracing") {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s agent did not attach in 30s", m.Name)
}

// stopAgent stops the agent with SIGINT (so that it logs its final line),
// then, if it is still there after 10 s, SIGTERM and SIGKILL; says which in
// the run's vals. A bpftrace that SIGINT did not stop is woken by a refused
// connect.
func (b *bench) stopAgent(dir string) error {
	p := b.agent
	if p == nil {
		return nil
	}
	t0 := time.Now()
	sig, pokes := "INT", 0
	p.cmd.Process.Signal(syscall.SIGINT)
	for i := 1; i <= 200 && p.alive(); i++ {
		// bpftrace 0.17 can miss a SIGINT that lands just before it blocks
		// in epoll_wait, and then waits for its next event: give it one, a
		// refused connect in the namespace, every second.
		if i%20 == 0 {
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.pid())); strings.TrimSpace(string(comm)) == "bpftrace" {
				b.nsDialable(closedPort)
				pokes++
			}
		}
		p.wait(50 * time.Millisecond)
	}
	if p.alive() {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.pid()))
		fmt.Fprintf(os.Stderr, "bench: agent %d (%s) still running 10s after SIGINT; SIGTERM\n", p.pid(), strings.TrimSpace(string(comm)))
		hungReport(p.pid(), filepath.Join(dir, "hung.txt"))
		sig = "TERM"
		p.cmd.Process.Signal(syscall.SIGTERM)
		if !p.wait(5 * time.Second) {
			sig = "KILL"
			p.cmd.Process.Kill()
			<-p.done
		}
	}
	b.mu.Lock()
	b.agent = nil
	b.mu.Unlock()
	return appendVals(dir, "stop_seconds", fmt.Sprintf("%.3f", time.Since(t0).Seconds()), "stop_signal", sig, "stop_pokes", pokes)
}

// hungReport writes what a hung agent's threads are doing.
func hungReport(pid int, path string) {
	var sb strings.Builder
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			for _, k := range []string{"State:", "Threads:", "SigPnd:", "ShdPnd:", "SigBlk:", "SigCgt:"} {
				if strings.HasPrefix(line, k) {
					sb.WriteString(line + "\n")
				}
			}
		}
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	for _, t := range tasks {
		wchan, _ := os.ReadFile(t + "/wchan")
		stat, _ := os.ReadFile(t + "/stat")
		state := ""
		if s := string(stat); strings.LastIndexByte(s, ')') > 0 {
			if f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]); len(f) > 0 {
				state = f[0]
			}
		}
		fmt.Fprintf(&sb, "task %s: %s %s\n", filepath.Base(t), wchan, state)
	}
	stack, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stack", pid))
	sb.Write(stack)
	os.WriteFile(path, []byte(sb.String()), 0o644)
}

// loadArgv is the command line of a mode's load.
func (b *bench) loadArgv(m modeSpec) []string {
	c := b.cfg
	switch m.Kind {
	case kindStorm:
		return []string{"ip", "netns", "exec", b.ns, filepath.Join(c.Bin, "rstorm"),
			"-addr", fmt.Sprintf("127.0.0.1:%d", closedPort), "-workers", fmt.Sprint(c.StormWorkers), "-d", fmt.Sprintf("%ds", c.Duration)}
	case kindSyscall:
		// On the host: a syscall tracepoint is global, and getpid touches
		// no namespace.
		return []string{filepath.Join(c.Bin, "getpid"), "-n", fmt.Sprint(c.SyscallCalls)}
	case kindLoop:
		return []string{"ip", "netns", "exec", b.ns, filepath.Join(c.Bin, "connloop"),
			"-n", fmt.Sprint(c.LoopConns), "-batches", fmt.Sprint(loopBatches)}
	}
	return append([]string{"ip", "netns", "exec", b.ns}, c.wrkArgs(m.Kind, httpPort)...)
}

// runOne runs a mode once and leaves what it saw in a directory of its own.
func (b *bench) runOne(m modeSpec, round int) (string, error) {
	b.seq++
	dir := filepath.Join(b.runsDir, fmt.Sprintf("%02d-%s-r%d", b.seq, m.Name, round))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	load, _ := os.ReadFile("/proc/loadavg")
	// clk_tck: USER_HZ, which Linux fixes at 100 for /proc.
	appendVals(dir, "mode", m.Name, "round", round, "clk_tck", 100, "nproc", runtime.NumCPU(),
		"loadavg", strings.Fields(string(load) + " 0")[0], "t_start", now())
	backend := b.jaeger
	if m.Sink {
		if err := b.startSink(dir); err != nil {
			return "", err
		}
		backend = b.sink
	}
	if err := b.startAgent(m, dir); err != nil {
		return "", err
	}
	if b.agent != nil {
		appendVals(dir, "agent_pid", b.agent.pid())
	}
	appendVals(dir, "t_ready", now())
	if err := b.counters(filepath.Join(dir, "counters.before")); err != nil {
		return "", err
	}
	pidOf := func(p *proc) int {
		if p == nil {
			return 0
		}
		return p.pid()
	}
	a0, j0 := ticks(pidOf(b.agent)), ticks(pidOf(backend))
	copyCPULine(filepath.Join(dir, "cpu.before"))
	for _, g := range groupNames {
		appendVals(dir, g+"_ns_before", b.cg.usageNS(g))
	}
	appendVals(dir, "t_load_start", now())
	if err := b.runLoad(inGroup(b.cg.procs("load"), b.loadArgv(m)...), filepath.Join(dir, "load.out"), filepath.Join(dir, "load.err")); err != nil {
		return "", err
	}
	appendVals(dir, "t_load_end", now())
	for _, g := range groupNames {
		appendVals(dir, g+"_ns_after", b.cg.usageNS(g))
	}
	copyCPULine(filepath.Join(dir, "cpu.after"))
	a1, j1 := ticks(pidOf(b.agent)), ticks(pidOf(backend))
	// jaeger_ticks: the trace backend's, Jaeger or the counting receiver.
	appendVals(dir, "agent_ticks", a1-a0, "jaeger_ticks", j1-j0)
	if b.agent != nil {
		appendVals(dir, "agent_hwm_kb", statusField(b.agent.pid(), "VmHWM"), "agent_threads", statusField(b.agent.pid(), "Threads"))
	}
	// Let the last connections finish closing before the agent stops.
	time.Sleep(time.Second)
	if err := b.counters(filepath.Join(dir, "counters.after")); err != nil {
		return "", err
	}
	if err := b.stopAgent(dir); err != nil {
		return "", err
	}
	if err := b.stopSink(dir); err != nil {
		return "", err
	}
	return dir, appendVals(dir, "t_stop", now())
}

// runLoad runs a load tool to its end, its output to files; its exit
// status does not matter (the tools say what happened in their output).
func (b *bench) runLoad(argv []string, stdout, stderr string) error {
	p, err := start(argv, stdout, stderr)
	if err != nil {
		return fmt.Errorf("%s: %w", argv[0], err)
	}
	b.mu.Lock()
	b.load = p
	b.mu.Unlock()
	<-p.done
	b.mu.Lock()
	b.load = nil
	b.mu.Unlock()
	return nil
}

// copyCPULine saves /proc/stat's first line.
func copyCPULine(path string) {
	b, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(b), "\n")
	os.WriteFile(path, []byte(line+"\n"), 0o644)
}

// verify counts what Jaeger holds for the tcpspan runs of the last round
// (VERIFY=all: of every round; VERIFY=0: none). Reading spans back costs
// about 3 s per 10k spans, hence one round by default.
func (b *bench) verify() error {
	if b.cfg.Verify == "0" || b.jaeger == nil {
		return nil
	}
	which := fmt.Sprintf("round %d", b.cfg.Rounds)
	if b.cfg.Verify == "all" {
		which = "every round"
	}
	entries, err := os.ReadDir(b.runsDir)
	if err != nil {
		return err
	}
	said := false
	for _, e := range entries {
		vals, err := readKV(filepath.Join(b.runsDir, e.Name(), "vals"))
		if err != nil {
			return err
		}
		switch vals["mode"] {
		case "export-all", "errors-only", "storm-errors":
		default:
			continue
		}
		if b.cfg.Verify != "all" && vals["round"] != fmt.Sprint(b.cfg.Rounds) {
			continue
		}
		if !said {
			fmt.Printf("bench: counting what Jaeger holds for the tcpspan runs of %s\n", which)
			said = true
		}
		dir := filepath.Join(b.runsDir, e.Name())
		kv, err := jaegerVals(fmt.Sprintf("http://127.0.0.1:%d", b.queryPort), time.Second, dir)
		if err != nil {
			return err
		}
		f, err := os.OpenFile(filepath.Join(dir, "vals"), os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		f.WriteString(kv)
		f.Close()
	}
	return nil
}
