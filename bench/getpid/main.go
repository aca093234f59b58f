// Command getpid is the host syscall tax of make bench: a tight loop of
// getpid system calls on one CPU, timed. A syscall tracepoint anywhere on the
// host (syscalls:sys_enter_* or sys_exit_*, which tcpspan attached for
// accept and accept4 until 2026-12) sends every system call of every task
// through the kernel's slow path; this loop shows what that adds per call.
//
// It makes -n calls in -batches equal batches, on a locked OS thread pinned
// to one CPU (-cpu; the last one by default), and prints one line:
//
//	calls=N batches=B seconds=S ns_per_call=F ns_per_call_median=M cpu=C
//
// where F is the fastest batch's ns per call and M the median batch's. The
// batches are short (50,000 calls, about 10 ms, by default) so that on a
// shared machine some of them run undisturbed: the fastest is then steady
// to about 2% while the median moves by half. The calls are raw
// (syscall.RawSyscall): no scheduler hand-off around them, so a call costs
// the kernel's entry and exit and getpid itself.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	n := flag.Int("n", 10_000_000, "getpid calls in all")
	batches := flag.Int("batches", 100, "batches the calls are timed in")
	cpu := flag.Int("cpu", -1, "CPU to pin to (-1: the last one)")
	flag.Parse()
	if *n <= 0 || *batches <= 0 || *n < *batches {
		fmt.Fprintln(os.Stderr, "getpid: want -n >= -batches > 0")
		os.Exit(2)
	}

	runtime.LockOSThread()
	if *cpu < 0 {
		*cpu = runtime.NumCPU() - 1
	}
	var set unix.CPUSet
	set.Set(*cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		fmt.Fprintf(os.Stderr, "getpid: pinning to CPU %d: %v\n", *cpu, err)
		os.Exit(1)
	}

	per := *n / *batches
	ns := make([]float64, 0, *batches)
	start := time.Now()
	for range *batches {
		t0 := time.Now()
		for range per {
			syscall.RawSyscall(syscall.SYS_GETPID, 0, 0, 0)
		}
		ns = append(ns, float64(time.Since(t0).Nanoseconds())/float64(per))
	}
	secs := time.Since(start).Seconds()
	sort.Float64s(ns)
	fmt.Printf("calls=%d batches=%d seconds=%.3f ns_per_call=%.2f ns_per_call_median=%.2f cpu=%d\n",
		per**batches, *batches, secs, ns[0], ns[len(ns)/2], *cpu)
}
