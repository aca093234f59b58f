// Command otlpsink is an OTLP/gRPC trace receiver for make bench that only
// counts what it receives, so that an export-everything run measures the
// agent, not a trace store competing with it for the same cores. On SIGINT
// or SIGTERM it prints its counts, as key=value pairs, and exits.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/tcpspan/tcpspan/internal/otlpsink"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:4317", "address to listen on")
	flag.Parse()
	sink, err := otlpsink.Start(*addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "otlpsink:", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "otlpsink: listening on", sink.Addr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	sink.Stop()
	fmt.Printf("sink_spans=%d\nsink_requests=%d\nsink_bytes=%d\nsink_rst_sent=%d\n",
		sink.Spans(), sink.Requests(), sink.Bytes(), sink.Events("tcp.rst_sent"))
}
