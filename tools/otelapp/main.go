// Command otelapp is a small, really OpenTelemetry-instrumented HTTP client
// and server, for tcpspan's end-to-end tests and demos: the client's requests
// carry W3C traceparent headers, so tcpspan's connection spans can be matched
// with the application's own traces. See README.md.
//
// Usage:
//
//	otelapp server -listen ADDR
//	otelapp abort-server -listen ADDR [-wait 200ms]
//	otelapp client -url URL [-n N] [-keepalive] [-timeout 2s]
//
// Spans are exported over OTLP as the standard environment variables say
// (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_SERVICE_NAME,
// ...). Usage errors exit 2, configuration and start-up errors 1, each with
// one line on stderr.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

const usage = "usage: otelapp server -listen ADDR | abort-server -listen ADDR [-wait D] | client -url URL [-n N] [-keepalive] [-timeout D]"

// errUsage marks an error as a usage error: the command exits 2, not 1.
type errUsage struct{ msg string }

func (e errUsage) Error() string { return e.msg }

func usageErrorf(format string, a ...any) error {
	return errUsage{fmt.Sprintf(format, a...)}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs one subcommand and returns the process's exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "otelapp: no command; "+usage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "server":
		err = runServer(rest, stdout)
	case "abort-server":
		err = runAbortServer(rest, stdout)
	case "client":
		err = runClient(rest, stdout)
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return 0
	default:
		err = usageErrorf("unknown command %q; %s", cmd, usage)
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprintln(stdout, usage)
		return 0
	case errors.As(err, new(errUsage)):
		fmt.Fprintln(stderr, "otelapp: "+err.Error())
		return 2
	default:
		fmt.Fprintln(stderr, "otelapp: "+err.Error())
		return 1
	}
}

// parseFlags parses args into fs and turns every problem into a one-line
// usage error (the flag package's own output would be the whole flag list).
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageErrorf("%s: %v; %s", fs.Name(), err, usage)
	}
	if fs.NArg() > 0 {
		return usageErrorf("%s: unexpected argument %q; %s", fs.Name(), fs.Arg(0), usage)
	}
	return nil
}
