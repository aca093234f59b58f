// Command tcpspan traces every TCP connection on this host, with the
// kernel's own account of resets, drops and overflows, and the process that
// really acted. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.opentelemetry.io/otel"

	"github.com/tcpspan/tcpspan/agent"
	"github.com/tcpspan/tcpspan/bpf"
	"github.com/tcpspan/tcpspan/conn"
	"github.com/tcpspan/tcpspan/exporter"
)

const usage = `Usage: sudo tcpspan [flags]

tcpspan turns every TCP connection into an OpenTelemetry span of what the
kernel saw: handshake, close() and the process that called it, resets with
the kernel's reason, retransmits, drops and accept-queue overflows.

With no OTLP endpoint configured it prints one line per finished connection
that had a problem, the diagnosis first (-v adds clean connections). With an
endpoint it exports spans over OTLP; -terminal prints as well.

Environment (OpenTelemetry conventions):
  OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
        where to export, e.g. http://127.0.0.1:4317; unset: terminal only
  OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL
        grpc (default) or http/protobuf
  OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_TIMEOUT, OTEL_EXPORTER_OTLP_INSECURE, ...
        as the OpenTelemetry SDK reads them
  OTEL_RESOURCE_ATTRIBUTES
        added to every span's resource (service.name in it is ignored)
  OTEL_SERVICE_NAME
        the agent's own service: for connections with no known owner, and
        for all of them with -single-service (default "tcpspan")
By default each span's service.name is the owning process's own
OTEL_SERVICE_NAME (read from its environment), else its executable name.

It needs root, or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (and CAP_SYS_ADMIN
where kernel.perf_event_paranoid > 2), and a kernel with BTF
(/sys/kernel/btf/vmlinux).

Flags:
`

type options struct {
	otlpEndpoint    string
	terminal        bool
	cleanRatio      float64
	singleService   bool
	shutdownTimeout time.Duration

	netns      string
	ports      portList
	verbose    bool
	features   bool
	ringBytes  int
	maxConns   int
	orphanIdle time.Duration
	health     time.Duration
}

// portList is a repeatable, comma-separated -port flag.
type portList []uint16

func (p *portList) String() string { return fmt.Sprint(*p) }

