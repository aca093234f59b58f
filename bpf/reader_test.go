package bpf_test

import (
	"net"
	"testing"
	"time"

	"github.com/tcpspan/tcpspan/bpf"
	"github.com/tcpspan/tcpspan/internal/testutil"
)

// An idle reader sleeps longer and longer, up to bpf.MaxPollInterval,
// rather than draining an empty ring buffer every bpf.PollInterval: each
// wake-up of an idle agent costs CPU on every host it runs on.
func TestReaderBacksOffWhenIdle(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCapture(t, ns, 200*time.Millisecond)
	before := bpf.Drains(c.tracer)
	time.Sleep(2 * time.Second)
	// Every 10 ms would be 200; doubling up to 250 ms, about 12.
	if n := bpf.Drains(c.tracer) - before; n > 30 {
		t.Errorf("%d drains of an empty ring buffer in 2 s; want at most 30", n)
	}
}

// A burst is read as the kernel signals that the pending records crossed
// the wake-up threshold, without waiting for the reader's timer: here a
// minute, longer than the test waits.
func TestReaderWokenByKernel(t *testing.T) {
	ns := testutil.NewNetNS(t)
	c := startCapture(t, ns, 200*time.Millisecond, bpf.WithPollIntervals(time.Minute, time.Minute))
	time.Sleep(100 * time.Millisecond) // the reader's first drain, then its long sleep

	// 250 connections, 500 records of 300-400 bytes: past 64 KiB twice.
	const n = 250
	var ln net.Listener
	ns.Do(t, func() {
		var err error
		if ln, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	})
	defer ln.Close()
	accepted := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			s, err := ln.Accept()
			if err != nil {
				accepted <- err
				return
			}
			s.Close()
		}
		accepted <- nil
	}()
	ns.Do(t, func() {
		for i := 0; i < n; i++ {
			cl, err := net.Dial("tcp4", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			cl.Close()
		}
	})
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(c.all()) < 150 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := len(c.all()); got < 150 {
		t.Fatalf("%d of %d connection records delivered in 10 s with the reader's timer at a minute: the kernel's wake-up did not end its sleep (%d drains)",
			got, 2*n, bpf.Drains(c.tracer))
	}
	t.Logf("%d of %d records delivered in %d drains before the timer", len(c.all()), 2*n, bpf.Drains(c.tracer))
}
