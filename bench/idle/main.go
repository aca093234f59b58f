// Command idle measures what many open, idle connections cost tcpspan: it
// opens N loopback connections in a network namespace of its own while the
// agent traces that namespace, holds them, closes them, and prints the
// agent's memory, the kernel's map memory and what the agent counted.
//
// The kernel keeps one entry per open socket (both ends of a loopback
// connection are sockets of the namespace), in an LRU map of
// -max-connections entries; user space holds nothing for an open
// connection. Beyond the map's size the oldest entries are evicted: such a
// connection is picked up again, flagged mid-life, when it next changes
// state, and the agent counts it.
//
// The connections are held by worker processes (this program again, in the
// namespace), 9000 each, so that no process needs an open-file limit above
// the usual hard one.
//
// Usage (root, from bench/, a module of its own): go run ./idle -agent ../bin/tcpspan -n 100000 [-close-gap 0] [-- agent flags]
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// perWorker is how many connections one worker process holds: two fds
// each, under the open-file limit, which without CAP_SYS_RESOURCE cannot
// be raised past its hard value.
const perWorker = 9000

func main() {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		os.Exit(worker(os.Args[2:]))
	}
	agent := flag.String("agent", "bin/tcpspan", "the tcpspan binary")
	n := flag.Int("n", 100000, "connections to open (each is two sockets of the namespace)")
	hold := flag.Duration("hold", 5*time.Second, "how long to hold them open and idle")
	closeGap := flag.Duration("close-gap", 0, "pause between workers' closes (each closes 9000 connections at once); 0: all at once")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: idle [-agent bin/tcpspan] [-n 100000] [-hold 5s] [-- agent flags]")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *n <= 0 || *n > 500000 {
		fmt.Fprintln(os.Stderr, "idle: -n must be in 1..500000")
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "idle: needs root (network namespace, BPF)")
		os.Exit(1)
	}
	if err := run(*agent, *n, *hold, *closeGap, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "idle:", err)
		os.Exit(1)
	}
}

func run(agentPath string, n int, hold, closeGap time.Duration, agentArgs []string) error {
	ns := fmt.Sprintf("tcpspan-idle-%d", os.Getpid())
	if err := sh("ip", "netns", "add", ns); err != nil {
		return err
	}
	defer sh("ip", "netns", "del", ns)
	for _, c := range [][]string{
		{"ip", "-n", ns, "link", "set", "lo", "up"},
		// Room for the connections: ephemeral ports per source address, and
		// an accept queue that the acceptor drains as they come.
		{"ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=1024 65535"},
		{"ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.core.somaxconn=65535"},
	} {
		if err := sh(c...); err != nil {
			return err
		}
	}

	logPath := fmt.Sprintf("%s/tcpspan-idle-%d.log", os.TempDir(), os.Getpid())
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer os.Remove(logPath)
	args := append([]string{"-netns", ns, "-health-interval", "0"}, agentArgs...)
	cmd := exec.Command(agentPath, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return err
	}
	defer cmd.Process.Kill()
	if err := waitFor(logPath, "msg=tracing", 60*time.Second); err != nil {
		return err
	}
	fmt.Printf("agent: %s %s\n", agentPath, strings.Join(args, " "))
	time.Sleep(time.Second)
	rssIdle, _ := procStatus(cmd.Process.Pid, "VmRSS")

	start := time.Now()
	var workers []*exec.Cmd
	defer func() {
		for _, w := range workers {
			w.Process.Kill()
			w.Wait()
		}
	}()
	var releases []func()
	for i := 0; i*perWorker < n; i++ {
		count := min(perWorker, n-i*perWorker)
		w := exec.Command("/proc/self/exe", "worker", ns, strconv.Itoa(i), strconv.Itoa(count))
		w.Stderr = os.Stderr
		stdin, err := w.StdinPipe()
		if err != nil {
			return err
		}
		stdout, err := w.StdoutPipe()
		if err != nil {
			return err
		}
		if err := w.Start(); err != nil {
			return err
		}
		workers = append(workers, w)
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil || line != "ready\n" {
			return fmt.Errorf("worker %d did not open its connections: %q %v", i, line, err)
		}
		releases = append(releases, func() { stdin.Close() })
	}
	opened := time.Since(start)
	fmt.Printf("opened %d connections (%d sockets) in %.1fs; holding them idle for %s\n", n, 2*n, opened.Seconds(), hold)
	time.Sleep(hold)
	rssHeld, _ := procStatus(cmd.Process.Pid, "VmRSS")
	maps, err := agentMaps(cmd.Process.Pid)
	if err != nil {
		fmt.Println("kernel maps: not read:", err)
	}

	closing := time.Now()
	for i, release := range releases {
		if i > 0 {
			time.Sleep(closeGap)
		}
		release()
	}
	for _, w := range workers {
		if err := w.Wait(); err != nil {
			return fmt.Errorf("worker: %w", err)
		}
	}
	workers = nil
	fmt.Printf("closed them in %.1fs\n", time.Since(closing).Seconds())
	// Let the last records reach the agent, then stop it: its last line has
	// the final counts.
	time.Sleep(3 * time.Second)
	hwm, _ := procStatus(cmd.Process.Pid, "VmHWM")
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("agent: %w (log: %s)", err, tail(logPath))
	}
	final := lastLine(logPath, "msg=stopped")
	if final == "" {
		return fmt.Errorf("agent printed no final counts (log: %s)", tail(logPath))
	}

	fmt.Printf("agent RSS: %d MB before, %d MB with them open, %d MB peak\n", rssIdle>>10, rssHeld>>10, hwm>>10)
	for _, m := range maps {
		per := 0.0
		if m.MaxEntries > 0 {
			per = float64(m.BytesMemlock) / float64(m.MaxEntries)
		}
		fmt.Printf("kernel map %-10s %-8s %7d entries max, %6.1f MB (%4.0f bytes per entry)\n", m.Name, m.Type, m.MaxEntries,
			float64(m.BytesMemlock)/(1<<20), per)
	}
	kv := keyValues(final)
	fmt.Printf("agent counted: connections=%s orphans=%s midlife=%s untracked=%s lost=%s (of %d sockets)\n",
		kv["connections"], kv["orphans"], kv["midlife"], kv["untracked"], kv["lost"], 2*n)
	fmt.Println("final:", final)
	return nil
}