func (p *portList) Set(s string) error {
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseUint(strings.TrimSpace(f), 10, 16)
		if err != nil || v == 0 {
			return fmt.Errorf("%q is not a port (1-65535)", f)
		}
		*p = append(*p, uint16(v))
	}
	if len(*p) > 8 {
		return errors.New("at most 8 ports")
	}
	return nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("tcpspan", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported in one line below
	fs.Usage = func() {}
	fs.StringVar(&o.netns, "netns", "", "trace only this network namespace: a path (/var/run/netns/NAME, /proc/PID/ns/net), a name from 'ip netns', or an inode number")
	fs.Var(&o.ports, "port", "trace only connections with this local or remote port (repeatable, or comma-separated; at most 8)")
	fs.BoolVar(&o.verbose, "v", false, "also print clean connections")
	fs.StringVar(&o.otlpEndpoint, "otlp-endpoint", "", "export spans over OTLP to this URL (sets OTEL_EXPORTER_OTLP_ENDPOINT)")
	fs.BoolVar(&o.terminal, "terminal", false, "print to the terminal also when exporting over OTLP")
	fs.Float64Var(&o.cleanRatio, "clean-ratio", exporter.DefaultCleanRatio, "share of clean connections exported (0-1); connections with a problem are always exported")
	fs.BoolVar(&o.singleService, "single-service", false, "put every span under the agent's service (OTEL_SERVICE_NAME, default tcpspan) instead of the owning process's")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 5*time.Second, "on SIGINT/SIGTERM, how long to flush spans still queued")
	fs.BoolVar(&o.features, "features", false, "print which capabilities load on this kernel, then exit")
	fs.IntVar(&o.ringBytes, "ring-buffer-bytes", bpf.DefaultRingBufferBytes, "kernel-to-agent ring buffer size (power of two, multiple of the page size)")
	fs.IntVar(&o.maxConns, "max-connections", bpf.DefaultMaxConnections, "open connections tracked in the kernel at once (about 600 bytes each); beyond it the oldest are evicted")
	fs.DurationVar(&o.orphanIdle, "orphan-idle", conn.DefaultOrphanIdle, "how long events without a socket (resets, dropped handshakes) wait to be joined by 4-tuple")
	fs.DurationVar(&o.health, "health-interval", agent.DefaultHealthInterval, "how often to log the agent's own counts (0 to disable)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return 0
		}
		fmt.Fprintf(stderr, "tcpspan: %v (see tcpspan -h)\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tcpspan: unexpected argument %q (see -h)\n", fs.Arg(0))
		return 2
	}
	if o.ringBytes <= 0 || o.ringBytes&(o.ringBytes-1) != 0 || o.ringBytes%os.Getpagesize() != 0 {
		fmt.Fprintf(stderr, "tcpspan: -ring-buffer-bytes %d: must be a power of two and a multiple of %d\n", o.ringBytes, os.Getpagesize())
		return 2
	}
	if o.cleanRatio < 0 || o.cleanRatio > 1 {
		fmt.Fprintf(stderr, "tcpspan: -clean-ratio %v: must be between 0 and 1\n", o.cleanRatio)
		return 2
	}
	if o.otlpEndpoint != "" {
		os.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", o.otlpEndpoint)
	}
	endpoint, err := exporter.OTLPEndpointFromEnv()
	if err == nil {
		_, err = exporter.OTLPProtocolFromEnv()
	}
	if err != nil {
		fmt.Fprintf(stderr, "tcpspan: %v\n", err)
		return 2
	}
	if o.maxConns <= 0 {
		fmt.Fprintf(stderr, "tcpspan: -max-connections must be positive\n")
		return 2
	}
	if o.netns != "" && !strings.Contains(o.netns, "/") {
		if inode, err := strconv.ParseUint(o.netns, 10, 32); err == nil {
			path, err := agent.NetnsPath(uint32(inode))
			if err != nil {
				fmt.Fprintf(stderr, "tcpspan: -netns %s: %v\n", o.netns, err)
				return 2
			}
			o.netns = path
		} else {
			o.netns = "/var/run/netns/" + o.netns
		}
	}
	if o.health == 0 {
		o.health = -1
	}

	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if o.features {
		return printFeatures(stdout, stderr)
	}

	var sinks []func(*conn.Connection)
	var view *terminal
	if endpoint == "" || o.terminal {
		view = newTerminal(stdout, o.verbose)
		sinks = append(sinks, view.print)
	}
	var spans *exporter.Exporter
	if endpoint != "" {
		otel.SetErrorHandler(newRateLimitedErrors(log, 10*time.Second))
		base, err := exporter.BaseResource(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "tcpspan: %v\n", err)
			return 1
		}
		otlp, err := exporter.NewOTLPFromEnv(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "tcpspan: OTLP exporter: %v\n", err)
			return 2
		}
		spans, err = exporter.New(base, exporter.WithSpanExporter(otlp),
			exporter.WithCleanRatio(o.cleanRatio), exporter.WithSingleService(o.singleService))
		if err != nil {
			fmt.Fprintf(stderr, "tcpspan: %v\n", err)
			return 2
		}
		sinks = append(sinks, spans.Export)
	}
	cfg := agent.Config{
		NetnsPath:       o.netns,
		Ports:           o.ports,
		RingBufferBytes: o.ringBytes,
		MaxConnections:  o.maxConns,
		OrphanIdle:      o.orphanIdle,
		HealthInterval:  o.health,
		Logger:          log,
		Ready: func(tr *bpf.Tracer) {
			log.Info("tracing", "netns", orAll(o.netns), "ports", o.ports, "otlp", orNone(endpoint),
				"features", fmt.Sprintf("%+v", tr.Features()))
		},
	}
	health, runErr := agent.Run(ctx, cfg, func(c *conn.Connection) {
		for _, sink := range sinks {
			sink(c)
		}
	})
	code := 0
	if runErr != nil {
		fmt.Fprintf(stderr, "tcpspan: %v\n", runErr)
		code = 1
	}
	if view != nil {
		view.summary()
	}
	attrs := []any{"connections", health.Tracker.Connections, "orphans", health.Tracker.Orphans, "lost", health.Lost(),
		"midlife", health.Kernel.ConnMidlife, "untracked", health.Kernel.DestroyedUntracked, "stale", health.Kernel.ConnStale,
		"missed", health.Missed()}
	if len(health.Kernel.Missed) > 0 {
		attrs = append(attrs, "missed_by_hook", fmt.Sprint(health.Kernel.Missed))
	}
	if spans != nil {
		flushCtx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
		if err := spans.Shutdown(flushCtx); err != nil {
			log.Warn("flushing spans", "err", err)
		}
		cancel()
		st := spans.Stats()
		attrs = append(attrs, "spans_recorded", st.Recorded, "spans_exported", st.Exported,
			"spans_failed", st.ExportFailed, "spans_dropped", st.Dropped(), "sampled_out", st.SampledOut)
	}
	log.Info("stopped", attrs...)
	return code
}

func orAll(s string) string {
	if s == "" {
		return "all"
	}
	return s
}

func printFeatures(stdout, stderr io.Writer) int {
	tr, err := bpf.Load(bpf.WithWarnings(func(s string) { fmt.Fprintln(stderr, "warning:", s) }))
	if err != nil {
		fmt.Fprintf(stderr, "tcpspan: %v\n", err)
		return 1
	}
	defer tr.Close()
	f := tr.Features()
	names := tr.Names()
	row := func(on bool, what, detail string) {
		state := "off"
		if on {
			state = "on "
		}
		fmt.Fprintf(stdout, "%s  %-28s %s\n", state, what, detail)
	}
	row(true, "connections, close(), resets", "tracepoints inet_sock_set_state, tcp_*, syscalls close/accept")
	row(f.ResetReasons, "reset reasons", "tcp_send_reset reason, names from "+orNone(names.ResetSource))
	row(f.DropReasons, "drop reasons", "kfree_skb reason, names from "+orNone(names.DropSource))
	row(f.ListenOverflow, "handshake ACK overflow", "drop reason TCP_LISTEN_OVERFLOW")
	row(f.SYNOverflow, "SYN accept-queue overflow", "cgroup_skb/ingress on "+orNone(f.CgroupPath))
	return 0
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
