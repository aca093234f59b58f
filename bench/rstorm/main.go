// Command rstorm is the reset storm of scripts/bench.sh: it connects to a
// port nothing listens on, as fast as a few threads can, for a fixed time.
// Every attempt is a SYN answered by an RST (ECONNREFUSED). It prints one
// line: attempts=N refused=N errors=N seconds=S per_second=R.
//
// It uses blocking socket/connect/close system calls directly, so an
// attempt costs what the kernel needs and little else.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	target := flag.String("addr", "127.0.0.1:9", "address:port to connect to (nothing should listen on it)")
	workers := flag.Int("workers", 4, "threads connecting in parallel")
	duration := flag.Duration("d", 5*time.Second, "how long to run")
	flag.Parse()

	ap, err := netip.ParseAddrPort(*target)
	if err != nil || !ap.Addr().Is4() {
		fmt.Fprintf(os.Stderr, "rstorm: -addr %q: want an IPv4 address:port\n", *target)
		os.Exit(2)
	}
	sa := &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}

	var attempts, refused, other atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(*duration)
	start := time.Now()
	var wg sync.WaitGroup
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			for n := 0; ; n++ {
				if n%64 == 0 && time.Now().After(deadline) {
					return
				}
				fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
				if err != nil {
					other.Add(1)
					firstErr.CompareAndSwap(nil, err)
					time.Sleep(time.Millisecond)
					continue
				}
				err = syscall.Connect(fd, sa)
				syscall.Close(fd)
				attempts.Add(1)
				switch {
				case errors.Is(err, syscall.ECONNREFUSED):
					refused.Add(1)
				default:
					other.Add(1)
					if err == nil {
						err = errors.New("connected: something listens on the target")
					}
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	fmt.Printf("attempts=%d refused=%d errors=%d seconds=%.3f per_second=%.0f\n",
		attempts.Load(), refused.Load(), other.Load(), secs, float64(attempts.Load())/secs)
	if e := firstErr.Load(); e != nil {
		fmt.Fprintf(os.Stderr, "rstorm: first error: %v\n", e)
	}
}
