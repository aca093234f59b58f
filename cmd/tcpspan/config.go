package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tcpspan/tcpspan/agent"
	"github.com/tcpspan/tcpspan/bpf"
	"github.com/tcpspan/tcpspan/conn"
	"github.com/tcpspan/tcpspan/exporter"
	"github.com/tcpspan/tcpspan/internal/otlpwire"
)

// config is everything the command line and the environment say, checked.
// It is built by [parseConfig], a pure function, so that bad input can be
// fuzzed without starting anything.
type config struct {
	otlpEndpoint    string // -otlp-endpoint as given
	endpoint        string // where spans go, from the flag or the environment; "" for the terminal only
	protocol        string // otlpwire.ProtocolGRPC or otlpwire.ProtocolHTTP
	metricsProtocol string // protocol of the agent's own metrics
	// metrics: export the agent's own metrics, to the metrics or generic
	// endpoint (a traces-only endpoint says nothing about metrics), unless
	// OTEL_METRICS_EXPORTER is "none".
	metrics bool
	// sdkEnv holds the OTEL_EXPORTER_OTLP_*_ENDPOINT values the SDK's OTLP
	// clients are to read, normalised: -otlp-endpoint as the generic
	// variable, and a bare gRPC host:port given a scheme.
	sdkEnv   map[string]string
	warnings []string // about variables read and ignored, for the log
	// From the OTEL_BSP_* variables: export batching; 0 for the default.
	maxBatch        int
	batchDelay      time.Duration
	exportTimeout   time.Duration
	agentService    string // OTEL_SERVICE_NAME, or exporter.DefaultAgentService
	terminal        bool
	cleanRatio      float64
	cleanEvents     bool // -clean-events
	singleService   bool
	shutdownTimeout time.Duration
	exportQueue     int

	netns      string // as given: a path, a name or an inode number
	ports      portList
	verbose    bool
	wide       bool // the terminal view's lines unwrapped
	features   bool
	caps       bool // -capabilities
	version    bool // -version
	ringBytes  int
	maxConns   int
	orphanIdle time.Duration
	health     time.Duration
	healthAddr string // host:port of the health endpoint; "" for none
	statsFile  string
	memoryMiB  int // soft limit of the Go runtime's memory; 0 for none
	synWatch   string
	// traceparent: capture traceparent headers of HTTP/1.x requests.
	traceparent bool
}

// defaultMemoryMiB bounds the Go heap: with the 16 MiB ring buffer and the
// binary, the agent stays under 150 MB of RSS through a reset storm whose
// spans outrun the backend (the export queue full). That was measured with
// the ring buffer mapped twice, 16 MB more than now.
const defaultMemoryMiB = 96

// errHelp is returned by parseConfig for -h.
var errHelp = flag.ErrHelp

