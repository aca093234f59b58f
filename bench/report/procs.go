package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a program the bench started and waits for in the background.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// inGroup is the command line that runs argv in a CPU accounting group: a
// shell moves itself into the group (procs, a cgroup.procs file; "" for
// none) and execs argv, so that the program and everything it forks is in
// the group from its first instruction, and the pid is the program's.
func inGroup(procs string, argv ...string) []string {
	return append([]string{"/bin/sh", "-c", `[ -z "$0" ] || echo $$ >"$0"; exec "$@"`, procs}, argv...)
}

// start starts argv with stdout and stderr to files ("" for /dev/null)
// and extra environment.
func start(argv []string, stdout, stderr string, env ...string) (*proc, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var err error
	if cmd.Stdout, err = outFile(stdout); err != nil {
		return nil, err
	}
	if cmd.Stderr, err = outFile(stderr); err != nil {
		return nil, err
	}
	// Its own process group: a Ctrl-C reaches the bench, which stops
	// everything in order, not every child at once.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		for _, f := range []any{cmd.Stdout, cmd.Stderr} {
			if f, ok := f.(*os.File); ok {
				f.Close()
			}
		}
		close(p.done)
	}()
	return p, nil
}

func outFile(path string) (*os.File, error) {
	if path == "" {
		return os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	}
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// wait waits up to d for the process to exit.
func (p *proc) wait(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// stop sends sig, then SIGKILL if it is still there after grace.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	if p == nil || !p.alive() {
		return
	}
	p.cmd.Process.Signal(sig)
	if !p.wait(grace) {
		p.cmd.Process.Kill()
		<-p.done
	}
}

// ticks is a process's utime+stime in clock ticks (0 when it is gone).
func ticks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which may hold spaces: state is
	// field 3, utime 14 and stime 15.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return u + k
}

// statusField is a field of /proc/PID/status, its first word ("" if gone).
func statusField(pid int, key string) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == key {
			if f := strings.Fields(v); len(f) > 0 {
				return f[0]
			}
		}
	}
	return ""
}

// dialable says whether something listens on a loopback port of this
// network namespace.
func dialable(port int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// freePorts returns n distinct loopback ports nothing listens on, so that
// the bench's Jaeger and receiver run beside make jaeger or a test's.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("no free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// now is the wall clock as seconds since the epoch, as date +%s.%N prints it.
func now() string {
	t := time.Now()
	return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond())
}

// appendVals appends key=value lines to a run's vals file.
func appendVals(dir string, kv ...any) error {
	f, err := os.OpenFile(dir+"/vals", os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(f, "%v=%v\n", kv[i], kv[i+1])
	}
	return f.Close()
}
