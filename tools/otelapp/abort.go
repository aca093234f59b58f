package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// runAbortServer runs a raw TCP server that behaves like a broken forwarder:
// it accepts each connection, waits so that the request arrives, then
// closes it without reading. The kernel then resets the client
// (TCP_ABORT_ON_CLOSE). No instrumentation, no spans: the only account of
// these connections is tcpspan's.
func runAbortServer(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("abort-server", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "`ADDR` to listen on")
	wait := fs.Duration("wait", 200*time.Millisecond, "how long to hold each connection before closing it unread")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *wait < 0 {
		return usageErrorf("abort-server: -wait %v is negative; %s", *wait, usage)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "listening %s\n", ln.Addr())
	go func() {
		<-ctx.Done()
		ln.Close()
	}()

	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		wg.Go(func() {
			t := time.NewTimer(*wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
			// Closed with the request unread: the kernel answers with RST.
			c.Close()
		})
	}
}