// flagSet declares every flag into c, with c's values as defaults.
func flagSet(c *config) *flag.FlagSet {
	fs := flag.NewFlagSet("tcpspan", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported in one line by the caller
	fs.Usage = func() {}
	fs.StringVar(&c.netns, "netns", c.netns, "trace only this network namespace: a path (/var/run/netns/NAME, /proc/PID/ns/net), a name from 'ip netns', or an inode number")
	fs.Var(&c.ports, "port", "trace only connections with this local or remote port (repeatable, or comma-separated; at most 8)")
	fs.BoolVar(&c.verbose, "v", c.verbose, "also print clean connections")
	fs.BoolVar(&c.wide, "wide", c.wide, "print each connection on one line, however long (default: wrapped at 100 columns)")
	fs.StringVar(&c.otlpEndpoint, "otlp-endpoint", c.otlpEndpoint, "export spans and the agent's metrics over OTLP to this URL, or for gRPC host:port (as OTEL_EXPORTER_OTLP_ENDPOINT)")
	fs.BoolVar(&c.terminal, "terminal", c.terminal, "print to the terminal also when exporting over OTLP")
	fs.Float64Var(&c.cleanRatio, "clean-ratio", c.cleanRatio, "share of clean connections exported (0-1); connections with a problem are always exported")
	fs.BoolVar(&c.cleanEvents, "clean-events", c.cleanEvents, "keep the events (state changes, accept, close) on the spans of clean connections too; by default they carry their timings as attributes, and only connections with a problem carry events")
	fs.BoolVar(&c.singleService, "single-service", c.singleService, "put every span under the agent's service (OTEL_SERVICE_NAME, default tcpspan) instead of the owning process's")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", c.shutdownTimeout, "on SIGINT/SIGTERM, how long to flush spans still queued")
	fs.IntVar(&c.exportQueue, "export-queue", c.exportQueue, "spans waiting for export, all processes together, before new ones are dropped (and counted)")
	fs.BoolVar(&c.features, "features", c.features, "print which capabilities load on this kernel, then exit")
	fs.BoolVar(&c.caps, "capabilities", c.caps, "print the Linux capabilities tcpspan needs on this host, and why, then exit")
	fs.BoolVar(&c.version, "version", c.version, "print tcpspan's version (also the instrumentation scope version of its spans and metrics), then exit")
	fs.IntVar(&c.ringBytes, "ring-buffer-bytes", c.ringBytes, "kernel-to-agent ring buffer size (power of two, multiple of the page size)")
	fs.IntVar(&c.maxConns, "max-connections", c.maxConns, "open connections tracked in the kernel at once (about 600 bytes each); beyond it the oldest are evicted")
	fs.DurationVar(&c.orphanIdle, "orphan-idle", c.orphanIdle, "how long events without a socket (resets, dropped handshakes) wait to be joined by 4-tuple")
	fs.DurationVar(&c.health, "health-interval", c.health, "how often to log the agent's own counts (0 to disable)")
	fs.StringVar(&c.healthAddr, "health-addr", c.healthAddr, "serve /healthz and /metrics (the agent's own counts, for Prometheus) on this address; a bare port binds 127.0.0.1 (default: no listening port)")
	fs.StringVar(&c.statsFile, "stats-file", c.statsFile, "on exit, write the agent's final counts to this file as JSON")
	fs.StringVar(&c.synWatch, "syn-watch", c.synWatch, "when to watch every SYN a listener receives, to see the ones a full accept queue drops: auto (while a queue is half full or more, or a listener's limit is below 64; cheaper) or always")
	fs.BoolVar(&c.traceparent, "traceparent", c.traceparent, "link each connection's span to the application spans named by the W3C traceparent headers of its HTTP/1.x requests, and put the diagnosis of a failed one into that request's trace (only the header's value leaves the kernel)")
	fs.IntVar(&c.memoryMiB, "memory-limit", c.memoryMiB, "soft limit, in MiB, of the Go runtime's memory: the garbage collector works harder near it (0: none); the ring buffer (-ring-buffer-bytes) and the binary come on top")
	return fs
}

func defaultConfig() config {
	return config{
		cleanRatio:      exporter.DefaultCleanRatio,
		shutdownTimeout: 5 * time.Second,
		exportQueue:     exporter.DefaultMaxQueueSize,
		ringBytes:       bpf.DefaultRingBufferBytes,
		maxConns:        bpf.DefaultMaxConnections,
		orphanIdle:      conn.DefaultOrphanIdle,
		health:          agent.DefaultHealthInterval,
		memoryMiB:       defaultMemoryMiB,
		synWatch:        bpf.SynWatchAuto.String(),
		traceparent:     true,
	}
}

// parseConfig reads the command line and the variables lookupEnv finds. It
// touches nothing else: no files, no network. The error, if any, is one
// line; -h yields errHelp.
func parseConfig(args []string, lookupEnv func(string) (string, bool)) (config, error) {
	c, err := parseConfigLines(args, lookupEnv)
	if err != nil && !errors.Is(err, errHelp) {
		err = errors.New(oneLine(err.Error()))
	}
	return c, err
}

func parseConfigLines(args []string, lookupEnv func(string) (string, bool)) (config, error) {
	c := defaultConfig()
	fs := flagSet(&c)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.ringBytes <= 0 || c.ringBytes&(c.ringBytes-1) != 0 || c.ringBytes%os.Getpagesize() != 0 {
		return c, fmt.Errorf("-ring-buffer-bytes %d: must be a power of two and a multiple of %d", c.ringBytes, os.Getpagesize())
	}
	if c.ringBytes > 1<<30 {
		return c, fmt.Errorf("-ring-buffer-bytes %d: at most %d", c.ringBytes, 1<<30)
	}
	// NaN fails both comparisons, so test for the valid range.
	if !(c.cleanRatio >= 0 && c.cleanRatio <= 1) {
		return c, fmt.Errorf("-clean-ratio %v: must be between 0 and 1", c.cleanRatio)
	}
	if c.maxConns <= 0 || c.maxConns > 1<<24 {
		return c, fmt.Errorf("-max-connections %d: must be between 1 and %d", c.maxConns, 1<<24)
	}
	if c.exportQueue <= 0 || c.exportQueue > 1<<24 {
		return c, fmt.Errorf("-export-queue %d: must be between 1 and %d", c.exportQueue, 1<<24)
	}
	if _, err := bpf.ParseSynWatchMode(c.synWatch); err != nil {
		return c, fmt.Errorf("-syn-watch %q: must be auto or always", c.synWatch)
	}
	if c.memoryMiB < 0 || c.memoryMiB > 1<<20 {
		return c, fmt.Errorf("-memory-limit %d: must be between 0 and %d MiB", c.memoryMiB, 1<<20)
	}
	if c.shutdownTimeout < 0 {
		return c, fmt.Errorf("-shutdown-timeout %v: must not be negative", c.shutdownTimeout)
	}
	if c.orphanIdle < 0 {
		return c, fmt.Errorf("-orphan-idle %v: must not be negative", c.orphanIdle)
	}
	if c.health < 0 {
		return c, fmt.Errorf("-health-interval %v: must not be negative (0 disables)", c.health)
	}
	if c.netns != "" && strings.ContainsRune(c.netns, 0) {
		return c, fmt.Errorf("-netns %q: not a path, name or inode", c.netns)
	}
	if c.healthAddr != "" {
		addr, err := healthAddress(c.healthAddr)
		if err != nil {
			return c, err
		}
		c.healthAddr = addr
	}
	return c, c.readEnvironment(fs, lookupEnv)
}

// readEnvironment reads every OpenTelemetry variable the agent honours, in
// this one place (the SDK's OTLP clients read the rest of
// OTEL_EXPORTER_OTLP_*, such as headers and TLS, themselves).
func (c *config) readEnvironment(fs *flag.FlagSet, lookupEnv func(string) (string, bool)) error {
	env := func(name string) string {
		v, _ := lookupEnv(name)
		return strings.TrimSpace(v)
	}
	c.agentService = cmp.Or(env("OTEL_SERVICE_NAME"), exporter.DefaultAgentService)

	// Protocols first: they decide whether a bare host:port is an endpoint.
	// Every protocol variable is checked; the signal's own outranks the
	// generic one, as in the SDK.
	for _, name := range []string{"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"} {
		switch v := env(name); v {
		case "", otlpwire.ProtocolGRPC, otlpwire.ProtocolHTTP:
		default:
			return fmt.Errorf("%s=%q: tcpspan supports %q and %q", name, v, otlpwire.ProtocolGRPC, otlpwire.ProtocolHTTP)
		}
	}
	c.protocol = cmp.Or(env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), env("OTEL_EXPORTER_OTLP_PROTOCOL"), otlpwire.ProtocolGRPC)
	c.metricsProtocol = cmp.Or(env("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"), env("OTEL_EXPORTER_OTLP_PROTOCOL"), otlpwire.ProtocolGRPC)

	// Endpoints. The signal-specific variable outranks the generic one,
	// which the flag stands for. A bare host:port is a gRPC endpoint, with
	// TLS unless the signal's or the generic INSECURE variable is true.
	insecure := func(signal string) bool {
		return isTrue(cmp.Or(env("OTEL_EXPORTER_OTLP_"+signal+"INSECURE"), env("OTEL_EXPORTER_OTLP_INSECURE")))
	}
	c.sdkEnv = map[string]string{}
	// endpoint checks the value of variable name, given as what; the
	// SDK is to read it from that variable, as a URL.
	endpoint := func(what, name, value string, grpc bool, signal string) (string, error) {
		u, err := endpointURL(value, grpc, insecure(signal))
		if err != nil {
			return "", fmt.Errorf("%s=%q: %v", what, value, err)
		}
		if u != value || what != name {
			c.sdkEnv[name] = u
		}
		return u, nil
	}
	metricsOff := env("OTEL_METRICS_EXPORTER") == "none"
	// The generic endpoint serves both signals: bare, it must be gRPC for
	// each that uses it.
	genericGRPC := c.protocol == otlpwire.ProtocolGRPC && (metricsOff || c.metricsProtocol == otlpwire.ProtocolGRPC)
	var traces, generic string
	var err error
	if v := env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); v != "" {
		if traces, err = endpoint("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", v, c.protocol == otlpwire.ProtocolGRPC, "TRACES_"); err != nil {
			return err
		}
	}
	if v := strings.TrimSpace(c.otlpEndpoint); v != "" {
		if generic, err = endpoint("-otlp-endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT", v, genericGRPC, ""); err != nil {
			return err
		}
	} else if v := env("OTEL_EXPORTER_OTLP_ENDPOINT"); v != "" {
		if generic, err = endpoint("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT", v, genericGRPC, ""); err != nil {
			return err
		}
	}
	if v := env("OTEL_EXPORTER_OTLP_ENDPOINT"); v != "" && c.otlpEndpoint != "" {
		// Outranked by the flag, but still checked.
		if _, err := endpointURL(v, genericGRPC, insecure("")); err != nil {
			return fmt.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT=%q: %v", v, err)
		}
	}
	c.endpoint = cmp.Or(traces, generic)
	c.metrics = generic != ""
	if v := env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"); v != "" {
		if _, err := endpoint("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", v, c.metricsProtocol == otlpwire.ProtocolGRPC, "METRICS_"); err != nil {
			return err
		}
		c.metrics = true
	}

	switch v := env("OTEL_METRICS_EXPORTER"); v {
	case "", "otlp":
	case "none":
		c.metrics = false
	default:
		return fmt.Errorf("OTEL_METRICS_EXPORTER=%q: tcpspan supports \"otlp\" and \"none\"", v)
	}
	// Spans: "otlp" exports them (where an endpoint is set), "console" is
	// the terminal view, "none" neither: without an exporter the terminal
	// view is what is left.
	if v := env("OTEL_TRACES_EXPORTER"); v != "" {
		var otlp, console, none bool
		for _, e := range strings.Split(v, ",") {
			switch strings.TrimSpace(e) {
			case "otlp":
				otlp = true
			case "console":
				console = true
			case "none":
				none = true
			default:
				return fmt.Errorf("OTEL_TRACES_EXPORTER=%q: tcpspan supports \"otlp\", \"console\" (the terminal view) and \"none\"", v)
			}
		}
		if none && (otlp || console) {
			return fmt.Errorf("OTEL_TRACES_EXPORTER=%q: \"none\" goes alone", v)
		}
		if !otlp {
			c.endpoint = ""
		}
		c.terminal = c.terminal || console
	}
	// OTEL_SDK_DISABLED=true: no telemetry leaves the agent, neither spans
	// nor its own metrics; the terminal view stays.
	switch v := env("OTEL_SDK_DISABLED"); {
	case isTrue(v):
		c.endpoint, c.metrics = "", false
	case v != "" && !strings.EqualFold(v, "false"):
		c.warnings = append(c.warnings, fmt.Sprintf("OTEL_SDK_DISABLED=%q is neither true nor false: taken as false", v))
	}

	// The sampler, as the tail decision made when a connection ends:
	// connections with a problem are always exported, and the ratio is
	// that of clean ones (-clean-ratio, which wins when given). A
	// connection span has no parent, so parentbased_* is its root sampler.
	if err := c.readSampler(fs, env); err != nil {
		return err
	}

	// The batch span processor's variables, in milliseconds and spans. The
	// -export-queue flag, when given, outranks OTEL_BSP_MAX_QUEUE_SIZE.
	bsp := func(name string, max int) (int, error) {
		v := env(name)
		if v == "" {
			return 0, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > max {
			return 0, fmt.Errorf("%s=%q: want a whole number from 1 to %d", name, v, max)
		}
		return n, nil
	}
	queue, err := bsp("OTEL_BSP_MAX_QUEUE_SIZE", 1<<24)
	if err != nil {
		return err
	}
	if queue > 0 && !flagGiven(fs, "export-queue") {
		c.exportQueue = queue
	}
	if c.maxBatch, err = bsp("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 1<<24); err != nil {
		return err
	}
	ms, err := bsp("OTEL_BSP_SCHEDULE_DELAY", 3_600_000)
	if err != nil {
		return err
	}
	c.batchDelay = time.Duration(ms) * time.Millisecond
	if ms, err = bsp("OTEL_BSP_EXPORT_TIMEOUT", 3_600_000); err != nil {
		return err
	}
	c.exportTimeout = time.Duration(ms) * time.Millisecond
	return nil
}

