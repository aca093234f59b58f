// Command tcpspan traces every TCP connection on this host, with the
// kernel's own account of resets, drops and overflows, and the process that
// really acted. See README.md.
//
// It holds no tracing logic of its own: it turns flags and the standard
// OTEL_* environment into options, checks capabilities (caps.go), and runs
// [agent.Run] with an exporter or a terminal printer as the sink. Anything a
// test or another command could use belongs in a package below it.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/tcpspan/tcpspan/agent"
	"github.com/tcpspan/tcpspan/bpf"
	"github.com/tcpspan/tcpspan/conn"
	"github.com/tcpspan/tcpspan/container"
	"github.com/tcpspan/tcpspan/exporter"
	"github.com/tcpspan/tcpspan/internal/version"
	"github.com/tcpspan/tcpspan/selfmetrics"
)

const usage = `Usage: tcpspan [flags]   (as root; from another account: sudo tcpspan)

tcpspan turns every TCP connection into an OpenTelemetry span of what the
kernel saw: handshake, close() and the process that called it, resets with
the kernel's reason, retransmits, drops and accept-queue overflows.

With no OTLP endpoint configured it prints one line per finished connection
that had a problem, the diagnosis first (-v adds clean connections); in a
storm, one line per kind a second and a count of the others. With an
endpoint it exports spans over OTLP; -terminal prints as well.

Environment (OpenTelemetry conventions):
  OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
        where to export, e.g. http://127.0.0.1:4317, or for gRPC host:port
        (TLS unless OTEL_EXPORTER_OTLP_INSECURE=true); unset: terminal only
  OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL
        grpc (default) or http/protobuf
  OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_TIMEOUT, OTEL_EXPORTER_OTLP_INSECURE, ...
        as the OpenTelemetry SDK reads them
  OTEL_TRACES_EXPORTER
        otlp (default), console (the terminal view; otlp,console: both), or
        none (no export: the terminal view)
  OTEL_SDK_DISABLED
        true: nothing is exported, neither spans nor metrics (terminal only)
  OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG
        always_on, always_off, traceidratio (and parentbased_*): the share
        of clean connections exported, as -clean-ratio (which wins);
        connections with a problem are always exported
  OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_MAX_EXPORT_BATCH_SIZE, OTEL_BSP_SCHEDULE_DELAY,
  OTEL_BSP_EXPORT_TIMEOUT
        the export queue (as -export-queue, which wins), spans per request,
        ms a span waits for its batch, ms a batch may take with retries
  OTEL_RESOURCE_ATTRIBUTES
        added to every span's resource (service.name in it is ignored)
  OTEL_SERVICE_NAME
        the agent's own service: for connections with no known owner, and
        for all of them with -single-service (default "tcpspan")
  OTEL_METRICS_EXPORTER, OTEL_METRIC_EXPORT_INTERVAL, OTEL_EXPORTER_OTLP_METRICS_*
        the agent's own metrics (tcpspan.*) go to the same OTLP endpoint
        every 60 s; "none" turns them off (docs/operations.md)
By default each span's service.name is the owning process's own
OTEL_SERVICE_NAME (read from its environment), else its executable name.

It needs root, or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN, and more on some
hosts: tcpspan -capabilities lists them for this one, with reasons. And a
kernel with BTF (/sys/kernel/btf/vmlinux).

Flags:
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseConfig(args, os.LookupEnv)
	if errors.Is(err, errHelp) {
		fmt.Fprint(stdout, usage)
		d := defaultConfig()
		fs := flagSet(&d)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "tcpspan: %v (see tcpspan -h)\n", err)
		return 2
	}
	if o.version {
		fmt.Fprintf(stdout, "tcpspan %s %s\n", version.Version(), runtime.Version())
		return 0
	}
	for name, value := range o.sdkEnv {
		// The SDK's OTLP clients read the endpoints from the environment:
		// the flag's, and bare gRPC host:port given their scheme.
		os.Setenv(name, value)
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
	if o.statsFile != "" {
		// Written at exit: a file that cannot be written is found now,
		// not after the whole run.
		if st, err := os.Stat(filepath.Dir(o.statsFile)); err != nil || !st.IsDir() {
			fmt.Fprintf(stderr, "tcpspan: -stats-file %s: no directory %s\n", o.statsFile, filepath.Dir(o.statsFile))
			return 2
		}
	}
	if o.netns != "" {
		if _, err := bpf.NetnsInode(o.netns); err != nil {
			fmt.Fprintf(stderr, "tcpspan: -netns: %v\n", oneLine(err.Error()))
			return 2
		}
	}
	if o.health == 0 {
		o.health = -1
	}
	if o.memoryMiB > 0 {
		debug.SetMemoryLimit(int64(o.memoryMiB) << 20)
	}

	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	for _, w := range o.warnings {
		log.Warn(w)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	host := readHostFacts()
	if o.caps {
		printCapabilities(stdout, host)
		return 0
	}
	// Before anything loads: name every missing capability, not the first
	// operation that fails for want of one.
	if err := checkCapabilities(host); err != nil {
		fmt.Fprintf(stderr, "tcpspan: %v\n", err)
		return 1
	}
	if o.features {
		return printFeatures(stdout, stderr)
	}

	var sinks []func(*conn.Connection)
	var view *terminal
	if o.endpoint == "" || o.terminal {
		width := defaultWidth
		if o.wide {
			width = 0
		}
		view = newTerminal(stdout, o.verbose, width, defaultOrder)
		cgroupRoot, _ := bpf.FindCgroup2()
		view.containers = container.NewOwners(cgroupRoot)
		view.header(o.orphanIdle)
		sinks = append(sinks, view.print)
		go func() {
			// The end of a storm shows within a second, not with the
			// next connection.
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case now := <-tick.C:
					view.flush(now)
				}
			}
		}()
	}
	var spans *exporter.Exporter
	errs := newRateLimitedErrors(log, 10*time.Second)
	// With metrics but no spans to export, the errors still count.
	exportHealth := func() agent.ExportHealth { return agent.ExportHealth{Errors: errs.total.Load()} }
	var base *resource.Resource
	if o.endpoint != "" || o.metrics || o.healthAddr != "" {
		otel.SetErrorHandler(errs)
		if base, err = exporter.BaseResource(ctx); err != nil {
			fmt.Fprintf(stderr, "tcpspan: %v\n", err)
			return 1
		}
	}
	if o.endpoint != "" {
		otlp, err := exporter.NewOTLP(ctx, o.protocol)
		if err != nil {
			fmt.Fprintf(stderr, "tcpspan: OTLP exporter: %v\n", oneLine(err.Error()))
			return 2
		}
		// Where the container of an owner that is gone is found; none
		// without cgroup v2 (then only live owners are named).
		cgroupRoot, _ := bpf.FindCgroup2()
		opts := []exporter.Option{exporter.WithSpanExporter(otlp), exporter.WithMaxQueueSize(o.exportQueue),
			exporter.WithCleanRatio(o.cleanRatio), exporter.WithCleanEvents(o.cleanEvents), exporter.WithSingleService(o.singleService),
			exporter.WithCgroupRoot(cgroupRoot),
			exporter.WithAgentService(o.agentService), exporter.WithExportTimeout(o.exportTimeout)}
		if o.maxBatch > 0 {
			opts = append(opts, exporter.WithMaxBatchSize(o.maxBatch))
		}
		if o.batchDelay > 0 {
			opts = append(opts, exporter.WithBatchTimeout(o.batchDelay))
		}
		spans, err = exporter.New(base, opts...)
		if err != nil {
			fmt.Fprintf(stderr, "tcpspan: %v\n", oneLine(err.Error()))
			return 2
		}
		sinks = append(sinks, spans.Export)
		exportHealth = func() agent.ExportHealth {
			return agent.ExportHealth{On: true, Spans: spans.Stats(), Errors: errs.total.Load()}
		}
	}

	var current func() agent.Health
	var self *selfmetrics.Metrics
	var server *selfmetrics.Server
	startErr := error(nil)
	tracing := false // set once the agent traces: before, a failure is one line
	// Clean connections (no retransmit, reset, error, drop or overflow)
	// are needed only to export a share of them or to print them (-v).
	// Otherwise the kernel side counts them and sends nothing: most of the
	// agent's cost per connection is gone.
	skipClean := !(spans != nil && o.cleanRatio > 0) && !(view != nil && o.verbose)
	synWatch, _ := bpf.ParseSynWatchMode(o.synWatch) // checked by parseConfig
	cfg := agent.Config{
		SkipClean: skipClean,
		SynWatch:  synWatch,
		// Off, the capture costs nothing: its programs are not attached.
		NoTraceparent: !o.traceparent,
		// The terminal and the exporter are done with a connection when
		// they return: the exporter encodes the span at once.
		ReuseConnections: true,
		NetnsPath:        o.netns,
		Ports:            o.ports,
		RingBufferBytes:  o.ringBytes,
		MaxConnections:   o.maxConns,
		OrphanIdle:       o.orphanIdle,
		HealthInterval:   o.health,
		Logger:           log,
		Export:           exportHealth,
		Observe: func(f func() agent.Health) {
			current = f
			agentRes, err := resource.Merge(base, resource.NewSchemaless(semconv.ServiceName(o.agentService)))
			if err != nil {
				agentRes = base
			}
			if o.metrics {
				if self, err = selfmetrics.Start(ctx, agentRes, o.metricsProtocol, f, func(err error) {
					log.Warn("the metrics endpoint takes no metrics: the agent's own metrics stop here (OTEL_METRICS_EXPORTER=none says so at start)",
						"err", oneLine(err.Error()))
				}); err != nil {
					log.Warn("the agent's own metrics are off", "err", oneLine(err.Error()))
				}
			}
			if o.healthAddr != "" {
				if server, startErr = selfmetrics.Serve(o.healthAddr, agentRes, f); startErr != nil {
					stop() // a requested endpoint that cannot listen is fatal
				}
			}
		},
		Ready: func(tr *bpf.Tracer) {
			attrs := []any{"netns", orAll(o.netns), "ports", o.ports, "otlp", orNone(o.endpoint),
				"features", tr.Features().Summary(), "clean_connections", cleanMode(skipClean)}
			if server != nil {
				attrs = append(attrs, "health_addr", server.Addr())
			}
			if startErr == nil {
				tracing = true
				log.Info("tracing", attrs...)
			}
		},
	}
	health, runErr := agent.Run(ctx, cfg, func(c *conn.Connection) {
		for _, sink := range sinks {
			sink(c)
		}
	})
	code := 0
	if runErr = cmp.Or(startErr, runErr); runErr != nil {
		fmt.Fprintf(stderr, "tcpspan: %v\n", oneLine(runErr.Error()))
		code = 1
		if !tracing {
			// Nothing was traced: no summary, no counts of nothing.
			if spans != nil {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				spans.Shutdown(ctx)
				cancel()
			}
			return code
		}
	}
	if view != nil {
		view.summary(health.Kernel.CleanSkipped, &health.Tracker)
	}
	flushCtx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	if spans != nil {
		if err := spans.Shutdown(flushCtx); err != nil {
			log.Warn("flushing spans", "err", oneLine(err.Error()))
		}
	}
	if current != nil {
		// After the flush: the export counts are final.
		health = current()
	}
	if self != nil {
		if err := self.Shutdown(flushCtx); err != nil {
			log.Warn("flushing the agent's metrics", "err", oneLine(err.Error()))
		}
	}
	if server != nil {
		server.Close(flushCtx)
	}
	attrs := health.LogAttrs()
	if len(health.Kernel.Missed) > 0 {
		attrs = append(attrs, "missed_by_hook", fmt.Sprint(health.Kernel.Missed))
	}
	if o.statsFile != "" && current != nil {
		if err := selfmetrics.WriteFile(o.statsFile, selfmetrics.Values(health)); err != nil {
			fmt.Fprintf(stderr, "tcpspan: %v\n", oneLine(err.Error()))
			code = cmp.Or(code, 1)
		}
	}
	log.Info("stopped", attrs...)
	return code
}

func cleanMode(skipped bool) string {
	if skipped {
		return "counted_in_kernel"
	}
	return "sent"
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
	fmt.Fprint(stdout, tr.Features())
	return 0
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