// worker opens its share of the connections in the namespace, says
// "ready", holds them until its stdin closes, then closes them.
func worker(args []string) int {
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: idle worker NETNS INDEX COUNT")
		return 2
	}
	index, _ := strconv.Atoi(args[1])
	count, _ := strconv.Atoi(args[2])
	clients, servers, err := open(args[0], index, count)
	if err != nil {
		fmt.Fprintf(os.Stderr, "idle worker %d: %v\n", index, err)
		return 1
	}
	fmt.Println("ready")
	buf := make([]byte, 1)
	for {
		if _, err := os.Stdin.Read(buf); err != nil {
			break
		}
	}
	// The client ends close first: a clean close, as a client would.
	closeAll(clients)
	closeAll(servers)
	return 0
}

// open makes n connections to a listener of worker index in namespace ns
// and returns both ends. Each worker uses its own source address, so that
// none runs out of ephemeral ports.
func open(ns string, index, n int) (clients, servers []*net.TCPConn, err error) {
	err = inNetns(ns, func() error {
		l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080 + index})
		if err != nil {
			return err
		}
		defer l.Close()
		accepted := make(chan []*net.TCPConn)
		go func() {
			var s []*net.TCPConn
			for len(s) < n {
				c, err := l.AcceptTCP()
				if err != nil {
					break
				}
				s = append(s, c)
			}
			accepted <- s
		}()
		src := netip.AddrFrom4([4]byte{127, 0, byte(index / 250), byte(2 + index%250)})
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: 5 * time.Second}
		for i := 0; i < n; i++ {
			c, err := d.Dial("tcp4", l.Addr().String())
			if err != nil {
				l.Close()
				servers = <-accepted
				return fmt.Errorf("connection %d: %w", i, err)
			}
			clients = append(clients, c.(*net.TCPConn))
		}
		select {
		case servers = <-accepted:
		case <-time.After(30 * time.Second):
			l.Close()
			servers = <-accepted
			return fmt.Errorf("accepted %d of %d", len(servers), n)
		}
		return nil
	})
	return clients, servers, err
}

// inNetns runs fn on an OS thread inside namespace ns. Sockets made there
// stay in it.
func inNetns(ns string, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		f, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			done <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		done <- fn()
	}()
	return <-done
}

func closeAll(cs []*net.TCPConn) {
	for _, c := range cs {
		c.Close()
	}
}

type bpfMap struct {
	ID           int    `json:"id"`
	Name         string `json:"name"`
	Type         string `json:"type"`
	MaxEntries   int    `json:"max_entries"`
	BytesMemlock int64  `json:"bytes_memlock"`
}

// agentMaps lists the BPF maps the agent holds open, from its fds and
// bpftool's view of every map.
func agentMaps(pid int) ([]bpfMap, error) {
	out, err := exec.Command("bpftool", "-j", "map", "show").Output()
	if err != nil {
		return nil, fmt.Errorf("bpftool map show: %w", err)
	}
	var all []bpfMap
	if err := json.Unmarshal(out, &all); err != nil {
		return nil, err
	}
	ids := map[int]bool{}
	fdDir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	entries, err := os.ReadDir(fdDir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		b, err := os.ReadFile(fdDir + "/" + e.Name())
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "map_id:"); ok {
				id, _ := strconv.Atoi(strings.TrimSpace(v))
				ids[id] = true
			}
		}
	}
	var mine []bpfMap
	for _, m := range all {
		if ids[m.ID] {
			mine = append(mine, m)
		}
	}
	if len(mine) == 0 {
		return nil, errors.New("no BPF maps among the agent's fds")
	}
	return mine, nil
}

// procStatus returns a kB field of /proc/PID/status.
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

func waitFor(path, what string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(path)
		if bytes.Contains(b, []byte(what)) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("agent not ready after %s (log: %s)", timeout, tail(path))
}

func lastLine(path, what string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var last string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.Contains(sc.Text(), what) {
			last = sc.Text()
		}
	}
	return last
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

var kvRE = regexp.MustCompile(`(\w+)=("[^"]*"|\S+)`)

func keyValues(line string) map[string]string {
	m := map[string]string{}
	for _, s := range kvRE.FindAllStringSubmatch(line, -1) {
		m[s[1]] = s[2]
	}
	return m
}

func sh(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}
