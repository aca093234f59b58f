// Command connloop times loopback TCP connections one at a time, on one
// pinned CPU: what a connection (or a kept-alive request) costs with an
// agent and without, on a machine too noisy for make bench's rates to tell
// builds apart (docs/performance.md, "What a connection costs on this
// machine").
//
// One thread makes every call, blocking, on a locked OS thread pinned to
// one CPU (-cpu; the last one by default). A connection is: connect() to
// its own listener, accept(), a 60-byte request, a 40-byte answer, the
// server's close() (first, as nginx's with "Connection: close"), the
// client's read of the end of file and its close(). With -keepalive it
// opens one connection and times requests and answers on it instead. The
// loopback packets are processed in the thread's own context, so the BPF
// programs of both ends run on the timed CPU.
//
// It makes -n connections (or requests) in each of -batches batches and
// prints one line:
//
//	unit=connection n=N batches=B ns_per_unit=F ns_per_unit_median=M cpu=C
//
// where F is the fastest batch's ns per unit and M the median batch's. On a
// shared machine the fastest batch is the steady one. Run it in a network
// namespace the agent is filtered to (tcpspan -netns), alternating builds.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"time"

	"golang.org/x/sys/unix"
)

var (
	request = []byte("GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: connloop\r\nAccept: */*\r\n\r\n")
	answer  = []byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
)

func main() {
	n := flag.Int("n", 2000, "connections (or requests, with -keepalive) per batch")
	batches := flag.Int("batches", 15, "batches")
	keepalive := flag.Bool("keepalive", false, "one connection; time its requests")
	cpu := flag.Int("cpu", -1, "CPU to pin to (-1: the last one)")
	flag.Parse()
	if *n <= 0 || *batches <= 0 {
		fail("want -n and -batches above 0")
	}

	runtime.LockOSThread()
	if *cpu < 0 {
		*cpu = runtime.NumCPU() - 1
	}
	var set unix.CPUSet
	set.Set(*cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		fail("pinning to CPU %d: %v", *cpu, err)
	}

	ln, addr := listen()
	defer unix.Close(ln)
	buf := make([]byte, 4096)
	unit, once := "connection", func() { connection(ln, addr, buf) }
	if *keepalive {
		c, s := connect(ln, addr)
		defer unix.Close(c)
		defer unix.Close(s)
		unit, once = "request", func() { exchange(c, s, buf) }
	}

	ns := make([]float64, 0, *batches)
	for range *batches {
		t0 := time.Now()
		for range *n {
			once()
		}
		ns = append(ns, float64(time.Since(t0).Nanoseconds())/float64(*n))
	}
	sort.Float64s(ns)
	fmt.Printf("unit=%s n=%d batches=%d ns_per_unit=%.0f ns_per_unit_median=%.0f cpu=%d\n",
		unit, *n, *batches, ns[0], ns[len(ns)/2], *cpu)
}

// listen opens a listener on a free loopback port.
func listen() (int, *unix.SockaddrInet4) {
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fail("socket: %v", err)
	}
	if err := unix.Bind(ln, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		fail("bind: %v", err)
	}
	if err := unix.Listen(ln, 128); err != nil {
		fail("listen: %v", err)
	}
	sa, err := unix.Getsockname(ln)
	if err != nil {
		fail("getsockname: %v", err)
	}
	return ln, sa.(*unix.SockaddrInet4)
}

// connect makes a connection to the listener and accepts it: the client's
// and the server's sockets.
func connect(ln int, addr *unix.SockaddrInet4) (client, server int) {
	c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fail("socket: %v", err)
	}
	if err := unix.Connect(c, addr); err != nil {
		fail("connect: %v", err)
	}
	s, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
	if err != nil {
		fail("accept: %v", err)
	}
	return c, s
}

// exchange sends a request from c and its answer from s.
func exchange(c, s int, buf []byte) {
	write(c, request)
	read(s, buf)
	write(s, answer)
	read(c, buf)
}

// connection is one connection's life, the server closing first.
func connection(ln int, addr *unix.SockaddrInet4, buf []byte) {
	c, s := connect(ln, addr)
	exchange(c, s, buf)
	unix.Close(s)
	if n := read(c, buf); n != 0 {
		fail("read after the server's close: %d bytes, want the end of file", n)
	}
	unix.Close(c)
}

func write(fd int, b []byte) {
	if n, err := unix.Write(fd, b); err != nil || n != len(b) {
		fail("write: %d of %d bytes: %v", n, len(b), err)
	}
}

func read(fd int, buf []byte) int {
	n, err := unix.Read(fd, buf)
	if err != nil {
		fail("read: %v", err)
	}
	return n
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "connloop: "+format+"\n", args...)
	os.Exit(1)
}