// readSampler maps OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG onto
// the clean ratio. Samplers that decide by anything else (jaeger_remote,
// xray) cannot: they are ignored, with a warning.
func (c *config) readSampler(fs *flag.FlagSet, env func(string) string) error {
	name, arg := env("OTEL_TRACES_SAMPLER"), env("OTEL_TRACES_SAMPLER_ARG")
	var ratio float64
	switch strings.TrimPrefix(name, "parentbased_") {
	case "":
		return nil
	case "always_on":
		ratio = 1
	case "always_off":
		ratio = 0
	case "traceidratio":
		ratio = 1
		if arg != "" {
			r, err := strconv.ParseFloat(arg, 64)
			if err != nil || !(r >= 0 && r <= 1) {
				return fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%q: want a ratio from 0 to 1", arg)
			}
			ratio = r
		}
	default:
		c.warnings = append(c.warnings, fmt.Sprintf("OTEL_TRACES_SAMPLER=%q is ignored: tcpspan samples when a connection ends, "+
			"keeping every connection with a problem and a share of clean ones (always_on, always_off, traceidratio; -clean-ratio)", name))
		return nil
	}
	if !flagGiven(fs, "clean-ratio") {
		c.cleanRatio = ratio
	}
	return nil
}

// isTrue reads an OpenTelemetry boolean: only "true", in any case, is true.
func isTrue(v string) bool { return strings.EqualFold(strings.TrimSpace(v), "true") }

// flagGiven reports whether the command line set the flag.
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// endpointURL checks an OTLP endpoint and returns it as a URL: one with an
// http or https scheme as it is, and for gRPC also a bare host:port, as
// the OpenTelemetry specification allows, given https (http if insecure).
func endpointURL(v string, grpc, insecure bool) (string, error) {
	if !strings.Contains(v, "://") && !grpc {
		return "", errors.New("want a URL such as http://127.0.0.1:4318 (a bare host:port is only for gRPC)")
	}
	if !strings.Contains(v, "://") {
		host, port, err := net.SplitHostPort(v)
		if err != nil || host == "" || strings.ContainsAny(host, "/?#@ ") {
			return "", errors.New("want a URL such as http://127.0.0.1:4317, or for gRPC host:port")
		}
		scheme := "https://"
		if insecure {
			scheme = "http://"
		}
		v = scheme + net.JoinHostPort(host, port)
	}
	return v, checkEndpoint(v)
}

// checkEndpoint accepts what the OTLP exporters accept as an endpoint URL
// and rejects at start what they would only fail on later.
func checkEndpoint(v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("want a URL such as http://127.0.0.1:4317")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return fmt.Errorf("port %q is not 1-65535", p)
		}
	}
	return nil
}

// healthAddress normalises -health-addr: a bare port, or ":port", binds
// loopback only, so that the agent's counts are not served to the network
// unless an address says so.
func healthAddress(v string) (string, error) {
	if _, err := strconv.ParseUint(v, 10, 16); err == nil {
		v = ":" + v
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return "", fmt.Errorf("-health-addr %q: want PORT or HOST:PORT", v)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", fmt.Errorf("-health-addr %q: port %q is not 0-65535", v, port)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	if strings.ContainsAny(host, " /\\%\x00") {
		return "", fmt.Errorf("-health-addr %q: bad host %q", v, host)
	}
	return net.JoinHostPort(host, port), nil
}

// args renders c back as a command line that parses to c (with an empty
// environment, for the endpoint).
func (c config) args() []string {
	d := defaultConfig()
	var a []string
	add := func(name, value string) { a = append(a, "-"+name+"="+value) }
	if c.netns != d.netns {
		add("netns", c.netns)
	}
	for _, p := range c.ports {
		add("port", strconv.Itoa(int(p)))
	}
	if c.verbose {
		add("v", "true")
	}
	if c.wide {
		add("wide", "true")
	}
	if c.endpoint != "" {
		add("otlp-endpoint", c.endpoint)
	}
	if c.terminal {
		add("terminal", "true")
	}
	add("clean-ratio", strconv.FormatFloat(c.cleanRatio, 'g', -1, 64))
	if c.cleanEvents {
		add("clean-events", "true")
	}
	if c.singleService {
		add("single-service", "true")
	}
	add("shutdown-timeout", c.shutdownTimeout.String())
	add("export-queue", strconv.Itoa(c.exportQueue))
	if c.features {
		add("features", "true")
	}
	if c.caps {
		add("capabilities", "true")
	}
	if c.version {
		add("version", "true")
	}
	add("ring-buffer-bytes", strconv.Itoa(c.ringBytes))
	add("max-connections", strconv.Itoa(c.maxConns))
	add("orphan-idle", c.orphanIdle.String())
	add("health-interval", c.health.String())
	if c.healthAddr != "" {
		add("health-addr", c.healthAddr)
	}
	if c.statsFile != "" {
		add("stats-file", c.statsFile)
	}
	add("memory-limit", strconv.Itoa(c.memoryMiB))
	add("syn-watch", c.synWatch)
	add("traceparent", strconv.FormatBool(c.traceparent))
	return a
}

// oneLine makes an error message fit on one line: flag names and values
// from the command line may hold line breaks.
func oneLine(s string) string {
	return strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(s)
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
		if len(*p) > 8 {
			return errors.New("at most 8 ports")
		}
	}
	return nil
}
